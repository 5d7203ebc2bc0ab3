"""Per-frame image statistics (no model): sharpness, noise, exposure, colourfulness, contrast.

All on uint8 RGB frames; luma is Rec. 601 (0.299 R + 0.587 G + 0.114 B) in [0, 255].
- `sharpness`: the share of gradient energy a light blur removes, 1 - G(blur(Y)) / G(Y), with G
  the mean gradient magnitude and a Gaussian blur of sigma 1 px. Fine detail and crisp edges lose
  much (about 0.3-0.5 on sharp photos), an already blurred frame little (near 0.1).
- `noise_sigma`: Immerkaer's fast noise estimate (1996): sigma = sqrt(pi / 2) / (6 (W-2) (H-2))
  * sum |Y * N| with N the 3x3 Laplacian difference kernel [[1,-2,1],[-2,4,-2],[1,-2,1]], in luma
  levels. Strong texture raises it too, so it is a noise proxy, not a measurement.
- `clipped`: share of luma pixels at the ends of the range (<= 3 or >= 252): over/under exposure.
- `colourfulness`: Hasler and Suesstrunk (2003), sqrt(sd_rg^2 + sd_yb^2) + 0.3 sqrt(mu_rg^2 + mu_yb^2)
  with rg = R - G, yb = (R + G) / 2 - B (about 15 "slightly", 33 "moderately", 59 "highly" colourful).
- `contrast`: RMS contrast, the standard deviation of luma / 255.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

_LAP = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float64)


def luma(frame: np.ndarray) -> np.ndarray:
    f = np.asarray(frame, np.float64)
    return 0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2]


def _grad(y: np.ndarray) -> float:
    gx, gy = np.diff(y, axis=1)[:-1], np.diff(y, axis=0)[:, :-1]
    return float(np.hypot(gx, gy).mean())


def sharpness(frame: np.ndarray) -> float:
    y = luma(frame)
    g = _grad(y)
    if g < 1e-6:
        return 0.0  # a flat frame has no detail to keep
    return float(np.clip(1.0 - _grad(ndimage.gaussian_filter(y, 1.0, mode="reflect")) / g, 0.0, 1.0))


def noise_sigma(frame: np.ndarray) -> float:
    y = luma(frame)
    h, w = y.shape
    if h < 3 or w < 3:
        return 0.0
    conv = ndimage.convolve(y, _LAP, mode="reflect")[1:-1, 1:-1]
    return float(np.sqrt(np.pi / 2) * np.abs(conv).sum() / (6.0 * (w - 2) * (h - 2)))


def clipped(frame: np.ndarray) -> float:
    y = luma(frame)
    return float(((y <= 3) | (y >= 252)).mean())


def colourfulness(frame: np.ndarray) -> float:
    f = np.asarray(frame, np.float64)
    rg = f[..., 0] - f[..., 1]
    yb = 0.5 * (f[..., 0] + f[..., 1]) - f[..., 2]
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def contrast(frame: np.ndarray) -> float:
    return float(luma(frame).std() / 255.0)


def frame_stats(frames: np.ndarray) -> dict[str, float]:
    """The mean of each statistic over `frames` (uint8 [N, H, W, 3])."""
    fns = {"sharpness": sharpness, "noise_sigma": noise_sigma, "clipped": clipped,
           "colourfulness": colourfulness, "contrast": contrast}
    return {k: float(np.mean([fn(f) for f in frames])) for k, fn in fns.items()}
