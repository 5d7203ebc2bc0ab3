"""Streaming conversion of PyTorch checkpoints (diffusers or original release) to an Orbax folder.

`convert(src, out, ...)`:
1. opens the source (a diffusers folder with config.json and shards, or one file in either
   format) and presents it under diffusers names (`original_map.OriginalView` for the release);
2. decides the model and its config (config.json, or `variant` checked against the weights);
3. validates BEFORE writing: every expected key present with its shape and no unexpected key,
   else one ValueError listing missing / unexpected / mis-shaped names;
4. builds the params one leaf at a time (a stacked leaf gathers its layers), casts it to the
   output dtype, hands it to `checkpoint.LeafWriter` and frees it; peak memory is about the
   largest leaf plus the writer's buffer, never the model;
5. writes into a temporary folder next to `out` and renames it at the end, so a failure leaves
   nothing behind and an existing `out` is replaced only with `overwrite=True`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import jax
import ml_dtypes
import numpy as np

from dreamactor_jax.weights import checkpoint, original_map, safetensors_io
from dreamactor_jax.weights.safetensors_io import TensorSource

TRANSFORMER_CLASS = "HunyuanVideoTransformer3DModel"
VAE_CLASS = "AutoencoderKLHunyuanVideo"
MMDIT_VARIANTS = ("t2v", "i2v-16ch", "i2v-33ch", "hv15", "hv15-meanflow")
DTYPES = {"bf16": ml_dtypes.bfloat16, "bfloat16": ml_dtypes.bfloat16, "fp32": np.float32, "float32": np.float32}
WIDE_CHANNELS = 33


@dataclass
class Target:
    """What the converter fills: the model's expected diffusers tensors and how each lands in the params."""

    model: str  # "mmdit" | "vae"
    config: Any
    expected: dict[str, tuple[int, ...]]  # diffusers key -> PyTorch shape
    leaf_shapes: dict[tuple[str, ...], tuple[int, ...]]  # params path -> full (stacked) shape
    locate: Callable[[str, int], tuple[tuple[str, ...], int | None]]  # key, ndim -> (path, layer)
    to_flax: Callable[[str, np.ndarray], np.ndarray]  # key, torch-layout array -> params layout
    stacked_paths: frozenset = frozenset()  # params paths with a leading layer axis

    def stacked(self, path: tuple[str, ...]) -> bool:
        return tuple(path) in self.stacked_paths


def mmdit_target(cfg) -> Target:
    from dreamactor_jax.models.layers import is_spec
    from dreamactor_jax.models.mmdit import param_specs
    from dreamactor_jax.weights import diffusers_map

    flat = jax.tree_util.tree_flatten_with_path(param_specs(cfg), is_leaf=is_spec)[0]
    leaf_shapes = {tuple(k.key for k in kp): tuple(spec.shape) for kp, spec in flat}
    stacked = frozenset(tuple(k.key for k in kp) for kp, spec in flat if spec.axes[:1] == ("layers",))
    return Target(
        "mmdit",
        cfg,
        diffusers_map.expected_torch_shapes(cfg),
        leaf_shapes,
        diffusers_map.torch_key_to_path,
        lambda key, a: diffusers_map.torch_to_flax(key, a).array,
        stacked,
    )


def _flatten_shapes(tree: dict, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], tuple[int, ...]]:
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flatten_shapes(v, prefix + (k,)))
        else:
            out[prefix + (k,)] = tuple(v)
    return out


def vae_target(cfg) -> Target:
    from dreamactor_jax.weights import vae_map
    from dreamactor_jax.weights.vae_map import param_shapes

    paths = vae_map.flax_paths(cfg)
    return Target(
        "vae",
        cfg,
        vae_map.expected_keys(cfg),
        _flatten_shapes(param_shapes(cfg)),
        lambda key, ndim: (paths[key], None),
        lambda key, a: vae_map.to_flax(key, a)[1],
    )


# ----------------------------------------------------------------------------- the source


