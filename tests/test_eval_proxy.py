"""The offline scorer: the shared interface (VideoScore, ScoreError, make_scorer), and its proxy
dimensions moving the right way when a video is corrupted (noise, blur, flicker, shuffled frames,
colour drift), with no key and no network."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from dreamactor_jax import media
from dreamactor_jax.eval.scorers import make_scorer
from dreamactor_jax.eval.videobench import DIMENSIONS, ScoreError, Scorer, VideoScore

ASSETS = Path(__file__).resolve().parents[1].parent / "shared" / "assets"


def scene(t=24, h=96, w=128, seed=0):
    """A textured figure walking smoothly over a sharp, still, textured background."""
    rng = np.random.default_rng(seed)
    bg = ndimage.zoom(rng.integers(30, 220, (h // 4, w // 4, 3)).astype(np.float64), (4, 4, 1), order=0)
    tex = rng.integers(0, 60, (60, 36, 3))
    out = []
    for i in range(t):
        f = bg.copy()
        x = 8 + int(round(i * (w - 52) / max(t - 1, 1)))
        f[20:80, x:x + 36] = np.array([200, 70, 50]) + tex - 30
        out.append(np.clip(f, 0, 255).astype(np.uint8))
    return np.stack(out)


CORRUPT = {
    "noise": lambda v, r: np.clip(v + r.normal(0, 25, v.shape), 0, 255),
    "blur": lambda v, r: np.stack([ndimage.gaussian_filter(f.astype(float), (2.5, 2.5, 0)) for f in v]),
    "flicker": lambda v, r: np.clip(v.astype(int) + (np.arange(len(v)) % 2 * 60 - 30)[:, None, None, None], 0, 255),
    "shuffle": lambda v, r: v[r.permutation(len(v))],
    "drift": lambda v, r: np.clip(v + np.linspace(0, 70, len(v))[:, None, None, None] * np.array([1, -0.5, -1]), 0, 255),
}
# the dimension each corruption must lower most clearly
HITS = {"noise": "imaging_quality", "blur": "imaging_quality", "flicker": "temporal_consistency",
        "shuffle": "motion_smoothness", "drift": "subject_consistency"}


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("proxy")
    rng = np.random.default_rng(1)
    clean = scene()
    media.write_video(root / "clean.mp4", clean, 8.0, crf=10)
    for name, fn in CORRUPT.items():
        media.write_video(root / f"{name}.mp4", np.rint(fn(clean, rng)).astype(np.uint8), 8.0, crf=10)
    return root


def test_video_score_interface():
    good = {d: 3 for d in DIMENSIONS}
    s = VideoScore(good, "offline:v1")
    assert s.mean == 3.0 and s.scores["imaging_quality"] == 3.0 and VideoScore.from_json(s.to_json()) == s
    for bad in ({**good, "imaging_quality": 6}, {**good, "imaging_quality": float("nan")},
                {k: v for k, v in good.items() if k != "subject_consistency"}, {**good, "extra": 3}):
        with pytest.raises(ValueError):
            VideoScore(bad, "x")
    with pytest.raises(ValueError, match="scorer kind"):
        make_scorer("vbench")
    assert isinstance(make_scorer("offline", segmenter="motion"), Scorer)
    assert issubclass(ScoreError, ValueError)


def test_proxy_dimensions_drop_under_corruption_without_network(videos, monkeypatch):
    def no_network(*a, **k):
        raise AssertionError("the offline scorer must not use the network")
    monkeypatch.setattr(socket, "socket", no_network)
    s = make_scorer("offline", segmenter="motion")
    assert s.name == "offline:v1"
    clean = s.score(videos / "clean.mp4")
    assert clean.mean > 4.2, clean.scores
    for name, dim in HITS.items():
        bad = s.score(videos / f"{name}.mp4")
        assert bad.mean < clean.mean - 0.1, (name, bad.scores)
        assert bad.scores[dim] < clean.scores[dim] - 0.7, (name, dim, bad.scores[dim], clean.scores[dim])
        assert bad.reasons[dim].startswith("proxy from ")
    assert s.score(videos / "clean.mp4") == clean  # deterministic


def test_reference_colour_counts_for_subject_consistency(videos, tmp_path):
    from PIL import Image

    s = make_scorer("offline", segmenter="motion")
    ref_ok = np.full((80, 60, 3), 255, np.uint8)
    ref_ok[10:70, 12:48] = (200, 70, 50)            # the figure's colour on a plain background
    ref_off = ref_ok.copy()
    ref_off[10:70, 12:48] = (40, 90, 220)            # another character
    Image.fromarray(ref_ok).save(tmp_path / "ok.png")
    Image.fromarray(ref_off).save(tmp_path / "off.png")
    a = s.score(videos / "clean.mp4", reference=tmp_path / "ok.png").scores["subject_consistency"]
    b = s.score(videos / "clean.mp4", reference=tmp_path / "off.png").scores["subject_consistency"]
    assert a > b + 0.5


def test_bad_inputs_are_score_errors(tmp_path):
    s = make_scorer("offline", segmenter="motion")
    (tmp_path / "junk.mp4").write_bytes(b"junk")
    media.write_video(tmp_path / "one.mp4", scene(t=1), 8.0)
    for p, reason in ((tmp_path / "junk.mp4", "not a readable video"), (tmp_path / "missing.mp4", "no such file"),
                      (tmp_path / "one.mp4", "too short")):
        with pytest.raises(ScoreError, match=reason) as e:
            s.score(p)
        assert e.value.reason == "input"


@pytest.mark.skipif(not (ASSETS / "mtv-00001.mp4").exists(), reason="../shared/assets not present")
def test_real_videos_score_high_and_lose_under_noise(tmp_path):
    pytest.importorskip("mediapipe")
    s = make_scorer("offline")  # segmentation (MediaPipe, offline) with the motion fallback
    frames = media.read_video(ASSETS / "mtv-00001.mp4", num_frames=48)[:, ::4, ::4]
    media.write_video(tmp_path / "real.mp4", frames, 30.0)
    noisy = np.clip(frames + np.random.default_rng(0).normal(0, 20, frames.shape), 0, 255).astype(np.uint8)
    media.write_video(tmp_path / "noisy.mp4", noisy, 30.0)
    real, bad = s.score(tmp_path / "real.mp4"), s.score(tmp_path / "noisy.mp4")
    assert real.mean > 4.0 and bad.mean < real.mean - 0.5, (real.scores, bad.scores)
