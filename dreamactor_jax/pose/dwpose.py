"""DWPose (the paper's pose estimator) through onnxruntime, given the user's model files.

Two ONNX models, as released with DWPose: a YOLOX person detector (`yolox_l.onnx`, input
[1, 3, 640, 640]) and the RTMPose-style whole-body model (`dw-ll_ucoco_384.onnx`, input
[1, 3, 384, 288], outputs SimCC vectors [1, 133, 576] and [1, 133, 768]). The pre- and
post-processing below follows the DWPose annotator (letterbox with grey 114, YOLOX grid decoding,
NMS; box -> centre/scale with padding 1.25 fixed to the input aspect, affine crop, ImageNet
normalisation, SimCC arg-max decoding with split ratio 2), in numpy, without OpenCV. Like the
annotator, images are fed in RGB. Unlike it, a frame where no person is detected gives an empty
PoseFrame (the annotator falls back to the whole image and always finds someone).

COCO-WholeBody's 133 points: body 0-16 (COCO-17), feet 17-22 (dropped), face 23-90 (the 68-point
layout), left hand 91-111, right hand 112-132; the neck is the shoulders' midpoint.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from dreamactor_jax.pose.keypoints import PoseFrame

# OpenPose-18 index -> COCO-17 index (the neck, 1, is computed).
COCO_TO_OPENPOSE = (0, -1, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3)
MEAN = np.array([123.675, 116.28, 103.53], np.float32)
STD = np.array([58.395, 57.12, 57.375], np.float32)


# ---------------------------------------------------------------- detector (YOLOX)
def letterbox(image: np.ndarray, size: tuple[int, int] = (640, 640)) -> tuple[np.ndarray, float]:
    """uint8 [H, W, 3] -> float32 [3, h, w] (top-left aligned, grey 114 padding) and the ratio."""
    from PIL import Image  # noqa: PLC0415

    h, w = image.shape[:2]
    r = min(size[0] / h, size[1] / w)
    rh, rw = int(h * r), int(w * r)
    out = np.full((size[0], size[1], 3), 114, np.uint8)
    out[:rh, :rw] = np.asarray(Image.fromarray(image).resize((rw, rh), Image.BILINEAR))
    return out.transpose(2, 0, 1).astype(np.float32), r


def yolox_decode(raw: np.ndarray, size: tuple[int, int] = (640, 640), strides=(8, 16, 32)) -> np.ndarray:
    """YOLOX head output [N, 4 + 1 + C] (grid offsets, log sizes) -> centre/size boxes in pixels."""
    grids, mults = [], []
    for s in strides:
        hs, ws = size[0] // s, size[1] // s
        yv, xv = np.meshgrid(np.arange(hs), np.arange(ws), indexing="ij")
        grids.append(np.stack([xv, yv], -1).reshape(-1, 2))
        mults.append(np.full((hs * ws, 1), s))
    grid, mult = np.concatenate(grids).astype(np.float32), np.concatenate(mults).astype(np.float32)
    if raw.shape[0] != grid.shape[0]:
        raise ValueError(f"DWPose detector: expected {grid.shape[0]} predictions for {size}, got {raw.shape[0]}")
    out = raw.astype(np.float32).copy()
    out[:, :2] = (out[:, :2] + grid) * mult
    out[:, 2:4] = np.exp(out[:, 2:4]) * mult
    return out


def nms(boxes: np.ndarray, scores: np.ndarray, thr: float) -> list[int]:
    """Greedy non-maximum suppression on xyxy boxes; indices kept, best first."""
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order, keep = scores.argsort()[::-1], []
    while order.size:
        i = order[0]
        keep.append(int(i))
        xx1, yy1 = np.maximum(x1[i], x1[order[1:]]), np.maximum(y1[i], y1[order[1:]])
        xx2, yy2 = np.minimum(x2[i], x2[order[1:]]), np.minimum(y2[i], y2[order[1:]])
        inter = np.maximum(0.0, xx2 - xx1 + 1) * np.maximum(0.0, yy2 - yy1 + 1)
        order = order[1:][inter / (areas[i] + areas[order[1:]] - inter) <= thr]
    return keep


def person_boxes(raw: np.ndarray, ratio: float, *, size=(640, 640), nms_thr: float = 0.45,
                 score_thr: float = 0.3) -> np.ndarray:
    """Detector output [N, 85] -> person boxes [K, 4] xyxy in original-image pixels, best first."""
    pred = yolox_decode(raw, size)
    scores = pred[:, 4:5] * pred[:, 5:]
    cls, best = scores.argmax(1), scores.max(1)
    keep = (cls == 0) & (best > score_thr)  # class 0: person
    b = pred[keep, :4]
    boxes = np.stack([b[:, 0] - b[:, 2] / 2, b[:, 1] - b[:, 3] / 2, b[:, 0] + b[:, 2] / 2, b[:, 1] + b[:, 3] / 2], -1)
    boxes /= ratio
    return boxes[nms(boxes, best[keep], nms_thr)] if len(boxes) else np.zeros((0, 4), np.float32)


# ---------------------------------------------------------------- pose (SimCC)
def box_to_center_scale(box, input_size=(288, 384), padding: float = 1.25) -> tuple[np.ndarray, np.ndarray]:
    """xyxy box -> centre and (w, h) scale, padded and widened/heightened to the input's aspect."""
    x0, y0, x1, y1 = (float(v) for v in box)
    center = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
    w, h = (x1 - x0) * padding, (y1 - y0) * padding
    aspect = input_size[0] / input_size[1]
    scale = np.array([w, w / aspect]) if w > h * aspect else np.array([h * aspect, h])
    return center, scale


