"""Sampling inputs at the media boundary: the reference image, the motion signal, the output size.

Everything here is numpy `uint8 [.., H, W, 3]`, resized to one panel of the canvas (`height x
width`, multiples of 16) with the same aspect rule training used (`media.resize_to`, `fit` =
crop or pad). Three motion signals (the CLI's modes):

- `read_motion(..., estimator=est)` then `pose_from_clip`: a raw driving video -> keypoints (any
  estimator; DWPose finds every person, MediaPipe one), estimated on the whole source frames (as
  `tools/preprocess.py` does for training) and mapped into the panel -> optional retargeting to the
  reference's bone lengths -> OpenPose-style rendering at the panel size. A video where nobody is
  found is an error naming it.
- `read_motion(path, ...)`: an already rendered skeleton video (e.g. `*_kps.mp4`), or the raw
  frames (end-to-end checkpoints), resized.
A still image, or a one-frame file, is refused as a motion video; a truncated file is read up to
where it breaks, with a warning. `motion_fit` picks `pad` for a driving video whose orientation
differs from the panel's (unless `--fit` says otherwise), so its person is not cropped away.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Callable

import numpy as np

from dreamactor_jax import media

MULTIPLE = 16          # 8x VAE, then 2x2 patches
MIN_SIDE = 32          # two patches: below this the VAE/RoPE grid degenerates
DEFAULT_AREA = 480 * 832  # one panel at the paper's 480p training size


def choose_size(ref_h: int, ref_w: int, height: int | None = None, width: int | None = None,
                area: int = DEFAULT_AREA) -> tuple[int, int]:
    """The panel size: given sides are checked; missing ones follow the reference's aspect ratio.

    With neither side given, the panel has about `area` pixels and the reference's aspect ratio;
    sides are rounded to multiples of 16.
    """
    for name, v in (("--height", height), ("--width", width)):
        if v is not None and (int(v) != v or v < MIN_SIDE or v % MULTIPLE):
            raise ValueError(f"{name} {v}: the model takes multiples of {MULTIPLE} of at least {MIN_SIDE} "
                             f"pixels (8x VAE, then 2x2 patches)")
    aspect = ref_w / ref_h
    rnd = lambda x: max(MIN_SIDE, int(round(x / MULTIPLE)) * MULTIPLE)
    if height is None and width is None:
        height = rnd(math.sqrt(area / aspect))
        width = rnd(height * aspect)
    elif height is None:
        height = rnd(width / aspect)
    elif width is None:
        width = rnd(height * aspect)
    return int(height), int(width)


def read_reference(path: str | Path) -> np.ndarray:
    """The reference image as uint8 [H, W, 3] (FileNotFoundError / ValueError name the file; a fully
    transparent image is refused)."""
    return media.read_image(path)


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")


def _warn(msg: str) -> None:
    print(f"warning: {msg}", file=sys.stderr)


def motion_fit(src_h: int, src_w: int, height: int, width: int, fit: str | None, what: str) -> str:
    """`fit` if given; else crop, or pad (with a warning) when the driving video and the panel differ in
    orientation: a portrait dancer centre-cropped into a landscape panel loses head and feet."""
    if fit is not None:
        return fit
    if src_h != src_w and height != width and (src_h > src_w) != (height > width):
        _warn(f"{what} is {'portrait' if src_h > src_w else 'landscape'} ({src_w}x{src_h}), the panel "
              f"{height}x{width} is not: its frames are padded into the panel (--fit pad); pass --fit crop "
              "to crop them, or --height/--width for another panel")
        return "pad"
    return "crop"


def motion_info(path: str | Path, what: str = "--driving"):
    """The driving file's `VideoInfo`, or a one-line error: missing, a still image, unreadable, one frame."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{what} {p}: no such file")
    if p.suffix.lower() in IMAGE_SUFFIXES:
        raise ValueError(f"{what} {p}: a still image, not a video (the motion comes from a video; the "
                         "character image goes to --ref)")
    try:
        info = media.video_info(p)
    except ValueError as e:
        raise ValueError(f"{what} {p}: not a readable video ({e})") from None
    if info.num_frames == 1:
        raise ValueError(f"{what} {p}: holds one frame (a still image?); the motion needs a video")
    return info


