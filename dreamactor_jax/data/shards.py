"""Pre-encoded training examples: the record schema, ArrayRecord shards, and a random-access source.

One record is one clip (docs/design.md, "Pre-encoded training example"), in the in-context layout
of the run it was made for (`incontext.LAYOUTS`; shapes below are spatial's, temporal's are
`[T' + 1, H', W', .]` with the reference as the leading latent frame):

| name        | shape              | meaning                                               |
|-------------|--------------------|-------------------------------------------------------|
| `target`    | `[T', H', 2W', C]` | scaled VAE latent of `V (+) D` (what is denoised)      |
| `canvas`    | `[T', H', 2W', C]` | scaled VAE latent of the Eq. 2 canvas `C`              |
| `mask`      | `[T', H', 2W', 1]` | `M = M_r (+) M_m`                                      |
| `text`      | `[L, D_text]`      | LLaMA hidden states (the null prompt's when no caption) |
| `text_mask` | `[L]`              | 1 for valid (right padded) text tokens                 |
| `pooled`    | `[D_pooled]`       | CLIP pooled output                                     |

optional (HunyuanVideo-1.5: a record carries them or not, and a batch takes them when all its
records do; `mmdit.forward` checks their widths against the backbone):

| `image_embeds` | `[M, D_image]`  | the reference frame's SigLIP tokens (`text.hv15.image_embeddings`) |
| `text_2`       | `[N, D_glyph]`  | ByT5 glyph tokens of the caption's quoted text          |
| `text_2_mask`  | `[N]`           | 1 for valid glyph tokens (given iff `text_2` is)        |

plus JSON metadata (`clip_id`, `source`, `layout`, `start`, `num_frames`, `fps`, ...).

A record is `MAGIC | u32 header length | JSON header | raw array bytes`; the header names each
array's dtype, shape and offset and carries `schema_version`, so a reader refuses records written
by an incompatible version instead of misreading them. A shard `NAME.array_record` has a sidecar
`NAME.json` listing its clip ids and latent shapes (what the loader needs to bucket by shape
without decoding); the sidecar is written last, so a shard without one is unfinished, and
`list_shards` refuses a folder holding one (or an index without its shard, or a numbered set
`NAME-i-of-N` with a member missing), naming the file. The sidecar also holds the shard's size and sha256 (`file_digest`)
and its records' in-context `layout` (`shard_layout`: absent in older shards, which are spatial;
`check_layout` refuses shards made for another layout than a run's).
"""

from __future__ import annotations

import bisect
import hashlib
import json
import os
import re
import struct
from pathlib import Path
from typing import Any, Iterable, Mapping

import ml_dtypes
import numpy as np

from dreamactor_jax.utils import as_path, atomic_path, write_text_atomic

SCHEMA_VERSION = 1
MAGIC = b"DAJX"
SHARD_SUFFIX = ".array_record"
DEFAULT_LAYOUT = "spatial"  # the in-context layout of shards whose sidecar names none (made before the field)
# The model's arrays of one record and their ranks (a batch adds a leading axis): the one list of the
# batch keys, read by the loader, the trainer's batch shardings and the train step.
RECORD_NDIM = {"target": 4, "canvas": 4, "mask": 4, "text": 2, "text_mask": 1, "pooled": 1,
               "image_embeds": 2, "text_2": 2, "text_2_mask": 1}
OPTIONAL = ("image_embeds", "text_2", "text_2_mask")  # `mmdit.forward`'s keyword inputs of the same names
REQUIRED = tuple(k for k in RECORD_NDIM if k not in OPTIONAL)
_DTYPES = {
    "float32": np.dtype(np.float32),
    "float16": np.dtype(np.float16),
    "bfloat16": np.dtype(ml_dtypes.bfloat16),
    "int32": np.dtype(np.int32),
    "uint8": np.dtype(np.uint8),
    "bool": np.dtype(np.bool_),
}


