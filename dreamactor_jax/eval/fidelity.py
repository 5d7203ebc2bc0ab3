"""Reference-based fidelity when a ground-truth video exists: PSNR and SSIM.

Frames are compared one by one (uint8, pixel range 1 after scaling), then averaged:
- `psnr`: 10 log10(1 / MSE) in dB over the whole clip's pixels (capped at 100 dB for identical
  videos, where it is infinite);
- `ssim`: Wang et al. (2004) with a Gaussian window (sigma 1.5, truncated at 3.5 sigma),
  C1 = 0.01^2, C2 = 0.03^2, per channel, reflect padding, averaged over pixels and frames.
A ground truth is read at the output's frame rate and resized to its size as the sampler resizes
the driving video (`media.resize_to`; `--fit`, else crop, or pad for a video of the other
orientation), so frame k meets frame k.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

PSNR_CAP = 100.0


def _pair(a, b):
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.ndim != 4 or a.shape[-1] != 3:
        raise ValueError(f"fidelity: expected two videos [T, H, W, 3] of one shape, got {a.shape} and {b.shape}")
    return a


def psnr(video: np.ndarray, truth: np.ndarray) -> float:
    _pair(video, truth)
    mse = np.mean([np.mean((v.astype(np.float64) / 255 - t.astype(np.float64) / 255) ** 2)
                   for v, t in zip(video, truth)])
    return PSNR_CAP if mse <= 10 ** (-PSNR_CAP / 10) else float(10 * np.log10(1.0 / mse))


def ssim_frame(a: np.ndarray, b: np.ndarray, sigma: float = 1.5) -> float:
    a, b = a.astype(np.float64) / 255, b.astype(np.float64) / 255
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    f = lambda x: gaussian_filter(x, (sigma, sigma, 0), mode="reflect", truncate=3.5)  # noqa: E731
    mu_a, mu_b = f(a), f(b)
    va, vb, cov = f(a * a) - mu_a ** 2, f(b * b) - mu_b ** 2, f(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (va + vb + c2))
    return float(s.mean())


def ssim(video: np.ndarray, truth: np.ndarray) -> float:
    _pair(video, truth)
    return float(np.mean([ssim_frame(v, t) for v, t in zip(video, truth)]))


def fidelity(video: np.ndarray, truth: np.ndarray) -> dict:
    t = min(len(video), len(truth))
    if t == 0:
        raise ValueError("fidelity: no frames")
    return {"psnr": psnr(video[:t], truth[:t]), "ssim": ssim(video[:t], truth[:t]), "frames": t}