@dataclass
class Source:
    """A checkpoint under diffusers names, with what was learnt about it."""

    tensors: TensorSource
    config_json: dict | None
    format: str  # "diffusers" | "original"
    model: str  # "mmdit" | "vae"
    unknown: list[str]  # original names no rule maps (reported as unexpected)


def _model_from_keys(keys: list[str]) -> tuple[str, str] | None:
    """(model, format) guessed from tensor names, or None."""
    ks = set(keys)
    if any(original_map.VAE15_ORIGINAL.match(k.removeprefix("vae.")) for k in ks):
        return "vae", "original"  # the HunyuanVideo-1.5 release's VAE names (encoder.down.0.block.0...)
    if "img_in.proj.weight" in ks or any(k.startswith(("double_blocks.", "single_blocks.")) for k in ks):
        return "mmdit", "original"
    if "x_embedder.proj.weight" in ks or any(k.startswith("transformer_blocks.") for k in ks):
        return "mmdit", "diffusers"
    if any(k.startswith(("encoder.", "decoder.")) for k in ks):
        return "vae", "diffusers"
    if any(k.startswith(("vae.encoder.", "vae.decoder.")) for k in ks):
        return "vae", "original"
    return None


def open_source(src: str | os.PathLike, fmt: str = "auto", model: str = "auto") -> Source:
    """Opens a checkpoint folder or file and recognises its format and model."""
    src = Path(src)
    if fmt not in ("auto", "diffusers", "original"):
        raise ValueError(f"format: expected auto, diffusers or original, got {fmt!r}")
    if model not in ("auto", "transformer", "mmdit", "vae"):
        raise ValueError(f"model: expected auto, transformer or vae, got {model!r}")
    if not src.exists():
        raise FileNotFoundError(f"{src}: no such checkpoint file or folder")
    if src.is_dir():
        tensors, config_json = safetensors_io.open_folder(src)
    else:
        tensors, config_json = safetensors_io.open_file(src), None
    guess = _model_from_keys(tensors.keys())
    if guess is None:
        raise ValueError(f"{src}: not a HunyuanVideo transformer or VAE checkpoint (tensor names like {sorted(tensors.keys())[:3]})")
    found_model, found_fmt = guess
    if config_json is not None and "_class_name" in config_json:
        from dreamactor_jax.models.config import BACKBONES

        cls = config_json["_class_name"]
        classes = {**{b.diffusers_class: "mmdit" for b in BACKBONES.values()}, VAE_CLASS: "vae",
                   checkpoint.VAE15_CLASS: "vae"}
        want = classes.get(cls)
        if want is None:
            raise ValueError(f"{src}/config.json: _class_name {cls!r} is not one of {sorted(classes)}")
        if want != found_model:
            raise ValueError(f"{src}: config.json says {cls} but the tensor names are those of a {found_model}")
    if model != "auto" and {"transformer": "mmdit"}.get(model, model) != found_model:
        raise ValueError(f"model: --model {model} given, but {src} holds a {'transformer' if found_model == 'mmdit' else 'vae'}")
    if fmt != "auto" and fmt != found_fmt:
        raise ValueError(f"format: --format {fmt} given, but {src} has {found_fmt}-format tensor names")
    unknown: list[str] = []
    if found_fmt == "original" and config_json is not None and "_class_name" not in config_json:
        config_json = None  # a release's own config.json (not diffusers'): the weights and --variant decide
    if found_fmt == "original":
        view = original_map.OriginalView(tensors, "transformer" if found_model == "mmdit" else "vae")
        tensors, unknown = view, view.unknown
    return Source(tensors, config_json, found_fmt, found_model, unknown)


# ----------------------------------------------------------------------------- the config


def _arch(cfg) -> dict:
    return {"backbone": cfg.backbone, **cfg.to_diffusers_config()}


def _fingerprint(cfg) -> tuple:
    """What the tensor names and the patch embedding tell about a transformer config."""
    return (cfg.backbone, cfg.in_channels, cfg.guidance_embeds, cfg.use_meanflow)


