"""Pose-based metrics: motion fidelity to the driving video, and body-shape preservation.

Both re-estimate poses of the generated video with the project's pose pipeline
(`dreamactor_jax.pose`: MediaPipe offline by default, DWPose from the user's ONNX files) and
compare keypoints, so they need a person-like character the estimator can see.

Motion fidelity (`motion_fidelity`): generated frame k is compared with the driving frame shown
at the same time. Each clip is box-normalised on its own: one box over every visible body and
hand point of every person and frame, coordinates taken relative to its centre and divided by its
longer side; so a character standing elsewhere or drawn at another size is not penalised, only
its motion. The box spans the whole motion, so an output that moves less than the driving (a
still image) is off everywhere, not only at the moving joints. The face (68 points) is normalised
by its own box in the same way, so expressions
count. People are matched left to right. For each part (head, torso, arms, legs, hands, face):
`pck@0.05` / `pck@0.1` (share of the driving's visible points found within that distance),
`err` (mean distance; a point the driving shows and the output misses is charged `MISS_COST`)
and `missed`; `all` pools body and hands. `found`: the share of frames with a person detected.

Body shape (`body_shape`): a limb's length in the output is its 90th percentile over frames
(foreshortening only shortens a limb in 2D), divided by the sum of the limbs measured in both the
output and the reference so that only proportions count; `shape_err` is the mean |log ratio| of
these proportions, output vs reference, per group and over all (0 = the reference's body).
`driver_shape_err` is the same for the driving video's body: what copying the driver would score.
"""

from __future__ import annotations

import numpy as np

from dreamactor_jax.pose.augment import LIMB_GROUPS, bone_lengths
from dreamactor_jax.pose.keypoints import (L_ANKLE, L_EAR, L_ELBOW, L_EYE, L_HIP, L_KNEE, L_SHOULDER, L_WRIST,
                                           NECK, NOSE, R_ANKLE, R_EAR, R_ELBOW, R_EYE, R_HIP, R_KNEE,
                                           R_SHOULDER, R_WRIST, PoseClip, PoseFrame)

BODY_PARTS = {"head": (NOSE, R_EYE, L_EYE, R_EAR, L_EAR), "torso": (NECK, R_SHOULDER, L_SHOULDER, R_HIP, L_HIP),
              "arms": (R_ELBOW, R_WRIST, L_ELBOW, L_WRIST), "legs": (R_KNEE, R_ANKLE, L_KNEE, L_ANKLE)}
PARTS = tuple(BODY_PARTS) + ("hands", "face")
MIN_CONF = 0.3
MISS_COST = 0.5   # in box sides: a missed point costs half the box
SHAPE_GROUPS = ("torso", "arms", "legs")


def _people(frame: PoseFrame) -> list[int]:
    """Indices of the frame's people ordered left to right (by the mean x of visible body points)."""
    xs = []
    for p in range(frame.num_people):
        ok = frame.body[p, :, 2] >= MIN_CONF
        xs.append(frame.body[p, ok, 0].mean() if ok.any() else np.inf)
    return list(np.argsort(xs, kind="stable"))


def _points(clip: PoseClip, n_people: int) -> tuple[np.ndarray, np.ndarray]:
    """(body+hands [T, P, 18 + 42, 3], face [T, P, 68, 3]) in pixels; missing people are conf 0."""
    t = len(clip)
    bh = np.zeros((t, n_people, 60, 3))
    face = np.zeros((t, n_people, 68, 3))
    size = np.array([clip.width, clip.height], np.float64)
    for i, f in enumerate(clip.frames):
        for slot, p in enumerate(_people(f)[:n_people]):
            bh[i, slot, :18] = f.body[p]
            bh[i, slot, 18:] = f.hands[p].reshape(42, 3)
            face[i, slot] = f.face[p]
    for a in (bh, face):
        a[..., :2] *= size
        a[..., 2] = np.where(a[..., 2] >= MIN_CONF, 1.0, 0.0)
    return bh, face


def box_normalise(points: np.ndarray) -> np.ndarray:
    """Coordinates relative to the box of all visible points, divided by its longer side."""
    vis = points[..., 2] > 0
    out = points.copy()
    if not vis.any():
        return out
    xy = points[..., :2][vis]
    lo, hi = xy.min(0), xy.max(0)
    side = max(float((hi - lo).max()), 1e-6)
    out[..., :2] = (points[..., :2] - (lo + hi) / 2) / side
    return out


