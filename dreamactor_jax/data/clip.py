"""One training clip from one input video: the frames, the motion signal D, the latents (Eq. 2).

What `tools/preprocess.py` runs per planned clip (`data.preprocess.run` plans and writes them):

    frames  the clip at the target fps, streamed; each frame resized/cropped to the panel (V) and,
            for poses, also kept whole (downscaled to `pose.extract.DETECT_MAX_SIDE`)
    D       pose variant: keypoints of the whole frames (the estimator, or the row's keypoints
            file), mapped into the panel (`pose.extract.fit_clip`), augmented (sec. 3.3), rendered;
            e2e variant: the row's driving clip, same window, resized to the panel
    latents canvas `ref (+) D[0], 0 (+) D[t]` and target `V (+) D` through the VAE, the mask
            (`cfg.layout` "temporal": canvas `[ref; D]`, target `[ref; V]`, `incontext`'s Table 2 A)

An input that cannot be used raises `Skip` with the reason (reported by the run, never fatal).
"""

from __future__ import annotations

import zlib
from typing import Callable

import numpy as np

from dreamactor_jax import incontext


class Skip(Exception):
    """An input that cannot be used; the message is the reason (reported, not fatal)."""


def _pixels(frames: np.ndarray) -> np.ndarray:
    return frames.astype(np.float32) / 127.5 - 1.0


def read_clip(path, panel: tuple[int, int], fps: float, start: int, length: int,
              keep_whole: bool) -> tuple[np.ndarray, list[np.ndarray]]:
    """(V uint8 [T, H, W, 3] in the panel, the whole frames for pose estimation or [])."""
    from dreamactor_jax import media
    from dreamactor_jax.pose.extract import detection_frame

    v, whole = [], []
    try:
        for f in media.iter_frames(path, fps=fps, start=start, num_frames=length):
            v.append(media.resize_to(f, *panel, mode="crop"))
            if keep_whole:
                whole.append(detection_frame(f))
    except ValueError as e:
        if "truncated" in str(e):
            raise Skip("truncated video (decodes fewer frames than its header declares)") from e
        raise Skip(f"too short or unreadable at {fps:g} fps") from e
    return np.stack(v), whole


def keypoints_clip(item, info, start_src: int, length: int, fps: float):
    """The clip's poses from the row's keypoints file (`tools/extract_pose.py --json` of the video)."""
    from dreamactor_jax import media
    from dreamactor_jax.pose.keypoints import PoseClip

    try:
        kp = PoseClip.load(item.pose)
    except (ValueError, FileNotFoundError) as e:
        raise Skip("unreadable keypoints file") from e
    if abs(kp.width / kp.height - info.width / info.height) > 0.02 * info.width / info.height:
        raise Skip("keypoints file measured on frames of another shape than the video")
    rate = kp.fps or info.fps
    start = int(round(start_src / info.fps * rate))
    idx = media.sample_indices(len(kp), rate, fps=fps, start=start, num_frames=length)
    if len(idx) < length:
        raise Skip("keypoints file shorter than the clip")
    return PoseClip([kp.frames[i] for i in idx], kp.width, kp.height, fps)


def motion_frames(item, whole: list[np.ndarray], panel: tuple[int, int], cfg, info, start_src: int,
                  length: int, estimator: Callable | None, rng: np.random.Generator) -> np.ndarray:
    """The driving signal D (uint8 [T, H, W, 3]): rendered (augmented) poses, or the driving clip."""
    from dreamactor_jax import media

    if cfg.variant == "e2e":
        try:
            d = media.read_video(item.driving, fps=cfg.fps, start=start_src, num_frames=length)
        except ValueError as e:
            raise Skip("driving video too short or unreadable") from e
        return media.resize_to(d, *panel, mode="crop")
    from dreamactor_jax.pose.augment import augment_clip
    from dreamactor_jax.pose.extract import extract_clip, fit_clip
    from dreamactor_jax.pose.render import render_clip

    if item.pose is not None:
        clip = keypoints_clip(item, info, start_src, length, cfg.fps)
    elif estimator is None:
        raise ValueError("pose variant: a pose estimator is required (--pose_estimator), or keypoints "
                         "files in the manifest ('pose')")
    else:
        clip, _ = extract_clip(whole, estimator, fps=cfg.fps)
    if clip.num_empty == len(clip):
        raise Skip("no person detected")
    clip = fit_clip(clip, *panel, mode="crop")
    if cfg.pose_augmentation:
        clip, _ = augment_clip(clip, rng)
    return render_clip(clip, *panel)


