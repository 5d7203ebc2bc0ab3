"""Reading PyTorch checkpoints tensor by tensor, with bounded memory.

A `TensorSource` lists tensor names with their shapes and dtypes (from file headers alone) and
reads one tensor, or a block of its leading rows, at a time. Safetensors files are read with
plain file reads rather than a memory map, so the only memory a read uses is
the returned array: mapped file pages would count towards the process's resident size and make
a 25 GB conversion look like it needs 25 GB. Headers are validated up front (well-formed JSON,
known dtypes, sizes that match shapes, data inside the file), so a truncated or corrupt file
fails with one line before anything is converted.

Sources:
- `SafetensorsSource(files)`: one or several `.safetensors` files (a sharded checkpoint).
- `TorchSource(path)`: a `.pt`/`.pth`/`.bin` file through `torch.load(weights_only=True, mmap=True)`.
- `open_folder(path)`: a diffusers folder (`config.json` plus one file or an index of shards).
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Protocol

import ml_dtypes
import numpy as np

# safetensors dtype names -> numpy dtypes (bf16 through ml_dtypes, which jax also uses).
_DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype(np.float64),
    "F32": np.dtype(np.float32),
    "F16": np.dtype(np.float16),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "I64": np.dtype(np.int64),
    "I32": np.dtype(np.int32),
    "I16": np.dtype(np.int16),
    "I8": np.dtype(np.int8),
    "U8": np.dtype(np.uint8),
    "BOOL": np.dtype(np.bool_),
}
_MAX_HEADER = 100 * 1024 * 1024  # the safetensors library's own limit


@dataclass(frozen=True)
class TensorInfo:
    """Where one tensor lives and what it is, read from a header."""

    shape: tuple[int, ...]
    dtype: np.dtype
    file: str = ""
    offset: int = 0  # absolute byte offset of the data in `file`

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


class TensorSource(Protocol):
    """What the converter needs from a checkpoint: names, shapes, and reads of one tensor."""

    def keys(self) -> list[str]: ...

    def info(self, key: str) -> TensorInfo: ...

    def read(self, key: str, rows: tuple[int, int] | None = None) -> np.ndarray: ...


def read_header(path: str | os.PathLike) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    """Parses and validates one safetensors header; returns (tensors, `__metadata__`).

    Raises a one-line ValueError naming the file when it is truncated or malformed.
    """
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ValueError(f"{path}: not a safetensors file (only {size} bytes)")
        (n,) = struct.unpack("<Q", head)
        if n == 0 or n > _MAX_HEADER or 8 + n > size:
            raise ValueError(f"{path}: truncated or not a safetensors file (header length {n}, file size {size})")
        raw = f.read(n)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: corrupt safetensors header ({e.__class__.__name__}: {e})") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path}: corrupt safetensors header (not a JSON object)")
    meta = header.pop("__metadata__", None) or {}
    base = 8 + n
    out: dict[str, TensorInfo] = {}
    spans = []
    for name, entry in header.items():
        try:
            dtype = _DTYPES[entry["dtype"]]
            shape = tuple(int(s) for s in entry["shape"])
            begin, end = (int(o) for o in entry["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{path}: corrupt safetensors header entry for tensor {name!r}: {entry!r}") from None
        info = TensorInfo(shape, dtype, str(path), base + begin)
        if any(s < 0 for s in shape) or end - begin != info.nbytes or begin < 0:
            raise ValueError(
                f"{path}: corrupt safetensors header: tensor {name!r} {entry['dtype']}{list(shape)} "
                f"needs {info.nbytes} bytes but spans {end - begin}"
            )
        if base + end > size:
            raise ValueError(
                f"{path}: truncated safetensors file: tensor {name!r} ends at byte {base + end}, file has {size}"
            )
        spans.append((begin, end, name))
        out[name] = info
    spans.sort()
    for (b0, e0, n0), (b1, e1, n1) in zip(spans, spans[1:]):
        if b1 < e0:
            raise ValueError(f"{path}: corrupt safetensors header: tensors {n0!r} and {n1!r} overlap")
    return out, meta


def _pread_array(info: TensorInfo, rows: tuple[int, int] | None) -> np.ndarray:
    """Reads the whole tensor, or rows [r0, r1) of its first axis, into a fresh array."""
    shape = info.shape
    offset = info.offset
    if rows is not None:
        r0, r1 = rows
        if not shape or not 0 <= r0 <= r1 <= shape[0]:
            raise ValueError(f"rows: expected a range inside [0, {shape[0] if shape else 0}], got {rows}")
        row_bytes = math.prod(shape[1:]) * info.dtype.itemsize
        offset += r0 * row_bytes
        shape = (r1 - r0,) + shape[1:]
    out = np.empty(shape, info.dtype)
    buf = memoryview(out.reshape(-1).view(np.uint8))
    with open(info.file, "rb", buffering=0) as f:
        f.seek(offset)
        done = 0
        while done < len(buf):
            got = f.readinto(buf[done:])
            if not got:
                raise ValueError(f"{info.file}: truncated safetensors file (short read at byte {offset + done})")
            done += got
    return out


class SafetensorsSource:
    """One checkpoint spread over one or several safetensors files."""

    def __init__(self, files: Iterable[str | os.PathLike], weight_map: dict[str, str] | None = None):
        self.files = [str(f) for f in files]
        if not self.files:
            raise ValueError("safetensors source: no files given")
        self._infos: dict[str, TensorInfo] = {}
        self.metadata: dict[str, str] = {}
        for f in self.files:
            infos, meta = read_header(f)
            self.metadata.update(meta)
            for k, info in infos.items():
                if k in self._infos:
                    raise ValueError(f"{f}: tensor {k!r} is also in {self._infos[k].file}")
                self._infos[k] = info
        if weight_map is not None:
            where = {k: Path(v.file).name for k, v in self._infos.items()}
            missing = sorted(k for k in weight_map if k not in where)
            moved = sorted(k for k, fn in weight_map.items() if k in where and where[k] != Path(fn).name)
            if missing or moved:
                raise ValueError(
                    f"safetensors index: {len(missing)} tensors listed but absent from their shard "
                    f"{missing[:5]}, {len(moved)} in another shard than listed {moved[:5]}"
                )

    def keys(self) -> list[str]:
        return list(self._infos)

    def info(self, key: str) -> TensorInfo:
        return self._infos[key]

    def read(self, key: str, rows: tuple[int, int] | None = None) -> np.ndarray:
        return _pread_array(self._infos[key], rows)


def _unwrap_state_dict(obj: Any, path: Path) -> dict:
    """The original release nests its tensors under "module" (DeepSpeed; "ema" in EMA-only files),
    others under "model" / "state_dict"; "module" wins when both it and "ema" are there, as in
    Tencent's loader (load_key "module")."""
    for _ in range(3):
        if isinstance(obj, dict):
            for wrapper in ("module", "ema", "model", "state_dict"):
                if wrapper in obj and isinstance(obj[wrapper], dict):
                    obj = obj[wrapper]
                    break
    if not isinstance(obj, dict) or not obj:
        raise ValueError(f"{path}: expected a state dict of tensors, got {type(obj).__name__}")
    return obj


