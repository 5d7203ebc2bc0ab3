"""The toy world: random characters, motions, and exact renders of anyone performing anything.

    cfg = WorldConfig(height=32, width=32, num_frames=8)
    x, y = character("heldout", 0), character("train", 3)
    m = motion("heldout", 0, cfg)
    target = render_clip(x, m, cfg)      # X performing motion m, with X's own proportions
    driving = render_clip(y, m, cfg)     # the driver performing it: its pose video drives the model
    target.video, target.keypoints, driving.pose_video

Characters and motions come from seeds; `character(split, i)` / `motion(split, i, cfg)` draw from
disjoint seed ranges for the "train" and "heldout" splits, so evaluation uses characters (colours,
textures, proportions) and motion instances never seen in training. Everything is deterministic.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from dreamactor_jax.pose.keypoints import NUM_BODY, NUM_FACE, NUM_HAND, PoseClip, PoseFrame
from dreamactor_jax.pose.render import render_pose
from dreamactor_jax.toy.motions import FAMILIES, Motion, make_motion
from dreamactor_jax.toy.render import PATTERNS, Character, Look, rasterize, to_uint8
from dreamactor_jax.toy.skeleton import Body, place

SPLITS = ("train", "heldout")
_SPLIT_BASE = {"train": 0, "heldout": 1_000_003}


@dataclass(frozen=True)
class WorldConfig:
    """Frame size, clip length, the share of quadrupeds among random characters, and drawing sizes."""

    height: int = 32
    width: int = 32
    num_frames: int = 8
    duration: float = 1.0  # seconds spanned by a clip (motion speed)
    quadruped_fraction: float = 0.25
    ground: float = 0.92
    marker_radius: float = 0.018  # joint markers, frame heights (at least 0.8 pixels)
    limb_width: float = 1.0  # multiplies every body's limb and torso widths

    def __post_init__(self):
        if self.height < 8 or self.width < 8:
            raise ValueError(f"WorldConfig: frames must be at least 8x8, got {self.height}x{self.width}")
        if self.num_frames < 1:
            raise ValueError(f"WorldConfig.num_frames: expected >= 1, got {self.num_frames}")
        for name in ("duration", "marker_radius", "limb_width"):
            if not getattr(self, name) > 0:
                raise ValueError(f"WorldConfig.{name}: expected > 0, got {getattr(self, name)}")

    @property
    def fps(self) -> float:
        """Frames per second of a clip (its frames span `duration` seconds)."""
        return (self.num_frames - 1) / self.duration if self.num_frames > 1 else 1.0 / self.duration

    @property
    def aspect(self) -> float:
        return self.width / self.height


@dataclass(frozen=True, eq=False)
class Clip:
    """One rendered clip: RGB video, keypoints and the OpenPose-style pose video.

    video, pose_video: uint8 [T, H, W, 3]; keypoints: float32 [T, P, 18, 3] (x, y normalised, conf);
    joints: float64 [T, P, 20, 2] (keypoints plus pelvis and head centre, no confidence).
    """

    video: np.ndarray
    pose_video: np.ndarray
    keypoints: np.ndarray
    joints: np.ndarray

    def pose_frame(self, t: int) -> PoseFrame:
        p = self.keypoints.shape[1]
        return PoseFrame(self.keypoints[t], np.zeros((p, 2, NUM_HAND, 3)), np.zeros((p, NUM_FACE, 3)))

    def pose_clip(self, fps: float = 0.0) -> PoseClip:
        t, h, w = self.video.shape[:3]
        return PoseClip(tuple(self.pose_frame(i) for i in range(t)), w, h, fps)


def _color(rng, sat=(0.1, 0.5), val=(0.35, 0.9)) -> tuple[float, float, float]:
    return tuple(float(c) for c in colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(*sat), rng.uniform(*val)))


def random_body(rng: np.random.Generator, kind: str) -> Body:
    """Proportions drawn widely (limb groups scaled independently) so identity leakage is visible."""
    u = lambda lo, hi: float(rng.uniform(lo, hi))  # noqa: E731
    arm, leg, torso, width = u(0.7, 1.35), u(0.7, 1.35), u(0.8, 1.25), u(0.75, 1.4)
    if kind == "quadruped":
        return Body(kind=kind, torso=0.3 * torso, neck=0.09 * u(0.8, 1.2), head_r=0.06 * u(0.85, 1.2),
                    shoulder=0.03, hip=0.03, upper_arm=0.1 * leg, forearm=0.09 * leg * u(0.85, 1.15),
                    thigh=0.1 * leg, shin=0.09 * leg * u(0.85, 1.15), torso_w=0.07 * width,
                    arm_w=0.025 * width, leg_w=0.025 * width, tail=0.1 * u(0.5, 1.5))
    return Body(kind=kind, torso=0.22 * torso, neck=0.06 * u(0.9, 1.2), head_r=0.055 * u(0.85, 1.25),
                shoulder=0.065 * width, hip=0.04 * width, upper_arm=0.12 * arm,
                forearm=0.11 * arm * u(0.85, 1.15), thigh=0.14 * leg, shin=0.14 * leg * u(0.85, 1.15),
                torso_w=0.055 * width, arm_w=0.022 * width, leg_w=0.027 * width)


def make_character(seed: int, kind: str | None = None, quadruped_fraction: float = 0.25) -> Character:
    """A random character (body, colours, texture, background) from a seed; deterministic."""
    rng = np.random.default_rng([int(seed), 11])
    k = kind or ("quadruped" if rng.uniform() < quadruped_fraction else "humanoid")
    body = random_body(rng, k)
    look = Look(skin=_color(rng, (0.1, 0.45), (0.55, 0.95)), top=_color(rng), bottom=_color(rng),
                pattern=PATTERNS[int(rng.integers(len(PATTERNS)))], pattern_color=_color(rng),
                pattern_period=float(rng.uniform(0.05, 0.09)),
                background=_color(rng, (0.0, 0.3), (0.05, 0.3)))
    return Character(body, look, int(seed))


def _seed(split: str, index: int) -> int:
    if split not in SPLITS:
        raise ValueError(f"split: expected one of {SPLITS}, got {split!r}")
    if not 0 <= int(index) < 1_000_000:
        raise ValueError(f"index: expected 0 <= index < 1e6, got {index}")
    return _SPLIT_BASE[split] + int(index)


def character(split: str, index: int, cfg: WorldConfig | None = None, kind: str | None = None) -> Character:
    """Character `index` of a split (train and heldout seeds never overlap)."""
    q = (cfg or WorldConfig()).quadruped_fraction
    return make_character(_seed(split, index), kind=kind, quadruped_fraction=q)


def motion(split: str, index: int, cfg: WorldConfig, family: str | None = None) -> Motion:
    """Motion instance `index` of a split, `cfg.num_frames` long."""
    fam = family or FAMILIES[int(index) % len(FAMILIES)]
    return make_motion(_seed(split, index), cfg.num_frames, fam, cfg.duration)


def _keypoints(joints: np.ndarray) -> np.ndarray:
    """Joints [T, P, 20, 2] -> OpenPose body keypoints [T, P, 18, 3] with confidence 1."""
    kp = joints[..., :NUM_BODY, :].astype(np.float32)
    return np.concatenate([kp, np.ones(kp.shape[:-1] + (1,), np.float32)], -1)


def render_scene(actors: Sequence[tuple[Character, Motion, float]], cfg: WorldConfig,
                 background: tuple | None = None) -> Clip:
    """A multi-person scene: each actor is (character, motion, x position of its pelvis in [0, 1]).

    Actors are painted in order (later in front); the background is the first actor's unless given.
    """
    if not actors:
        raise ValueError("render_scene: actors must list at least one (character, motion, x0)")
    people, joints = [], []
    for ch, mo, x0 in actors:
        if mo.num_frames != cfg.num_frames:
            raise ValueError(f"render_scene: motion has {mo.num_frames} frames, cfg.num_frames is {cfg.num_frames}")
        j = place(ch.body, mo.angles, x0=x0, ground=cfg.ground, aspect=cfg.aspect)
        people.append((ch, j))
        joints.append(j)
    video = to_uint8(rasterize(people, cfg.height, cfg.width, background, marker_radius=cfg.marker_radius,
                               limb_width=cfg.limb_width))
    joints = np.stack(joints, 1)
    kp = _keypoints(joints)
    empty_h, empty_f = np.zeros((len(actors), 2, NUM_HAND, 3)), np.zeros((len(actors), NUM_FACE, 3))
    pose_video = np.stack([render_pose(PoseFrame(kp[t], empty_h, empty_f), cfg.height, cfg.width)
                           for t in range(cfg.num_frames)])
    return Clip(video, pose_video, kp, joints)


def render_clip(ch: Character, mo: Motion, cfg: WorldConfig, x0: float = 0.5) -> Clip:
    """Character `ch` performing motion `mo` with its own proportions: the exact target."""
    return render_scene([(ch, mo, x0)], cfg)


@dataclass(frozen=True, eq=False)
class CrossCase:
    """One cross-identity test: animate `reference` (X) with the driver's pose video.

    reference: uint8 [H, W, 3] (X in the motion's first pose); driving: the driver D performing the
    motion (its `pose_video` is the model's motion input); target: X performing it (exact ground
    truth); leak: X's look on D's proportions performing it (what full identity leakage looks like).
    """

    ref_char: Character
    driver_char: Character
    motion: Motion
    reference: np.ndarray
    driving: Clip
    target: Clip
    leak: Clip


def cross_case(ref_char: Character, driver_char: Character, mo: Motion, cfg: WorldConfig) -> CrossCase:
    target = render_clip(ref_char, mo, cfg)
    leak_body = driver_char.body.replace(kind=ref_char.body.kind)
    leak = render_clip(Character(leak_body, ref_char.look), mo, cfg)
    return CrossCase(ref_char, driver_char, mo, target.video[0], render_clip(driver_char, mo, cfg), target, leak)


def heldout_cases(n: int, cfg: WorldConfig, kind: str | None = "humanoid") -> list[CrossCase]:
    """`n` cross-identity cases from held-out characters and motions (reference != driver)."""
    cases = []
    for i in range(n):
        x = character("heldout", 2 * i, cfg, kind=kind)
        d = character("heldout", 2 * i + 1, cfg, kind=kind)
        cases.append(cross_case(x, d, motion("heldout", i, cfg), cfg))
    return cases
