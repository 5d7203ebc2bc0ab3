"""Media I/O at the `uint8` boundary: videos and images in, mp4 out, resizing to the model size.

- `read_video` / `iter_frames` / `video_info` (video.py): decord, falling back to PyAV then
  imageio-ffmpeg; sampling at a target fps by the nearest-frame rule documented there.
- `read_image` (image.py): every common mode to RGB by one rule (alpha composited on a background).
- `resize_to` / `fit_geometry` (resize.py): aspect-preserving crop or pad to multiples of 16.
- `write_video` (writer.py): H.264 yuv420p mp4, written atomically.
"""

from dreamactor_jax.media.image import composite, read_image, to_rgb
from dreamactor_jax.media.resize import Fit, check_resolution, fit_geometry, resize_to
from dreamactor_jax.media.video import (
    BACKENDS,
    VideoInfo,
    iter_frames,
    iter_indices,
    read_video,
    sample_indices,
    video_info,
)
from dreamactor_jax.media.writer import write_video

__all__ = [
    "BACKENDS",
    "Fit",
    "VideoInfo",
    "check_resolution",
    "composite",
    "fit_geometry",
    "iter_frames",
    "iter_indices",
    "read_image",
    "read_video",
    "resize_to",
    "sample_indices",
    "to_rgb",
    "video_info",
    "write_video",
]