def crop(image: np.ndarray, center, scale, input_size=(288, 384)) -> np.ndarray:
    """The affine crop of the box (centre, scale) to input_size (w, h), bilinear, black outside.

    Output pixel (u, v) samples the source at center - scale / 2 + (u, v) * scale / input_size,
    the same map as OpenCV's warpAffine with the annotator's matrix (no rotation).
    """
    w, h = input_size
    k = scale[0] / w
    xs = center[0] - scale[0] / 2 + np.arange(w) * k
    ys = center[1] - scale[1] / 2 + np.arange(h) * k
    x0, y0 = np.floor(xs).astype(int), np.floor(ys).astype(int)
    fx, fy = (xs - x0)[None, :, None], (ys - y0)[:, None, None]
    img = np.pad(image.astype(np.float32), ((1, 2), (1, 2), (0, 0)))  # zero border, shift by 1

    def at(yy, xx):
        yy = np.clip(yy + 1, 0, img.shape[0] - 1)
        xx = np.clip(xx + 1, 0, img.shape[1] - 1)
        return img[yy[:, None], xx[None, :]]
    return ((1 - fy) * ((1 - fx) * at(y0, x0) + fx * at(y0, x0 + 1))
            + fy * ((1 - fx) * at(y0 + 1, x0) + fx * at(y0 + 1, x0 + 1)))


def simcc_decode(simcc_x: np.ndarray, simcc_y: np.ndarray, split_ratio: float = 2.0):
    """SimCC vectors [N, K, Wx], [N, K, Wy] -> locations [N, K, 2] in input pixels, scores [N, K].

    Location = arg-max / split_ratio; score = the smaller of the two maxima; a point whose score is
    <= 0 gets location -1 (missing).
    """
    locs = np.stack([simcc_x.argmax(-1), simcc_y.argmax(-1)], -1).astype(np.float32) / split_ratio
    scores = np.minimum(simcc_x.max(-1), simcc_y.max(-1)).astype(np.float32)
    locs[scores <= 0] = -1
    return locs, scores


