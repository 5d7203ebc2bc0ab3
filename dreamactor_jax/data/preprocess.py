"""Videos -> pre-encoded training clips in ArrayRecord shards (what `tools/preprocess.py` runs).

Per input video, `clips_per_video` clips of 49-121 frames (4k + 1, so no frame is lost to the
VAE's causal 4x compression) are drawn at the target fps, deterministically from (seed, video id),
so a rerun plans the same clips. The panel (one half of the canvas) is `height x width`; with
`orientation="auto"` (the default) a video of the other orientation gets the transposed panel
(a portrait dance video trains as 832x480, not centre-cropped into 480x832). Per clip:
- pose variant: V (the clip, resized/cropped to the panel), its poses, estimated on the whole
  source frames (or read from the row's `pose` keypoints file, `tools/extract_pose.py --json`)
  and mapped into the panel, augmented (sec. 3.3: bone scaling + box normalisation, one draw per
  clip) and rendered OpenPose-style -> D;
- end-to-end variant: D is the driving video of the row (a pseudo-pair's motion clip, same window);
- canvas `C` (Eq. 2) and target `V (+) D` through the JAX VAE (`incontext.encode_canvas`: the
  condition latent is zeroed where the mask is 0), the mask `M_r (+) M_m`, all in the run config's
  in-context layout (`objective.layout`, `PreprocessConfig.layout`: spatial as above, or temporal,
  `[ref; D]` / `[ref; V]` of `T + 1` frames and `T' + 1` latent frames), recorded in each record's
  metadata and each shard's sidecar (`layout`); a folder holding shards of the other layout is refused,
- text embeddings of the video id from a `tools/encode_text.py` file, or its null prompt; without
  a file, the zero text (`text.store.zero_text`: no text encoder needed), counted in the report.

Shards are written atomically, `clips_per_shard` clips each; finished clip ids (from the shard
sidecars) are skipped on a rerun, but only from shards that check out (size, checksum, record
count): a damaged shard is removed and its clips redone. Inputs that cannot be used
(missing/broken/truncated video, unreadable reference or keypoints, too short, no person found,
bad manifest row) are skipped, counted and reported, never fatal.
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
from dreamactor_jax.data.clip import Skip, make_example
from dreamactor_jax.data.vae_encoder import check_vae_source, make_vae_encoder, random_vae_params  # noqa: F401
from dreamactor_jax.data.shards import (SCHEMA_VERSION, SHARD_SUFFIX, file_digest, list_shards, read_sidecar,
                                        shard_layout, sidecar_path, write_shard)
from dreamactor_jax.utils import as_path, write_text_atomic

log = logging.getLogger(__name__)
VIDEO_EXTS = (".mp4", ".mov", ".webm", ".mkv", ".avi", ".m4v")
VARIANTS = ("pose", "e2e")
ORIENTATIONS = ("auto", "config")


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
    orientation: str = "auto"  # "auto": the panel takes each video's orientation; "config": height x width
    layout: str = "spatial"    # the in-context layout: the run config's objective.layout (tools/preprocess.py)

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"preprocess.variant {self.variant!r}: must be one of {VARIANTS}")
        if self.layout not in incontext.LAYOUTS:
            raise ValueError(f"objective.layout {self.layout!r}: must be one of {incontext.LAYOUTS}")
        if self.orientation not in ORIENTATIONS:
            raise ValueError(f"--orientation {self.orientation!r}: must be one of {ORIENTATIONS}")
        if self.min_frames < 1 or (self.min_frames - 1) % 4 or (self.max_frames - 1) % 4:
            raise ValueError(f"preprocess.min_frames/max_frames {self.min_frames}/{self.max_frames}: "
                             "must be of the form 4k + 1")
        if self.max_frames < self.min_frames:
            raise ValueError(f"preprocess.max_frames {self.max_frames} < min_frames {self.min_frames}")
        if self.height % 16 or self.width % 16 or self.height <= 0 or self.width <= 0:
            raise ValueError(f"preprocess.height/width {self.height}x{self.width}: must be positive multiples of 16")
        if self.fps <= 0 or self.clips_per_video < 1 or self.clips_per_shard < 1:
            raise ValueError("preprocess.fps, clips_per_video and clips_per_shard must be positive")

    def panel(self, src_h: int, src_w: int) -> tuple[int, int]:
        """The panel (height, width) for a `src_h x src_w` video (see `orientation`)."""
        h, w = self.height, self.width
        if self.orientation == "auto" and src_h != src_w and h != w and (src_h > src_w) != (h > w):
            h, w = w, h
        return h, w


@dataclasses.dataclass(frozen=True)
class Item:
    """One input: the character video, for e2e the driving video, optionally a reference image and (pose
    variant) a keypoints file of the video (`tools/extract_pose.py --json`) used instead of estimating."""

    id: str
    video: Path
    driving: Path | None = None
    reference: Path | None = None
    pose: Path | None = None


class Report:
    """Counts of what was done and what was skipped, with reasons (the closing summary)."""

    def __init__(self):
        self.skipped: dict[str, list[str]] = defaultdict(list)
        self.written = 0
        self.already_done = 0
        self.null_text = 0
        self.zero_text = 0         # clips with the zero text (no text embeddings file)
        self.crossed = 0           # clips cropped across orientation (orientation="config")
        self.damaged: list[str] = []  # shards found damaged on a rerun (removed, their clips redone)
        self.shards: list[str] = []

    def skip(self, reason: str, what: str) -> None:
        self.skipped[reason].append(what)

    def summary(self) -> str:
        n_skip = sum(len(v) for v in self.skipped.values())
        lines = [f"wrote {self.written} clips in {len(self.shards)} new shards; {self.already_done} clips "
                 f"already done; {self.null_text} clips with the null text, {self.zero_text} with the zero text; "
                 f"skipped {n_skip} inputs"]
        if self.damaged:
            lines.append(f"  {len(self.damaged)} damaged shard(s) removed and their clips redone: "
                         + ", ".join(self.damaged[:5]))
        if self.crossed:
            lines.append(f"  {self.crossed} clips centre-cropped from videos of the other orientation "
                         "(--orientation auto gives them their own panel)")
        for reason, items in sorted(self.skipped.items()):
            lines.append(f"  {len(items)} x {reason}: " + ", ".join(items[:5]) + (" ..." if len(items) > 5 else ""))
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"written": self.written, "already_done": self.already_done, "null_text": self.null_text,
                "zero_text": self.zero_text,
                "crossed_orientation": self.crossed, "damaged_shards": self.damaged, "shards": self.shards,
                "skipped": dict(self.skipped)}


# ----------------------------------------------------------------------------------------------
# inputs
# ----------------------------------------------------------------------------------------------


def scan_folder(folder: str | os.PathLike) -> list[Item]:
    """Every video file under `folder` (recursive); id = path relative to the folder, without suffix."""
    folder = Path(folder)
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_EXTS and p.is_file())
    return [Item(str(p.relative_to(folder).with_suffix("")), p) for p in paths]


def read_manifest(path: str | os.PathLike, report: Report) -> list[Item]:
    """JSONL rows `{"video": ..., "id"?, "driving"?, "reference"?, "pose"?}` (paths relative to the file).

    A malformed row is skipped and reported, not fatal; a file that is not text is an error.
    """
    path = Path(path)
    items, seen = [], set()
    try:
        text = path.read_text("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"--input {path}: neither a folder, a video ({', '.join(VIDEO_EXTS)}) nor a "
                         "JSONL manifest (not text)") from None
    for n, line in enumerate(text.splitlines(), 1):
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
        items.append(Item(vid, rel("video"), rel("driving"), rel("reference"), rel("pose")))
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
    """Text inputs per video id from a `tools/encode_text.py` file (the null prompt for ids without a
    caption), or, with no file, the zero text for every clip. `text_dim` / `pooled_dim` (the
    backbone's widths) are checked against the file, so a file for another backbone fails here,
    not at training time."""

    def __init__(self, path: str | os.PathLike | None, use_captions: bool = True, *,
                 text_dim: int | None = None, pooled_dim: int | None = None, glyph_dim: int | None = None):
        from dreamactor_jax.text.store import load_text_embeddings, zero_text

        if path is None:
            if text_dim is None or pooled_dim is None:
                raise ValueError("TextTable without a file: give text_dim and pooled_dim (the zero text)")
            self.emb, self.null, self.index = None, zero_text(text_dim, pooled_dim), {}
        else:
            data = load_text_embeddings(path)
            if data["null"] is None:
                raise ValueError(f"text embeddings {path}: holds no null prompt (re-run tools/encode_text.py)")
            self.emb, self.null, self.index = data["emb"], data["null"], data["index"]
            for name, want, have in (("text", text_dim, self.null.text.shape[-1]),
                                     ("pooled", pooled_dim, self.null.pooled.shape[-1])):
                if want is not None and have != want:
                    raise ValueError(f"text embeddings {path}: {name} width {have}, the backbone takes {want} "
                                     "(encoded for another model? re-run tools/encode_text.py)")
            if glyph_dim is not None and self.null.text_2 is not None and self.null.text_2.shape[-1] != glyph_dim:
                raise ValueError(f"text embeddings {path}: glyph (text_2) width {self.null.text_2.shape[-1]}, the "
                                 f"backbone takes {glyph_dim}")
        self.path = path
        self.use_captions = use_captions

    def get(self, item_id: str) -> tuple[dict[str, np.ndarray], bool]:
        """({text, text_mask, pooled} and, from a HunyuanVideo-1.5 file, {text_2, text_2_mask}, has_caption)."""
        row = self.index.get(item_id) if self.use_captions else None
        src, i = (self.null, 0) if row is None else (self.emb, row)
        out = {"text": src.text[i].astype(np.float32), "text_mask": src.text_mask[i].astype(np.int32),
               "pooled": src.pooled[i].astype(np.float32)}
        if src.text_2 is not None:
            out.update(text_2=src.text_2[i].astype(np.float32), text_2_mask=src.text_2_mask[i].astype(np.int32))
        return out, row is not None


# ----------------------------------------------------------------------------------------------
# the run
# ----------------------------------------------------------------------------------------------


def shard_problem(shard: Path) -> str | None:
    """Why a finished-looking shard cannot be trusted (size, checksum or record count), or None."""
    try:
        info = json.loads(sidecar_path(shard).read_text())
        records = info["records"]
    except (OSError, ValueError, KeyError, TypeError):
        return "unreadable sidecar"
    if info.get("schema_version") != SCHEMA_VERSION:
        return f"schema version {info.get('schema_version')}"
    if "bytes" in info and shard.stat().st_size != info["bytes"]:
        return f"{shard.stat().st_size} bytes, its sidecar says {info['bytes']}"
    if "sha256" in info:
        if file_digest(shard)["sha256"] != info["sha256"]:
            return "checksum differs from its sidecar's"
        return None
    try:  # an older sidecar without a checksum: the record count at least
        from array_record.python.array_record_module import ArrayRecordReader

        r = ArrayRecordReader(str(shard))
        n = r.num_records()
        r.close()
    except Exception as e:  # noqa: BLE001 - array_record raises RuntimeError/OSError variants
        return f"cannot be opened ({type(e).__name__})"
    return None if n == len(records) else f"holds {n} records, its sidecar lists {len(records)}"


def _existing(out: Path, report: Report, layout: str) -> tuple[set[str], int]:
    """Finished clip ids and the next shard number; removes leftovers of an interrupted run and
    damaged shards (their clips are redone); refuses shards of another in-context layout."""
    out.mkdir(parents=True, exist_ok=True)
    for tmp in out.glob(".shard-*"):
        tmp.unlink()
    for shard in out.glob("shard-*" + SHARD_SUFFIX):
        if not sidecar_path(shard).exists():
            shard.unlink()  # renamed but never indexed: its clips are redone
    done, last = set(), -1
    for shard in list_shards(out):
        try:
            last = max(last, int(shard.name.split("-")[1].split(".")[0]))
        except (IndexError, ValueError):
            pass
        problem = shard_problem(shard)
        if problem is not None:
            log.warning("shard %s is damaged (%s): removed, its clips are redone", shard.name, problem)
            report.damaged.append(f"{shard.name} ({problem})")
            sidecar_path(shard).unlink(missing_ok=True)
            shard.unlink(missing_ok=True)
            continue
        have = shard_layout(shard)
        if have != layout:
            raise ValueError(f"--output {out}: shard {shard.name} was made for the {have} in-context layout, this "
                             f"config's objective.layout is {layout}; use another --output folder")
        done.update(r["clip_id"] for r in read_sidecar(shard))
    return done, last + 1
def run(items: Iterable[Item], out_dir: str | os.PathLike, cfg: PreprocessConfig, *, encode: Callable,
        text: TextTable, estimator: Callable | None = None, report: Report | None = None,
        progress: bool = True, image_tokens: Callable | None = None) -> Report:
    """Preprocesses `items` into shards under `out_dir` (resumable); returns the report. `image_tokens`:
    the reference frame's image tokens (HunyuanVideo-1.5, `make_example`), None for backbones without."""
    from tqdm.auto import tqdm

    from dreamactor_jax import media

    items = list(items)
    report = report or Report()
    out = as_path(out_dir)  # local or gs://
    done, next_shard = _existing(out, report, cfg.layout)
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
                        raise Skip(f"missing {name}")
                if cfg.variant == "e2e" and item.driving is None:
                    raise Skip("e2e row without a driving video")
                try:
                    info = media.video_info(item.video)
                except (ValueError, OSError) as e:
                    raise Skip("unreadable video") from e
                available = int(info.num_frames * cfg.fps / info.fps) if info.fps > 0 else 0
                clips = plan_clips(item.id, available, cfg)
                if not clips:
                    raise Skip(f"too short (< {cfg.min_frames} frames at {cfg.fps:g} fps)")
                for p, name in ((item.pose, "keypoints file"),):
                    if p is not None and not Path(p).is_file():
                        raise Skip(f"missing {name}")
                for start, length in clips:
                    if f"{item.id}#{start}+{length}" in done:
                        report.already_done += 1
                        continue
                    arrays, meta, has_caption = make_example(item, start, length, cfg, encode, text, estimator,
                                                                  image_tokens)
                    report.crossed += meta.pop("crossed_orientation")
                    buffer.append((arrays, meta))
                    report.written += 1
                    report.null_text += meta["text"] == "null"
                    report.zero_text += meta["text"] == "zero"
                    if len(buffer) >= cfg.clips_per_shard:
                        flush()
            except Skip as e:
                report.skip(str(e), item.id)
    finally:
        flush()  # an interrupted run keeps what it finished
        write_text_atomic(out / "preprocess_report.json", json.dumps(report.to_dict(), indent=1))
    return report
