"""Shared inputs of the tests of dreamactor_jax/e2e: source videos, a reference pool, and fakes
(a pose estimator, a pose model, a Video-Bench scorer) that follow the real interfaces."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
from PIL import Image

from dreamactor_jax import media
from dreamactor_jax.e2e import filter as flt
from dreamactor_jax.pose import PoseFrame, standard_person

H = W = 32
STEP = 6          # brightness added per source frame: tells segments apart after mp4 coding


def ramp_video(n: int, h: int, w: int, base: int = 40, seed: int = 0) -> np.ndarray:
    """Frames whose mean brightness is `base + STEP * t` over a fixed smooth pattern."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    pattern = 20 * np.sin(x / 5.0 + rng.uniform(0, 6))[..., None] + 10 * np.cos(y / 7.0)[..., None] \
        + rng.uniform(-10, 10, 3)
    t = np.arange(n)[:, None, None, None]
    return np.clip(base + STEP * t + pattern[None], 0, 255).astype(np.uint8)


def make_inputs(root: Path) -> tuple[Path, Path]:
    """videos/ (two usable, one dark, one too short, one broken) and refs/ (three identities)."""
    vids, refs = root / "videos", root / "refs"
    vids.mkdir(parents=True)
    media.write_video(vids / "a.mp4", ramp_video(40, 48, 64, seed=1), 16.0)   # 20 frames at 8 fps
    media.write_video(vids / "b.mp4", ramp_video(24, 40, 40, seed=2), 8.0)
    media.write_video(vids / "dark.mp4", np.full((20, 32, 32, 3), 8, np.uint8), 8.0)  # nobody
    media.write_video(vids / "short.mp4", ramp_video(6, 32, 32, seed=3), 8.0)         # < 9 frames
    (vids / "broken.mp4").write_bytes(b"\x00not a video" * 50)
    rng = np.random.default_rng(0)
    for name in ("human/man", "anime/girl", "animal/cat"):
        (refs / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (40, 30, 3), np.uint8)).save(refs / f"{name}.png")
    return vids, refs


def fake_estimator(frame: np.ndarray) -> PoseFrame:
    """A person wherever the frame is not dark, placed by its brightness (so poses move)."""
    m = float(frame.mean())
    return PoseFrame.empty() if m < 25 else standard_person((0.3 + m / 800, 0.5), 0.7)


class FakePoseModel:
    """Stands for generator.PoseModel: V_o = a blend of the reference and the poses, shifted by the seed."""

    def __init__(self, tag: str = "fake-v1", fail_on_call: int | None = None):
        self.tag, self.calls, self.fail_on_call = tag, [], fail_on_call

    def __call__(self, reference, pose, *, seed, text_keys=()):
        self.calls.append({"seed": seed, "text_keys": tuple(text_keys), "reference": reference.copy()})
        if self.fail_on_call is not None and len(self.calls) == self.fail_on_call:
            raise KeyboardInterrupt("stopped in the middle of a unit")
        out = 0.5 * pose.astype(np.float32) + 0.5 * reference[None].astype(np.float32) + seed % 7
        return np.clip(out, 0, 255).astype(np.uint8), {"text": "null", "steps": 2}

    def describe(self):
        return {"checkpoint": {"path": "fake", "step": 3, "state_blake2b": self.tag}, "sampler": {"steps": 2}}


@dataclasses.dataclass(frozen=True)
class Score:
    """eval.videobench.VideoScore's shape."""
    scores: dict
    scorer: str

    @property
    def mean(self) -> float:
        return sum(self.scores.values()) / len(self.scores)


class FakeScorer:
    """The Scorer protocol: a fixed mean per unit (from `means`), spread over the six dimensions."""

    def __init__(self, means: dict, name: str = "fake:v1", fail: tuple = (), bad: tuple = ()):
        self.means, self.name, self.fail, self.bad = means, name, set(fail), set(bad)
        self.calls = []

    def score(self, video, *, reference=None):
        uid = Path(video).parent.name
        assert Path(video).name == "generated.mp4" and Path(reference).name == "reference.png"
        self.calls.append(uid)
        if uid in self.fail:
            raise ValueError(f"cannot score {video}: answer not JSON after 3 tries")
        m = self.means[uid]
        spread = np.linspace(-0.25, 0.25, len(flt.DIMENSIONS))
        scores = {d: float(m + s) for d, s in zip(flt.DIMENSIONS, spread)}
        if uid in self.bad:
            scores["motion_smoothness"] = 7.0
        return Score(scores, self.name)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
