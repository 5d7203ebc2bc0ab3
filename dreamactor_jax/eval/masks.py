"""Where the subject is in each frame: person segmentation, or motion against a median background.

Background stability, subject colour drift and the offline scorer need to split every frame into
subject and background. Two sources, both offline:
- `mediapipe`: MediaPipe's selfie segmentation (its model ships in the mediapipe wheel), which
  finds people, including most drawn humanoid characters;
- `motion`: pixels that differ from the per-pixel median of the clip by more than `MOTION_THRESH`
  (max over RGB, median-filtered 3x3), cleaned by a morphological opening. Finds anything that moves over a still
  background (animals, objects), nothing that stands still, and everything when the camera moves.
`auto` uses the segmentation and falls back to the motion mask on frames where it finds
(almost) nobody, or everywhere when mediapipe is not installed.
"""

from __future__ import annotations

import threading
from typing import Callable

import numpy as np
from scipy import ndimage

MOTION_THRESH = 25        # uint8 levels
MIN_AREA = 0.005          # a mask smaller than this share of the frame counts as "nobody"
SEGMENTERS = ("auto", "mediapipe", "motion")

Segmenter = Callable[[np.ndarray], np.ndarray]  # uint8 [H, W, 3] -> float [H, W] in [0, 1]


class MediaPipeSegmenter:
    """MediaPipe 0.10.14 selfie segmentation (general model, bundled): person probability per pixel."""

    def __init__(self):
        try:
            import mediapipe as mp
        except ImportError:
            raise ValueError("the mediapipe segmenter needs mediapipe==0.10.14: pip install "
                             "'dreamactor-jax[pose]' (or use --segmenter motion)") from None
        self._seg = mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0)
        self._lock = threading.Lock()  # one MediaPipe graph: callers in several threads take turns

    def __call__(self, image: np.ndarray) -> np.ndarray:
        with self._lock:
            res = self._seg.process(np.ascontiguousarray(image))
        m = res.segmentation_mask
        return np.zeros(image.shape[:2], np.float32) if m is None else np.asarray(m, np.float32)


def make_segmenter(kind: str = "auto") -> Segmenter | None:
    """The segmenter of `kind`; None means motion masks only."""
    if kind not in SEGMENTERS:
        raise ValueError(f"segmenter must be one of {'/'.join(SEGMENTERS)}, got {kind!r}")
    if kind == "motion":
        return None
    try:
        return MediaPipeSegmenter()
    except ValueError:
        if kind == "mediapipe":
            raise
        return None


def motion_masks(frames: np.ndarray, thresh: int = MOTION_THRESH) -> np.ndarray:
    """bool [T, H, W]: pixels away from the clip's per-pixel median (the still background); the
    difference map is median-filtered (3x3) so isolated noisy pixels are not taken for motion."""
    med = np.median(frames, axis=0).astype(np.int16)
    out = np.empty(frames.shape[:3], bool)
    for t, f in enumerate(frames):
        m = ndimage.median_filter(np.abs(f.astype(np.int16) - med).max(-1), size=3) > thresh
        out[t] = ndimage.binary_opening(m, iterations=1)
    return out


def subject_masks(frames: np.ndarray, segmenter: Segmenter | None = None) -> tuple[np.ndarray, dict]:
    """(bool [T, H, W] subject masks, {"source": ..., "found": share of frames with a subject})."""
    t, h, w = frames.shape[:3]
    motion = None
    out = np.zeros((t, h, w), bool)
    seg_frames = 0
    for i, f in enumerate(frames):
        m = None
        if segmenter is not None:
            p = np.asarray(segmenter(f), np.float32)
            if p.shape != (h, w):
                raise ValueError(f"segmenter returned a mask of shape {p.shape} for a frame of {(h, w)}")
            m = p > 0.5
            if m.mean() < MIN_AREA:
                m = None
            else:
                seg_frames += 1
        if m is None:
            if motion is None:
                motion = motion_masks(frames)
            m = motion[i]
        out[i] = m
    found = float((out.reshape(t, -1).mean(1) >= MIN_AREA).mean())
    source = "segmentation" if seg_frames == t else "motion" if seg_frames == 0 else "segmentation+motion"
    return out, {"source": source, "found": found}


def dilate(masks: np.ndarray, frac: float = 0.02) -> np.ndarray:
    """Masks ([H, W] or [T, H, W]) grown by `frac` of the frame's longer side (a diamond of that
    radius: a margin around the subject's edges)."""
    r = max(1, int(round(frac * max(masks.shape[-2:]))))
    st = ndimage.generate_binary_structure(2, 1)
    if masks.ndim == 3:
        st = st[None]  # no growth across time
    return ndimage.binary_dilation(masks, st, iterations=r)