def mmdit_config(source: Source, variant: str | None):
    """The transformer's config: from config.json (checked against `variant`) or from `variant`.

    Without config.json the variant must be given unless the weights decide it (33 input
    channels and no guidance embedder can only be i2v-33ch; glyph/image embedders are HunyuanVideo-1.5).
    """
    from dreamactor_jax.models.config import MMDiTConfig

    keys = set(source.tensors.keys())
    if "x_embedder.proj.weight" not in keys:
        raise ValueError("checkpoint: no x_embedder.proj.weight (img_in.proj.weight); cannot tell the input channels")
    in_ch = source.tensors.info("x_embedder.proj.weight").shape[1]
    guidance = any(k.startswith("time_text_embed.guidance_embedder.") for k in keys)
    backbone = "hunyuan_video15" if "cond_type_embed.weight" in keys else "hunyuan_video"
    meanflow = any(k.startswith("time_embed.timestep_embedder_r.") for k in keys)
    found = (backbone, in_ch, guidance, meanflow)
    fits = [v for v in MMDIT_VARIANTS if _fingerprint(MMDiTConfig.named(v)) == found]
    facts = (f"{in_ch} input channels, {'a' if guidance else 'no'} guidance embedder"
             f"{', MeanFlow' if meanflow else ''} ({backbone})")
    if source.config_json is not None:
        cfg = MMDiTConfig.from_diffusers_config(source.config_json)
        if variant is not None:
            named = MMDiTConfig.named(variant)
            diff = {k: (v, _arch(named).get(k)) for k, v in _arch(cfg).items() if _arch(named).get(k) != v}
            if diff:
                shown = ", ".join(f"{k} {a!r} (variant: {b!r})" for k, (a, b) in diff.items())
                raise ValueError(f"variant: {variant!r} does not match the checkpoint's config.json: {shown}")
    else:
        if variant is None:
            if len(fits) != 1:
                raise ValueError(f"variant: the weights ({facts}) fit {fits or 'no named variant'}; pass --variant")
            variant = fits[0]
        cfg = MMDiTConfig.named(variant)
    if _fingerprint(cfg) != found:
        name = variant or "config.json"
        raise ValueError(
            f"variant: {name!r} expects {cfg.in_channels} input channels and {'a' if cfg.guidance_embeds else 'no'} "
            f"guidance embedder{', MeanFlow' if cfg.use_meanflow else ''} ({cfg.backbone}); "
            f"the weights have {facts} (they fit {fits or 'no named variant'})"
        )
    return cfg


def vae_config(source: Source, variant: str | None):
    from dreamactor_jax.models.vae import VAEConfig

    from dreamactor_jax.models.vae15 import VAE15Config

    named = lambda v: (VAE15Config if v.endswith("15") else VAEConfig).named(v)
    if source.config_json is not None:
        cfg = checkpoint.vae_config_from_dict(source.config_json)
        if variant is not None and (checkpoint.vae_class(named(variant)) != checkpoint.vae_class(cfg) or
                                    checkpoint.vae_config_to_dict(named(variant)) != checkpoint.vae_config_to_dict(cfg)):
            raise ValueError(f"variant: VAE {variant!r} does not match the checkpoint's config.json")
        return cfg
    rms = any(k.endswith(".gamma") for k in source.tensors.keys())  # RMS norms: the HunyuanVideo-1.5 VAE
    return named(variant or ("hunyuan15" if rms else "hunyuan"))


# ----------------------------------------------------------------------------- validation


def _listing(names: list[str], limit: int = 12) -> str:
    shown = ", ".join(names[:limit])
    return f"[{shown}{f', ... +{len(names) - limit} more' if len(names) > limit else ''}]"