def _part_scores(gen: np.ndarray, drv: np.ndarray) -> dict:
    """PCK, error and misses over points the driving shows. gen/drv [T, P, K, 3], normalised."""
    want = drv[..., 2] > 0
    n = int(want.sum())
    if n == 0:
        return {"points": 0}
    have = want & (gen[..., 2] > 0)
    dist = np.linalg.norm(gen[..., :2] - drv[..., :2], axis=-1)
    cost = np.where(have, np.minimum(dist, MISS_COST), MISS_COST)[want]
    return {"pck@0.05": float(((dist < 0.05) & have)[want].mean()), "pck@0.1": float(((dist < 0.1) & have)[want].mean()),
            "err": float(cost.mean()), "missed": float(1.0 - have[want].mean()), "points": n}


def motion_fidelity(generated: PoseClip, driving: PoseClip) -> dict:
    """Per-part scores of the generated poses against the driving poses (frame k with frame k)."""
    t = min(len(generated), len(driving))
    if t == 0:
        raise ValueError("motion fidelity: no frames")
    if all(f.num_people == 0 for f in driving.frames[:t]):
        raise ValueError("motion fidelity: no person found in the driving video")
    n = max(f.num_people for f in driving.frames[:t])
    g_bh, g_face = _points(PoseClip(generated.frames[:t], generated.width, generated.height), n)
    d_bh, d_face = _points(PoseClip(driving.frames[:t], driving.width, driving.height), n)
    g_bh, d_bh = box_normalise(g_bh), box_normalise(d_bh)
    g_face, d_face = box_normalise(g_face), box_normalise(d_face)
    out = {name: _part_scores(g_bh[:, :, list(idx)], d_bh[:, :, list(idx)]) for name, idx in BODY_PARTS.items()}
    out["hands"] = _part_scores(g_bh[:, :, 18:], d_bh[:, :, 18:])
    out["face"] = _part_scores(g_face, d_face)
    out["all"] = _part_scores(g_bh, d_bh)
    out["found"] = float(np.mean([f.num_people > 0 for f in generated.frames[:t]]))
    out["frames"] = t
    return out


def _limbs(frame: PoseFrame, width: int, height: int, person: int) -> np.ndarray:
    body, _ = bone_lengths(frame.person(person), width, height)
    return body[0]


_SHAPE_LIMBS = sorted(i for g in SHAPE_GROUPS for i in LIMB_GROUPS[g])


def _robust_lengths(clip: PoseClip) -> np.ndarray:
    """90th percentile over frames of each limb of the leftmost person -> [17] (NaN: never seen)."""
    rows = [_limbs(f, clip.width, clip.height, _people(f)[0]) for f in clip.frames if f.num_people]
    if not rows:
        return np.full(17, np.nan)
    a = np.array(rows)
    with np.errstate(all="ignore"):
        return np.array([np.nanpercentile(c, 90) if np.isfinite(c).any() else np.nan for c in a.T])


def _shape_error(lengths: np.ndarray, ref: np.ndarray) -> dict:
    ok = np.zeros(17, bool)
    ok[_SHAPE_LIMBS] = True
    ok &= np.isfinite(lengths) & np.isfinite(ref) & (lengths > 0) & (ref > 0)
    if ok.sum() < 3:
        raise ValueError(f"body shape: only {int(ok.sum())} limb(s) seen in both the output and the reference (need 3)")
    r = np.log((lengths[ok] / lengths[ok].sum()) / (ref[ok] / ref[ok].sum()))
    per = dict(zip(np.flatnonzero(ok), np.abs(r)))
    out = {"shape_err": float(np.abs(r).mean()), "limbs": int(ok.sum())}
    for g in SHAPE_GROUPS:
        v = [per[i] for i in LIMB_GROUPS[g] if i in per]
        out[g] = float(np.mean(v)) if v else float("nan")
    return out


def body_shape(generated: PoseClip, reference: PoseFrame, ref_width: int, ref_height: int,
               driving: PoseClip | None = None) -> dict:
    """Limb-proportion error of the output (and of the driver) against the reference image's body."""
    if reference.num_people == 0:
        raise ValueError("body shape: no person found on the reference image")
    ref = _limbs(reference, ref_width, ref_height, _people(reference)[0])
    if not any(f.num_people for f in generated.frames):
        raise ValueError("body shape: no person found in the generated video")
    out = _shape_error(_robust_lengths(generated), ref)
    if driving is not None and any(f.num_people for f in driving.frames):
        try:
            out["driver_shape_err"] = _shape_error(_robust_lengths(driving), ref)["shape_err"]
        except ValueError:
            pass
    return out
