"""What each pseudo-pair unit is made of: a source segment and a reference of another identity.

Paper (sec. 3.4, app. D): from each source driving video `V_src` a random 121-frame segment (about
5 s at the model's fps) is cut, and a reference image `I_o` of a *different identity* is drawn from
a pool (humans, anime characters, animals); the pose model then animates `I_o` with the segment's
poses. Several units may come from one video (the paper made 600,000 units from 10,000 videos).

Everything here is pure and deterministic. Unit `k` of source `s` draws its segment, its reference
and its noise seed from three independent generators seeded by `(seed, s, k)`, so a unit's plan
depends neither on the order of the inputs, nor on the other sources, nor on the shard that makes
it; growing the reference pool changes only the references of units not yet made.

Identities: a source's identity is its `identity` field (manifest) or its id; a reference's is its
`identity` field or its own id. Give identities in the manifests when the pool holds pictures of
the people in the source videos, so that no unit pairs a person with themself.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import zlib
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

VIDEO_EXTS = (".mp4", ".mov", ".webm", ".mkv", ".avi", ".m4v")
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
_SEGMENT, _REFERENCE, _NOISE = 0, 1, 2   # the three draws of a unit, independent of each other


@dataclasses.dataclass(frozen=True)
class Source:
    """A source driving video `V_src`."""

    id: str
    path: Path
    identity: str


@dataclasses.dataclass(frozen=True)
class Reference:
    """A reference image of the pool; `tags` say what it shows (e.g. human, anime, animal)."""

    id: str
    path: Path
    identity: str
    tags: tuple[str, ...] = ()


# ----------------------------------------------------------------------------------------------
# inputs: a folder or a JSONL manifest
# ----------------------------------------------------------------------------------------------


def _scan(folder: Path, exts: tuple[str, ...]) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in exts
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def _manifest_rows(path: Path, key: str) -> tuple[list[dict], list[str]]:
    """(rows with a string `key`, problems) of a JSONL file; a bad row is a problem, not fatal."""
    rows, problems = [], []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            problems.append(f"{path.name}:{n}: not JSON ({e.msg})")
            continue
        if not isinstance(row, dict) or not isinstance(row.get(key), str):
            problems.append(f"{path.name}:{n}: no '{key}' path")
            continue
        rows.append(row)
    return rows, problems


def _unique(items: list, what: str, where: Path) -> list:
    seen: set[str] = set()
    for it in items:
        if it.id in seen:
            raise ValueError(f"{where}: {what} id {it.id!r} appears twice")
        seen.add(it.id)
    return sorted(items, key=lambda it: it.id)


def _read_inputs(path: str | os.PathLike, flag: str, key: str, exts: tuple[str, ...], from_file: Callable,
                 from_row: Callable) -> tuple[list, list[str]]:
    """(items sorted by id, manifest problems) of a folder, `from_file(file, its path relative to the
    folder)` for every file with a suffix of `exts`, or of a JSONL manifest, `from_row(row, id,
    identity, file)` for every row with a string `key` (the file's path, relative to the manifest;
    the id defaults to it without suffix, the identity to the id)."""
    path = Path(path)
    if path.is_dir():
        return _unique([from_file(p, p.relative_to(path)) for p in _scan(path, exts)], key, path), []
    if not path.is_file():
        raise FileNotFoundError(f"{flag} {path}: no such folder or manifest")
    rows, problems = _manifest_rows(path, key)
    out = []
    for r in rows:
        rid = str(r.get("id") or Path(r[key]).with_suffix(""))
        out.append(from_row(r, rid, str(r.get("identity") or rid), path.parent / r[key]))
    return _unique(out, key, path), problems


def read_sources(path: str | os.PathLike) -> tuple[list[Source], list[str]]:
    """(sources sorted by id, manifest problems): every video under a folder (id = relative path
    without suffix), or JSONL rows `{"video", "id"?, "identity"?}` (paths relative to the file)."""

    def from_file(p: Path, rel: Path) -> Source:
        sid = str(rel.with_suffix(""))
        return Source(sid, p, sid)

    def from_row(r: dict, sid: str, identity: str, p: Path) -> Source:
        return Source(sid, p, identity)

    return _read_inputs(path, "--videos", "video", VIDEO_EXTS, from_file, from_row)


def read_references(path: str | os.PathLike) -> tuple[list[Reference], list[str]]:
    """(references sorted by id, manifest problems): every image under a folder (each its own
    identity; the first sub-folder, if any, is its tag: refs/animal/cat.png -> tag "animal"), or
    JSONL rows `{"image", "id"?, "identity"?, "tags"?}` (paths relative to the file)."""

    def from_file(p: Path, rel: Path) -> Reference:
        rid = str(rel.with_suffix(""))
        return Reference(rid, p, rid, (rel.parts[0],) if len(rel.parts) > 1 else ())

    def from_row(r: dict, rid: str, identity: str, p: Path) -> Reference:
        tags = r.get("tags") or ()
        return Reference(rid, p, identity, (tags,) if isinstance(tags, str) else tuple(str(t) for t in tags))

    return _read_inputs(path, "--references", "image", IMAGE_EXTS, from_file, from_row)


# ----------------------------------------------------------------------------------------------
# the draws
# ----------------------------------------------------------------------------------------------


def unit_rng(seed: int, source_id: str, k: int, draw: int) -> np.random.Generator:
    """The generator of one draw (`_SEGMENT`, `_REFERENCE`, `_NOISE`) of unit `k` of a source."""
    return np.random.default_rng([int(seed), zlib.crc32(source_id.encode()), int(k), int(draw)])


def unit_id(source_id: str, k: int) -> str:
    """A folder-safe, unique name for unit `k` of a source: `dance/a b` -> `dance_a_b-1a2b3c4d-u000`."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", source_id).strip("._") or "video"
    if safe != source_id:  # keep distinct ids distinct after the substitution
        safe = f"{safe}-{zlib.crc32(source_id.encode()):08x}"
    return f"{safe}-u{int(k):03d}"


