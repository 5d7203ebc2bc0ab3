"""One case of a bench: a generated video scored against its driving video and reference.

`Evaluator.evaluate(pair, video)` returns the case's record (what `result.json` holds):

    {"pair": id, "tags": {...}, "video": path, "video_sha256": ..., "frames": T, "fps": f,
     "status": "ok" | "skipped", "skip": {"stage": ..., "reason": ...} (when skipped),
     "score": VideoScore.to_json() | None, "metrics": {group: {...}}, "metric_skips": {group: reason},
     "flags": ["drift", ...], "signature": ...}

Everything that can go wrong with one case's inputs (missing reference, unreadable video, nobody
found, the judge's answer never valid JSON) is recorded as a skip with its reason, for the
report to count; nothing of it stops the run, nothing becomes a silent zero. Metric groups:
`temporal` (flicker, smoothness), `background`, `drift`, `seams` (own long videos), `motion`
(pose-based fidelity), `shape` (body proportions), `fidelity` (PSNR / SSIM with a ground truth),
`dino`, `clip` (with local weights). Poses of drivings and references are cached under
`out/poses/` (several pairs share them).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Callable

import numpy as np

from dreamactor_jax.eval import masks as masks_lib
from dreamactor_jax.eval import temporal
from dreamactor_jax.eval.frames import read_frames, shrink
from dreamactor_jax.eval.manifest import Bench, Pair
from dreamactor_jax.eval.videobench import ScoreError, Scorer

log = logging.getLogger(__name__)
METRICS_VERSION = "metrics-v1"


@dataclasses.dataclass(frozen=True)
class MetricOptions:
    estimator: str = "mediapipe"          # pose estimator for motion / shape ("mediapipe", "dwpose", "none")
    det_model: str | None = None
    pose_model: str | None = None
    segmenter: str = "auto"               # subject masks: auto / mediapipe / motion
    analysis_side: int = 512              # frames shrunk to this longer side for the metrics
    fit: str | None = None                # how the sampler fitted the driving to the panel (ground truth);
                                          # None: its default (crop; pad a video of the other orientation)
    segment_frames: int | None = None     # seams of long videos made by the sampler
    overlap: int | None = None
    dino: str | None = None
    clip: str | None = None
    device: str = "cpu"

    def signature(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def resample(clip, fps: float, n: int):
    """A PoseClip re-timed to `fps` by the media sampling rule (nearest source frame, ties later)."""
    from dreamactor_jax.pose import PoseClip

    if not clip.fps or not fps or abs(clip.fps - fps) < 1e-6:
        return PoseClip(clip.frames[:n], clip.width, clip.height, clip.fps)
    idx = [int(np.floor(k * clip.fps / fps + 0.5)) for k in range(n)]
    idx = [i for i in idx if i < len(clip)]
    return PoseClip([clip.frames[i] for i in idx], clip.width, clip.height, fps)


class Evaluator:
    """Scores cases of `bench`; `estimator_factory(video: bool)` and `segmenter` can be injected."""

    def __init__(self, bench: Bench, out: str | os.PathLike, scorer: Scorer, opts: MetricOptions = MetricOptions(),
                 *, estimator_factory: Callable | None = None, segmenter=None):
        self.bench, self.out, self.scorer, self.opts = bench, Path(out), scorer, opts
        self.segmenter = segmenter if segmenter is not None else masks_lib.make_segmenter(opts.segmenter)
        self._factory = estimator_factory
        self._encoders: dict = {}

    # ------------------------------------------------------------------ helpers
    def signature(self, video_sha: str) -> str:
        return f"{video_sha}|{self.scorer.name}|{METRICS_VERSION}|{self.opts.signature()}"

    def _estimator(self, video: bool):
        if self._factory is not None:
            return self._factory(video)
        if self.opts.estimator == "none":
            raise ValueError("pose metrics are off (--pose-estimator none)")
        from dreamactor_jax.sampling.inputs import make_pose_estimator

        return make_pose_estimator(self.opts.estimator, det_model=self.opts.det_model,
                                   pose_model=self.opts.pose_model, video=video)

    def _poses(self, frames: np.ndarray, fps: float, video: bool = True):
        from dreamactor_jax.pose import extract_clip

        clip, _ = extract_clip(frames, self._estimator(video), fps=fps)
        return clip

    def _cached_clip(self, name: str, make):
        from dreamactor_jax.pose import PoseClip

        path = self.out / "poses" / f"{name}.json"
        if path.is_file():
            try:
                return PoseClip.load(path)
            except (ValueError, FileNotFoundError):
                pass
        clip = make()
        clip.save(path)
        return clip

    def driving_poses(self, pair: Pair, fps: float, n: int):
        d = self.bench.drivings[pair.driving]
        if d.keypoints is not None:
            from dreamactor_jax.pose import PoseClip

            return resample(PoseClip.load(d.keypoints), fps, n)
        if d.path is None:
            raise ValueError(f"driving {d.id} has only a rendered skeleton video; give 'keypoints' (a PoseClip JSON "
                             "from tools/extract_pose.py --json) to measure motion fidelity")
        frames, _ = read_frames(d.path, max_side=self.opts.analysis_side, max_frames=n, fps=fps)
        clip = self._cached_clip(f"driving_{d.id}_{fps:g}fps_{len(frames)}_{self.opts.estimator}",
                                 lambda: self._poses(frames, fps))
        return clip

    def reference_pose(self, pair: Pair, image: np.ndarray):
        from dreamactor_jax.pose import PoseClip

        r = self.bench.references[pair.reference]
        clip = self._cached_clip(f"reference_{r.id}_{self.opts.estimator}",
                                 lambda: PoseClip([self._estimator(False)(image)], image.shape[1], image.shape[0]))
        return clip.frames[0], clip.width, clip.height

    def _encoder(self, kind: str):
        if kind not in self._encoders:
            from dreamactor_jax.eval.features import ImageEncoder

            self._encoders[kind] = ImageEncoder(getattr(self.opts, kind), kind, self.opts.device)
        return self._encoders[kind]

    def _seam_starts(self, n: int) -> list[int]:
        from dreamactor_jax.sampling.long_video import plan_segments

        o = self.opts
        if not o.segment_frames or not o.overlap or n <= o.segment_frames:
            return []
        segs = plan_segments(n, o.segment_frames, o.overlap, equal_lengths=True)
        return [s.start + s.context for s in segs[1:]]

    # ------------------------------------------------------------------ one case
    def evaluate(self, pair: Pair, video: str | os.PathLike) -> dict:
        from dreamactor_jax import media
        from dreamactor_jax.eval.contact import contact_sheet, save_png
        from dreamactor_jax.eval.proxy import reference_colour

        video = Path(video)
        d, r = self.bench.case(pair)
        rec = {"pair": pair.id, "driving": d.id, "reference": r.id, "tags": self.bench.tags(pair),
               "video": str(video), "status": "ok", "score": None, "metrics": {}, "metric_skips": {}, "flags": []}

        def skip(stage: str, reason: str) -> dict:
            rec.update(status="skipped", skip={"stage": stage, "reason": reason})
            return rec
        if not r.path.is_file():
            return skip("input", f"reference {r.id}: missing file {r.path}")
        try:
            ref = media.read_image(r.path)
        except (ValueError, OSError) as e:
            return skip("input", f"reference {r.id}: unreadable ({str(e)[:200]})")
        try:
            frames, fps = read_frames(video, max_side=self.opts.analysis_side)
        except (ValueError, FileNotFoundError) as e:
            return skip("input", str(e)[:300])
        rec.update(video_sha256=sha256_file(video), frames=len(frames), fps=fps)
        rec["signature"] = self.signature(rec["video_sha256"])
        ref_small = shrink(ref, self.opts.analysis_side)
        subject, mask_info = masks_lib.subject_masks(frames, self.segmenter)
        rec["metrics"]["subject_mask"] = mask_info

        def group(name: str, fn) -> None:
            try:
                rec["metrics"][name] = fn()
            except (ValueError, FileNotFoundError) as e:
                rec["metric_skips"][name] = str(e).splitlines()[0][:300]
            except Exception as e:  # noqa: BLE001 - one metric's failure never stops the run
                log.exception("case %s: metric %s failed", pair.id, name)
                rec["metric_skips"][name] = f"failed: {type(e).__name__}: {str(e)[:200]}"

        group("temporal", lambda: {**{f"flicker_{k}": v for k, v in temporal.flicker(frames).items()},
                                   **{f"smooth_{k}": v for k, v in temporal.smoothness(frames).items()}})
        group("background", lambda: temporal.background(frames, masks_lib.dilate(subject)))
        group("drift", lambda: temporal.subject_drift(frames, subject, reference_colour(ref_small, self.segmenter)))
        seams = self._seam_starts(len(frames))
        if seams:
            group("seams", lambda: temporal.seams(frames, subject, seams))
        drv_frames = None
        if d.path is not None and d.path.is_file():
            try:
                drv_frames, _ = read_frames(d.path, max_side=self.opts.analysis_side, max_frames=len(frames), fps=fps)
            except ValueError:
                drv_frames = None
        self._pose_metrics(pair, rec, frames, fps, ref_small, group)
        gt = self.bench.ground_truth(pair)
        if gt is not None:
            group("fidelity", lambda: self._fidelity(video, gt, fps))
        if self.opts.dino:
            from dreamactor_jax.eval.features import dino_metrics

            group("dino", lambda: dino_metrics(self._encoder("dino"), frames))
        if self.opts.clip:
            from dreamactor_jax.eval.features import clip_metrics

            group("clip", lambda: clip_metrics(self._encoder("clip"), frames, ref_small))
        if rec["metrics"].get("drift", {}).get("flagged"):
            rec["flags"].append("drift")
        if rec["metrics"].get("seams", {}).get("subject_color_jump", 0) > 4:
            rec["flags"].append("seam")

        try:
            rec["score"] = self.scorer.score(video, reference=r.path).to_json()
        except ScoreError as e:
            skip("score", f"{e.reason}: {str(e)[:300]}")
        except Exception as e:  # noqa: BLE001 - counted, reported
            log.exception("case %s: scoring failed", pair.id)
            skip("score", f"failed: {type(e).__name__}: {str(e)[:200]}")
        footer = ""
        if rec["score"]:
            s = rec["score"]
            footer = f"{s['scorer']}  mean {s['mean']:.2f}:  " + "  ".join(
                f"{''.join(w[0] for w in k.split('_')).upper()} {v:.1f}" for k, v in s["scores"].items())
        pose = None
        if drv_frames is None and d.pose is not None and d.pose.is_file():
            try:
                pose, _ = read_frames(d.pose, max_side=self.opts.analysis_side, max_frames=len(frames), fps=fps)
            except ValueError:
                pose = None
        sheet = contact_sheet(ref_small, drv_frames if drv_frames is not None else pose, frames, fps,
                              title=f"{pair.id}  ({rec['tags']['pair kind']}, {d.region}, {d.camera} camera)",
                              footer=footer)
        save_png(sheet, self.out / "cases" / pair.id / "contact.png")
        return rec

    def _pose_metrics(self, pair: Pair, rec: dict, frames, fps, ref_small, group) -> None:
        from dreamactor_jax.eval.motion import body_shape, motion_fidelity

        d, r = self.bench.case(pair)
        why = None
        if d.subject != "human":
            why = "non-human driving: the pose estimator does not apply"
        elif r.subject != "human":
            why = "non-human reference: the pose estimator does not apply"
        elif self.opts.estimator == "none" and self._factory is None:
            why = "pose metrics are off (--pose-estimator none)"
        if why:
            rec["metric_skips"]["motion"] = rec["metric_skips"]["shape"] = why
            return
        state = {}

        def generated():
            if "gen" not in state:
                state["gen"] = self._poses(frames, fps)
            return state["gen"]

        def drv():
            if "drv" not in state:
                state["drv"] = self.driving_poses(pair, fps, len(frames))
            return state["drv"]

        group("motion", lambda: motion_fidelity(generated(), drv()))

        def shape():
            ref_pose, w, h = self.reference_pose(pair, ref_small)
            try:
                dclip = drv()
            except ValueError:
                dclip = None
            return body_shape(generated(), ref_pose, w, h, dclip)
        group("shape", shape)

    def _fidelity(self, video: Path, truth, fps: float) -> dict:
        from dreamactor_jax import media
        from dreamactor_jax.eval.fidelity import fidelity

        full, _ = read_frames(video)
        gt, _ = read_frames(truth, fps=fps, max_frames=len(full))
        h, w = full.shape[1:3]
        if gt.shape[1:3] != (h, w):
            fit = self.opts.fit or ("pad" if (gt.shape[2] > gt.shape[1]) != (w > h) else "crop")
            if h % 16 == 0 and w % 16 == 0:
                gt = media.resize_to(gt, h, w, mode=fit)
            else:
                from PIL import Image

                gt = np.stack([np.asarray(Image.fromarray(f).resize((w, h), Image.Resampling.BICUBIC)) for f in gt])
        return fidelity(full, gt)