def validate(source: Source, target: Target, widen_from: int | None = None) -> None:
    """Every expected tensor present with its shape, nothing unexpected; else one ValueError."""
    have = set(source.tensors.keys())
    missing = sorted(set(target.expected) - have)
    unexpected = sorted((have - set(target.expected)) | set(source.unknown))
    wrong = []
    for k in sorted(have & set(target.expected)):
        got, want = source.tensors.info(k).shape, target.expected[k]
        if widen_from is not None and k == "x_embedder.proj.weight":
            want = want[:1] + (widen_from,) + want[2:]
        if tuple(got) != tuple(want):
            wrong.append(f"{k} {list(got)} (expected {list(want)})")
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing {_listing(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected {_listing(unexpected)}")
        if wrong:
            parts.append(f"{len(wrong)} with the wrong shape {_listing(wrong)}")
        raise ValueError(f"checkpoint does not fit the {target.model} config: " + "; ".join(parts))


# ----------------------------------------------------------------------------- conversion


def plan_leaves(target: Target) -> dict[tuple[str, ...], list[tuple[str, int | None]]]:
    """params path -> the diffusers keys that fill it (with their layer index in a stacked leaf)."""
    plan: dict[tuple[str, ...], list[tuple[str, int | None]]] = {}
    for path, shape in target.leaf_shapes.items():  # a stacked leaf of zero layers has no source tensor
        if target.stacked(path) and shape[0] == 0:
            plan[path] = []
    for key, shape in target.expected.items():
        path, layer = target.locate(key, len(shape))
        plan.setdefault(tuple(path), []).append((key, layer))
    missing = sorted("/".join(p) for p in set(target.leaf_shapes) - set(plan))
    extra = sorted("/".join(p) for p in set(plan) - set(target.leaf_shapes))
    if missing or extra:  # a mapping bug, not a user error; still say exactly what
        raise ValueError(f"weights mapping: params leaves without a source {_listing(missing)}, unknown leaves {_listing(extra)}")
    return plan


def fortran_order(a: np.ndarray, tile: int = 256) -> np.ndarray:
    """The same 2-D array stored column-major, copied tile by tile (cache-friendly).

    The mappings transpose Linear weights ([out, in] -> [in, out]) with `ascontiguousarray(a.T)`,
    a naive strided copy that runs at ~100 MB/s on bf16; handing them a column-major array makes
    that copy a no-op and this tiled one is 2-3x faster. Values are unchanged.
    """
    if a.ndim != 2 or a.flags.f_contiguous:
        return a
    out = np.empty(a.shape, a.dtype, order="F")
    out_t = out.T  # C-contiguous [cols, rows] view
    rows, cols = a.shape
    for i in range(0, rows, tile):
        for j in range(0, cols, tile):
            out_t[j : j + tile, i : i + tile] = a[i : i + tile, j : j + tile].T
    return out


def _read(source: Source, key: str, widen_to: int | None) -> np.ndarray:
    a = fortran_order(source.tensors.read(key))
    if widen_to is not None and key == "x_embedder.proj.weight":
        pad = [(0, 0)] * a.ndim
        pad[1] = (0, widen_to - a.shape[1])
        a = np.pad(a, pad)  # new input channels start at zero: the widened model ignores them
    return a


def build_leaf(source: Source, target: Target, path, items, dtype, widen_to=None) -> np.ndarray:
    """One params leaf in `dtype`, gathered from its source tensors (layers of a stacked leaf)."""
    shape = target.leaf_shapes[path]
    if not items:  # a stack of zero layers
        if not (target.stacked(path) and shape[0] == 0):
            raise ValueError(f"weights mapping: {'/'.join(path)} {list(shape)} has no source tensor")
        return np.empty(shape, dtype)
    if len(items) == 1 and items[0][1] is None:
        key = items[0][0]
        leaf = np.asarray(target.to_flax(key, _read(source, key, widen_to))).astype(dtype, copy=False)
    else:
        leaf = np.empty(shape, dtype)
        seen = set()
        for key, layer in items:
            if layer is None or layer in seen or not 0 <= layer < shape[0]:
                raise ValueError(f"weights mapping: {key} gives layer {layer} of {'/'.join(path)} {list(shape)}")
            seen.add(layer)
            leaf[layer] = target.to_flax(key, _read(source, key, widen_to))
        if len(seen) != shape[0]:
            raise ValueError(f"weights mapping: {'/'.join(path)} has {shape[0]} layers, {len(seen)} filled")
    if tuple(leaf.shape) != tuple(shape):
        raise ValueError(f"weights mapping: {'/'.join(path)} came out {list(leaf.shape)}, expected {list(shape)}")
    return leaf


def _out_config(source: Source, target: Target, src, dtype_name: str, variant, widen_from) -> dict:
    if target.model == "mmdit":
        raw = {"_class_name": target.config.diffusers_class, **target.config.to_diffusers_config()}
        raw["rope_axes_dim"] = list(raw["rope_axes_dim"])
    else:
        raw = {"_class_name": checkpoint.vae_class(target.config), **checkpoint.vae_config_to_dict(target.config)}
    raw["_dreamactor"] = {
        "model": target.model,
        "dtype": dtype_name,
        "source": str(Path(src).absolute()),
        "source_format": source.format,
        "variant": variant,
        "widened_from_in_channels": widen_from,
        "num_params": int(sum(int(np.prod(s)) for s in target.leaf_shapes.values())),
    }
    return raw


def convert(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    fmt: str = "auto",
    model: str = "auto",
    variant: str | None = None,
    dtype: str = "bf16",
    widen: bool = False,
    overwrite: bool = False,
    flush_bytes: int = 256 << 20,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Converts `src` into the folder `out` (params + config.json); returns a short summary dict."""
    t0 = time.time()
    out = Path(out).absolute()
    if dtype not in DTYPES:
        raise ValueError(f"dtype: expected one of {sorted(DTYPES)}, got {dtype!r}")
    np_dtype = np.dtype(DTYPES[dtype])
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out}: output folder exists (pass --overwrite to replace it)")
    source = open_source(src, fmt, model)
    widen_from = None
    if source.model == "mmdit":
        cfg = mmdit_config(source, variant)
        if widen:
            if cfg.in_channels != 16 or cfg.image_condition_type is not None:
                raise ValueError(f"widen: only a T2V checkpoint (16 input channels) widens to {WIDE_CHANNELS}; this one has {cfg.in_channels} ({cfg.image_condition_type})")
            widen_from = cfg.in_channels
            cfg = cfg.replace(in_channels=WIDE_CHANNELS, image_condition_type="latent_concat")
        target = mmdit_target(cfg)
    else:
        if widen:
            raise ValueError("widen: applies to the transformer only, not the VAE")
        target = vae_target(vae_config(source, variant))
    validate(source, target, widen_from)
    plan = plan_leaves(target)

    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        writer = checkpoint.LeafWriter(tmp / checkpoint.PARAMS_DIR, flush_bytes=flush_bytes)
        # biggest leaves first: the writer's buffer is then empty when the largest one is built
        order = sorted(plan, key=lambda p: -int(np.prod(target.leaf_shapes[p])))
        nbytes, empty = 0, {}
        for i, path in enumerate(order):
            leaf = build_leaf(source, target, path, plan[path], np_dtype, WIDE_CHANNELS if widen_from else None)
            nbytes += leaf.nbytes
            if leaf.size:
                writer.add(path, leaf)
            else:  # a stack of zero layers: Orbax cannot store it; config.json lists it instead
                empty["/".join(path)] = list(leaf.shape)
            del leaf
            if log is not None:
                log(f"[{i + 1}/{len(order)}] {'/'.join(path)} {list(target.leaf_shapes[path])}")
        writer.finalize()
        config = _out_config(source, target, src, np_dtype.name, variant, widen_from)
        if empty:
            config["_dreamactor"]["empty_leaves"] = empty
        (tmp / checkpoint.CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
        old = None
        if out.exists():
            old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(out, old)
        os.rename(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {
        "out": str(out),
        "model": target.model,
        "format": source.format,
        "tensors": len(target.expected),
        "leaves": len(plan),
        "bytes": nbytes,
        "dtype": np_dtype.name,
        "seconds": round(time.time() - t0, 2),
        "config": dataclasses.asdict(target.config) if dataclasses.is_dataclass(target.config) else str(target.config),
    }
