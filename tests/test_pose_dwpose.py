"""DWPose pre/post-processing on synthetic arrays; the full ONNX path on tiny constant models."""

import numpy as np
import pytest

from dreamactor_jax.pose import dwpose
from dreamactor_jax.pose.keypoints import L_SHOULDER, NECK, R_SHOULDER, R_WRIST

H, W = 240, 320          # test image; letterbox ratio into 640x640 is 2
POSE_W, POSE_H = 288, 384


def detector_raw(rng):
    """YOLOX output [8400, 85]: a person at (100, 60)-(150, 160) in image pixels, a weaker
    overlapping duplicate, and a confident non-person (class 1)."""
    raw = np.zeros((8400, 85), np.float32)
    raw[:, 4] = rng.uniform(0, 0.05, 8400)  # background: low objectness

    def put(i, stride, gx, gy, box, obj, cls, p):
        x0, y0, x1, y1 = (2 * v for v in box)  # into the 640 letterbox
        raw[i, 0] = (x0 + x1) / 2 / stride - gx
        raw[i, 1] = (y0 + y1) / 2 / stride - gy
        raw[i, 2:4] = np.log((x1 - x0) / stride), np.log((y1 - y0) / stride)
        raw[i, 4], raw[i, 5 + cls] = obj, p
    put(80 * 27 + 31, 8, 31, 27, (100, 60, 150, 160), 0.9, 0, 0.95)        # stride-8 cell (31, 27)
    put(6400 + 40 * 13 + 15, 16, 15, 13, (102, 62, 151, 158), 0.8, 0, 0.9)  # duplicate
    put(6400 + 1600 + 20 * 3 + 3, 32, 3, 3, (10, 10, 60, 50), 0.95, 1, 0.99)  # not a person
    return raw


def test_person_boxes_decode_filter_and_nms():
    boxes = dwpose.person_boxes(detector_raw(np.random.default_rng(0)), ratio=2.0)
    assert boxes.shape == (1, 4)
    np.testing.assert_allclose(boxes[0], (100, 60, 150, 160), atol=1e-3)
    with pytest.raises(ValueError, match="predictions"):
        dwpose.yolox_decode(np.zeros((10, 85)))


def test_letterbox():
    img = np.random.default_rng(1).integers(0, 256, (H, W, 3), dtype=np.uint8)
    x, r = dwpose.letterbox(img)
    assert x.shape == (3, 640, 640) and r == 2.0
    assert np.all(x[:, 480:, :] == 114) and abs(x[:, :480].mean() - img.mean()) < 2


def test_box_to_center_scale_keeps_input_aspect():
    c, s = dwpose.box_to_center_scale((100, 60, 150, 160))  # 50 x 100 -> pad 1.25 -> fit 3:4
    np.testing.assert_allclose(c, (125, 110))
    np.testing.assert_allclose(s, (125 * 0.75, 125))
    c, s = dwpose.box_to_center_scale((0, 0, 200, 100))
    np.testing.assert_allclose(s, (250, 250 / 0.75))


def test_crop_is_the_documented_affine_map():
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float32)
    img = np.stack([xs, ys, np.full_like(xs, 7.0)], -1)  # a linear image: bilinear is exact
    center, scale = np.array([150.3, 110.7]), np.array([90.0, 120.0])
    out = dwpose.crop(img, center, scale, (POSE_W, POSE_H))
    assert out.shape == (POSE_H, POSE_W, 3)
    k = scale[0] / POSE_W
    for v, u in [(0, 0), (100, 37), (POSE_H - 1, POSE_W - 1)]:
        np.testing.assert_allclose(out[v, u, :2], center - scale / 2 + np.array([u, v]) * k, atol=1e-3)
    far = dwpose.crop(img, np.array([-500.0, -500.0]), scale, (POSE_W, POSE_H))
    assert np.all(far == 0)  # outside the image: black, as OpenCV's constant border


def test_simcc_decode():
    rng = np.random.default_rng(2)
    sx, sy = rng.uniform(-1, 0.5, (2, 133, 576)), rng.uniform(-1, 0.5, (2, 133, 768))
    sx[0, 5, 300], sy[0, 5, 101] = 0.9, 0.7
    sx[1, 7], sy[1, 7] = -0.3, -0.2  # nothing positive: missing
    locs, scores = dwpose.simcc_decode(sx, sy)
    np.testing.assert_allclose(locs[0, 5], (150, 50.5))
    assert np.isclose(scores[0, 5], 0.7)
    assert np.all(locs[1, 7] == -1) and scores[1, 7] <= 0


