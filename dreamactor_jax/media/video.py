"""Reading videos: decord first, then PyAV, imageio-ffmpeg and OpenCV when decord cannot open a file.

Frames come out as `uint8 [H, W, 3]` RGB, upright (a display rotation in the file, as phone
videos carry, is applied by every backend). `iter_frames` streams (a long video is never held whole);
`read_video` stacks the same frames into `[T, H, W, 3]`.

Sampling rule (one rule for every backend). Source frame `i` is taken to sit at time
`i / src_fps` (the container's average frame rate; frames are counted from the first decoded
video frame, so a video stream that starts late in its container, e.g. after an audio lead-in,
starts at time 0). Without `fps`, the frames read are `start, start + stride, start + 2 stride, ...`.
With `fps`, target frame `k` sits at time `k / fps` after source frame `start` and takes the nearest
source frame, ties going to the later one: `i_k = start + floor(k * src_fps / fps + 1/2)`, computed
exactly with fractions. Raising the rate repeats frames; lowering it skips them.
`num_frames`, when given, is an exact requirement: a clip too short for it is an error.

Truncated files (a cut download whose header still promises the whole video): when decoding ends
more than a few frames before the frame count the container header declares (read with PyAV when
it is installed, else the backend's own count), `iter_frames` raises a ValueError saying so, or,
with `on_truncated=callback`, calls `callback(decoded, declared)` and ends there. A file with a
single frame (a still image) is refused by `check_motion_video`.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

BACKENDS = ("decord", "pyav", "imageio", "cv2")
_CHUNK = 16  # frames decoded per decord call: bounds memory while streaming


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    """What a video holds. `num_frames` comes from the container header: exact for decord, an
    estimate for PyAV and imageio on unusual files (the reader yields what actually decodes)."""

    path: str
    num_frames: int
    fps: float
    height: int
    width: int
    backend: str

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps if self.fps > 0 else 0.0


def _fraction(fps: float | Fraction) -> Fraction:
    return fps if isinstance(fps, Fraction) else Fraction(fps).limit_denominator(100_000)


def iter_indices(
    src_fps: float | Fraction, *, fps: float | None = None, start: int = 0, stride: int = 1
) -> Iterator[int]:
    """The (endless, non-decreasing) source frame indices of the sampling rule in the module doc."""
    if fps is None:
        yield from itertools.count(start, stride)
        return
    ratio = _fraction(src_fps) / _fraction(fps)
    for k in itertools.count():
        yield start + int((k * ratio + Fraction(1, 2)) // 1)


def sample_indices(
    num_src: int,
    src_fps: float | Fraction,
    *,
    fps: float | None = None,
    num_frames: int | None = None,
    start: int = 0,
    stride: int = 1,
) -> list[int]:
    """Source frame indices to read from a clip of `num_src` frames (all that fit, or `num_frames`)."""
    _check_sampling(fps, num_frames, start, stride, what="sampling")
    out = []
    for i in iter_indices(src_fps, fps=fps, start=start, stride=stride):
        if i >= num_src or (num_frames is not None and len(out) == num_frames):
            break
        out.append(i)
    return out


def _check_sampling(fps, num_frames, start, stride, *, what: str) -> None:
    if fps is not None and not fps > 0:
        raise ValueError(f"{what}: fps must be > 0, got {fps}")
    if fps is not None and stride != 1:
        raise ValueError(f"{what}: give fps or stride, not both (stride={stride}, fps={fps})")
    if stride < 1:
        raise ValueError(f"{what}: stride must be >= 1, got {stride}")
    if start < 0:
        raise ValueError(f"{what}: start must be >= 0, got {start}")
    if num_frames is not None and num_frames < 1:
        raise ValueError(f"{what}: num_frames must be >= 1, got {num_frames}")


def check_file(path: str | os.PathLike, what: str = "video") -> Path:
    """The path of an existing, non-empty regular file (a `what`, named in the errors: "video",
    "image"); FileNotFoundError or ValueError otherwise."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{what} file not found: {p}")
    if not p.is_file():
        raise ValueError(f"{what} {p}: not a regular file")
    if p.stat().st_size == 0:
        raise ValueError(f"{what} {p}: file is empty (0 bytes)")
    return p


def _first_line(e: BaseException) -> str:
    msg = str(e).strip().splitlines()
    return (msg[0] if msg else type(e).__name__)[:160]


# ---------------------------------------------------------------------------------------------
# Backends: each `_open_*` returns (VideoInfo, frames) where frames(indices) yields the frames
# at the given non-decreasing indices, stopping at the end of the video. They raise on failure.