def wholebody_to_frame(kps: np.ndarray, scores: np.ndarray, height: int, width: int) -> PoseFrame:
    """COCO-WholeBody keypoints [P, 133, 2] in pixels and scores [P, 133] -> a PoseFrame."""
    conf = np.clip(np.where(np.all(kps >= 0, -1), scores, 0.0), 0.0, 1.0)
    pts = np.concatenate([kps / np.array([width, height]), conf[..., None]], -1).astype(np.float32)
    body = np.zeros((len(pts), 18, 3), np.float32)
    for op, coco in enumerate(COCO_TO_OPENPOSE):
        if coco >= 0:
            body[:, op] = pts[:, coco]
    neck_ok = (pts[:, 5, 2] > 0) & (pts[:, 6, 2] > 0)
    body[:, 1, :2] = (pts[:, 5, :2] + pts[:, 6, :2]) / 2
    body[:, 1, 2] = np.where(neck_ok, np.minimum(pts[:, 5, 2], pts[:, 6, 2]), 0.0)
    hands = np.stack([pts[:, 91:112], pts[:, 112:133]], 1)
    return PoseFrame(body, hands, pts[:, 23:91])


class DWPoseEstimator:
    """Whole-body DWPose: `estimator(image uint8 [H, W, 3] RGB) -> PoseFrame` (all people found)."""

    def __init__(self, det_model: str | os.PathLike, pose_model: str | os.PathLike, *,
                 providers: list[str] | None = None, score_thr: float = 0.3, max_people: int | None = None):
        try:
            import onnxruntime as ort  # noqa: PLC0415
        except ImportError:
            raise ValueError("DWPose needs onnxruntime: pip install 'dreamactor-jax[dwpose]'") from None
        for name, p in (("det_model", det_model), ("pose_model", pose_model)):
            if not Path(p).is_file():
                raise FileNotFoundError(f"DWPose {name}: no such file {p}")
        providers = providers or ort.get_available_providers()
        try:
            self.det = ort.InferenceSession(str(det_model), providers=providers)
            self.pose = ort.InferenceSession(str(pose_model), providers=providers)
        except Exception as e:  # noqa: BLE001 (onnxruntime raises its own exception types)
            raise ValueError(f"DWPose: cannot load the ONNX models ({str(e).splitlines()[0]})") from None
        self.det_size = tuple(self.det.get_inputs()[0].shape[2:4])      # (h, w)
        h, w = self.pose.get_inputs()[0].shape[2:4]
        self.pose_size = (int(w), int(h))                               # (w, h)
        self.score_thr, self.max_people = score_thr, max_people

    def detect(self, image: np.ndarray) -> np.ndarray:
        x, r = letterbox(image, self.det_size)
        raw = self.det.run(None, {self.det.get_inputs()[0].name: x[None]})[0][0]
        boxes = person_boxes(raw, r, size=self.det_size, score_thr=self.score_thr)
        return boxes[: self.max_people] if self.max_people else boxes

    def __call__(self, image: np.ndarray) -> PoseFrame:
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"DWPose: image must be uint8 [H, W, 3], got {image.dtype} {list(image.shape)}")
        boxes = self.detect(image)
        if len(boxes) == 0:
            return PoseFrame.empty()
        all_kps, all_scores = [], []
        for box in boxes:
            center, scale = box_to_center_scale(box, self.pose_size)
            x = (crop(image, center, scale, self.pose_size) - MEAN) / STD
            sx, sy = self.pose.run(None, {self.pose.get_inputs()[0].name: x.transpose(2, 0, 1)[None].astype(np.float32)})[:2]
            locs, scores = simcc_decode(sx, sy)
            kps = np.where(locs >= 0, locs / np.array(self.pose_size) * scale + center - scale / 2, -1)
            all_kps.append(kps[0])
            all_scores.append(scores[0])
        return wholebody_to_frame(np.stack(all_kps), np.stack(all_scores), *image.shape[:2])

    def close(self) -> None:
        pass
