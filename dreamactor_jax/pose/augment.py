"""Pose augmentation (paper section 3.3): bone-length scaling and clip-level box normalisation.

Both break the link between a skeleton and the body shape it was measured on, so that the model
learns motion from the pose signal and body shape from the reference image.

(1) `rescale_bones` walks the kinematic tree from the neck (`BODY_LIMBS` is in topological order)
    and lengthens each bone by its factor; a child moves by its parent's displacement plus its own
    bone's change, so joints stay connected. Hands follow their body wrist and scale along the
    hand tree; the face follows the nose and scales about it with the head factor.
    `augment_clip` draws one factor per anatomical group (torso, arms, legs, head, hands) per clip.
(2) `normalize_to_box` takes one box over all valid points of all people of all frames (in
    pixels) and maps it, aspect kept, centred, into a target box of the target frame.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from dreamactor_jax.pose.keypoints import (BODY_LIMBS, HAND_EDGES, L_WRIST, NOSE, R_WRIST, PoseClip,
                                           PoseFrame)

# Anatomical groups as indices into BODY_LIMBS.
LIMB_GROUPS = {
    "torso": (0, 1, 6, 9),        # neck-shoulders, neck-hips
    "arms": (2, 3, 4, 5),         # upper arms, forearms
    "legs": (7, 8, 10, 11),       # thighs, shins
    "head": (12, 13, 14, 15, 16),  # neck-nose, nose-eyes, eyes-ears
}
GROUPS = ("torso", "arms", "legs", "head", "hands")


@dataclasses.dataclass(frozen=True)
class BoneFactors:
    """Length multipliers: one per body limb (BODY_LIMBS order), per hand bone, and the face's."""

    body: np.ndarray                 # [17]
    hands: np.ndarray                # [2, 20] (left, right) x HAND_EDGES
    face: float = 1.0

    @classmethod
    def from_groups(cls, groups: dict[str, float]) -> "BoneFactors":
        """Factors from one value per group (missing groups: 1)."""
        body = np.ones(len(BODY_LIMBS), np.float64)
        for g, idx in LIMB_GROUPS.items():
            body[list(idx)] = groups.get(g, 1.0)
        hands = np.full((2, len(HAND_EDGES)), groups.get("hands", 1.0), np.float64)
        return cls(body, hands, float(groups.get("head", 1.0)))


def rescale_bones(frame: PoseFrame, factors: BoneFactors) -> PoseFrame:
    """Scales every bone of every person of `frame` by its factor, along the kinematic tree.

    The neck (root) stays put. A bone whose ends are not both visible keeps its length, its child
    only follows the parent. Missing points stay missing. Lengths are scaled in the normalised
    coordinates, which is the same as in pixels (a uniform scale commutes with the aspect).
    """
    body_f = np.asarray(factors.body, np.float64)
    hand_f = np.broadcast_to(np.asarray(factors.hands, np.float64), (2, len(HAND_EDGES)))
    if body_f.shape != (len(BODY_LIMBS),) or np.any(body_f <= 0) or np.any(hand_f <= 0) or factors.face <= 0:
        raise ValueError(f"rescale_bones: factors must be positive, body shape [{len(BODY_LIMBS)}], "
                         f"got body {list(body_f.shape)}")
    if frame.num_people == 0:
        return frame
    body, hands, face = (np.array(a, np.float64) for a in (frame.body, frame.hands, frame.face))

    disp = _walk(body, BODY_LIMBS, body_f, np.zeros(body[:, 0, :2].shape))
    for h, wrist in ((0, L_WRIST), (1, R_WRIST)):
        hd = _walk(hands[:, h], HAND_EDGES, hand_f[h], disp[:, wrist])
        hands[:, h, :, :2] += hd
    nose_ok = (body[:, NOSE, 2] > 0)[:, None, None]
    rel = face[..., :2] - body[:, NOSE, None, :2]
    face[..., :2] += disp[:, NOSE, None] + np.where(nose_ok, (factors.face - 1.0) * rel, 0.0)
    body[..., :2] += disp
    return PoseFrame(body, hands, face)  # PoseFrame zeroes the xy of missing points again


def _walk(points: np.ndarray, edges, factors: np.ndarray, root_disp: np.ndarray) -> np.ndarray:
    """Displacement [P, N, 2] of each point when each edge (parent, child) is scaled by its factor."""
    xy, ok = points[..., :2], points[..., 2] > 0
    disp = np.zeros(xy.shape)
    disp[:, edges[0][0]] = root_disp
    for (p, c), f in zip(edges, factors):
        both = (ok[:, p] & ok[:, c])[:, None]
        disp[:, c] = disp[:, p] + np.where(both, (f - 1.0) * (xy[:, c] - xy[:, p]), 0.0)
    return disp


def bone_lengths(frame: PoseFrame, width: float = 1.0, height: float = 1.0):
    """Lengths of body limbs [P, 17] and hand bones [P, 2, 20] in pixels (NaN where not visible)."""
    size = np.array([width, height], np.float64)

    def lengths(pts, edges):
        p, c = np.array(edges).T
        d = np.linalg.norm((pts[..., c, :2] - pts[..., p, :2]) * size, axis=-1)
        return np.where((pts[..., p, 2] > 0) & (pts[..., c, 2] > 0), d, np.nan)
    return lengths(frame.body.astype(np.float64), BODY_LIMBS), lengths(frame.hands.astype(np.float64), HAND_EDGES)