def _open_decord(p: Path, num_threads: int):
    import decord  # noqa: PLC0415  (optional: not on every machine)

    vr = decord.VideoReader(str(p), ctx=decord.cpu(0), num_threads=num_threads)
    n = len(vr)
    if n == 0:
        raise ValueError("no video frames")
    # Probe with the batch call the reader uses: decord opens some files (e.g. widths that are
    # not a multiple of 32 on some builds) and only fails when copying frames out.
    h, w = vr.get_batch([0]).asnumpy().shape[1:3]
    vr.seek(0)
    info = VideoInfo(str(p), n, float(vr.get_avg_fps()), int(h), int(w), "decord")

    def frames(indices: Iterator[int]) -> Iterator[np.ndarray]:
        chunk: list[int] = []
        for i in itertools.chain(indices, [None]):
            if i is not None and i < n and len(chunk) < _CHUNK:
                chunk.append(i)
                continue
            if chunk:
                uniq = sorted(set(chunk))
                batch = vr.get_batch(uniq).asnumpy()
                pos = {j: k for k, j in enumerate(uniq)}
                for j in chunk:
                    yield batch[pos[j]].copy()
            if i is None or i >= n:
                return
            chunk = [i]

    return info, frames


def _open_pyav(p: Path, num_threads: int):
    import av  # noqa: PLC0415

    container = av.open(str(p))
    try:
        if not container.streams.video:
            raise ValueError("no video stream")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        if not rate:
            raise ValueError("no frame rate in the container")
        n = stream.frames
        if not n and stream.duration and stream.time_base:
            n = int(round(float(stream.duration * stream.time_base * rate)))
        # Probe one frame: it must decode, and it carries the display rotation (phone videos),
        # which decord and ffmpeg apply by themselves and PyAV leaves to us.
        first = next(container.decode(stream), None)
        if first is None:
            raise ValueError("no video frames")
        turns = (int(getattr(first, "rotation", 0) or 0) % 360) // 90
        h, w = (first.width, first.height) if turns % 2 else (first.height, first.width)
        info = VideoInfo(str(p), int(n), float(rate), int(h), int(w), "pyav")
    finally:
        container.close()

    def frames(indices: Iterator[int]) -> Iterator[np.ndarray]:
        with av.open(str(p)) as c:
            s = c.streams.video[0]
            s.thread_type = "AUTO"
            if num_threads:
                s.codec_context.thread_count = num_threads
            want = next(indices)
            for i, frame in enumerate(c.decode(s)):
                if i < want:
                    continue  # decoded (needed as a reference) but never converted to RGB
                rgb = np.rot90(frame.to_ndarray(format="rgb24"), turns)
                while want == i:
                    yield np.ascontiguousarray(rgb)
                    want = next(indices)

    return info, frames


def _open_imageio(p: Path, num_threads: int):
    import imageio_ffmpeg  # noqa: PLC0415

    def reader():
        # passthrough: never duplicate frames to fill a late-starting stream (ffmpeg's cfr default)
        return imageio_ffmpeg.read_frames(
            str(p), pix_fmt="rgb24", output_params=["-fps_mode", "passthrough"]
        )

    gen = reader()
    try:
        meta = next(gen)
    finally:
        gen.close()
    w, h = meta["size"]
    fps = float(meta.get("fps") or 0)
    if fps <= 0:
        raise ValueError("no frame rate in the container")
    n = int(round(float(meta.get("duration") or 0) * fps))
    info = VideoInfo(str(p), n, fps, int(h), int(w), "imageio")

    def frames(indices: Iterator[int]) -> Iterator[np.ndarray]:
        g = reader()
        try:
            next(g)
            want = next(indices)
            for i, buf in enumerate(g):
                if i < want:
                    continue
                rgb = np.frombuffer(buf, np.uint8).reshape(h, w, 3)
                while want == i:
                    yield rgb.copy()
                    want = next(indices)
        finally:
            g.close()

    return info, frames


def _open_cv2(p: Path, num_threads: int):
    import cv2  # noqa: PLC0415  (opencv-python(-headless): on machines without PyAV / ffmpeg)

    def capture():
        cap = cv2.VideoCapture(str(p))
        if not cap.isOpened():
            raise ValueError("OpenCV cannot open it")
        return cap

    cap = capture()
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0)
        if fps <= 0:
            raise ValueError("no frame rate in the container")
        ok, first = cap.read()
        if not ok:
            raise ValueError("no video frames")
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        info = VideoInfo(str(p), n, fps, int(first.shape[0]), int(first.shape[1]), "cv2")
    finally:
        cap.release()

    def frames(indices: Iterator[int]) -> Iterator[np.ndarray]:
        c = capture()
        try:
            want = next(indices)
            i = 0
            while True:
                ok = c.grab()  # decode only; converted to RGB only when wanted
                if not ok:
                    return
                if i == want:
                    ok, bgr = c.retrieve()
                    if not ok:
                        return
                    rgb = np.ascontiguousarray(bgr[..., ::-1])
                    while want == i:
                        yield rgb.copy()
                        want = next(indices)
                i += 1
        finally:
            c.release()

    return info, frames