def validate_example(arrays: Mapping[str, np.ndarray], what: str = "example") -> None:
    """Checks the names and the shape relations of one example; raises ValueError naming the problem."""
    missing = [k for k in REQUIRED if k not in arrays]
    if missing:
        raise ValueError(f"{what}: missing arrays {missing} (need {list(REQUIRED)})")
    t, c, m = arrays["target"], arrays["canvas"], arrays["mask"]
    if t.ndim != 4:
        raise ValueError(f"{what}: target must be [T', H', 2W', C], got shape {t.shape}")
    if c.shape != t.shape:
        raise ValueError(f"{what}: canvas shape {c.shape} differs from target shape {t.shape}")
    if m.shape != t.shape[:3] + (1,):
        raise ValueError(f"{what}: mask shape {m.shape}, expected {t.shape[:3] + (1,)}")
    if t.shape[2] % 2:
        raise ValueError(f"{what}: canvas latent width {t.shape[2]} is odd (must be 2W')")
    tx, tm, p = arrays["text"], arrays["text_mask"], arrays["pooled"]
    if tx.ndim != 2 or tm.shape != tx.shape[:1] or p.ndim != 1:
        raise ValueError(f"{what}: text {tx.shape} / text_mask {tm.shape} / pooled {p.shape} "
                         "must be [L, D] / [L] / [D]")
    for k in OPTIONAL:
        if k in arrays and np.ndim(arrays[k]) != RECORD_NDIM[k]:
            raise ValueError(f"{what}: {k} must have {RECORD_NDIM[k]} dims, got shape {np.shape(arrays[k])}")
    if ("text_2" in arrays) != ("text_2_mask" in arrays) or (
            "text_2" in arrays and np.shape(arrays["text_2_mask"]) != np.shape(arrays["text_2"])[:1]):
        raise ValueError(f"{what}: text_2 / text_2_mask must come together as [N, D] / [N]")


def batch_keys(examples: Iterable[Mapping[str, np.ndarray]], what: str = "batch") -> tuple[str, ...]:
    """The model keys of a batch of examples: the required ones and the optional ones all of them carry
    (an optional key carried by some of them only is an error naming it)."""
    examples = list(examples)
    keys = list(REQUIRED)
    for k in OPTIONAL:
        n = sum(k in e for e in examples)
        if 0 < n < len(examples):
            raise ValueError(f"{what}: {k} is in {n} of its {len(examples)} records only (preprocess all "
                             "shards of one run with the same settings)")
        if n:
            keys.append(k)
    return tuple(keys)


def encode_example(arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any] | None = None) -> bytes:
    """Serialises one example (arrays + JSON-able metadata) into record bytes."""
    arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    validate_example(arrays)
    entries, chunks, offset = [], [], 0
    for name, a in arrays.items():
        dt = next((k for k, d in _DTYPES.items() if d == a.dtype), None)
        if dt is None:
            raise ValueError(f"example array {name!r}: unsupported dtype {a.dtype}")
        b = a.tobytes()
        entries.append([name, dt, list(a.shape), offset, len(b)])
        chunks.append(b)
        offset += len(b)
    header = json.dumps({"schema_version": SCHEMA_VERSION, "arrays": entries,
                         "meta": dict(meta or {})}).encode()
    return MAGIC + struct.pack("<I", len(header)) + header + b"".join(chunks)


def decode_example(data: bytes, where: str = "record") -> tuple[dict[str, np.ndarray], dict]:
    """Inverse of `encode_example`: returns (arrays, meta); a bad record raises ValueError naming `where`."""
    if len(data) < 8 or data[:4] != MAGIC:
        raise ValueError(f"{where}: not a dreamactor example record (bad magic; corrupt shard?)")
    (n,) = struct.unpack("<I", data[4:8])
    try:
        header = json.loads(data[8:8 + n])
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{where}: unreadable record header ({e}); corrupt shard?") from None
    version = header.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ValueError(f"{where}: record schema version {version}, this code reads {SCHEMA_VERSION}; "
                         "re-run tools/preprocess.py")
    body = memoryview(data)[8 + n:]
    arrays = {}
    for name, dt, shape, off, nbytes in header["arrays"]:
        dtype = _DTYPES[dt]
        if off + nbytes > len(body) or nbytes != int(np.prod(shape)) * dtype.itemsize:
            raise ValueError(f"{where}: array {name!r} is truncated; corrupt shard?")
        arrays[name] = np.frombuffer(body[off:off + nbytes], dtype=dtype).reshape(shape)
    validate_example(arrays, where)
    return arrays, header["meta"]


def sidecar_path(shard: str | os.PathLike) -> Path:
    shard = as_path(shard)
    return shard.with_name(shard.name[: -len(SHARD_SUFFIX)] + ".json")


