"""Temporal statistics of a video: flicker, smoothness, background stability, subject drift, seams.

All on uint8 frames `[T, H, W, 3]`, differences in uint8 levels (0-255).
- `flicker`: VBench's temporal flickering. VBench takes the mean absolute difference of each pair
  of consecutive frames (all pixels and channels), averages it over the video (`mae`), and reports
  `(255 - mae) / 255` (`score`, 1 for a frozen video). We compute it at the analysis resolution
  (VBench at the file's), which lowers the MAE of pixel noise a little.
- `smoothness`: VBench's motion smoothness with its learned frame interpolator replaced by the
  mean of the two neighbours: `interp_mae` = mean |F[t] - (F[t-1] + F[t+1]) / 2| over t, and
  `(255 - interp_mae) / 255`. `jump_ratio`: the largest consecutive difference over the median
  one (a cut, a freeze-then-jump or a seam stands out; smooth motion stays near 1-3).
  `luma_flicker`: mean |L[t] - (L[t-1] + L[t+1]) / 2| of the frames' mean luma (global flicker).
- `background`: outside the (dilated) subject masks of both frames: `flicker` the mean consecutive
  difference, `drift` the mean difference to the first frame, `coverage` the background's share.
- `subject_drift`: the subject's mean colour (inside its mask) over each quarter of the video
  (averaging a quarter evens out colour changes that come with the pose, e.g. a jacket opening);
  `color_drift` the largest distance (RGB, mean over channels of |difference|) of a later quarter
  from the first, `luma_drift` the same for luma, `color_std` the per-frame spread over time,
  `ref_color_dist` the distance of the first quarter's colour from the reference's, and `flagged`
  when colour or luma drifts by more than `DRIFT_FLAG` levels (a visibly drifting subject).
- `seams`: at known segment boundaries (long videos made in segments), the jump of the subject's
  colour and of the whole frame across each seam over the median jump between other frames.
"""

from __future__ import annotations

import numpy as np

DRIFT_FLAG = 10.0   # uint8 levels of mean colour / luma change of the subject: visibly drifting


def _diffs(frames: np.ndarray) -> np.ndarray:
    """Mean |F[t+1] - F[t]| for each t -> [T - 1]."""
    return np.array([np.abs(frames[t + 1].astype(np.int16) - frames[t].astype(np.int16)).mean()
                     for t in range(len(frames) - 1)], np.float64)


def flicker(frames: np.ndarray) -> dict:
    if len(frames) < 2:
        raise ValueError("flicker: needs at least 2 frames")
    mae = float(_diffs(frames).mean())
    return {"mae": mae, "score": (255.0 - mae) / 255.0}


def smoothness(frames: np.ndarray) -> dict:
    if len(frames) < 3:
        raise ValueError("smoothness: needs at least 3 frames")
    f = frames.astype(np.float32)
    interp = [float(np.abs(f[t] - 0.5 * (f[t - 1] + f[t + 1])).mean()) for t in range(1, len(f) - 1)]
    d = _diffs(frames)
    med = float(np.median(d))
    jump = float(d.max() / med) if med > 1e-6 else (1.0 if d.max() < 1e-6 else float("inf"))
    lum = np.array([float(x.mean()) for x in f @ np.array([0.299, 0.587, 0.114], np.float32)])
    lf = float(np.abs(lum[1:-1] - 0.5 * (lum[:-2] + lum[2:])).mean())
    im = float(np.mean(interp))
    return {"interp_mae": im, "score": (255.0 - im) / 255.0, "jump_ratio": min(jump, 1e6), "luma_flicker": lf}


def background(frames: np.ndarray, masks: np.ndarray) -> dict:
    """Stability outside the subject (`masks` bool [T, H, W], already dilated)."""
    if len(frames) < 2:
        raise ValueError("background: needs at least 2 frames")
    bg = ~masks
    cover = float(bg.mean())
    if cover < 0.05:
        raise ValueError("background: the subject covers the whole frame (no background to measure)")
    f0 = frames[0].astype(np.int16)
    fl, dr = [], []
    for t in range(len(frames) - 1):
        both = bg[t] & bg[t + 1]
        if both.any():
            fl.append(np.abs(frames[t + 1].astype(np.int16) - frames[t].astype(np.int16))[both].mean())
        first = bg[0] & bg[t + 1]
        if first.any():
            dr.append(np.abs(frames[t + 1].astype(np.int16) - f0)[first].mean())
    if not fl:
        raise ValueError("background: no pixel is background in two consecutive frames")
    return {"flicker": float(np.mean(fl)), "drift": float(np.mean(dr)) if dr else float("nan"), "coverage": cover}


def subject_colours(frames: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Mean RGB of the subject per frame -> [T, 3] (NaN where the mask is empty)."""
    out = np.full((len(frames), 3), np.nan)
    for t, (f, m) in enumerate(zip(frames, masks)):
        if m.any():
            out[t] = f[m].astype(np.float64).mean(0)
    return out


def _quarters(col: np.ndarray) -> np.ndarray:
    """Mean subject colour of each quarter of the video (frames without a subject ignored) -> [<=4, 3]."""
    ok = ~np.isnan(col).any(1)
    t = np.flatnonzero(ok)
    parts = [q for q in np.array_split(t, min(4, len(t))) if len(q)]
    return np.array([col[q].mean(0) for q in parts])


def subject_drift(frames: np.ndarray, masks: np.ndarray, reference_colour: np.ndarray | None = None,
                  flag: float = DRIFT_FLAG) -> dict:
    """Colour / brightness drift of the subject over time (see the module docstring)."""
    col = subject_colours(frames, masks)
    ok = ~np.isnan(col).any(1)
    if ok.sum() < 2:
        raise ValueError("subject drift: the subject was found in fewer than 2 frames")
    q = _quarters(col)
    y = lambda c: c @ np.array([0.299, 0.587, 0.114])  # noqa: E731
    out = {"color_drift": float(np.abs(q - q[0]).mean(1).max()), "luma_drift": float(np.abs(y(q) - y(q[0])).max()),
           "color_std": float(col[ok].std(0).mean()), "found": float(ok.mean())}
    if reference_colour is not None:
        out["ref_color_dist"] = float(np.abs(q[0] - np.asarray(reference_colour, np.float64)).mean())
    out["flagged"] = bool(out["color_drift"] > flag or out["luma_drift"] > flag)
    return out


def seams(frames: np.ndarray, masks: np.ndarray, boundaries: list[int]) -> dict:
    """Jumps across segment seams. `boundaries`: output indices of each segment's first new frame."""
    idx = sorted(b - 1 for b in boundaries if 1 <= b < len(frames))  # the pair (b - 1, b)
    if not idx:
        raise ValueError("seams: no segment boundary inside the video")
    d = _diffs(frames)
    col = subject_colours(frames, masks)
    dc = np.abs(np.diff(col, axis=0)).mean(1)
    inside = np.delete(np.arange(len(d)), idx)

    def ratio(series):
        ref = np.nanmedian(series[inside]) if inside.size else np.nan
        worst = np.nanmax(series[idx]) if np.isfinite(series[idx]).any() else np.nan
        if not np.isfinite(ref) or not np.isfinite(worst):
            return float("nan")
        return float(worst / ref) if ref > 1e-6 else (1.0 if worst < 1e-6 else 1e6)
    return {"frame_jump": ratio(d), "subject_color_jump": ratio(dc), "seams": len(idx)}