def make_example(item, start: int, length: int, cfg, encode: Callable, text,
                 estimator: Callable | None = None, image_tokens: Callable | None = None) -> tuple[dict, dict, bool]:
    """(arrays, meta, has_caption) of one clip; `encode(pixels [1, T, H, W, 3]) -> latents [1, T', H', W', C]`.

    `cfg` is a `PreprocessConfig`, `text` a `TextTable`; `image_tokens(uint8 [H, W, 3]) -> [M, D]`
    (HunyuanVideo-1.5, `text.hv15.image_token_fn`) gives the record's `image_embeds` of the reference frame.
    """
    from dreamactor_jax import media

    try:
        info = media.video_info(item.video)
    except (ValueError, OSError) as e:
        raise Skip("unreadable video") from e
    panel = cfg.panel(info.height, info.width)
    start_src = int(round(start * info.fps / cfg.fps))
    need_whole = cfg.variant == "pose" and item.pose is None
    v, whole = read_clip(item.video, panel, cfg.fps, start_src, length, need_whole)
    rng = np.random.default_rng([cfg.seed, zlib.crc32(f"{item.id}#{start}".encode())])
    d = motion_frames(item, whole, panel, cfg, info, start_src, length, estimator, rng)
    del whole
    if item.reference is not None:
        try:
            ref = media.resize_to(media.read_image(item.reference), *panel, mode="crop")
        except (ValueError, OSError) as e:
            raise Skip("unreadable or empty reference image") from e
        v = v.copy()
        v[0] = ref  # the reference is the target's frame 0 (self-supervised pairing)
    layout = cfg.layout
    canvas = incontext.make_canvas(_pixels(v[0]), _pixels(d), layout, fill=-1.0)
    target = incontext.make_target(_pixels(v), _pixels(d), layout)  # temporal: [V[0] (the reference); V]
    z_canvas = np.asarray(incontext.encode_canvas(encode, canvas[None], layout, zero_unmasked=True))[0]
    z_target = np.asarray(incontext.encode_canvas(encode, target[None], layout, zero_unmasked=False))[0]
    mask = np.asarray(incontext.canvas_mask(z_target.shape[:3], layout))
    txt, has_caption = text.get(item.id)
    arrays = {"target": z_target.astype(np.float32), "canvas": z_canvas.astype(np.float32),
              "mask": mask.astype(np.float32), **txt}
    if image_tokens is not None:
        arrays["image_embeds"] = np.asarray(image_tokens(v[0]), np.float32)
    meta = {"clip_id": f"{item.id}#{start}+{length}", "video_id": item.id, "source": str(item.video),
            "driving": None if item.driving is None else str(item.driving), "layout": layout, "start": start,
            "num_frames": length, "fps": cfg.fps, "height": panel[0], "width": panel[1],
            "variant": cfg.variant, "pose_augmented": cfg.variant == "pose" and cfg.pose_augmentation,
            "pose_source": None if cfg.variant != "pose" else ("keypoints file" if item.pose else "estimator"),
            "text": "caption" if has_caption else ("null" if text.path else "zero")}
    crossed = (info.height > info.width) != (panel[0] > panel[1]) and info.height != info.width \
        and panel[0] != panel[1]
    return arrays, {**meta, "crossed_orientation": bool(crossed)}, has_caption
