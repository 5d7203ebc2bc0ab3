"""Scores for generated toy videos against the exact ground truth.

- `psnr`, `ssim`: pixel fidelity to the target (X performing the driving motion), values in [0, 1].
- `detect_markers`: the keypoint detector. Every toy character wears nine fixed-colour joint
  markers (`render.MARKER_COLORS`); a marker is found as the best-matching pixel for its colour,
  refined to the colour-weighted centroid of its 3x3 neighbourhood. No learning, so it cannot be
  fooled by a model that learnt a detector's quirks, and its error on exact renders is measured.
- `keypoint_scores`: marker error against the retargeted motion (the target's true joints).
- `shape_scores`: body-shape error and identity leakage from bone lengths between markers
  (forearms elbow-wrist, shins knee-ankle; in this 2D world a bone's on-screen length is fixed
  by the body, whatever the pose), compared with the reference's and the driver's.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from dreamactor_jax.toy.render import MARKER_COLORS, MARKER_JOINTS, MARKER_NAMES

# Bones measurable between two markers: (name, marker index a, marker index b).
MARKER_BONES = tuple((f"{s}_{bone}", MARKER_NAMES.index(f"{s}_{a}"), MARKER_NAMES.index(f"{s}_{b}"))
                     for s in ("r", "l") for bone, a, b in (("forearm", "elbow", "wrist"), ("shin", "knee", "ankle")))
MISS_CAP = 0.25  # keypoint error (frame heights) charged for a missing or far-off marker


def _float01(v) -> np.ndarray:
    v = np.asarray(v)
    if v.dtype == np.uint8:
        return v.astype(np.float64) / 255.0
    return v.astype(np.float64)


def _check_pair(a, b, name: str):
    a, b = _float01(a), _float01(b)
    if a.shape != b.shape or a.ndim < 3 or a.shape[-1] != 3:
        raise ValueError(f"{name}: expected two videos of the same shape [..., H, W, 3], got {a.shape} and {b.shape}")
    return a, b


def psnr(video, target) -> float:
    """Peak signal-to-noise ratio in dB over the whole clip (pixel range 1; uint8 is scaled)."""
    a, b = _check_pair(video, target, "psnr")
    mse = float(np.mean((a - b) ** 2))
    return float(10 * np.log10(1.0 / max(mse, 1e-10)))


def ssim(video, target, sigma: float = 1.5) -> float:
    """Mean structural similarity (Gaussian window, sigma 1.5, per channel, reflect padding)."""
    a, b = _check_pair(video, target, "ssim")
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    sig = [0.0] * (a.ndim - 3) + [sigma, sigma, 0.0]
    f = lambda x: gaussian_filter(x, sig, mode="reflect", truncate=3.5)  # noqa: E731
    mu_a, mu_b = f(a), f(b)
    va, vb, cov = f(a * a) - mu_a ** 2, f(b * b) - mu_b ** 2, f(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (va + vb + c2))
    return float(s.mean())


def detect_markers(video, sigma: float = 0.2) -> np.ndarray:
    """Finds the nine joint markers in each frame -> float32 [T, 9, 3] (x, y normalised, confidence).

    Confidence is the colour match of the best pixel, exp(-|rgb - marker|^2 / 2 sigma^2) in [0, 1].
    """
    v = _float01(video)
    if v.ndim == 3:
        v = v[None]
    if v.ndim != 4 or v.shape[-1] != 3:
        raise ValueError(f"detect_markers: video must be [T, H, W, 3] or [H, W, 3], got {list(v.shape)}")
    t, h, w, _ = v.shape
    d2 = ((v[:, :, :, None, :] - MARKER_COLORS[None, None, None].astype(np.float64)) ** 2).sum(-1)
    aff = np.exp(-d2 / (2 * sigma ** 2))  # [T, H, W, M]
    pad = np.pad(aff, ((0, 0), (1, 1), (1, 1), (0, 0)))
    flat = aff.reshape(t, h * w, -1)
    best = flat.argmax(1)  # [T, M]
    by, bx = best // w, best % w
    out = np.zeros((t, len(MARKER_JOINTS), 3), np.float32)
    oy, ox = np.mgrid[-1:2, -1:2]
    for i in range(t):
        for m in range(len(MARKER_JOINTS)):
            y0, x0 = by[i, m], bx[i, m]
            win = pad[i, y0:y0 + 3, x0:x0 + 3, m]
            s = win.sum()
            cy, cx = y0 + (win * oy).sum() / s, x0 + (win * ox).sum() / s
            out[i, m] = ((cx + 0.5) / w, (cy + 0.5) / h, flat[i, best[i, m], m])
    return out


def marker_truth(joints: np.ndarray) -> np.ndarray:
    """True marker positions from a clip's joints `[T, P, 20, 2]` (person 0) -> [T, 9, 2]."""
    return np.asarray(joints)[:, 0, list(MARKER_JOINTS), :]


