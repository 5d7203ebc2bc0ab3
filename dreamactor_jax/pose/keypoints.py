"""The keypoint format shared by extraction, rendering, augmentation and retargeting.

One frame's people are a `PoseFrame` of numpy float32 arrays, the last axis `(x, y, conf)`:
  body  [P, 18, 3]     OpenPose-18 order (`BODY_NAMES`)
  hands [P, 2, 21, 3]  (left, right), the 21-point OpenPose/MediaPipe hand
  face  [P, 68, 3]     the 68-point (iBUG/dlib) face layout
x and y are normalised by the frame's width and height (the frame is [0, 1] x [0, 1]; a point may
sit slightly outside when a limb leaves the frame), conf is in [0, 1], and a missing point has
conf 0 with xy = 0 (never NaN). An empty frame (nobody found) has P = 0.
A clip is a `PoseClip`: the frames plus the pixel size and fps they were measured in; it reads and
writes one JSON file.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from dreamactor_jax.utils import write_text_atomic

BODY_NAMES = (
    "nose", "neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow", "l_wrist",
    "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "r_eye", "l_eye", "r_ear", "l_ear",
)
NUM_BODY, NUM_HAND, NUM_FACE = 18, 21, 68
NOSE, NECK, R_SHOULDER, R_ELBOW, R_WRIST, L_SHOULDER, L_ELBOW, L_WRIST = range(8)
R_HIP, R_KNEE, R_ANKLE, L_HIP, L_KNEE, L_ANKLE, R_EYE, L_EYE, R_EAR, L_EAR = range(8, 18)
LEFT, RIGHT = 0, 1  # index of a hand in `hands[:, h]`

# The 17 limbs OpenPose draws, as (parent, child) in drawing order (the order fixes the colours).
BODY_LIMBS = (
    (NECK, R_SHOULDER), (NECK, L_SHOULDER), (R_SHOULDER, R_ELBOW), (R_ELBOW, R_WRIST),
    (L_SHOULDER, L_ELBOW), (L_ELBOW, L_WRIST), (NECK, R_HIP), (R_HIP, R_KNEE), (R_KNEE, R_ANKLE),
    (NECK, L_HIP), (L_HIP, L_KNEE), (L_KNEE, L_ANKLE), (NECK, NOSE), (NOSE, R_EYE), (R_EYE, R_EAR),
    (NOSE, L_EYE), (L_EYE, L_EAR),
)
# The 20 hand bones (parent, child): wrist 0, then 4 points per finger, thumb first.
HAND_EDGES = tuple(
    (0 if j == 0 else 1 + 4 * f + j - 1, 1 + 4 * f + j) for f in range(5) for j in range(4)
)

JSON_FORMAT = "dreamactor-pose/1"


def _check(name: str, a: Any, tail: tuple[int, ...]) -> np.ndarray:
    a = np.asarray(a, dtype=np.float32)
    if a.ndim != len(tail) + 1 or a.shape[1:] != tail:
        raise ValueError(f"PoseFrame.{name}: expected shape [P, {', '.join(map(str, tail))}], got {list(a.shape)}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"PoseFrame.{name}: has NaN or inf (a missing point must have conf 0 and xy 0)")
    conf = a[..., 2]
    if conf.size and (conf.min() < 0 or conf.max() > 1):
        raise ValueError(f"PoseFrame.{name}: confidence must be in [0, 1], got [{conf.min()}, {conf.max()}]")
    return a


@dataclasses.dataclass(frozen=True, eq=False)
class PoseFrame:
    """The people found in one frame (see the module docstring for the layout)."""

    body: np.ndarray
    hands: np.ndarray
    face: np.ndarray

    def __post_init__(self):
        body = _check("body", self.body, (NUM_BODY, 3))
        hands = _check("hands", self.hands, (2, NUM_HAND, 3))
        face = _check("face", self.face, (NUM_FACE, 3))
        if not body.shape[0] == hands.shape[0] == face.shape[0]:
            raise ValueError(
                f"PoseFrame: body, hands and face must have the same number of people, got "
                f"{body.shape[0]}, {hands.shape[0]}, {face.shape[0]}")
        for name, a in (("body", body), ("hands", hands), ("face", face)):
            a = a.copy()
            a[a[..., 2] == 0, :2] = 0.0  # one canonical form for a missing point
            a.setflags(write=False)
            object.__setattr__(self, name, a)

    @classmethod
    def empty(cls) -> "PoseFrame":
        return cls(np.zeros((0, NUM_BODY, 3)), np.zeros((0, 2, NUM_HAND, 3)), np.zeros((0, NUM_FACE, 3)))

    @classmethod
    def from_body(cls, body: Any) -> "PoseFrame":
        """A frame with body keypoints only (hands and face missing)."""
        body = np.asarray(body, np.float32)
        p = body.shape[0] if body.ndim == 3 else 0  # a wrong shape is reported by the constructor
        return cls(body, np.zeros((p, 2, NUM_HAND, 3)), np.zeros((p, NUM_FACE, 3)))

    @classmethod
    def concat(cls, frames: Sequence["PoseFrame"]) -> "PoseFrame":
        """All people of several frames in one frame (e.g. one detection per person)."""
        if not frames:
            return cls.empty()
        return cls(*(np.concatenate([getattr(f, k) for f in frames]) for k in ("body", "hands", "face")))

    @property
    def num_people(self) -> int:
        return int(self.body.shape[0])

    def person(self, i: int) -> "PoseFrame":
        return PoseFrame(self.body[i:i + 1], self.hands[i:i + 1], self.face[i:i + 1])

    def replace(self, **kw) -> "PoseFrame":
        return dataclasses.replace(self, **kw)

    def allclose(self, other: "PoseFrame", atol: float = 1e-6) -> bool:
        return all(
            getattr(self, k).shape == getattr(other, k).shape
            and np.allclose(getattr(self, k), getattr(other, k), atol=atol, rtol=0)
            for k in ("body", "hands", "face"))

    def to_json_dict(self, decimals: int = 6) -> dict:
        return {k: np.round(getattr(self, k).astype(np.float64), decimals).tolist()
                for k in ("body", "hands", "face")}

    @classmethod
    def from_json_dict(cls, d: dict) -> "PoseFrame":
        if not isinstance(d, dict) or any(k not in d for k in ("body", "hands", "face")):
            raise ValueError("PoseFrame JSON: expected an object with keys body, hands, face")
        p = len(d["body"])
        shapes = {"body": (p, NUM_BODY, 3), "hands": (p, 2, NUM_HAND, 3), "face": (p, NUM_FACE, 3)}
        arrays = {}
        for k, shape in shapes.items():
            a = np.asarray(d[k], dtype=np.float32)
            arrays[k] = a.reshape(shape) if a.size == 0 else a  # `[]` has no inner shape
        return cls(**arrays)


@dataclasses.dataclass(frozen=True, eq=False)
class PoseClip:
    """A sequence of PoseFrames measured on frames of `width` x `height` pixels at `fps`."""

    frames: tuple[PoseFrame, ...]
    width: int
    height: int
    fps: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "frames", tuple(self.frames))
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"PoseClip: width and height must be positive, got {self.width}x{self.height}")
        if not all(isinstance(f, PoseFrame) for f in self.frames):
            raise ValueError("PoseClip.frames: every item must be a PoseFrame")

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def num_empty(self) -> int:
        """How many frames have nobody in them."""
        return sum(f.num_people == 0 for f in self.frames)

    def to_json_dict(self) -> dict:
        return {"format": JSON_FORMAT, "width": int(self.width), "height": int(self.height),
                "fps": float(self.fps), "frames": [f.to_json_dict() for f in self.frames]}

    @classmethod
    def from_json_dict(cls, d: dict) -> "PoseClip":
        if not isinstance(d, dict) or d.get("format") != JSON_FORMAT:
            raise ValueError(f"PoseClip JSON: expected an object with format {JSON_FORMAT!r}")
        return cls(tuple(PoseFrame.from_json_dict(f) for f in d["frames"]),
                   int(d["width"]), int(d["height"]), float(d.get("fps", 0.0)))

    def save(self, path: str | os.PathLike) -> None:
        """Writes the clip as JSON, atomically."""
        write_text_atomic(path, json.dumps(self.to_json_dict(), separators=(",", ":")))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "PoseClip":
        path = Path(path)
        try:
            d = json.loads(path.read_text("utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: no such keypoints file") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{path}: not a keypoints JSON file ({e})") from None
        try:
            return cls.from_json_dict(d)
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path}: {e}") from None


# A person standing facing the camera, arms slightly out, in a unit box (x right, y down);
# the figure's right side is on the image's left, as OpenPose sees it.
_STANDARD_BODY_XY = np.array([
    [0.50, 0.10], [0.50, 0.20], [0.40, 0.20], [0.33, 0.35], [0.28, 0.50], [0.60, 0.20],
    [0.67, 0.35], [0.72, 0.50], [0.44, 0.50], [0.43, 0.70], [0.42, 0.90], [0.56, 0.50],
    [0.57, 0.70], [0.58, 0.90], [0.48, 0.08], [0.52, 0.08], [0.46, 0.09], [0.54, 0.09],
], np.float32)


def standard_person(center=(0.5, 0.5), height: float = 0.8, *, hands: bool = True,
                    face: bool = True) -> PoseFrame:
    """A plausible one-person PoseFrame (for tests, toy data and demos), `height` tall, at `center`.

    Hands are fans of 5 straight fingers from the wrists; the face is 68 points on an ellipse
    around the nose. Everything has confidence 1 (hands/face 0 when switched off).
    """
    xy = (_STANDARD_BODY_XY - 0.5) * height + np.asarray(center, np.float32)
    body = np.concatenate([xy, np.ones((NUM_BODY, 1), np.float32)], -1)
    hand_arr = np.zeros((2, NUM_HAND, 3), np.float32)
    for h, (elbow, wrist) in enumerate(((L_ELBOW, L_WRIST), (R_ELBOW, R_WRIST))):
        base, d = xy[wrist], xy[wrist] - xy[elbow]
        ang0 = np.arctan2(d[1], d[0])
        hand_arr[h, 0, :2] = base
        for f in range(5):
            ang = ang0 + (f - 2) * 0.3
            for j in range(4):
                r = height * 0.02 * (j + 1)
                hand_arr[h, 1 + 4 * f + j, :2] = base + r * np.array([np.cos(ang), np.sin(ang)])
        hand_arr[h, :, 2] = 1.0 if hands else 0.0
    t = np.linspace(0, 2 * np.pi, NUM_FACE, endpoint=False)
    face_arr = np.stack([xy[NOSE, 0] + 0.035 * height * np.cos(t), xy[NOSE, 1] + 0.05 * height * np.sin(t),
                         np.full(NUM_FACE, 1.0 if face else 0.0)], -1).astype(np.float32)
    return PoseFrame(body[None], hand_arr[None], face_arr[None])
