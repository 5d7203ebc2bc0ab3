"""Videos -> pre-encoded training clips in ArrayRecord shards (what `tools/preprocess.py` runs).

Per input video, `clips_per_video` clips of 49-121 frames (4k + 1, so no frame is lost to the
VAE's causal 4x compression) are drawn at the target fps, deterministically from (seed, video id),
so a rerun plans the same clips. Per clip:
- pose variant: V (the clip, resized/cropped to H x W), its poses (estimator), augmented (sec. 3.3:
  bone scaling + box normalisation, one draw per clip) and rendered OpenPose-style -> D;
- end-to-end variant: D is the driving video of the row (a pseudo-pair's motion clip, same window);
- canvas `C` (Eq. 2) and target `V (+) D` through the JAX VAE (`incontext.encode_canvas`: the
  condition latent is zeroed where the mask is 0), the mask `M_r (+) M_m`,
- text embeddings of the video id from a `tools/encode_text.py` file, or its null prompt.

Shards are written atomically, `clips_per_shard` clips each; finished clip ids (from the shard
sidecars) are skipped on a rerun. Inputs that cannot be used (missing/broken video, too short, no
person found, bad manifest row) are skipped, counted and reported, never fatal.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import zlib
from collections import defaultdict
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from dreamactor_jax import incontext
from dreamactor_jax.data.shards import SHARD_SUFFIX, list_shards, read_sidecar, sidecar_path, write_shard
from dreamactor_jax.utils import as_path, write_text_atomic

log = logging.getLogger(__name__)
VIDEO_EXTS = (".mp4", ".mov", ".webm", ".mkv", ".avi", ".m4v")
VARIANTS = ("pose", "e2e")


@dataclasses.dataclass(frozen=True)
class PreprocessConfig:
    variant: str = "pose"
    min_frames: int = 49
    max_frames: int = 121
    fps: float = 24.0
    height: int = 480          # one half of the canvas
    width: int = 832
    clips_per_video: int = 1
    clips_per_shard: int = 16
    pose_augmentation: bool = True
    text_guidance: bool = True
    seed: int = 0

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"preprocess.variant {self.variant!r}: must be one of {VARIANTS}")
        if self.min_frames < 1 or (self.min_frames - 1) % 4 or (self.max_frames - 1) % 4:
            raise ValueError(f"preprocess.min_frames/max_frames {self.min_frames}/{self.max_frames}: "
                             "must be of the form 4k + 1")
        if self.max_frames < self.min_frames:
            raise ValueError(f"preprocess.max_frames {self.max_frames} < min_frames {self.min_frames}")
        if self.height % 16 or self.width % 16 or self.height <= 0 or self.width <= 0:
            raise ValueError(f"preprocess.height/width {self.height}x{self.width}: must be positive multiples of 16")
        if self.fps <= 0 or self.clips_per_video < 1 or self.clips_per_shard < 1:
            raise ValueError("preprocess.fps, clips_per_video and clips_per_shard must be positive")


@dataclasses.dataclass(frozen=True)
class Item:
    """One input: the character video, and for e2e the driving video (and optionally a reference image)."""

    id: str
    video: Path
    driving: Path | None = None
    reference: Path | None = None


class Report:
    """Counts of what was done and what was skipped, with reasons (the closing summary)."""

    def __init__(self):
        self.skipped: dict[str, list[str]] = defaultdict(list)
        self.written = 0
        self.already_done = 0
        self.null_text = 0
        self.shards: list[str] = []

    def skip(self, reason: str, what: str) -> None:
        self.skipped[reason].append(what)

    def summary(self) -> str:
        n_skip = sum(len(v) for v in self.skipped.values())
        lines = [f"wrote {self.written} clips in {len(self.shards)} new shards; {self.already_done} clips "
                 f"already done; {self.null_text} clips with the null text; skipped {n_skip} inputs"]
        for reason, items in sorted(self.skipped.items()):
            lines.append(f"  {len(items)} x {reason}: " + ", ".join(items[:5]) + (" ..." if len(items) > 5 else ""))
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"written": self.written, "already_done": self.already_done, "null_text": self.null_text,
                "shards": self.shards, "skipped": dict(self.skipped)}


# ----------------------------------------------------------------------------------------------
# inputs
# ----------------------------------------------------------------------------------------------


def scan_folder(folder: str | os.PathLike) -> list[Item]:
    """Every video file under `folder` (recursive); id = path relative to the folder, without suffix."""
    folder = Path(folder)
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_EXTS and p.is_file())
    return [Item(str(p.relative_to(folder).with_suffix("")), p) for p in paths]


def read_manifest(path: str | os.PathLike, report: Report) -> list[Item]:
    """JSONL rows `{"video": ..., "id"?: ..., "driving"?: ..., "reference"?: ...}` (paths relative to the file).

    A malformed row is skipped and reported, not fatal.
    """
    path = Path(path)
    items, seen = [], set()
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path.name}:{n}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            report.skip("bad manifest row (not JSON)", f"{where} ({e.msg})")
            continue
        if not isinstance(row, dict) or not isinstance(row.get("video"), str):
            report.skip("bad manifest row (no 'video' path)", where)
            continue
        rel = lambda k: None if not row.get(k) else (path.parent / row[k])  # noqa: E731
        vid = str(row.get("id") or Path(row["video"]).with_suffix(""))
        if vid in seen:
            report.skip("bad manifest row (duplicate id)", f"{where} ({vid})")
            continue
        seen.add(vid)
        items.append(Item(vid, rel("video"), rel("driving"), rel("reference")))
    return items


def plan_clips(item_id: str, available: int, cfg: PreprocessConfig) -> list[tuple[int, int]]:
    """(start, length) in target-fps frames, deterministic in (seed, id); [] if the video is too short."""
    longest = min(cfg.max_frames, available)
    longest = 4 * ((longest - 1) // 4) + 1 if longest >= 1 else 0
    if longest < cfg.min_frames:
        return []
    rng = np.random.default_rng([cfg.seed, zlib.crc32(item_id.encode())])
    clips = []
    for _ in range(cfg.clips_per_video):
        length = int(rng.choice(np.arange(cfg.min_frames, longest + 1, 4)))
        start = int(rng.integers(0, available - length + 1))
        clips.append((start, length))
    return clips


# ----------------------------------------------------------------------------------------------
# text embeddings
# ----------------------------------------------------------------------------------------------


class TextTable:
    """Text inputs per video id from a `tools/encode_text.py` file; the null prompt otherwise."""

    def __init__(self, path: str | os.PathLike, use_captions: bool = True):
        from dreamactor_jax.text.store import load_text_embeddings

        data = load_text_embeddings(path)
        if data["null"] is None:
            raise ValueError(f"text embeddings {path}: holds no null prompt (re-run tools/encode_text.py)")
        self.emb, self.null, self.index = data["emb"], data["null"], data["index"]
        self.use_captions = use_captions

    def get(self, item_id: str) -> tuple[dict[str, np.ndarray], bool]:
        """({text, text_mask, pooled}, has_caption)."""
        row = self.index.get(item_id) if self.use_captions else None
        src, i = (self.null, 0) if row is None else (self.emb, row)
        return ({"text": src.text[i].astype(np.float32), "text_mask": src.text_mask[i].astype(np.int32),
                 "pooled": src.pooled[i].astype(np.float32)}, row is not None)


# ----------------------------------------------------------------------------------------------
# one clip
# ----------------------------------------------------------------------------------------------


def _pixels(frames: np.ndarray) -> np.ndarray:
    return frames.astype(np.float32) / 127.5 - 1.0


def motion_frames(item: Item, video: np.ndarray, cfg: PreprocessConfig, start_src: int, length: int,
                  estimator: Callable | None, rng: np.random.Generator) -> np.ndarray:
    """The driving signal D (uint8 [T, H, W, 3]): rendered (augmented) poses, or the driving clip."""
    from dreamactor_jax import media

    if cfg.variant == "e2e":
        d = media.read_video(item.driving, fps=cfg.fps, start=start_src, num_frames=length)
        return media.resize_to(d, cfg.height, cfg.width, mode="crop")
    from dreamactor_jax.pose.augment import augment_clip
    from dreamactor_jax.pose.extract import extract_clip
    from dreamactor_jax.pose.render import render_clip

    if estimator is None:
        raise ValueError("pose variant: a pose estimator is required (--pose_estimator)")
    clip, stats = extract_clip(video, estimator, fps=cfg.fps)
    if stats.num_empty == stats.num_frames:
        raise _Skip("no person detected")
    if cfg.pose_augmentation:
        clip, _ = augment_clip(clip, rng)
    return render_clip(clip, cfg.height, cfg.width)


class _Skip(Exception):
    """An input that cannot be used; the message is the reason (reported, not fatal)."""


def make_example(item: Item, start: int, length: int, cfg: PreprocessConfig, encode: Callable,
                 text: TextTable, estimator: Callable | None = None) -> tuple[dict, dict, bool]:
    """(arrays, meta, has_caption) of one clip; `encode(pixels [1, T, H, W, 3]) -> latents [1, T', H', W', C]`."""
    from dreamactor_jax import media

    info = media.video_info(item.video)
    start_src = int(round(start * info.fps / cfg.fps))
    try:
        v = media.read_video(item.video, fps=cfg.fps, start=start_src, num_frames=length)
    except ValueError as e:
        raise _Skip(f"too short or unreadable at {cfg.fps} fps") from e
    v = media.resize_to(v, cfg.height, cfg.width, mode="crop")
    rng = np.random.default_rng([cfg.seed, zlib.crc32(f"{item.id}#{start}".encode())])
    d = motion_frames(item, v, cfg, start_src, length, estimator, rng)
    if item.reference is not None:
        ref = media.resize_to(media.read_image(item.reference), cfg.height, cfg.width, mode="crop")
        v = v.copy()
        v[0] = ref  # the reference is the target's frame 0 (self-supervised pairing)
    canvas = incontext.make_canvas(_pixels(v[0]), _pixels(d), fill=-1.0)
    target = incontext.make_target(_pixels(v), _pixels(d))
    z_canvas = np.asarray(incontext.encode_canvas(encode, canvas[None], zero_unmasked=True))[0]
    z_target = np.asarray(incontext.encode_canvas(encode, target[None], zero_unmasked=False))[0]
    t, h, w2 = z_target.shape[:3]
    mask = np.asarray(incontext.make_mask(t, h, w2 // 2))
    txt, has_caption = text.get(item.id)
    arrays = {"target": z_target.astype(np.float32), "canvas": z_canvas.astype(np.float32),
              "mask": mask.astype(np.float32), **txt}
    meta = {"clip_id": f"{item.id}#{start}+{length}", "video_id": item.id, "source": str(item.video),
            "driving": None if item.driving is None else str(item.driving), "start": start,
            "num_frames": length, "fps": cfg.fps, "height": cfg.height, "width": cfg.width,
            "variant": cfg.variant, "pose_augmented": cfg.variant == "pose" and cfg.pose_augmentation,
            "text": "caption" if has_caption else "null"}
    return arrays, meta, has_caption


# ----------------------------------------------------------------------------------------------
# the run
# ----------------------------------------------------------------------------------------------


def _existing(out: Path) -> tuple[set[str], int]:
    """Finished clip ids and the next shard number; removes leftovers of an interrupted run."""
    out.mkdir(parents=True, exist_ok=True)
    for tmp in out.glob(".shard-*"):
        tmp.unlink()
    for shard in out.glob("shard-*" + SHARD_SUFFIX):
        if not sidecar_path(shard).exists():
            shard.unlink()  # renamed but never indexed: its clips are redone
    done, last = set(), -1
    for shard in list_shards(out):
        done.update(r["clip_id"] for r in read_sidecar(shard))
        try:
            last = max(last, int(shard.name.split("-")[1].split(".")[0]))
        except (IndexError, ValueError):
            pass
    return done, last + 1


def run(items: Iterable[Item], out_dir: str | os.PathLike, cfg: PreprocessConfig, *, encode: Callable,
        text: TextTable, estimator: Callable | None = None, report: Report | None = None,
        progress: bool = True) -> Report:
    """Preprocesses `items` into shards under `out_dir` (resumable); returns the report."""
    from tqdm.auto import tqdm

    from dreamactor_jax import media

    items = list(items)
    report = report or Report()
    out = as_path(out_dir)  # local or gs://
    done, next_shard = _existing(out)
    buffer: list[tuple[dict, dict]] = []

    def flush():
        nonlocal next_shard, buffer
        if buffer:
            path = out / f"shard-{next_shard:05d}{SHARD_SUFFIX}"
            write_shard(path, buffer)
            report.shards.append(path.name)
            next_shard += 1
            buffer = []

    try:
        for item in tqdm(items, desc="preprocess", unit="video", disable=not progress):
            try:
                for p, name in ((item.video, "video"), (item.driving, "driving video"),
                                (item.reference, "reference image")):
                    if p is not None and not Path(p).is_file():
                        raise _Skip(f"missing {name}")
                if cfg.variant == "e2e" and item.driving is None:
                    raise _Skip("e2e row without a driving video")
                try:
                    info = media.video_info(item.video)
                except (ValueError, OSError) as e:
                    raise _Skip("unreadable video") from e
                available = int(info.num_frames * cfg.fps / info.fps) if info.fps > 0 else 0
                clips = plan_clips(item.id, available, cfg)
                if not clips:
                    raise _Skip(f"too short (< {cfg.min_frames} frames at {cfg.fps:g} fps)")
                for start, length in clips:
                    if f"{item.id}#{start}+{length}" in done:
                        report.already_done += 1
                        continue
                    arrays, meta, has_caption = make_example(item, start, length, cfg, encode, text, estimator)
                    buffer.append((arrays, meta))
                    report.written += 1
                    report.null_text += not has_caption
                    if len(buffer) >= cfg.clips_per_shard:
                        flush()
            except _Skip as e:
                report.skip(str(e), item.id)
    finally:
        flush()  # an interrupted run keeps what it finished
        write_text_atomic(out / "preprocess_report.json", json.dumps(report.to_dict(), indent=1))
    return report


def make_vae_encoder(name: str, checkpoint: str | None, latent_channels: int | None = None,
                     seed: int = 0) -> Callable:
    """`encode(pixels [B, T, H, W, 3] in [-1, 1]) -> scaled latents`, jitted; random weights if no checkpoint."""
    import jax

    from dreamactor_jax.models import vae

    if checkpoint:
        from dreamactor_jax.weights.checkpoint import load_config, load_params

        vcfg = load_config(checkpoint)
        params = load_params(checkpoint)
    else:
        over = {} if latent_channels is None else {"latent_channels": latent_channels}
        vcfg = vae.VAEConfig.named(name, **over)
        params = vae.init_params(vcfg, jax.random.PRNGKey(seed))
        log.warning("VAE: random weights (no vae_checkpoint given): for tests only")
    return jax.jit(lambda x: vae.encode_latents(params, vcfg, x))