@dataclasses.dataclass(frozen=True)
class PoseAugConfig:
    """Ranges (uniform) of the per-group bone factors; the box normalisation's target and margin.

    The paper gives no ranges; these defaults are our choice (moderate, so poses stay plausible).
    `per_side` draws left and right limbs separately (off: a body stays symmetric).
    """

    torso: tuple[float, float] = (0.9, 1.1)
    arms: tuple[float, float] = (0.8, 1.2)
    legs: tuple[float, float] = (0.8, 1.2)
    head: tuple[float, float] = (0.85, 1.15)
    hands: tuple[float, float] = (0.8, 1.2)
    per_side: bool = False
    bone_scaling: bool = True
    box_normalization: bool = True
    target_box: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)  # x0, y0, x1, y1 (normalised)
    margin: float = 0.05

    def __post_init__(self):
        for g in GROUPS:
            lo, hi = getattr(self, g)
            if not 0 < lo <= hi:
                raise ValueError(f"PoseAugConfig.{g}: expected 0 < low <= high, got ({lo}, {hi})")


_RIGHT_LIMBS = (0, 2, 3, 6, 7, 8, 13, 14)  # limbs on the figure's right side (for per_side)


def draw_factors(rng: np.random.Generator, cfg: PoseAugConfig = PoseAugConfig()) -> BoneFactors:
    """One draw of bone factors (one value per group, or per group and side)."""
    groups = {g: rng.uniform(*getattr(cfg, g)) for g in GROUPS}
    f = BoneFactors.from_groups(groups)
    if cfg.per_side:
        body = f.body.copy()
        for g, idx in LIMB_GROUPS.items():
            right = [i for i in idx if i in _RIGHT_LIMBS]
            body[right] = rng.uniform(*getattr(cfg, g))
        hands = f.hands.copy()
        hands[1] = rng.uniform(*cfg.hands)
        f = BoneFactors(body, hands, f.face)
    return f


def clip_box(clip: PoseClip) -> tuple[float, float, float, float] | None:
    """(x0, y0, x1, y1) in pixels over all visible points of the clip; None if there are none."""
    pts = [a[a[..., 2] > 0][:, :2] for f in clip.frames for a in (f.body, f.hands, f.face)]
    pts = np.concatenate([np.zeros((0, 2))] + pts) * np.array([clip.width, clip.height])
    if len(pts) == 0:
        return None
    (x0, y0), (x1, y1) = pts.min(0), pts.max(0)
    return float(x0), float(y0), float(x1), float(y1)


def normalize_to_box(clip: PoseClip, width: int | None = None, height: int | None = None, *,
                     target_box=(0.0, 0.0, 1.0, 1.0), margin: float = 0.05) -> PoseClip:
    """Maps the clip's box (all points, all frames) into `target_box` of a `width` x `height` frame.

    Aspect is kept: the box is scaled to fit the target box shrunk by `margin` (a fraction of the
    target box on each side) and centred in it. A box of zero width or height is fitted by its
    other side; a single point is just centred. Output size defaults to the clip's.
    """
    width, height = int(width or clip.width), int(height or clip.height)
    tx0, ty0, tx1, ty1 = (float(v) for v in target_box)
    if not (0 <= tx0 < tx1 and 0 <= ty0 < ty1) or not 0 <= margin < 0.5:
        raise ValueError(f"normalize_to_box: target_box must be x0 < x1, y0 < y1 (>= 0) and margin in "
                         f"[0, 0.5), got {target_box}, {margin}")
    box = clip_box(clip)
    if box is None:
        return PoseClip(clip.frames, width, height, clip.fps)
    x0, y0, x1, y1 = box
    bw, bh = x1 - x0, y1 - y0
    tw, th = (tx1 - tx0) * width * (1 - 2 * margin), (ty1 - ty0) * height * (1 - 2 * margin)
    scales = [t / b for t, b in ((tw, bw), (th, bh)) if b > 1e-9]
    s = min(scales) if scales else 1.0
    src_c = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
    dst_c = np.array([(tx0 + tx1) / 2 * width, (ty0 + ty1) / 2 * height])
    src_size, dst_size = np.array([clip.width, clip.height], np.float64), np.array([width, height], np.float64)

    def move(a):
        a = np.array(a, np.float64)
        a[..., :2] = ((a[..., :2] * src_size - src_c) * s + dst_c) / dst_size
        return a
    frames = [PoseFrame(move(f.body), move(f.hands), move(f.face)) for f in clip.frames]
    return PoseClip(frames, width, height, clip.fps)


def augment_clip(clip: PoseClip, rng: np.random.Generator, cfg: PoseAugConfig = PoseAugConfig(), *,
                 width: int | None = None, height: int | None = None) -> tuple[PoseClip, BoneFactors]:
    """Section 3.3 on one clip: bone scaling (one draw per clip), then box normalisation.

    Deterministic given the generator's state. Returns the new clip and the factors drawn.
    """
    factors = draw_factors(rng, cfg) if cfg.bone_scaling else BoneFactors.from_groups({})
    out = PoseClip([rescale_bones(f, factors) for f in clip.frames], clip.width, clip.height, clip.fps)
    if cfg.box_normalization:
        out = normalize_to_box(out, width, height, target_box=cfg.target_box, margin=cfg.margin)
    return out, factors