def choose_segment(available: int, frames: int, rng: np.random.Generator) -> int | None:
    """Start (in frames at the model's fps) of a random `frames`-long segment of a video with
    `available` frames at that fps, uniform over every position; None if the video is too short."""
    if frames < 1:
        raise ValueError(f"segment length must be >= 1, got {frames}")
    if available < frames:
        return None
    return int(rng.integers(0, available - frames + 1))


def draw_reference(pool: Sequence[Reference], exclude_identity: str,
                   rng: np.random.Generator) -> Reference | None:
    """A reference drawn uniformly among those whose identity differs from `exclude_identity`."""
    eligible = [r for r in pool if r.identity != exclude_identity]
    if not eligible:
        return None
    return eligible[int(rng.integers(0, len(eligible)))]


def noise_seed(seed: int, source_id: str, k: int) -> int:
    """The sampler's seed for unit `k` of a source (31 bits)."""
    return int(unit_rng(seed, source_id, k, _NOISE).integers(0, 2**31 - 1))


def segment_start(seed: int, source_id: str, k: int, available: int, frames: int) -> int | None:
    return choose_segment(available, frames, unit_rng(seed, source_id, k, _SEGMENT))


def unit_reference(seed: int, source: Source, k: int, pool: Sequence[Reference]) -> Reference | None:
    return draw_reference(pool, source.identity, unit_rng(seed, source.id, k, _REFERENCE))


# ----------------------------------------------------------------------------------------------
# shards
# ----------------------------------------------------------------------------------------------


def parse_shard(text: str) -> tuple[int, int]:
    """`"i/n"` -> (i, n) with 0 <= i < n."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not m or not 0 <= int(m.group(1)) < int(m.group(2)):
        raise ValueError(f"--shard {text!r}: expected i/n with 0 <= i < n (e.g. 0/4)")
    return int(m.group(1)), int(m.group(2))


def shard(items: Sequence, index: int, count: int) -> list:
    """The items of shard `index` of `count` (round robin over the sorted list: balanced, disjoint,
    together complete)."""
    if not 0 <= index < count:
        raise ValueError(f"shard {index}/{count}: expected 0 <= index < count")
    return list(items[index::count])
