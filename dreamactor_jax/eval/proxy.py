"""The offline scorer: the six Video-Bench dimensions approximated from pixel statistics.

A PROXY, not the human-aligned judge: it needs no key, no network and no weights, is
deterministic and fast (frames shrunk to 256 px), and is what the end-to-end pseudo-pair filter
uses without an API key. Each dimension is 1 + 4 x a weighted mean of "ramps": a statistic mapped
linearly from its `bad` value (0) to its `good` value (1), clipped. The statistics are those of
`pixels.py`, `temporal.py` and `masks.py`; the anchors were set by hand so that the real videos of
the shipped example bench score about 4-5 and the same videos corrupted (noise, blur, flicker,
frame shuffles, colour drift) score clearly lower (tests/test_eval_proxy.py checks the order).

| dimension | statistics (bad -> good) |
|---|---|
| imaging_quality | detail: sharpness 0.08 -> 0.3, but no more than the noise allows (x0.5), noise sigma 12 -> 3 (x0.3), clipped share 0.3 -> 0.02 (x0.2) |
| aesthetic_quality | colourfulness 3 -> 35 (x0.4), RMS contrast 0.04 -> 0.18 (x0.4), clipped share 0.3 -> 0.02 (x0.2) |
| temporal_consistency | global luma flicker 3 -> 0.3 (x0.4), VBench flicker MAE 30 -> 4 (x0.3), jump ratio 8 -> 2.5 (x0.3) |
| motion_smoothness | linear-interpolation MAE 20 -> 2 (x0.6), jump ratio 8 -> 2.5 (x0.4) |
| background_consistency | background flicker 12 -> 1.5 (x0.5), background drift to frame 0: 40 -> 6 (x0.5) |
| subject_consistency | subject colour drift between quarters 25 -> 4 (x0.7), distance to the reference's colour 60 -> 10 (x0.3, only with a reference) |

Imaging and aesthetic statistics are taken on Video-Bench's static frames (2 per second); the
temporal ones on every frame. A still video gets full motion smoothness (as in VBench, which
pairs smoothness with a separate dynamic degree). Subject masks: `masks.subject_masks`. When no
subject is found (e.g. a still non-human character, which neither segmentation nor motion finds),
subject statistics are taken over the whole frame, and when the subject mask covers nearly all
of it (heavy noise), background statistics are; the reason says so.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from dreamactor_jax.eval import masks as masks_lib
from dreamactor_jax.eval import pixels, temporal
from dreamactor_jax.eval.frames import read_frames, static_indices
from dreamactor_jax.eval.videobench import ScoreError, VideoScore

VERSION = "offline:v1"
ANALYSIS_SIDE = 256

# dimension -> [(statistic, bad, good, weight)]
MAPPING: dict[str, list[tuple[str, float, float, float]]] = {
    "imaging_quality": [("detail", 0.08, 0.3, 0.5), ("noise_sigma", 12.0, 3.0, 0.3), ("clipped", 0.3, 0.02, 0.2)],
    "aesthetic_quality": [("colourfulness", 3.0, 35.0, 0.4), ("contrast", 0.04, 0.18, 0.4), ("clipped", 0.3, 0.02, 0.2)],
    "temporal_consistency": [("luma_flicker", 3.0, 0.3, 0.4), ("flicker_mae", 30.0, 4.0, 0.3),
                             ("jump_ratio", 8.0, 2.5, 0.3)],
    "motion_smoothness": [("interp_mae", 20.0, 2.0, 0.6), ("jump_ratio", 8.0, 2.5, 0.4)],
    "background_consistency": [("bg_flicker", 12.0, 1.5, 0.5), ("bg_drift", 40.0, 6.0, 0.5)],
    "subject_consistency": [("color_drift", 25.0, 4.0, 0.7), ("ref_color_dist", 60.0, 10.0, 0.3)],
}


def ramp(x: float, bad: float, good: float) -> float:
    return float(np.clip((x - bad) / (good - bad), 0.0, 1.0))


def reference_colour(image: np.ndarray, segmenter=None) -> np.ndarray | None:
    """Mean RGB of the character on a reference image: segmentation, else pixels unlike the border."""
    m = None
    if segmenter is not None:
        m = np.asarray(segmenter(image)) > 0.5
        if m.mean() < masks_lib.MIN_AREA:
            m = None
    if m is None:
        border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]]).astype(np.int16)
        m = np.abs(image.astype(np.int16) - np.median(border, 0)).max(-1) > 40
        if not 0.01 < m.mean() < 0.95:
            return None
    return image[m].astype(np.float64).mean(0)


def analyse(frames: np.ndarray, fps: float, subject: np.ndarray, ref_colour: np.ndarray | None = None) -> dict:
    """Every statistic the mapping uses (see the module docstring), from frames and subject masks."""
    stats = pixels.frame_stats(frames[static_indices(len(frames), fps)])
    # noise raises the sharpness statistic too: detail counts only as far as the noise allows
    stats["detail"] = 0.08 + 0.22 * min(ramp(stats["sharpness"], 0.08, 0.3), ramp(stats["noise_sigma"], 12.0, 3.0))
    if len(frames) >= 3:
        fl, sm = temporal.flicker(frames), temporal.smoothness(frames)
        stats.update(flicker_mae=fl["mae"], interp_mae=sm["interp_mae"], jump_ratio=sm["jump_ratio"],
                     luma_flicker=sm["luma_flicker"])
    grown = masks_lib.dilate(subject)
    try:
        bg = temporal.background(frames, grown)
    except ValueError:  # the "subject" covers the frame (e.g. heavy noise): the whole frame stands in
        bg = temporal.background(frames, np.zeros_like(grown))
        stats["bg_whole_frame"] = True
    stats.update(bg_flicker=bg["flicker"], bg_drift=bg["drift"])
    whole = subject.reshape(len(frames), -1).any(1).sum() < 2
    try:
        dr = temporal.subject_drift(frames, np.ones_like(subject) if whole else subject, ref_colour)
        stats.update(color_drift=dr["color_drift"], color_std=dr["color_std"], drift_flagged=dr["flagged"])
        if "ref_color_dist" in dr:
            stats["ref_color_dist"] = dr["ref_color_dist"]
    except ValueError:
        pass
    stats["subject_whole_frame"] = whole
    return stats


def proxy_scores(stats: dict) -> tuple[dict[str, float], dict[str, str]]:
    """(six scores in [1, 5], reasons) from `analyse`'s statistics; missing ones are left out of
    their dimension's mean (a dimension with none of its statistics is an error)."""
    scores, reasons = {}, {}
    for dim, terms in MAPPING.items():
        num = den = 0.0
        used = []
        for name, bad, good, w in terms:
            v = stats.get(name)
            if v is None or not np.isfinite(v):
                continue
            num += w * ramp(v, bad, good)
            den += w
            used.append(f"{name} {v:.3g}")
        if den == 0:
            raise ScoreError(f"offline scorer: no statistic for {dim} (video too short?)", "input")
        scores[dim] = 1.0 + 4.0 * num / den
        reasons[dim] = "proxy from " + ", ".join(used)
    if stats.get("subject_whole_frame"):
        reasons["subject_consistency"] += " (no subject found: whole frame)"
    if stats.get("bg_whole_frame"):
        reasons["background_consistency"] += " (no background found: whole frame)"
    return scores, reasons


