"""A packed run: a trained model in one folder of plain files, ready to sample from.

A training run (`launch/train.py --workdir`) is an Orbax checkpoint of the adapter that points at a
converted base and VAE elsewhere. A packed run carries everything sampling needs, so it can ship with
the package or be copied as one folder (the toy model, `dreamactor_jax/toy/pretrained/`, is one):

    run.json                  {"format": "dreamactor-packed-run", "version": 1,
                               "model": MMDiTConfig fields,
                               "base": ["base-0.safetensors", ...],
                               "adapters": {NAME: {"file", "variant": "pose"|"e2e", "lora": LoRAConfig fields,
                                                   "steps", "layout": "spatial"|"temporal" (optional;
                                                   the in-context layout it trained with, default spatial)}},
                               "default_adapter": NAME,
                               "autoencoder": {"kind": "haar"} | {"kind": "hunyuan_vae", "path": DIR},
                               "text": {"text", "text_mask", "pooled"} (the fixed text condition, optional),
                               "sampling": defaults of launch/sample.py (shift, steps, segment_frames,
                                           overlap, height, width, fps),
                               "extra": anything the maker wants kept (e.g. the toy world)}
    base-K.safetensors        the backbone's parameters, named by their pytree path joined with "/"
    adapter-NAME.safetensors  one LoRA per adapter, named the same way

`--checkpoint FOLDER` samples with the default adapter, `--checkpoint FOLDER/NAME` with adapter NAME
(no such subfolder exists: NAME is looked up in run.json). The autoencoder is a config value: the
exact Haar pixel transform of the toy world (`dreamactor_jax.toy.autoencoder`) or the converted
HunyuanVideo VAE. Weights are read only from safetensors, checked name by name and shape by shape.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

FORMAT = "dreamactor-packed-run"
VERSION = 1
RUN_FILE = "run.json"
AUTOENCODERS = ("haar", "hunyuan_vae")
SHARD_BYTES = 12 * 2**20  # each file well under the 16 MiB that some transfers allow


@dataclasses.dataclass
class PackedRun:
    """What `launch/sample.py` samples with (the fields of `sampling.loading.Loaded`, plus the codec)."""

    mcfg: Any
    params: dict              # base with the adapter merged
    vcfg: Any                 # None: the autoencoder is `encode` / `decode`
    vparams: Any
    variant: str
    config: dict
    step: int
    base: str
    vae: str                  # the autoencoder kind
    encode: Callable          # pixels [1, T, H, W, 3] in [-1, 1] -> latents
    decode: Callable          # latents -> pixels
    text: dict | None         # the fixed text condition (`pipeline.text_cond`), None: encode a prompt


def resolve(path: str | os.PathLike) -> tuple[Path, str | None] | None:
    """(pack folder, adapter name or None) if `path` is a packed run or FOLDER/ADAPTER in one, else None."""
    p = Path(path)
    if (p / RUN_FILE).is_file():
        return p, None
    if (p.parent / RUN_FILE).is_file() and not p.exists():
        return p.parent, p.name
    return None


def is_packed(path: str | os.PathLike | None) -> bool:
    return path is not None and resolve(path) is not None


def read_info(folder: str | os.PathLike) -> dict:
    """run.json of a pack, checked for the fields every reader needs."""
    f = Path(folder) / RUN_FILE
    try:
        info = json.loads(f.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"--checkpoint {folder}: unreadable {RUN_FILE} ({e})") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise ValueError(f"--checkpoint {folder}: {RUN_FILE} is not a {FORMAT} file")
    if int(info.get("version", 0)) > VERSION:
        raise ValueError(f"--checkpoint {folder}: packed run version {info['version']} is newer than this code's {VERSION}")
    for key in ("model", "base", "adapters", "default_adapter", "autoencoder"):
        if key not in info:
            raise ValueError(f"--checkpoint {folder}: {RUN_FILE} has no {key!r}")
    kind = (info["autoencoder"] or {}).get("kind")
    if kind not in AUTOENCODERS:
        raise ValueError(f"--checkpoint {folder}: autoencoder kind {kind!r}, expected one of {AUTOENCODERS}")
    return info


def _adapter(info: dict, folder: Path, name: str | None) -> tuple[str, dict]:
    name = name or info["default_adapter"]
    if name not in info["adapters"]:
        raise ValueError(f"--checkpoint {folder}/{name}: no adapter {name!r} in this packed run "
                         f"(it has {sorted(info['adapters'])})")
    return name, info["adapters"][name]


def read_config(path: str | os.PathLike) -> tuple[dict, int]:
    """(config dict in the shape of a training run's, adapter steps), without reading arrays."""
    folder, name = resolve(path)
    info = read_info(folder)
    name, ad = _adapter(info, folder, name)
    sampling = dict(info.get("sampling") or {})
    cfg = {"variant": ad.get("variant", "pose"), "adapter": name, "packed": str(folder),
           "model": info["model"], "lora": ad.get("lora") or {}, "sampling": sampling,
           "objective": {"layout": ad.get("layout") or "spatial"},
           "preprocess": {"fps": sampling.get("fps")}, "extra": info.get("extra") or {}}
    return cfg, int(ad.get("steps", 0))


def model_config(info: dict, dtype: str | None = None):
    """The backbone's MMDiTConfig from run.json (runtime dtype set when given)."""
    from dreamactor_jax.models.config import MMDiTConfig

    fields = {f.name for f in dataclasses.fields(MMDiTConfig)}
    d = {k: (tuple(v) if isinstance(v, list) else v) for k, v in info["model"].items() if k in fields}
    if dtype:
        d.update(dtype=dtype, param_dtype=dtype)
    return MMDiTConfig(**d)


def lora_config(entry: dict):
    from dreamactor_jax.models.lora import LoRAConfig

    d = dict(entry.get("lora") or {})
    if "targets" in d:
        d["targets"] = tuple(d["targets"])
    return LoRAConfig(**d)


def _name(path) -> str:
    return "/".join(str(getattr(k, "key", k)) for k in path)


def flatten(tree) -> dict[str, np.ndarray]:
    """{path joined with "/": array} of a pytree of arrays."""
    return {_name(p): np.asarray(v) for p, v in jax.tree_util.tree_flatten_with_path(jax.device_get(tree))[0]}


def fill(like, flat: dict, what: str, dtype) -> Any:
    """A pytree shaped like `like` (shapes only) from `flat`, checked name by name and shape by shape."""
    flat = dict(flat)
    paths, treedef = jax.tree_util.tree_flatten_with_path(like)
    leaves = []
    for p, spec in paths:
        n = _name(p)
        if n not in flat:
            raise ValueError(f"{what}: has no {n!r} (saved for another model config?)")
        if tuple(flat[n].shape) != tuple(spec.shape):
            raise ValueError(f"{what}: {n} has shape {tuple(flat[n].shape)}, the config needs {tuple(spec.shape)}")
        leaves.append(jnp.asarray(np.asarray(flat.pop(n), np.float32), dtype))
    if flat:
        raise ValueError(f"{what}: has names the config does not: {sorted(flat)[:3]}")
    return jax.tree_util.tree_unflatten(treedef, leaves)


def _load_file(path: Path, what: str) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    if not path.is_file():
        raise ValueError(f"{what}: file {path} is missing")
    return load_file(str(path))


def load_parts(path: str | os.PathLike, dtype: str = "float32") -> tuple[Any, dict, dict, dict]:
    """(MMDiTConfig, base params, {adapter name: (lora params, LoRAConfig, entry)}, run.json) of a pack,
    nothing merged: for code that samples the base alone as well as each adapter (the toy demo)."""
    from dreamactor_jax.models import lora as lora_lib
    from dreamactor_jax.models import mmdit

    folder, _ = resolve(path) or (Path(path), None)
    info = read_info(folder)
    mcfg = model_config(info, dtype)
    flat = {}
    for f in info["base"]:
        flat.update(_load_file(folder / f, f"--checkpoint {folder}"))
    like = jax.eval_shape(lambda: mmdit.init_params(mcfg, jax.random.PRNGKey(0)))
    base = fill(like, flat, f"--checkpoint {folder} base", jnp.dtype(dtype))
    adapters = {}
    for name, entry in info["adapters"].items():
        lcfg = lora_config(entry)
        like = jax.eval_shape(lambda lcfg=lcfg: lora_lib.init_lora(mcfg, lcfg, jax.random.PRNGKey(0)))
        lora = fill(like, _load_file(folder / entry["file"], f"adapter {name}"), f"--checkpoint {folder} adapter {name}",
                     jnp.float32)
        adapters[name] = (lora, lcfg, entry)
    return mcfg, base, adapters, info


def codec(auto: dict, dtype: str = "float32") -> tuple[Callable, Callable, str]:
    """(encode, decode, description) of an autoencoder entry of run.json."""
    kind = auto.get("kind")
    if kind == "haar":
        from dreamactor_jax.toy import autoencoder as haar

        return haar.encode, haar.decode, "haar (exact pixel transform)"
    if kind == "hunyuan_vae":
        from dreamactor_jax.models import vaes
        from dreamactor_jax.weights.checkpoint import load_config, load_params

        vcfg = load_config(auto["path"], dtype=dtype)
        vparams = load_params(auto["path"])
        vmod = vaes.module_for(vcfg)
        return (lambda x: vmod.encode_latents(vparams, vcfg, x)), (lambda z: vmod.decode_latents(vparams, vcfg, z)), \
            str(auto["path"])
    raise ValueError(f"autoencoder kind {kind!r}: expected one of {AUTOENCODERS}")


def text_condition(info: dict) -> dict | None:
    """The stored fixed text condition as `pipeline.text_cond` makes it (no CFG), or None."""
    t = info.get("text")
    if not t:
        return None
    from dreamactor_jax.sampling.pipeline import text_cond

    return text_cond(np.asarray(t["text"], np.float32), np.asarray(t["text_mask"], np.int32),
                     np.asarray(t["pooled"], np.float32))


def load(path: str | os.PathLike, *, dtype: str | None = None, base: str | None = None,
         vae: str | None = None) -> PackedRun:
    """The pack's base with the chosen adapter merged, its autoencoder and text: what sample.py needs."""
    from dreamactor_jax.models import lora as lora_lib

    folder, name = resolve(path)
    if base or vae:
        raise ValueError(f"--base/--vae: {folder} is a packed run, which carries its own base and autoencoder")
    dtype = dtype or ("float32" if jax.default_backend() == "cpu" else "bfloat16")
    config, step = read_config(path)
    mcfg, base, adapters, info = load_parts(folder, dtype)
    lora, lcfg, _ = adapters[config["adapter"]]
    params = jax.jit(lambda p, a: lora_lib.merge_lora(p, a, mcfg, lcfg))(base, lora)
    encode, decode, desc = codec(info["autoencoder"], dtype)
    return PackedRun(mcfg, params, None, None, config["variant"], config, step, str(folder), desc, encode, decode,
                     text_condition(info))


def sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _write_tensors(tensors: dict[str, np.ndarray], path: Path, dtype: str) -> None:
    import ml_dtypes
    from safetensors.numpy import save_file

    dt = {"bfloat16": ml_dtypes.bfloat16, "float16": np.float16, "float32": np.float32}[dtype]
    save_file({k: np.ascontiguousarray(np.asarray(v, np.float32).astype(dt)) for k, v in tensors.items()}, str(path))


def save(folder: str | os.PathLike, *, mcfg, base: dict, adapters: dict[str, tuple[dict, Any, dict]],
         default_adapter: str, autoencoder: dict, sampling: dict | None = None, text: dict | None = None,
         extra: dict | None = None, dtype: str = "bfloat16") -> dict[str, str]:
    """Writes a packed run into the new folder `folder`, atomically; returns {file name: sha256}.

    adapters: {name: (lora params, LoRAConfig, entry extras such as {"variant": "pose", "steps": 2000})}.
    Weights are stored in `dtype` (bfloat16, float16 or float32); the base is split into files of at
    most ~12 MiB.
    """
    from dreamactor_jax.utils import atomic_path

    folder = Path(folder)
    if folder.exists():
        raise FileExistsError(f"{folder}: exists already (choose a new folder)")
    if default_adapter not in adapters:
        raise ValueError(f"default_adapter {default_adapter!r}: not among {sorted(adapters)}")
    if (autoencoder or {}).get("kind") not in AUTOENCODERS:
        raise ValueError(f"autoencoder: kind must be one of {AUTOENCODERS}, got {autoencoder!r}")
    width = np.dtype(np.float16).itemsize if dtype != "float32" else 4
    shards, size = [{}], 0
    for n, arr in flatten(base).items():
        if size and size + arr.size * width > SHARD_BYTES:
            shards, size = shards + [{}], 0
        shards[-1][n] = arr
        size += arr.size * width
    info = {"format": FORMAT, "version": VERSION, "model": dataclasses.asdict(mcfg),
            "base": [f"base-{i}.safetensors" for i in range(len(shards))], "adapters": {},
            "default_adapter": default_adapter, "autoencoder": dict(autoencoder), "dtype": dtype,
            "sampling": dict(sampling or {}), "extra": dict(extra or {})}
    if text is not None:
        info["text"] = {k: np.asarray(v).tolist() for k, v in text.items()}
    with atomic_path(folder, suffix="") as tmp:
        tmp.mkdir()
        for f, shard in zip(info["base"], shards):
            _write_tensors(shard, tmp / f, dtype)
        for name, (lora, lcfg, entry) in adapters.items():
            f = f"adapter-{name}.safetensors"
            _write_tensors(flatten(lora), tmp / f, dtype)
            info["adapters"][name] = {"file": f, "variant": "pose", **dict(entry), "lora": dataclasses.asdict(lcfg)}
        (tmp / RUN_FILE).write_text(json.dumps(info, indent=1))
        return {p.name: sha256(p) for p in sorted(tmp.iterdir()) if p.suffix == ".safetensors"}