def test_wholebody_to_openpose_layout():
    rng = np.random.default_rng(3)
    kps = rng.uniform(0, 1, (2, 133, 2)) * np.array([W, H])
    scores = rng.uniform(0.5, 1.2, (2, 133))
    kps[1, 10] = -1  # a missing point (the annotator's -1)
    f = dwpose.wholebody_to_frame(kps, scores, H, W)
    norm = kps / np.array([W, H])
    np.testing.assert_allclose(f.body[0, R_SHOULDER, :2], norm[0, 6], rtol=1e-5)
    np.testing.assert_allclose(f.body[0, L_SHOULDER, :2], norm[0, 5], rtol=1e-5)
    np.testing.assert_allclose(f.body[0, NECK, :2], (norm[0, 5] + norm[0, 6]) / 2, rtol=1e-5)
    np.testing.assert_allclose(f.hands[0, 0, :, :2], norm[0, 91:112], rtol=1e-5)
    np.testing.assert_allclose(f.hands[0, 1, :, :2], norm[0, 112:133], rtol=1e-5)
    np.testing.assert_allclose(f.face[0, :, :2], norm[0, 23:91], rtol=1e-5)
    assert f.body[1, R_WRIST, 2] == 0 and f.body.max() <= 1  # missing, scores clipped to [0, 1]


# ---------------------------------------------------------------- the ONNX path
def _constant_model(path, input_shape, outputs):
    """An ONNX model: input of `input_shape`, outputs = constants + 0 * mean(input)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper
    nodes = [helper.make_node("ReduceMean", ["x"], ["m"], keepdims=0),
             helper.make_node("Mul", ["m", "zero"], ["z"])]
    inits = [numpy_helper.from_array(np.zeros((), np.float32), "zero")]
    outs = []
    for name, value in outputs.items():
        inits.append(numpy_helper.from_array(value.astype(np.float32), f"{name}_c"))
        nodes.append(helper.make_node("Add", [f"{name}_c", "z"], [name]))
        outs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(value.shape)))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(input_shape))],
                              outs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_dwpose_estimator_end_to_end(tmp_path):
    pytest.importorskip("onnxruntime")
    rng = np.random.default_rng(4)
    det = _constant_model(tmp_path / "det.onnx", (1, 3, 640, 640), {"out": detector_raw(rng)[None]})
    sx, sy = np.full((1, 133, 2 * POSE_W), -1.0), np.full((1, 133, 2 * POSE_H), -1.0)
    sx[0, :, POSE_W], sy[0, :, POSE_H] = 0.8, 0.9   # every point at the crop's centre ...
    sx[0, 0, POSE_W], sy[0, 0, POSE_H] = 0.0, 0.0   # ... but the nose, at its top-left
    sx[0, 0, 0], sy[0, 0, 0] = 0.8, 0.9
    sx[0, 9], sy[0, 9] = -0.5, -0.5                  # left wrist: missing
    pose = _constant_model(tmp_path / "pose.onnx", (1, 3, POSE_H, POSE_W), {"simcc_x": sx, "simcc_y": sy})
    est = dwpose.DWPoseEstimator(det, pose, providers=["CPUExecutionProvider"])
    img = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    f = est(img)
    assert f.num_people == 1
    center = np.array([125 / W, 110 / H])  # the person box's centre, normalised
    np.testing.assert_allclose(f.body[0, R_SHOULDER, :2], center, atol=1e-4)
    np.testing.assert_allclose(f.body[0, R_SHOULDER, 2], 0.8, atol=1e-6)
    corner = (np.array([125, 110]) - np.array([125 * 0.75, 125]) / 2) / np.array([W, H])
    np.testing.assert_allclose(f.body[0, 0, :2], corner, atol=1e-4)
    assert f.body[0, 7, 2] == 0  # OpenPose l_wrist = COCO 9
    # a frame with nobody: empty, not the annotator's whole-image fallback
    empty_det = _constant_model(tmp_path / "det0.onnx", (1, 3, 640, 640), {"out": np.zeros((1, 8400, 85))})
    assert dwpose.DWPoseEstimator(empty_det, pose)(img).num_people == 0
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        dwpose.DWPoseEstimator(tmp_path / "missing.onnx", pose)
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="cannot load"):
        dwpose.DWPoseEstimator(tmp_path / "bad.onnx", pose)