def keypoint_scores(detected: np.ndarray, truth: np.ndarray, aspect: float = 1.0,
                    min_conf: float = 0.3, pck_thresh: float = 0.05) -> dict[str, float]:
    """Marker error against the true joints, in frame heights.

    kp_err: mean distance, a missing marker (conf < min_conf) or one further than MISS_CAP
    charged MISS_CAP; pck: share of markers within `pck_thresh`; found: share detected.
    """
    detected, truth = np.asarray(detected, np.float64), np.asarray(truth, np.float64)
    if detected.shape[:-1] != truth.shape[:-1]:
        raise ValueError(f"keypoint_scores: detected {detected.shape} and truth {truth.shape} disagree")
    diff = detected[..., :2] - truth
    dist = np.hypot(diff[..., 0] * aspect, diff[..., 1])
    found = detected[..., 2] >= min_conf
    dist = np.where(found, np.minimum(dist, MISS_CAP), MISS_CAP)
    return {"kp_err": float(dist.mean()), "pck": float((dist < pck_thresh).mean()), "found": float(found.mean())}


def bone_lengths(markers: np.ndarray, aspect: float = 1.0, min_conf: float = 0.3) -> np.ndarray:
    """Per-frame lengths of `MARKER_BONES` from markers [T, 9, 3] -> [T, 4] (NaN where not found)."""
    m = np.asarray(markers, np.float64)
    out = np.full((m.shape[0], len(MARKER_BONES)), np.nan)
    for k, (_, a, b) in enumerate(MARKER_BONES):
        d = m[:, a, :2] - m[:, b, :2]
        ok = (m[:, a, 2] >= min_conf) & (m[:, b, 2] >= min_conf)
        out[ok, k] = np.hypot(d[ok, 0] * aspect, d[ok, 1])
    return out


def true_bone_lengths(body) -> np.ndarray:
    """`MARKER_BONES` lengths of a `Body` (frame heights) -> [4]."""
    lengths = body.bone_lengths()
    return np.array([lengths[name] for name, _, _ in MARKER_BONES])


def shape_scores(markers: np.ndarray, ref_body, driver_body, aspect: float = 1.0) -> dict[str, np.ndarray]:
    """Per-bone log-length errors of one clip: output vs the reference's bones and driver's vs reference.

    Returns `err` (median over frames of log(l_out / l_ref), NaN if never measured) and `drv`
    (log(l_driver / l_ref)); aggregate many clips with `summarize_shape`.
    """
    lengths = bone_lengths(markers, aspect)
    ref, drv = true_bone_lengths(ref_body), true_bone_lengths(driver_body)
    with np.errstate(all="ignore"):
        med = np.array([np.nanmedian(col) if np.isfinite(col).any() else np.nan for col in lengths.T])
        return {"err": np.log(np.maximum(med, 1e-6) / ref), "drv": np.log(drv / ref)}


def summarize_shape(per_clip: list[dict[str, np.ndarray]]) -> dict[str, float]:
    """shape_err: mean |log(l_out / l_ref)| over measured bones (0 = the reference's proportions);
    leakage: least-squares slope of the output's log-length error on the driver's (0 keeps the
    reference's bones, 1 copies the driver's); shape_measured: share of bones measured."""
    err = np.concatenate([c["err"] for c in per_clip])
    drv = np.concatenate([c["drv"] for c in per_clip])
    ok = np.isfinite(err)
    if not ok.any():
        return {"shape_err": float("nan"), "leakage": float("nan"), "shape_measured": 0.0}
    e, d = err[ok], drv[ok]
    return {"shape_err": float(np.abs(e).mean()), "leakage": float((e * d).sum() / max((d * d).sum(), 1e-12)),
            "shape_measured": float(ok.mean())}


def silhouette(video, background) -> np.ndarray:
    """Foreground mask: pixels further than 0.12 (max over RGB) from the background colour -> bool [..., H, W]."""
    v = _float01(video)
    return np.abs(v - np.asarray(background, np.float64)).max(-1) > 0.12


def iou(a: np.ndarray, b: np.ndarray) -> float:
    inter, union = np.logical_and(a, b).sum(), np.logical_or(a, b).sum()
    return float(inter / union) if union else 1.0
