"""Resizing images and videos to the model resolution, keeping the aspect ratio.

`mode="crop"` scales the frame to cover the target and cuts the overflow evenly on both sides
(the larger half of an odd overflow goes to the bottom/right); `mode="pad"` scales it to fit inside
and fills the border with `pad_value`, the image centred the same way. The target height and
width must be multiples of 16 (8x VAE downsampling, then 2x2 patches). `fit_geometry` returns the
mapping so that keypoints can follow the pixels.
"""

from __future__ import annotations

import dataclasses

import numpy as np

_RESAMPLE = ("bicubic", "bilinear", "lanczos", "nearest", "area")
MULTIPLE = 16


@dataclasses.dataclass(frozen=True)
class Fit:
    """Source pixel coordinates `(x, y)` land at `(x * sx + left, y * sy + top)` in the output."""

    resized_h: int
    resized_w: int
    top: int  # < 0: rows cropped away; > 0: rows of padding
    left: int

    def scale(self, src_h: int, src_w: int) -> tuple[float, float]:
        return self.resized_w / src_w, self.resized_h / src_h

    def map_points(self, xy: np.ndarray, src_h: int, src_w: int) -> np.ndarray:
        """Maps `[..., 2]` pixel coordinates (x, y) of the source frame into the output frame."""
        sx, sy = self.scale(src_h, src_w)
        xy = np.asarray(xy, dtype=np.float64)
        return np.stack([xy[..., 0] * sx + self.left, xy[..., 1] * sy + self.top], axis=-1)


def check_resolution(height: int, width: int, *, multiple: int = MULTIPLE) -> None:
    for name, v in (("height", height), ("width", width)):
        if not isinstance(v, (int, np.integer)) or v <= 0 or v % multiple:
            raise ValueError(f"target {name} must be a positive multiple of {multiple}, got {v}")


def fit_geometry(src_h: int, src_w: int, height: int, width: int, mode: str = "crop") -> Fit:
    """Where a `src_h x src_w` frame goes in a `height x width` output under `mode` (crop or pad)."""
    if src_h <= 0 or src_w <= 0:
        raise ValueError(f"source size must be positive, got {src_h}x{src_w}")
    if mode == "crop":
        s = max(height / src_h, width / src_w)
        rh, rw = max(height, round(src_h * s)), max(width, round(src_w * s))
        return Fit(rh, rw, -((rh - height) // 2), -((rw - width) // 2))
    if mode == "pad":
        s = min(height / src_h, width / src_w)
        rh, rw = min(height, max(1, round(src_h * s))), min(width, max(1, round(src_w * s)))
        return Fit(rh, rw, (height - rh) // 2, (width - rw) // 2)
    raise ValueError(f"mode must be 'crop' or 'pad', got {mode!r}")


def _resize_one(frame: np.ndarray, h: int, w: int, resample: str) -> np.ndarray:
    from PIL import Image  # noqa: PLC0415

    if frame.shape[:2] == (h, w):
        return frame
    filt = {
        "bicubic": Image.Resampling.BICUBIC,
        "bilinear": Image.Resampling.BILINEAR,
        "lanczos": Image.Resampling.LANCZOS,
        "nearest": Image.Resampling.NEAREST,
        "area": Image.Resampling.BOX,
    }[resample]
    if frame.shape[-1] == 3:
        return np.asarray(Image.fromarray(frame, "RGB").resize((w, h), filt))
    # any channel count: one channel at a time
    return np.stack(
        [np.asarray(Image.fromarray(frame[..., c], "L").resize((w, h), filt)) for c in range(frame.shape[-1])],
        axis=-1,
    )


def resize_to(
    frames: np.ndarray,
    height: int,
    width: int,
    *,
    mode: str = "crop",
    pad_value: int | tuple[int, ...] = 0,
    resample: str = "bicubic",
) -> np.ndarray:
    """Resizes `uint8 [H, W, C]` or `[T, H, W, C]` to `height x width` keeping the aspect (crop or pad).

    Pillow filters, antialiased when shrinking; `resample="nearest"` keeps rendered skeletons crisp.
    """
    check_resolution(height, width)
    if resample not in _RESAMPLE:
        raise ValueError(f"resample must be one of {_RESAMPLE}, got {resample!r}")
    frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (media boundary), got {frames.dtype}")
    if frames.ndim not in (3, 4):
        raise ValueError(f"frames must be [H, W, C] or [T, H, W, C], got shape {frames.shape}")
    single = frames.ndim == 3
    video = frames[None] if single else frames
    src_h, src_w, ch = video.shape[1:]
    fit = fit_geometry(src_h, src_w, height, width, mode)
    out = np.empty((video.shape[0], height, width, ch), np.uint8)
    if mode == "pad":
        pv = np.asarray(pad_value)
        if pv.ndim > 1 or pv.size not in (1, ch) or np.any(pv < 0) or np.any(pv > 255):
            raise ValueError(f"pad_value must be one value or {ch} values in [0, 255], got {pad_value!r}")
        out[...] = np.broadcast_to(pv.astype(np.uint8), (ch,))
    for t, frame in enumerate(video):
        r = _resize_one(frame, fit.resized_h, fit.resized_w, resample)
        if mode == "crop":
            out[t] = r[-fit.top : -fit.top + height, -fit.left : -fit.left + width]
        else:
            out[t, fit.top : fit.top + fit.resized_h, fit.left : fit.left + fit.resized_w] = r
    return out[0] if single else out
