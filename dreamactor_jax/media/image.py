"""Reading images into `uint8 [H, W, 3]` RGB by one documented rule.

The rule, applied after the EXIF orientation tag (so a phone photo comes out upright):
- RGB as is; bilevel `1`, grayscale `L`, `CMYK`, `YCbCr`, `LAB`, `HSV`, `RGBX`: Pillow's conversion to RGB
  (gray is repeated in the three channels).
- 16-bit and 32-bit integer grayscale (`I;16`, `I;16B`, `I;16L`, `I;16N`, `I`): values clipped to
  `[0, 65535]` and mapped to 8 bits by `round(v / 257)` (so 65535 -> 255, and 8-bit data stored as
  `v * 257` comes back exactly), then repeated in the three channels.
- Anything with transparency (`RGBA`, `RGBa`, `LA`, `La`, `PA`, `P` with a transparency entry):
  alpha-composited onto `background`: `out = round((c * a + b * (255 - a)) / 255)` per channel.
  A fully transparent image (alpha 0 everywhere) is refused: it would be the bare background.
- `P` without transparency: its palette colours.
- Other modes (e.g. `F`, floating point) are refused with a ValueError.
"""

from __future__ import annotations

import os

import numpy as np

from dreamactor_jax.media.video import check_file

_GRAY16 = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_ALPHA = ("RGBA", "RGBa", "LA", "La", "PA")
_PLAIN = ("1", "L", "CMYK", "YCbCr", "LAB", "HSV", "RGBX")


def _check_background(background) -> np.ndarray:
    bg = np.asarray(background)
    if bg.shape != (3,) or np.any(bg < 0) or np.any(bg > 255):
        raise ValueError(f"background must be 3 values in [0, 255], got {background!r}")
    return bg.astype(np.int64)


def composite(rgba: np.ndarray, background=(255, 255, 255)) -> np.ndarray:
    """`uint8 [..., 4]` RGBA -> `uint8 [..., 3]` RGB over a solid background (exact integer rounding)."""
    bg = _check_background(background)
    rgba = np.asarray(rgba)
    if rgba.dtype != np.uint8 or rgba.shape[-1] != 4:
        raise ValueError(f"rgba must be uint8 [..., 4], got {rgba.dtype} {rgba.shape}")
    c = rgba[..., :3].astype(np.int64)
    a = rgba[..., 3:].astype(np.int64)
    # round(x / 255) for x >= 0 is (x + 127) // 255
    return ((c * a + bg * (255 - a) + 127) // 255).astype(np.uint8)


def to_rgb(image, background=(255, 255, 255), *, name: str = "image") -> np.ndarray:
    """A Pillow image (any supported mode) -> `uint8 [H, W, 3]` by the module's rule."""
    from PIL import ImageOps  # noqa: PLC0415

    bg = _check_background(background)
    image = ImageOps.exif_transpose(image)
    mode = image.mode
    if mode == "RGB":
        return np.asarray(image, dtype=np.uint8).copy()
    if mode in _GRAY16:
        v = np.asarray(image).astype(np.int64)
        g = ((np.clip(v, 0, 65535) * 2 + 257) // 514).astype(np.uint8)  # round(v / 257), halves up
        return np.repeat(g[..., None], 3, axis=-1)
    if mode in _ALPHA or (mode == "P" and "transparency" in image.info):
        rgba = np.asarray(image.convert("RGBA"), dtype=np.uint8)
        if rgba.size and rgba[..., 3].max() == 0:
            raise ValueError(f"{name}: fully transparent (alpha 0 everywhere): there is nothing to see in it")
        return composite(rgba, bg)
    if mode in _PLAIN or mode == "P":
        return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
    raise ValueError(f"{name}: unsupported image mode {mode!r} (supported: RGB, RGBA, L, LA, P, PA, I;16, I, ...)")


def read_image(path: str | os.PathLike, background=(255, 255, 255)) -> np.ndarray:
    """Reads an image file into `uint8 [H, W, 3]` RGB (transparency composited onto `background`).

    Raises FileNotFoundError when missing, ValueError naming the file when empty, corrupt or of an
    unsupported mode. An animated image gives its first frame.
    """
    from PIL import Image, UnidentifiedImageError  # noqa: PLC0415

    p = check_file(path, "image")
    try:
        with Image.open(p) as im:
            im.load()
            return to_rgb(im, background, name=f"image {p}")
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        msg = str(e).strip().splitlines()
        raise ValueError(f"image {p}: cannot decode ({msg[0] if msg else type(e).__name__})") from e
