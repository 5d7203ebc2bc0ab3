"""Extraction plumbing without MediaPipe: body mapping, pose-video detection, the tool end to end
with a stand-in estimator, and bad inputs."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from dreamactor_jax.pose import PoseClip, PoseFrame, render_pose
from dreamactor_jax.pose.extract import (FACEMESH_TO_68, ExtractStats, extract_clip, extract_frames,
                                         looks_like_pose_video, make_estimator, mediapipe_body)
from dreamactor_jax.pose.keypoints import L_SHOULDER, NECK, R_SHOULDER, R_WRIST, standard_person

ROOT = Path(__file__).resolve().parents[1]


def load_tool():
    spec = importlib.util.spec_from_file_location("extract_pose_tool", ROOT / "tools" / "extract_pose.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_mediapipe_body_mapping():
    rng = np.random.default_rng(0)
    lm = np.concatenate([rng.uniform(0.1, 0.9, (33, 2)), rng.uniform(0.5, 1, (33, 1))], -1).astype(np.float32)
    lm[16, :2] = (1.2, 0.5)  # right wrist outside the frame: missing
    body = mediapipe_body(lm)
    np.testing.assert_allclose(body[R_SHOULDER], lm[12])
    np.testing.assert_allclose(body[L_SHOULDER], lm[11])
    np.testing.assert_allclose(body[NECK, :2], (lm[11, :2] + lm[12, :2]) / 2)
    assert body[NECK, 2] == min(lm[11, 2], lm[12, 2]) and body[R_WRIST, 2] == 0
    assert len(FACEMESH_TO_68) == 68 and len(set(FACEMESH_TO_68)) == 68 and max(FACEMESH_TO_68) < 468


def moving_pose_frames(t=6, h=96, w=64):
    return np.stack([render_pose(standard_person((0.35 + 0.05 * i, 0.5), 0.8), h, w) for i in range(t)])


def natural_frames(t=6, h=96, w=64, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(60, 200, (h, w, 3)).astype(np.int16)
    return np.stack([np.clip(base + rng.integers(-20, 20, (h, w, 3)), 0, 255) for _ in range(t)]).astype(np.uint8)


def test_looks_like_pose_video():
    assert looks_like_pose_video(moving_pose_frames())
    assert not looks_like_pose_video(natural_frames())
    assert not looks_like_pose_video(np.zeros((4, 32, 32, 3), np.uint8))  # black is not a skeleton
    dark = (natural_frames() * 0.1).astype(np.uint8)  # a dark, dull scene
    assert not looks_like_pose_video(dark)
    with pytest.raises(ValueError, match="no frames"):
        looks_like_pose_video([])


class FakeEstimator:
    """Finds a person in every other frame (stands in for MediaPipe)."""

    def __init__(self):
        self.calls = 0

    def __call__(self, image):
        assert image.dtype == np.uint8 and image.ndim == 3
        self.calls += 1
        return standard_person((0.5, 0.5), 0.7) if self.calls % 2 else PoseFrame.empty()


def test_extract_clip_counts_empty_frames():
    clip, stats = extract_clip(iter(natural_frames(5)), FakeEstimator(), fps=8.0)
    assert (stats.num_frames, stats.num_empty) == (5, 2) and clip.num_empty == 2
    assert (clip.width, clip.height, clip.fps) == (64, 96, 8.0)
    s = ExtractStats()
    assert [p.num_people for p in extract_frames(natural_frames(3), FakeEstimator(), s)] == [1, 0, 1]
    with pytest.raises(ValueError, match="no frames"):
        extract_clip([], FakeEstimator())
    with pytest.raises(ValueError, match="mediapipe.*dwpose"):
        make_estimator("openpose")
    with pytest.raises(ValueError, match="det_model"):
        make_estimator("dwpose")


def test_tool_video_to_pose_video_and_json(tmp_path, monkeypatch, capsys):
    from dreamactor_jax.media import read_video, write_video
    src = write_video(tmp_path / "in.mp4", natural_frames(6), 12.0)
    tool = load_tool()
    import dreamactor_jax.pose.extract as ex
    monkeypatch.setattr(ex, "make_estimator", lambda *a, **k: FakeEstimator())
    assert tool.main([str(src), "-o", str(tmp_path / "out.mp4"), "--json", str(tmp_path / "k.json"), "--quiet"]) == 0
    out = read_video(tmp_path / "out.mp4")
    assert out.shape == (6, 96, 64, 3)
    assert out[0].max() > 100 and out[1].max() < 30  # skeleton on frame 0, nobody on frame 1
    clip = PoseClip.load(tmp_path / "k.json")
    assert len(clip) == 6 and clip.num_empty == 3 and (clip.width, clip.height, clip.fps) == (64, 96, 12.0)
    assert "3 with nobody" in capsys.readouterr().out
    # an image goes through the same way
    from PIL import Image
    Image.fromarray(natural_frames(1)[0]).save(tmp_path / "ref.png")
    assert tool.main([str(tmp_path / "ref.png"), "-o", str(tmp_path / "ref_pose.png"), "--json",
                      str(tmp_path / "ref.json")]) == 0
    assert np.asarray(Image.open(tmp_path / "ref_pose.png")).max() > 100
    assert PoseClip.load(tmp_path / "ref.json").frames[0].num_people == 1


def test_tool_passes_a_pose_video_through(tmp_path, capsys):
    from dreamactor_jax.media import read_video, write_video
    src = write_video(tmp_path / "kps.mp4", moving_pose_frames(5), 10.0)
    tool = load_tool()
    assert tool.main([str(src), "-o", str(tmp_path / "out.mp4"), "--quiet"]) == 0
    assert "already a pose video" in capsys.readouterr().out
    assert read_video(tmp_path / "out.mp4").shape == (5, 96, 64, 3)


@pytest.mark.parametrize("make, msg", [
    (lambda d: d / "missing.mp4", "missing.mp4"),
    (lambda d: (d / "corrupt.mp4").write_bytes(b"\x00\x01not a video" * 50) and d / "corrupt.mp4", "corrupt.mp4"),
    (lambda d: (d / "empty.mp4").write_bytes(b"") == 0 and d / "empty.mp4", "empty.mp4"),
])
def test_tool_bad_inputs_exit_2_with_one_line(tmp_path, capsys, make, msg):
    from dreamactor_jax.utils import cli_main
    path = make(tmp_path)
    with pytest.raises(SystemExit) as e:
        cli_main(load_tool().main, [str(path), "-o", str(tmp_path / "o.mp4"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and msg in err and "\n" not in err
    assert not (tmp_path / "o.mp4").exists()


def test_tool_refuses_a_one_frame_clip(tmp_path, capsys):
    from dreamactor_jax.media import write_video
    from dreamactor_jax.utils import cli_main
    src = write_video(tmp_path / "one.mp4", natural_frames(1), 10.0)
    with pytest.raises(SystemExit) as e:
        cli_main(load_tool().main, [str(src), "-o", str(tmp_path / "o.mp4"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and "one.mp4" in err and "\n" not in err
    with pytest.raises(SystemExit):
        cli_main(load_tool().main, [str(src), "-o", str(tmp_path / "o.mp4"), "--num-frames", "1"])


def test_tool_retargets_to_the_reference_image(tmp_path, monkeypatch, capsys):
    from PIL import Image
    from dreamactor_jax.media import write_video
    from dreamactor_jax.pose.augment import BoneFactors, bone_lengths, rescale_bones
    import dreamactor_jax.pose.extract as ex
    long_arms = BoneFactors.from_groups({"arms": 1.5})

    def fake(*a, **k):  # the reference image (144 x 96: the video's aspect) has 1.5x longer arms
        return lambda img: rescale_bones(standard_person(), long_arms) if img.shape[0] == 144 else standard_person()
    monkeypatch.setattr(ex, "make_estimator", fake)
    Image.fromarray(natural_frames(1, 144, 96)[0]).save(tmp_path / "ref.png")
    src = write_video(tmp_path / "in.mp4", natural_frames(4, 96, 64), 8.0)
    tool = load_tool()
    assert tool.main([str(src), "-o", str(tmp_path / "o.mp4"), "--json", str(tmp_path / "k.json"), "--quiet",
                      "--retarget", str(tmp_path / "ref.png")]) == 0
    assert "arm x1.50" in capsys.readouterr().out
    clip = PoseClip.load(tmp_path / "k.json")
    want = bone_lengths(rescale_bones(standard_person(), long_arms))[0]
    for f in clip.frames:
        np.testing.assert_allclose(bone_lengths(f)[0], want, rtol=1e-4)
    # a reference with nobody on it is a clear error
    monkeypatch.setattr(ex, "make_estimator", lambda *a, **k: (lambda img: PoseFrame.empty()))
    with pytest.raises(ValueError, match="ref.png: no person"):
        tool.main([str(src), "-o", str(tmp_path / "o2.mp4"), "--quiet", "--retarget", str(tmp_path / "ref.png")])