class TorchSource:
    """A `.pt` checkpoint loaded with `weights_only=True` (and a memory map when the file allows)."""

    def __init__(self, path: str | os.PathLike):
        import torch

        self.path = Path(path)
        try:
            try:
                obj = torch.load(self.path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as e:  # legacy (non-zip) files cannot be mapped: load them plainly
                if "mmap" not in str(e):
                    raise
                obj = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - torch raises many kinds for a bad file
            msg = str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__
            raise ValueError(f"{self.path}: cannot load with torch.load(weights_only=True): {msg}") from None
        sd = _unwrap_state_dict(obj, self.path)
        self._tensors = {}
        for k, v in sd.items():
            if not isinstance(v, torch.Tensor):
                raise ValueError(f"{self.path}: entry {k!r} is a {type(v).__name__}, not a tensor")
            self._tensors[k] = v

    def keys(self) -> list[str]:
        return list(self._tensors)

    def info(self, key: str) -> TensorInfo:
        t = self._tensors[key]
        return TensorInfo(tuple(t.shape), _torch_to_np_dtype(t.dtype), str(self.path), 0)

    def read(self, key: str, rows: tuple[int, int] | None = None) -> np.ndarray:
        t = self._tensors[key]
        if rows is not None:
            t = t[rows[0] : rows[1]]
        return torch_to_numpy(t)


def _torch_to_np_dtype(dtype) -> np.dtype:
    import torch

    table = {
        torch.float64: np.float64,
        torch.float32: np.float32,
        torch.float16: np.float16,
        torch.bfloat16: ml_dtypes.bfloat16,
        torch.int64: np.int64,
        torch.int32: np.int32,
        torch.int16: np.int16,
        torch.int8: np.int8,
        torch.uint8: np.uint8,
        torch.bool: np.bool_,
    }
    if dtype not in table:
        raise ValueError(f"tensor dtype: {dtype} is not supported")
    return np.dtype(table[dtype])


def torch_to_numpy(t) -> np.ndarray:
    """A copy of a CPU torch tensor as numpy; bf16 is carried bit-exactly through ml_dtypes."""
    import torch

    t = t.detach().contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16).copy()
    return t.numpy().copy()


def open_file(path: str | os.PathLike) -> TensorSource:
    """One checkpoint file: `.safetensors`, or `.pt`/`.pth`/`.bin`/`.ckpt` through torch.load."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    if path.suffix == ".safetensors":
        return SafetensorsSource([path])
    if path.suffix in (".pt", ".pth", ".bin", ".ckpt"):
        return TorchSource(path)
    raise ValueError(f"{path}: expected a .safetensors or .pt/.pth/.bin file")


def open_folder(path: str | os.PathLike) -> tuple[TensorSource, dict | None]:
    """A checkpoint folder: returns (source, parsed config.json or None).

    The folder holds `*.safetensors.index.json` (diffusers/transformers sharding, whose weight map
    names the shards) or one or several `*.safetensors` files.
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such checkpoint folder")
    config = None
    if (path / "config.json").is_file():
        try:
            config = json.loads((path / "config.json").read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path / 'config.json'}: not valid JSON ({e})") from None
    indexes = sorted(path.glob("*.safetensors.index.json"))
    if len(indexes) > 1:
        raise ValueError(f"{path}: several safetensors indexes {[i.name for i in indexes]}; expected one")
    if indexes:
        try:
            weight_map = json.loads(indexes[0].read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ValueError(f"{indexes[0]}: not a safetensors index with a weight_map ({e})") from None
        shard_names = sorted(set(weight_map.values()))
        missing = [n for n in shard_names if not (path / n).is_file()]
        if missing:
            raise ValueError(f"{indexes[0]}: shards listed in the index are missing: {missing}")
        return SafetensorsSource([path / n for n in shard_names], weight_map), config
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise ValueError(f"{path}: not a checkpoint folder (no *.safetensors files or index)")
    return SafetensorsSource(files), config