def read_motion(path: str | Path, height: int, width: int, *, fps: float | None = None,
                max_frames: int | None = None, fit: str | None = "crop", what: str = "--driving",
                estimator: Callable | None = None):
    """Frames of a video resized to the panel: (uint8 [N, height, width, 3], the fps they are at, the
    fit used, and with `estimator` the PoseClip of the whole source frames mapped into the panel)."""
    from dreamactor_jax.pose.extract import detection_frame, fit_pose
    from dreamactor_jax.pose.keypoints import PoseClip

    p = Path(path)
    info = motion_info(p, what)
    rate = float(fps or info.fps)
    if not rate > 0:
        raise ValueError(f"{what} {p}: unknown frame rate; pass --fps")
    fit = motion_fit(info.height, info.width, height, width, fit, f"{what} {p.name}")
    frames, poses = [], []

    def truncated(got: int, declared: int) -> None:
        _warn(f"{what} {p}: truncated: decoding stops at frame {got} of the {declared} its header declares; "
              f"using what decoded")
    try:
        for f in media.iter_frames(p, fps=fps, on_truncated=truncated):
            frames.append(media.resize_to(f, height, width, mode=fit))
            if estimator is not None:
                pose = estimator(detection_frame(f))
                poses.append(fit_pose(pose, f.shape[0], f.shape[1], height, width, fit))
            if max_frames is not None and len(frames) >= max_frames:
                break
    except ValueError as e:
        raise ValueError(f"{what} {p}: {str(e).splitlines()[0]}") from None
    if not frames:
        raise ValueError(f"{what} {p}: no frames could be read")
    if len(frames) == 1 and (max_frames is None or max_frames > 1):
        raise ValueError(f"{what} {p}: only one frame could be read; the motion needs a video")
    clip = PoseClip(poses, width, height, rate) if estimator is not None else None
    return np.stack(frames), rate, fit, clip


def make_pose_estimator(kind: str = "mediapipe", *, det_model: str | None = None, pose_model: str | None = None,
                        video: bool = True) -> Callable:
    """The pose estimator, with a clear error when its package or models are missing."""
    from dreamactor_jax.pose.extract import make_estimator

    try:
        return make_estimator(kind, det_model=det_model, pose_model=pose_model, video=video)
    except ImportError as e:
        raise ValueError(f"pose estimator {kind}: not available ({e}); install mediapipe "
                         "(pip install 'dreamactor-jax[pose]'), or use --pose-estimator dwpose with "
                         "--det-model/--pose-model, or pass an already rendered skeleton video with --pose") from None


def pose_from_clip(clip, *, what: str = "--driving", reference: np.ndarray | None = None,
                   ref_estimator: Callable | None = None) -> tuple[np.ndarray, dict]:
    """Rendered pose video (uint8 [N, clip.height, clip.width, 3]) and stats from a PoseClip in panel
    coordinates (`read_motion(..., estimator=)`); retargeted if `reference` is given.

    Every person found is drawn (several people drive several characters). `reference` (uint8, the
    panel size) gives the bone lengths to retarget to, estimated with `ref_estimator`.
    """
    from dreamactor_jax.pose.render import render_clip

    n, empty = len(clip), clip.num_empty
    if empty == n:
        raise ValueError(f"{what}: no person found in any of its {n} frames (pose mode needs a visible "
                         "person; a skeleton video goes to --pose, a non-human motion to an end-to-end "
                         "checkpoint)")
    stats = {"frames": n, "empty": empty, "people": max(f.num_people for f in clip.frames), "retargeted": False}
    if reference is not None:
        from dreamactor_jax.pose.retarget import retarget_clip

        from dreamactor_jax.pose.extract import detection_frame

        ref_pose = ref_estimator(detection_frame(reference))
        if ref_pose.num_people == 0:
            raise ValueError("--retarget: no person found on the reference image; drop --retarget")
        clip, _ = retarget_clip(clip, ref_pose, reference.shape[1], reference.shape[0])
        stats["retargeted"] = True
    return render_clip(clip, clip.height, clip.width), stats


def check_pose_video(frames: np.ndarray, what: str = "--pose") -> None:
    """Warns (stderr) when a video given as rendered skeletons does not look like one."""
    from dreamactor_jax.pose.extract import looks_like_pose_video

    if not looks_like_pose_video(frames):
        print(f"warning: {what} does not look like a rendered skeleton video (mostly black with coloured "
              "limbs); a raw video goes to --driving", file=sys.stderr)


def side_by_side(panels: list[np.ndarray]) -> np.ndarray:
    """Panels [N, H, W_i, 3] (or a still [H, W, 3], repeated) joined along the width."""
    n = max(p.shape[0] for p in panels if p.ndim == 4)
    out = [np.broadcast_to(p, (n,) + p.shape) if p.ndim == 3 else p[:n] for p in panels]
    return np.concatenate(out, axis=2)
