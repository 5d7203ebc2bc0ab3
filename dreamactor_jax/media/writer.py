"""Writing mp4 videos: H.264 (libx264), yuv420p, written atomically.

yuv420p needs an even height and width. `odd="pad"` (default) adds one row/column repeating the
last one (the picture is not rescaled); `odd="error"` refuses odd sizes. Frames may be a `uint8
[T, H, W, 3]` array or any iterable of `uint8 [H, W, 3]` frames (streamed, never held whole).
PyAV is used when it has libx264, imageio-ffmpeg's ffmpeg otherwise, and OpenCV (MPEG-4 part 2,
`mp4v`, with a warning) where neither is installed. The path must end in `.mp4`: an mp4 never
lands in a file named `x.png`.
"""

from __future__ import annotations

import logging
import os
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from dreamactor_jax.utils import as_path, atomic_path

log = logging.getLogger(__name__)
VIDEO_SUFFIXES = (".mp4",)


def _frames_checked(frames: Iterable[np.ndarray], path, odd: str) -> Iterator[np.ndarray]:
    shape = None
    for t, f in enumerate(frames):
        f = np.asarray(f)
        if f.dtype != np.uint8 or f.ndim != 3 or f.shape[-1] != 3:
            raise ValueError(f"write_video {path}: frame {t} must be uint8 [H, W, 3], got {f.dtype} {f.shape}")
        if shape is None:
            shape = f.shape
            if odd == "error" and (shape[0] % 2 or shape[1] % 2):
                raise ValueError(f"write_video {path}: H.264 yuv420p needs even sizes, got {shape[0]}x{shape[1]}")
        elif f.shape != shape:
            raise ValueError(f"write_video {path}: frame {t} has shape {f.shape}, frame 0 had {shape}")
        if f.shape[0] % 2 or f.shape[1] % 2:
            f = np.pad(f, ((0, f.shape[0] % 2), (0, f.shape[1] % 2), (0, 0)), mode="edge")
        yield np.ascontiguousarray(f)


def _write_pyav(tmp: Path, frames: Iterator[np.ndarray], rate: Fraction, crf: int) -> int:
    import av  # noqa: PLC0415

    n = 0
    with av.open(str(tmp), "w", format="mp4") as c:
        stream = None
        for f in frames:
            if stream is None:
                stream = c.add_stream("libx264", rate=rate)
                stream.height, stream.width = f.shape[:2]
                stream.pix_fmt = "yuv420p"
                stream.options = {"crf": str(crf)}
            frame = av.VideoFrame.from_ndarray(f, format="rgb24")
            c.mux(stream.encode(frame))
            n += 1
        if stream is not None:
            c.mux(stream.encode(None))
    return n


def _write_frames(frames: Iterator[np.ndarray], open_writer: Callable, write: Callable, close: Callable) -> int:
    """Writes the frames through a writer opened on the first one (`open_writer(frame)`: it knows the
    size then), `write(writer, frame)` each, and `close(writer)` in the end, also on failure.
    Returns the number of frames written."""
    n = 0
    writer = None
    try:
        for f in frames:
            if writer is None:
                writer = open_writer(f)
            write(writer, f)
            n += 1
    finally:
        if writer is not None:
            close(writer)
    return n


def _write_imageio(tmp: Path, frames: Iterator[np.ndarray], rate: Fraction, crf: int) -> int:
    import imageio_ffmpeg  # noqa: PLC0415

    def open_writer(f: np.ndarray):
        writer = imageio_ffmpeg.write_frames(
            str(tmp), (f.shape[1], f.shape[0]), fps=float(rate), codec="libx264",
            pix_fmt_out="yuv420p", macro_block_size=1, output_params=["-crf", str(crf), "-f", "mp4"],
        )
        writer.send(None)
        return writer

    return _write_frames(frames, open_writer, lambda writer, f: writer.send(f), lambda writer: writer.close())


def _write_cv2(tmp: Path, frames: Iterator[np.ndarray], rate: Fraction, crf: int) -> int:
    import cv2  # noqa: PLC0415

    def open_writer(f: np.ndarray):
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), float(rate), (f.shape[1], f.shape[0]))
        if not writer.isOpened():
            writer.release()
            raise ValueError(f"OpenCV cannot write {tmp.name} (no mp4v encoder)")
        return writer

    return _write_frames(frames, open_writer, lambda writer, f: writer.write(np.ascontiguousarray(f[..., ::-1])),
                         lambda writer: writer.release())


def _has_imageio_ffmpeg() -> bool:
    try:
        import imageio_ffmpeg  # noqa: PLC0415

        imageio_ffmpeg.get_ffmpeg_exe()
        return True
    except (ImportError, RuntimeError):
        return False


def _has_pyav_x264() -> bool:
    try:
        import av  # noqa: PLC0415

        return "libx264" in av.codecs_available
    except ImportError:
        return False


def write_video(
    path: str | os.PathLike,
    frames: np.ndarray | Iterable[np.ndarray],
    fps: float,
    *,
    crf: int = 18,
    odd: str = "pad",
    backend: str = "auto",
) -> Path:
    """Writes RGB frames to `path` as an H.264 yuv420p mp4, atomically. Returns the path.

    `crf` is libx264's quality (0 lossless-ish luma .. 51 worst; 18 is visually near-lossless).
    Raises ValueError for bad frames, fps, or an empty clip (nothing is written then).
    """
    path = as_path(path)  # local or gs://
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise ValueError(f"write_video {path}: writes an mp4 video; give a path ending in .mp4")
    if not fps > 0:
        raise ValueError(f"write_video {path}: fps must be > 0, got {fps}")
    if odd not in ("pad", "error"):
        raise ValueError(f"write_video {path}: odd must be 'pad' or 'error', got {odd!r}")
    if backend == "auto":
        backend = "pyav" if _has_pyav_x264() else "imageio" if _has_imageio_ffmpeg() else "cv2"
        if backend == "cv2":
            log.warning("write_video %s: no PyAV with libx264 nor imageio-ffmpeg here; writing MPEG-4 "
                        "part 2 (mp4v) with OpenCV", path)
    writers = {"pyav": _write_pyav, "imageio": _write_imageio, "cv2": _write_cv2}
    if backend not in writers:
        raise ValueError(f"write_video {path}: backend must be 'auto', 'pyav', 'imageio' or 'cv2', got {backend!r}")
    if isinstance(frames, np.ndarray) and (frames.ndim != 4 or frames.shape[0] == 0):
        raise ValueError(f"write_video {path}: frames must be [T>0, H, W, 3], got shape {frames.shape}")
    rate = Fraction(fps).limit_denominator(100_000)
    with atomic_path(path, suffix=".mp4") as tmp:
        n = writers[backend](tmp, _frames_checked(frames, path, odd), rate, int(crf))
        if n == 0:
            raise ValueError(f"write_video {path}: no frames to write")
    return path