class OfflineScorer:
    """`make_scorer("offline")`: the proxy above. `segmenter`: "auto", "mediapipe", "motion" or a
    callable (uint8 frame -> float mask); `max_side`: analysis size."""

    name = VERSION

    def __init__(self, segmenter="auto", max_side: int = ANALYSIS_SIDE, cache_dir=None, **_ignored):
        self.segmenter = masks_lib.make_segmenter(segmenter) if isinstance(segmenter, str) else segmenter
        self.max_side = max_side

    def score(self, video: str | os.PathLike, *, reference: str | os.PathLike | None = None) -> VideoScore:
        from dreamactor_jax import media
        from dreamactor_jax.eval.frames import shrink

        try:
            frames, fps = read_frames(Path(video), max_side=self.max_side)
        except (ValueError, FileNotFoundError) as e:
            raise ScoreError(str(e), "input") from None
        ref_col = None
        if reference is not None:
            try:
                ref_col = reference_colour(shrink(media.read_image(reference), self.max_side), self.segmenter)
            except (ValueError, FileNotFoundError, OSError) as e:
                raise ScoreError(f"reference {reference}: {e}", "input") from None
        if len(frames) < 3:
            raise ScoreError(f"video {video}: {len(frames)} frame(s), too short for the temporal dimensions (need 3)",
                             "input")
        subject, _ = masks_lib.subject_masks(frames, self.segmenter)
        scores, reasons = proxy_scores(analyse(frames, fps, subject, ref_col))
        return VideoScore(scores, self.name, reasons)