def write_shard(path: str | os.PathLike, examples: Iterable[tuple[Mapping[str, np.ndarray], Mapping]]) -> int:
    """Writes (arrays, meta) pairs into one ArrayRecord shard and its sidecar, atomically.

    Returns the number of records. The shard appears under its name only when complete; the sidecar
    (clip ids and latent shapes) is renamed into place after it, marking the shard finished.
    """
    from array_record.python.array_record_module import ArrayRecordWriter

    path = as_path(path)
    if not path.name.endswith(SHARD_SUFFIX):
        raise ValueError(f"shard path {path}: name must end with {SHARD_SUFFIX}")
    records, layouts = [], set()
    with atomic_path(path, suffix=SHARD_SUFFIX) as tmp:
        writer = ArrayRecordWriter(str(tmp), "group_size:1")
        try:
            for arrays, meta in examples:
                layouts.add(meta.get("layout", DEFAULT_LAYOUT))
                if len(layouts) > 1:
                    raise ValueError(f"shard {path}: records of several in-context layouts {sorted(layouts)}")
                writer.write(encode_example(arrays, meta))
                records.append({"clip_id": str(meta.get("clip_id", len(records))),
                                "shape": list(np.shape(arrays["target"])[:3])})
        finally:
            writer.close()
        digest = file_digest(tmp)  # the finished local file (on gs:// it is uploaded as it is)
    write_text_atomic(sidecar_path(path), json.dumps(
        {"schema_version": SCHEMA_VERSION, "layout": layouts.pop() if layouts else DEFAULT_LAYOUT,
         "records": records, **digest}, indent=1))
    return len(records)


def shard_layout(shard: str | os.PathLike) -> str:
    """The in-context layout a shard's records were made in, from its sidecar (older shards: spatial)."""
    side = sidecar_path(shard)
    try:
        return json.loads(side.read_text()).get("layout") or DEFAULT_LAYOUT
    except (OSError, json.JSONDecodeError, AttributeError) as e:
        raise ValueError(f"shard index {side}: unreadable ({e})") from None


def check_layout(shards: Iterable[str | os.PathLike], layout: str) -> None:
    """Refuses, in one line naming the shard and both layouts, a shard made for another in-context
    layout than `layout` (the run's `objective.layout`)."""
    for p in shards:
        have = shard_layout(p)
        if have != layout:
            raise ValueError(f"shard {p}: made for the {have} in-context layout, but this run's objective.layout "
                             f"is {layout}; re-run tools/preprocess.py with --config.objective.layout={layout} "
                             f"(or train with --config.objective.layout={have})")


def file_digest(path: str | os.PathLike) -> dict:
    """{"bytes": size, "sha256": hex digest} of a file (kept in the sidecar to check the shard later)."""
    import hashlib

    path = as_path(path)  # local or gs://
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 24), b""):
            h.update(chunk)
            size += len(chunk)
    return {"bytes": size, "sha256": h.hexdigest()}


_SET_MEMBER = re.compile(r"^(?P<stem>.+)-(?P<i>\d+)-of-(?P<n>\d+)$")


def list_shards(folder: str | os.PathLike) -> list[Path]:
    """The shards in `folder`, sorted by name; an incomplete folder is an error naming the file.

    Every `NAME.array_record` needs its index `NAME.json` (written last: a shard without one is
    unfinished or was copied without it) and every index its shard; a numbered set
    `NAME-iiiii-of-NNNNN` must be whole. Hidden files (`.NAME`, writers' temporaries) are ignored.
    """
    folder = as_path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"shard folder {folder} does not exist")
    shards = sorted(p for p in folder.glob("*" + SHARD_SUFFIX) if not p.name.startswith("."))
    for p in shards:
        if not sidecar_path(p).exists():
            raise ValueError(f"shard {p}: its index {sidecar_path(p).name} is missing (an unfinished shard, "
                             "or copied without it); re-run tools/preprocess.py on this folder or remove the shard")
    names = {p.name for p in shards}
    for side in sorted(folder.glob("*.json")):
        shard = side.with_name(side.name[: -len(".json")] + SHARD_SUFFIX)
        if not side.name.startswith(".") and _looks_like_index(side) and shard.name not in names:
            raise ValueError(f"shard index {side}: its shard {shard.name} is missing")
    sets: dict[tuple[str, int], set[int]] = {}
    for p in shards:
        m = _SET_MEMBER.match(p.name[: -len(SHARD_SUFFIX)])
        if m:
            sets.setdefault((m["stem"], int(m["n"])), set()).add(int(m["i"]))
            width = len(m["i"])
    for (stem, n), have in sorted(sets.items()):
        missing = sorted(set(range(n)) - have)
        if missing:
            first = f"{stem}-{missing[0]:0{width}d}-of-{n:0{width}d}{SHARD_SUFFIX}"
            raise ValueError(f"shard folder {folder}: the set {stem}-*-of-{n:0{width}d} is incomplete: "
                             f"{len(missing)} of {n} shards missing, e.g. {first}")
    return shards


