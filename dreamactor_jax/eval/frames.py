"""Reading videos for evaluation, and the frames a Video-Bench judge sees.

`read_frames` decodes a video (any format `dreamactor_jax.media` reads) into `uint8 [T, H, W, 3]`,
optionally shrunk so its longer side is at most `max_side` (metrics do not need full resolution).

Video-Bench (Han et al. 2025, github.com/Video-Bench/Video-Bench, `videobench/utils.py`) shows
its judge two kinds of frames, and we sample them by the same rules:
- static dimensions (imaging, aesthetic quality): frames at 2 per second, from frame 1 with a step
  of `int(fps / 2)` source frames while the index is below `T - 1`, then the last frame;
- dynamic dimensions (temporal consistency, motion): frames at 8 per second from frame 0 with a
  step of `int(fps / 8)`, joined eight at a time side by side into one "grid" image (a row of 8);
  an incomplete last group is dropped.
Two differences, for videos Video-Bench never meets: a step below one frame (fps under 2 or 8) is
one frame (Video-Bench would loop forever), and a video too short for one full row of 8 gets one
row of the frames it has (Video-Bench would send none). Frames are JPEG-encoded with the longer
side at most 512 pixels (Video-Bench asks for `detail: low`, which the API shrinks to 512).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

STATIC_PER_SECOND = 2
GRID_PER_SECOND = 8
GRID_WIDTH = 8
JUDGE_MAX_SIDE = 512


def read_frames(path: str | os.PathLike, *, max_side: int | None = None, max_frames: int | None = None,
                fps: float | None = None) -> tuple[np.ndarray, float]:
    """(frames uint8 [T, H, W, 3], fps) of a video; ValueError naming the file if it cannot be read."""
    from dreamactor_jax import media

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"video {p}: no such file")
    try:
        info = media.video_info(p)
    except Exception as e:  # noqa: BLE001 - every backend has its own errors
        raise ValueError(f"video {p}: not a readable video ({str(e).splitlines()[0][:200]})") from None
    out = []
    try:
        for f in media.iter_frames(p, fps=fps):
            out.append(shrink(f, max_side))
            if max_frames is not None and len(out) >= max_frames:
                break
    except ValueError as e:
        raise ValueError(f"video {p}: {str(e).splitlines()[0][:200]}") from None
    if not out:
        raise ValueError(f"video {p}: no frames could be read")
    return np.stack(out), float(fps or info.fps or 0.0)


def shrink(image: np.ndarray, max_side: int | None) -> np.ndarray:
    """The image (uint8 [H, W, 3]) resized so its longer side is at most `max_side` (aspect kept)."""
    h, w = image.shape[:2]
    if max_side is None or max(h, w) <= max_side:
        return image
    s = max_side / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BICUBIC, reducing_gap=2.0))


def static_indices(num_frames: int, fps: float, per_second: int = STATIC_PER_SECOND) -> list[int]:
    """Frame indices Video-Bench shows for the static dimensions (see the module docstring)."""
    if num_frames < 1:
        raise ValueError(f"static_indices: no frames (num_frames={num_frames})")
    step = max(1, int(fps / per_second)) if fps > 0 else 1
    idx = list(range(1, num_frames - 1, step))
    return idx + [num_frames - 1]


def grid_indices(num_frames: int, fps: float, per_second: int = GRID_PER_SECOND,
                 width: int = GRID_WIDTH) -> list[list[int]]:
    """Rows of `width` frame indices Video-Bench shows for the dynamic dimensions."""
    if num_frames < 1:
        raise ValueError(f"grid_indices: no frames (num_frames={num_frames})")
    step = max(1, int(fps / per_second)) if fps > 0 else 1
    idx = list(range(0, num_frames, step))
    rows = [idx[i:i + width] for i in range(0, len(idx) - width + 1, width)]
    return rows or [idx[:width]]


def grid_image(frames: np.ndarray, row: list[int]) -> np.ndarray:
    """Frames `row` of `frames` joined side by side (uint8 [H, len(row) * W, 3])."""
    return np.concatenate([frames[i] for i in row], axis=1)


def jpeg(image: np.ndarray, max_side: int = JUDGE_MAX_SIDE, quality: int = 90) -> bytes:
    """JPEG bytes of an RGB image, its longer side shrunk to `max_side`."""
    buf = io.BytesIO()
    Image.fromarray(shrink(np.ascontiguousarray(image), max_side)).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def judge_frames(frames: np.ndarray, fps: float) -> dict[str, list[bytes]]:
    """The JPEGs a judge sees: {"static": [...], "grid": [...]} (Video-Bench's two samplings)."""
    t = len(frames)
    return {"static": [jpeg(frames[i]) for i in static_indices(t, fps)],
            "grid": [jpeg(grid_image(frames, row), max_side=JUDGE_MAX_SIDE * GRID_WIDTH // 2)
                     for row in grid_indices(t, fps)]}
