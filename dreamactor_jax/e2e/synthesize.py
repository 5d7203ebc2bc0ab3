"""Pseudo-pair synthesis (paper sec. 3.4, Eq. 3): `V_o = M_pose(P_src, I_o)` for every planned unit.

Per unit (`plan.py` says which segment and which reference):
    V_src   the source segment: `frames` frames at the model's fps, resized to the panel (crop/pad)
    P_src   its poses through the project's pose pipeline (`pose.extract_clip`, `pose.render_clip`)
    I_o     the reference of another identity, resized to the panel
    V_o     `generate(I_o, P_src)`: the pose model through the sampler (`generator.PoseModel`)
and the unit is written atomically (`units.write_unit`). The run is resumable (complete units are
skipped without opening their video), split across hosts or devices by `shard = (i, n)` (sources
round robin; every host plans the same units), shows a progress bar, and counts skipped units by
reason (unreadable or too short video, no person found, unreadable reference, no reference of
another identity) instead of failing. `OUTPUT/synthesis.json` records the settings and the pose
checkpoint's fingerprint; resuming with other ones is refused, so one output never mixes models.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections import defaultdict
from pathlib import Path
from typing import Callable, Protocol, Sequence

import numpy as np

from dreamactor_jax.e2e import plan as plan_lib
from dreamactor_jax.e2e import units as units_lib
from dreamactor_jax.utils import write_text_atomic

log = logging.getLogger(__name__)
SETTINGS_FILE = "synthesis.json"


@dataclasses.dataclass(frozen=True)
class SynthSettings:
    """What a unit is; the same on every host and every resume of one output folder."""

    frames: int = 121            # segment length at `fps` (paper: 121, about 5 s); 4k + 1
    fps: float = 24.0            # the pose model's training fps
    height: int = 480            # one panel of the canvas
    width: int = 832
    fit: str = "crop"            # how videos and references meet the panel: crop or pad
    seed: int = 0                # plans segments, references and noise seeds
    min_person: float = 0.5      # skip a segment where a person is found in fewer frames than this fraction
    units_per_video: int = 1     # may grow between runs (unit k's plan does not depend on it)

    def __post_init__(self):
        if self.frames < 1 or (self.frames - 1) % 4:
            raise ValueError(f"--frames {self.frames}: must be 4k + 1 (e.g. 49, 121)")
        if not self.fps > 0:
            raise ValueError(f"--fps {self.fps}: must be > 0")
        for name in ("height", "width"):
            v = getattr(self, name)
            if v < 32 or v % 16:
                raise ValueError(f"--{name} {v}: must be a multiple of 16, at least 32")
        if self.fit not in ("crop", "pad"):
            raise ValueError(f"--fit {self.fit!r}: crop or pad")
        if not 0.0 <= self.min_person <= 1.0:
            raise ValueError(f"--min-person {self.min_person}: a fraction in [0, 1]")
        if self.units_per_video < 1:
            raise ValueError(f"--units-per-video {self.units_per_video}: must be >= 1")

    def identity(self) -> dict:
        """The settings a resumed run must share (all but `units_per_video`)."""
        d = dataclasses.asdict(self)
        d.pop("units_per_video")
        return d


class Generator(Protocol):
    """`M_pose`: (I_o uint8 [H, W, 3], P_src uint8 [T, H, W, 3]) -> (V_o uint8 [T, H, W, 3], metadata)."""

    def __call__(self, reference: np.ndarray, pose: np.ndarray, *, seed: int,
                 text_keys: Sequence[str] = ()) -> tuple[np.ndarray, dict]: ...

    def describe(self) -> dict: ...   # the checkpoint's fingerprint and the sampler settings


class Skip(Exception):
    """A unit that cannot be made; the message is the reason (counted and reported, not fatal)."""


class Report:
    """Counts of units written, already done and skipped (by reason), for the closing summary."""

    def __init__(self, shard: tuple[int, int] = (0, 1)):
        self.shard = shard
        self.planned = 0
        self.written = 0
        self.already_done = 0
        self.skipped: dict[str, list[str]] = defaultdict(list)
        self.seconds = 0.0

    def skip(self, reason: str, unit_id: str) -> None:
        self.skipped[reason].append(unit_id)

    @property
    def num_skipped(self) -> int:
        return sum(len(v) for v in self.skipped.values())

    def summary(self) -> str:
        i, n = self.shard
        lines = [f"shard {i}/{n}: {self.planned} units planned, {self.written} written, {self.already_done} "
                 f"already done, {self.num_skipped} skipped ({self.seconds:.0f} s)"]
        for reason, ids in sorted(self.skipped.items()):
            lines.append(f"  {len(ids)} x {reason}: " + ", ".join(ids[:5]) + (" ..." if len(ids) > 5 else ""))
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"shard": list(self.shard), "planned": self.planned, "written": self.written,
                "already_done": self.already_done, "skipped": dict(self.skipped), "seconds": self.seconds}


# ----------------------------------------------------------------------------------------------
# one unit's inputs
# ----------------------------------------------------------------------------------------------


def available_frames(info, fps: float) -> int:
    """How many frames a video yields at `fps` (media's sampling rule)."""
    from dreamactor_jax import media

    return len(media.sample_indices(info.num_frames, info.fps, fps=fps)) if info.fps > 0 else 0


def source_start(info, fps: float, start: int, frames: int) -> int:
    """The source frame index where target frame `start` sits, moved back (by rounding, at most a
    frame or two) until `frames` frames at `fps` fit before the end."""
    from dreamactor_jax import media

    s = media.sample_indices(info.num_frames, info.fps, fps=fps)[start]
    while s > 0 and len(media.sample_indices(info.num_frames, info.fps, fps=fps, start=s, num_frames=frames)) < frames:
        s -= 1
    return s


def read_segment(path: Path, start_src: int, settings: SynthSettings) -> np.ndarray:
    """`frames` frames from source frame `start_src` at the settings' fps, resized to the panel."""
    from dreamactor_jax import media

    s = settings
    try:
        out = [media.resize_to(f, s.height, s.width, mode=s.fit)
               for f in media.iter_frames(path, fps=s.fps, start=start_src, num_frames=s.frames)]
    except (ValueError, OSError) as e:
        raise Skip("unreadable or shorter than its header says") from e
    return np.stack(out)


def read_reference(ref: plan_lib.Reference, settings: SynthSettings) -> np.ndarray:
    from dreamactor_jax import media

    try:
        img = media.read_image(ref.path)
    except (ValueError, OSError) as e:
        raise Skip("unreadable reference image") from e
    return media.resize_to(img, settings.height, settings.width, mode=settings.fit)


def pose_video(frames: np.ndarray, estimator: Callable, settings: SynthSettings) -> tuple[np.ndarray, dict]:
    """P_src rendered at the panel size, and its statistics; Skip when too few frames show a person."""
    from dreamactor_jax.pose.extract import extract_clip
    from dreamactor_jax.pose.render import render_clip

    clip, st = extract_clip(frames, estimator, fps=settings.fps)
    found = st.num_frames - st.num_empty
    if found == 0:
        raise Skip("no person found")
    if found < settings.min_person * st.num_frames:
        raise Skip(f"a person in fewer than {settings.min_person:.0%} of the frames")
    stats = {"frames_with_person": int(found), "frames": int(st.num_frames),
             "max_people": int(max(f.num_people for f in clip.frames))}
    return render_clip(clip, settings.height, settings.width), stats


# ----------------------------------------------------------------------------------------------
# the run
# ----------------------------------------------------------------------------------------------


def check_output(out: Path, settings: SynthSettings, generator: dict) -> None:
    """Records the run's settings in OUTPUT/synthesis.json, or refuses when it holds other ones."""
    want = {"settings": settings.identity(), "generator": generator}
    f = out / SETTINGS_FILE
    if f.is_file():
        try:
            have = json.loads(f.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            have = None
        if not isinstance(have, dict) or not all(isinstance(have.get(k, {}), dict) for k in want):
            raise ValueError(f"--output {out}: {SETTINGS_FILE} is damaged; restore it or use another --output")
        diffs = [f"{k}.{kk}: {have.get(k, {}).get(kk)!r} there vs {want[k].get(kk)!r} now"
                 for k in want for kk in sorted(set(want[k]) | set(have.get(k, {})))
                 if have.get(k, {}).get(kk) != want[k].get(kk)]
        if diffs:
            raise ValueError(f"--output {out}: made with other settings ({'; '.join(diffs[:3])}); use "
                             "another --output, or the same checkpoint and settings to resume")
        return
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(f, json.dumps(want, indent=1, sort_keys=True))


def make_unit(source: plan_lib.Source, k: int, info, pool: Sequence[plan_lib.Reference],
              settings: SynthSettings, generate: Generator, estimator: Callable, out: Path) -> Path | None:
    """Plans, generates and writes unit `k` of `source` (Skip when it cannot be made)."""
    s = settings
    uid = plan_lib.unit_id(source.id, k)
    avail = available_frames(info, s.fps)
    start = plan_lib.segment_start(s.seed, source.id, k, avail, s.frames)
    if start is None:
        raise Skip(f"too short (< {s.frames} frames at {s.fps:g} fps)")
    ref = plan_lib.unit_reference(s.seed, source, k, pool)
    if ref is None:
        raise Skip("no reference of another identity")
    start_src = source_start(info, s.fps, start, s.frames)
    segment = read_segment(source.path, start_src, s)
    pose, pose_stats = pose_video(segment, estimator, s)
    ref_img = read_reference(ref, s)
    seed = plan_lib.noise_seed(s.seed, source.id, k)
    generated, gen_meta = generate(ref_img, pose, seed=seed, text_keys=(uid, ref.id))
    if generated.shape != segment.shape or generated.dtype != np.uint8:
        raise ValueError(f"generator: returned {generated.dtype} {generated.shape}, expected uint8 {segment.shape}")
    meta = {
        "source": {"id": source.id, "path": str(source.path), "identity": source.identity, "index": k,
                   "start_frame": int(start_src), "start_s": round(start_src / info.fps, 4),
                   "frames": s.frames, "fps": s.fps, "source_fps": info.fps},
        "reference": {"id": ref.id, "path": str(ref.path), "identity": ref.identity, "tags": list(ref.tags)},
        "pose": pose_stats,
        "seeds": {"plan": s.seed, "noise": seed},
        "size": [s.height, s.width], "fit": s.fit,
        "generation": gen_meta,
        "checkpoint": generate.describe().get("checkpoint"),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    return units_lib.write_unit(out, uid, source=segment, generated=generated, reference=ref_img,
                                pose=pose, fps=s.fps, meta=meta)


def run(sources: Sequence[plan_lib.Source], pool: Sequence[plan_lib.Reference], out_dir, settings: SynthSettings,
        *, generate: Generator, estimator: Callable, shard: tuple[int, int] = (0, 1),
        progress: bool = True) -> Report:
    """Makes the units of shard `shard` of `sources` under `out_dir` (resumable); returns the report."""
    from tqdm.auto import tqdm

    from dreamactor_jax import media

    t0 = time.time()
    out = Path(out_dir)
    check_output(out, settings, generate.describe())
    mine = plan_lib.shard(sorted(sources, key=lambda s: s.id), *shard)
    report = Report(shard)
    ids = [[plan_lib.unit_id(src.id, k) for k in range(settings.units_per_video)] for src in mine]
    units_lib.clean_partial(out, [u for row in ids for u in row])
    report.planned = sum(len(row) for row in ids)
    bar = tqdm(total=report.planned, desc="synthesize", unit="unit", disable=not progress)
    name = "synthesis_report.json" if shard == (0, 1) else f"synthesis_report.shard-{shard[0]}-of-{shard[1]}.json"
    try:
        for src, row in zip(mine, ids):
            info, unreadable = None, False
            for k, uid in enumerate(row):
                bar.update(1)
                if units_lib.is_complete(out, uid):
                    report.already_done += 1
                    continue
                try:
                    if info is None and not unreadable:
                        try:
                            info = media.video_info(src.path)
                        except (ValueError, OSError):
                            unreadable = True
                    if unreadable:
                        raise Skip("unreadable video")
                    if make_unit(src, k, info, pool, settings, generate, estimator, out) is None:
                        report.already_done += 1
                    else:
                        report.written += 1
                except Skip as e:
                    report.skip(str(e), uid)
                bar.set_postfix(written=report.written, skipped=report.num_skipped, refresh=False)
    finally:
        bar.close()
        report.seconds = time.time() - t0
        write_text_atomic(out / name, json.dumps(report.to_dict(), indent=1))
    return report