_OPENERS = {"decord": _open_decord, "pyav": _open_pyav, "imageio": _open_imageio, "cv2": _open_cv2}


def declared_frames(path: str | os.PathLike, fallback: int = 0) -> int:
    """The frame count the container header declares (PyAV, without decoding), else `fallback`.

    decord counts the frames it can index, which for a truncated file is what survived; the header
    still says what the file was meant to hold, so the two together reveal a cut file.
    """
    try:
        import av  # noqa: PLC0415
    except ImportError:
        return fallback
    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                return fallback
            s = c.streams.video[0]
            n = int(s.frames or 0)
            if not n and s.duration and s.time_base and (s.average_rate or s.guessed_rate):
                n = int(round(float(s.duration * s.time_base * (s.average_rate or s.guessed_rate))))
            return n or fallback
    except Exception:  # noqa: BLE001  (an unreadable header: the backends report that themselves)
        return fallback


def _open(path, backend: str, num_threads: int):
    p = check_file(path)
    if backend == "auto":
        order = BACKENDS
    elif backend in BACKENDS:
        order = (backend,)
    else:
        raise ValueError(f"backend must be 'auto' or one of {BACKENDS}, got {backend!r}")
    errors = []
    for name in order:
        try:
            return _OPENERS[name](p, num_threads)
        except Exception as e:  # noqa: BLE001  (each backend fails in its own way; we report all)
            errors.append(f"{name}: {_first_line(e)}")
    raise ValueError(f"cannot read video {p} ({'; '.join(errors)})")


def video_info(path: str | os.PathLike, *, backend: str = "auto") -> VideoInfo:
    """Frame count, frame rate and size of a video, through the first backend that opens it."""
    return _open(path, backend, 0)[0]


def iter_frames(
    path: str | os.PathLike,
    *,
    fps: float | None = None,
    num_frames: int | None = None,
    start: int = 0,
    stride: int = 1,
    min_frames: int = 1,
    backend: str = "auto",
    num_threads: int = 0,
    on_truncated: Callable[[int, int], None] | None = None,
) -> Iterator[np.ndarray]:
    """Streams `uint8 [H, W, 3]` RGB frames sampled by the module's rule; never loads the whole video.

    Raises ValueError naming the file when it cannot be read, when it is truncated (see the module
    doc; `on_truncated(decoded, declared)` instead reports it and keeps what decoded), or when it
    yields fewer than `num_frames` (if given) or `min_frames` frames; FileNotFoundError when it
    does not exist.
    """
    _check_sampling(fps, num_frames, start, stride, what=f"video {path}")
    info, frames = _open(path, backend, num_threads)
    src_fps = Fraction(info.fps).limit_denominator(100_000)
    indices = iter_indices(src_fps, fps=fps, start=start, stride=stride)
    count = 0
    try:
        for frame in frames(indices):
            yield frame
            count += 1
            if num_frames is not None and count == num_frames:
                return
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"video {path}: decoding failed after {count} frames ({info.backend}: "
                         f"{_first_line(e)}); truncated or corrupt file?") from e
    # The stream ended: was the next wanted frame one the header promised? (a cut file)
    missing_at = next(itertools.islice(iter_indices(src_fps, fps=fps, start=start, stride=stride), count, None))
    declared = declared_frames(path, info.num_frames)
    if declared - missing_at > max(2, declared // 50):
        if on_truncated is None:
            raise ValueError(f"video {path}: truncated: decoding stops at frame {missing_at} of the "
                             f"{declared} its header declares (re-download or re-encode it)")
        on_truncated(missing_at, declared)
    need = num_frames if num_frames is not None else min_frames
    if count < need:
        rate = f" at {fps} fps" if fps is not None else ""
        raise ValueError(
            f"video {path}: got {count} frame(s){rate} from start={start}, need {need} "
            f"(the video has ~{info.num_frames} frames at {info.fps:g} fps)"
        )


def read_video(
    path: str | os.PathLike,
    *,
    fps: float | None = None,
    num_frames: int | None = None,
    start: int = 0,
    stride: int = 1,
    min_frames: int = 1,
    backend: str = "auto",
    num_threads: int = 0,
    on_truncated: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """The frames of `iter_frames` stacked into `uint8 [T, H, W, 3]`. Use `iter_frames` for long videos."""
    frames = list(
        iter_frames(
            path, fps=fps, num_frames=num_frames, start=start, stride=stride,
            min_frames=min_frames, backend=backend, num_threads=num_threads, on_truncated=on_truncated,
        )
    )
    return np.stack(frames)
