"""Retargeting at inference: give the driving skeleton the reference character's bone lengths.

Pose-driven animators copy body shape from the driving skeleton ("long arms" when a child's
video drives an adult's photo). `retarget_clip` measures each bone on the reference image's
detected skeleton and on the driving clip (its first frame, or the median over the clip), and
scales every driving bone by the ratio with the same tree walk as the augmentation
(`rescale_bones`): the neck, i.e. the driving root trajectory, is kept, joints stay connected.

Lengths are measured in units of the frame height, so the character ends up as tall relative to
the frame as in the reference. `keep_size=True` keeps the driving figure's overall size instead
and transfers only the proportions. `anchor="reference"` also moves the figure so that its neck
starts where the reference's neck is, the driving root's motion scaled by the same overall ratio
(the median bone ratio), so that frame 1 lines up with the reference image. Positions are compared
in frame heights from the top-left corner: exact when both frames have the same aspect (e.g. both
already fitted to the model resolution, which is what inference does), approximate otherwise. A bone not visible on either side takes its group's median
ratio (then the median over all bones, then 1).
"""

from __future__ import annotations

import warnings

import numpy as np

from dreamactor_jax.pose.augment import LIMB_GROUPS, BoneFactors, bone_lengths, rescale_bones
from dreamactor_jax.pose.keypoints import NECK, PoseClip, PoseFrame


def _nanmedian(a, axis=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(a, axis=axis)


def _lengths(frame: PoseFrame, person: int, aspect: float):
    body, hands = bone_lengths(frame.person(person), aspect, 1.0)
    return body[0], hands[0]


def retarget_factors(driving: PoseClip, reference: PoseFrame, ref_width: int, ref_height: int, *,
                     person: int = 0, ref_person: int = 0, lengths: str = "median",
                     keep_size: bool = False) -> BoneFactors:
    """Per-bone ratios reference / driving (see the module docstring)."""
    if lengths not in ("first", "median"):
        raise ValueError(f"retarget: lengths must be 'first' or 'median', got {lengths!r}")
    if reference.num_people <= ref_person:
        raise ValueError(f"retarget: the reference has {reference.num_people} people, no person {ref_person}")
    frames = [f for f in driving.frames if f.num_people > person]
    if not frames:
        raise ValueError(f"retarget: no frame of the driving clip has person {person}")
    if lengths == "first":
        frames = frames[:1]
    rb, rh = _lengths(reference, ref_person, ref_width / ref_height)
    d = [_lengths(f, person, driving.width / driving.height) for f in frames]
    db, dh = _nanmedian(np.stack([x[0] for x in d]), 0), _nanmedian(np.stack([x[1] for x in d]), 0)

    body, hands = rb / db, rh / dh                       # NaN where unmeasured
    if keep_size:
        common = np.isfinite(body)
        if common.any():
            s = rb[common].sum() / db[common].sum()
            body, hands = body / s, hands / s
    overall = _nanmedian(body)
    overall = 1.0 if not np.isfinite(overall) else overall
    groups = {}
    for g, idx in LIMB_GROUPS.items():
        m = _nanmedian(body[list(idx)])
        groups[g] = m if np.isfinite(m) else overall
        body[list(idx)] = np.where(np.isfinite(body[list(idx)]), body[list(idx)], groups[g])
    hand_all = _nanmedian(hands)
    for h in range(2):
        m = _nanmedian(hands[h])
        m = m if np.isfinite(m) else (hand_all if np.isfinite(hand_all) else groups["arms"])
        hands[h] = np.where(np.isfinite(hands[h]), hands[h], m)
    return BoneFactors(body, hands, float(groups["head"]))


def retarget_clip(driving: PoseClip, reference: PoseFrame, ref_width: int, ref_height: int, *,
                  anchor: str = "driving", **kw) -> tuple[PoseClip, BoneFactors]:
    """The driving clip with the reference's bone lengths (same frames, size, fps) and the factors used.

    Keyword arguments go to `retarget_factors`; every person of every frame gets the same factors.
    `anchor`: "driving" keeps the driving neck trajectory; "reference" starts it at the
    reference's neck (see the module docstring).
    """
    if anchor not in ("driving", "reference"):
        raise ValueError(f"retarget: anchor must be 'driving' or 'reference', got {anchor!r}")
    factors = retarget_factors(driving, reference, ref_width, ref_height, **kw)
    frames = [rescale_bones(f, factors) for f in driving.frames]
    if anchor == "reference":
        frames = _anchor(frames, driving, reference.person(kw.get("ref_person", 0)), ref_width / ref_height,
                         float(np.median(factors.body)), kw.get("person", 0))
    return PoseClip(frames, driving.width, driving.height, driving.fps), factors


def _anchor(frames, driving: PoseClip, ref: PoseFrame, ref_aspect: float, scale: float, person: int):
    """Translates each frame so the neck follows ref_neck + scale * (neck_t - neck_0), in frame heights."""
    if ref.body[0, NECK, 2] <= 0:
        raise ValueError("retarget: anchor='reference' needs the reference's neck (both shoulders)")
    aspect = driving.width / driving.height
    to_h = np.array([aspect, 1.0])                       # driving normalised -> frame-height units
    ref_neck = ref.body[0, NECK, :2] * np.array([ref_aspect, 1.0])
    start, shift, out = None, np.zeros(2), []
    for f in frames:
        if f.num_people > person and f.body[person, NECK, 2] > 0:
            neck = f.body[person, NECK, :2] * to_h
            start = neck if start is None else start
            shift = (ref_neck + scale * (neck - start) - neck) / to_h
        move = lambda a: np.concatenate([a[..., :2] + shift, a[..., 2:]], -1)  # noqa: E731
        out.append(PoseFrame(move(f.body), move(f.hands), move(f.face)))
    return out