def _looks_like_index(path: Path) -> bool:
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and "records" in info and "schema_version" in info


def shard_fingerprint(shards: Iterable[str | os.PathLike]) -> list[dict]:
    """What identifies a shard set for resuming: per shard its name, size in bytes, record count
    and a hash of its index (clip ids and latent shapes), without reading the records."""
    out = []
    for p in shards:
        p = as_path(p)
        side = sidecar_path(p)
        try:
            index = side.read_bytes()
            size = p.stat().st_size
        except OSError as e:
            raise ValueError(f"shard {p}: cannot read it or its index ({e})") from None
        records = json.loads(index).get("records", [])
        out.append({"name": p.name, "bytes": size, "records": len(records),
                    "index_sha256": hashlib.sha256(index).hexdigest()[:16]})
    return out


def read_sidecar(shard: str | os.PathLike) -> list[dict]:
    """The sidecar's per-record entries (`clip_id`, `shape` = [T', H', 2W'])."""
    side = sidecar_path(shard)
    try:
        info = json.loads(side.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"shard index {side}: unreadable ({e})") from None
    if info.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"shard index {side}: schema version {info.get('schema_version')}, "
                         f"this code reads {SCHEMA_VERSION}; re-run tools/preprocess.py")
    return info["records"]


class ShardSource:
    """Random access over the records of several shards: `source[i] -> (arrays, meta)`.

    Readers open lazily (so the object pickles into Grain workers); any failure to open or decode
    raises ValueError naming the shard file and record index.
    """

    def __init__(self, shards: Iterable[str | os.PathLike]):
        self.shards = [as_path(s) for s in shards]
        if not self.shards:
            raise ValueError("shards: empty list (no finished *.array_record shard found)")
        self.records = [read_sidecar(s) for s in self.shards]
        self.starts = np.cumsum([0] + [len(r) for r in self.records]).tolist()
        self._readers: dict[int, Any] = {}

    def __len__(self) -> int:
        return self.starts[-1]

    def shape(self, index: int) -> tuple[int, int, int]:
        """Latent (T', H', 2W') of record `index`, from the sidecar (no decoding)."""
        s, j = self._locate(index)
        return tuple(self.records[s][j]["shape"])

    def _locate(self, index: int) -> tuple[int, int]:
        if not 0 <= index < len(self):
            raise IndexError(f"record index {index} out of range [0, {len(self)})")
        s = bisect.bisect_right(self.starts, index) - 1
        return s, index - self.starts[s]

    def _reader(self, s: int):
        if s not in self._readers:
            from array_record.python.array_record_module import ArrayRecordReader
            try:
                r = ArrayRecordReader(str(self.shards[s]))
                n = r.num_records()
            except Exception as e:  # array_record raises RuntimeError/OSError variants
                raise ValueError(f"shard {self.shards[s]}: cannot open ({type(e).__name__}: "
                                 f"{str(e).splitlines()[0][:200]}); corrupt or truncated?") from None
            if n != len(self.records[s]):
                raise ValueError(f"shard {self.shards[s]}: holds {n} records, its index lists "
                                 f"{len(self.records[s])}; corrupt or mismatched sidecar")
            self._readers[s] = r
        return self._readers[s]

    def __getitem__(self, index: int) -> tuple[dict[str, np.ndarray], dict]:
        s, j = self._locate(int(index))
        where = f"shard {self.shards[s]} record {j}"
        try:
            (data,) = self._reader(s).read([j])
        except ValueError:
            raise
        except Exception as e:
            raise ValueError(f"{where}: cannot read ({type(e).__name__}: "
                             f"{str(e).splitlines()[0][:200]}); corrupt shard?") from None
        return decode_example(data, where)

    def __getstate__(self):
        d = dict(self.__dict__)
        d["_readers"] = {}
        return d
