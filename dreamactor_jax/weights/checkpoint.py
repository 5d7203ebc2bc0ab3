"""The converted-weights folder: one Orbax params pytree written leaf by leaf, plus config.json.

Layout of a folder written by `tools/convert_weights.py`:

    out/config.json      the model config (diffusers-style constructor arguments, `_class_name`)
                         plus `_dreamactor` (model kind, dtype, source, widening)
    out/params/          an Orbax checkpoint; the params pytree is the item `out/params/state`

Writing: `LeafWriter` uses Orbax's partial save (`orbax.checkpoint.experimental.v1.partial`):
each call adds a few leaves to one pending OCDBT checkpoint and `finalize` commits it, so at no
time does more than one leaf group live in memory. Reading needs nothing special: the result is
an ordinary PyTree checkpoint that `ocp.StandardCheckpointer().restore(out/params/state,
target)` reads as ONE pytree, straight into target shardings; `load_params` does exactly that.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Mapping

import jax
import numpy as np

from dreamactor_jax.utils import as_path, resolve_path

PARAMS_DIR = "params"
PYTREE_ITEM = "state"  # the item name Orbax's partial save uses for the pytree
CONFIG_FILE = "config.json"


def _nest(path: tuple[str, ...], leaf: Any) -> dict:
    tree: Any = leaf
    for name in reversed(path):
        tree = {name: tree}
    return tree


def _merge(dst: dict, src: dict) -> None:
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _merge(dst[k], v)
        else:
            dst[k] = v


class LeafWriter:
    """Adds leaves to one Orbax checkpoint at `path`, a few at a time (bounded memory).

    Leaves are buffered until `flush_bytes` are pending, then saved as one partial save; the
    buffer is dropped afterwards. `finalize()` commits the checkpoint (and must be called once).
    """

    def __init__(self, path: str | os.PathLike, flush_bytes: int = 256 << 20, compress: bool = False):
        try:
            from orbax.checkpoint.experimental import v1 as ocp1
            from orbax.checkpoint.experimental.v1 import partial
        except ImportError as e:  # older orbax: no partial save
            raise ValueError(f"orbax-checkpoint: partial save (experimental.v1.partial) is needed to write params ({e})") from None
        self._partial = partial
        # zstd buys ~10% on bf16 weights for minutes of CPU on a 25 GB model: off by default
        # each save is waited for and its arrays are never modified: Orbax's defensive deep copy
        # of host arrays would only double the peak memory
        self._context = ocp1.Context()
        try:
            self._context.array.saving.use_compression = compress
            self._context.memory.deepcopy_host_arrays = False
        except AttributeError:  # older v1 API: options objects passed to the constructor
            saving = ocp1.options.ArrayOptions.Saving(use_compression=compress)
            self._context = ocp1.Context(array_options=ocp1.options.ArrayOptions(saving=saving))
        self.path = Path(path).absolute()
        self.flush_bytes = flush_bytes
        self._pending: dict = {}
        self._pending_bytes = 0
        self._written: set[tuple[str, ...]] = set()
        self.saves = 0

    def add(self, path: tuple[str, ...], array: np.ndarray) -> None:
        if path in self._written:
            raise ValueError(f"params path {'/'.join(path)}: written twice")
        self._written.add(path)
        _merge(self._pending, _nest(path, np.asarray(array)))
        self._pending_bytes += array.nbytes
        if self._pending_bytes >= self.flush_bytes:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            with self._context:
                self._partial.save(self.path, self._pending)
            self.saves += 1
        self._pending, self._pending_bytes = {}, 0

    def finalize(self) -> None:
        self.flush()
        with self._context:
            self._partial.finalize(self.path)


def pytree_dir(path: str | os.PathLike) -> Path:
    """The Orbax pytree folder inside a converted folder (or `path` itself if it is one)."""
    path = resolve_path(path)  # Orbax's OCDBT reader wants absolute paths (or gs://)
    for cand in (path / PARAMS_DIR / PYTREE_ITEM, path / PYTREE_ITEM, path):
        if (cand / "_METADATA").is_file():
            return cand
    raise FileNotFoundError(f"{path}: no Orbax params checkpoint (expected {PARAMS_DIR}/{PYTREE_ITEM}/_METADATA)")


@dataclasses.dataclass(frozen=True)
class EmptyLeaf:
    """A zero-size leaf (a stack of zero layers): Orbax cannot store it, config.json lists it."""

    shape: tuple[int, ...]
    dtype: np.dtype


def empty_leaves(path: str | os.PathLike) -> dict[tuple[str, ...], EmptyLeaf]:
    """The zero-size leaves a converted folder's config.json records (`_dreamactor.empty_leaves`)."""
    f = Path(path) / CONFIG_FILE
    if not f.is_file():
        return {}
    info = json.loads(f.read_text()).get("_dreamactor", {})
    dtype = np.dtype(info.get("dtype", "float32"))
    return {tuple(k.split("/")): EmptyLeaf(tuple(v), dtype) for k, v in info.get("empty_leaves", {}).items()}


def params_metadata(path: str | os.PathLike) -> dict:
    """Nested dict of Orbax ArrayMetadata (shape, dtype) for every leaf, without reading data
    (zero-size leaves as `EmptyLeaf`)."""
    import orbax.checkpoint as ocp

    # the handler reads `_METADATA` itself; Checkpointer.metadata() needs a step-level
    # `_CHECKPOINT_METADATA` on some orbax versions (0.12.4) and returns None without it
    meta = ocp.PyTreeCheckpointHandler().metadata(pytree_dir(path))
    meta = getattr(meta, "item_metadata", meta)
    meta = getattr(meta, "tree", meta)
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: cannot read the params metadata (got {type(meta).__name__})")
    for p, leaf in empty_leaves(path).items():
        _merge(meta, _nest(p, leaf))
    return meta


def load_params(path: str | os.PathLike, shardings: Any = None, dtype: Any = None) -> dict:
    """Restores the params pytree of a converted folder as jax Arrays.

    `shardings`: None (all on the first device), one `jax.sharding.Sharding` for every leaf, or a
    pytree of shardings matching the params (e.g. from the model's logical axis rules), so
    training restores straight into shards. `dtype`: cast on restore (None keeps the stored one).
    """
    import orbax.checkpoint as ocp

    meta = params_metadata(path)
    if shardings is None:
        shardings = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    if isinstance(shardings, jax.sharding.Sharding):
        shard_tree = jax.tree_util.tree_map(lambda _: shardings, meta)
    else:
        shard_tree = shardings
        want = jax.tree_util.tree_structure(jax.tree_util.tree_map(lambda _: 0, meta))
        got = jax.tree_util.tree_structure(jax.tree_util.tree_map(lambda _: 0, shard_tree))
        if want != got:
            raise ValueError(f"shardings: pytree does not match the checkpoint's params ({got} vs {want})")
    target = jax.tree_util.tree_map(
        lambda m, s: jax.ShapeDtypeStruct(tuple(m.shape), np.dtype(dtype or m.dtype), sharding=s), meta, shard_tree
    )
    empty = empty_leaves(path)
    stored = target
    for p in empty:  # Orbax restores the stored leaves; the empty ones are made here
        stored = _without(stored, p)
    out = ocp.StandardCheckpointer().restore(pytree_dir(path), stored)
    for p in empty:
        t = _get(target, p)
        _merge(out, _nest(p, jax.device_put(np.zeros(t.shape, t.dtype), t.sharding)))
    return out


def _get(tree: dict, path: tuple[str, ...]) -> Any:
    for name in path:
        tree = tree[name]
    return tree


def _without(tree: dict, path: tuple[str, ...]) -> dict:
    """A copy of `tree` without the leaf at `path` (and without containers left empty)."""
    head, *rest = path
    out = dict(tree)
    if rest:
        sub = _without(tree[head], tuple(rest))
        if sub:
            out[head] = sub
        else:
            del out[head]
    else:
        del out[head]
    return out


def read_config_json(path: str | os.PathLike) -> dict:
    f = as_path(path) / CONFIG_FILE
    if not f.is_file():
        raise FileNotFoundError(f"{path}: no {CONFIG_FILE} (not a converted weights folder)")
    return json.loads(f.read_text())


def load_config(path: str | os.PathLike, **overrides: Any):
    """The model config of a converted folder: `MMDiTConfig` or `VAEConfig` (runtime overrides allowed)."""
    raw = read_config_json(path)
    kind = raw.get("_dreamactor", {}).get("model")
    if kind == "mmdit":
        from dreamactor_jax.models.config import MMDiTConfig

        return MMDiTConfig.from_diffusers_config(raw, **overrides)
    if kind == "vae":
        return vae_config_from_dict(raw, **overrides)
    raise ValueError(f"{path}/{CONFIG_FILE}: '_dreamactor.model' is {kind!r}, expected 'mmdit' or 'vae'")


# VAEConfig fields that come from a diffusers AutoencoderKLHunyuanVideo config.json
VAE_FIELDS = (
    "in_channels",
    "out_channels",
    "latent_channels",
    "block_out_channels",
    "layers_per_block",
    "norm_num_groups",
    "scaling_factor",
    "spatial_compression_ratio",
    "temporal_compression_ratio",
    "mid_block_add_attention",
    "act_fn",
)
_DOWN_BLOCK, _UP_BLOCK = "HunyuanVideoDownBlock3D", "HunyuanVideoUpBlock3D"


# VAE15Config fields that come from a diffusers AutoencoderKLHunyuanVideo15 config.json
VAE15_CLASS = "AutoencoderKLHunyuanVideo15"
VAE15_FIELDS = ("in_channels", "out_channels", "latent_channels", "block_out_channels", "layers_per_block",
                "spatial_compression_ratio", "temporal_compression_ratio", "downsample_match_channel",
                "upsample_match_channel", "scaling_factor")


def vae_config_from_dict(raw: Mapping[str, Any], **overrides: Any):
    """`VAEConfig` (or `VAE15Config` for `_class_name` AutoencoderKLHunyuanVideo15) from a diffusers VAE
    config.json dict (block types and other keys are checked or ignored)."""
    from dreamactor_jax.models.vae import VAEConfig

    if raw.get("_class_name") == VAE15_CLASS:
        from dreamactor_jax.models.vae15 import VAE15Config

        kwargs = {k: raw[k] for k in VAE15_FIELDS if k in raw}
        return VAE15Config(**{**kwargs, **overrides})

    n = len(raw.get("block_out_channels", VAEConfig.block_out_channels))
    for key, kind in (("down_block_types", _DOWN_BLOCK), ("up_block_types", _UP_BLOCK)):
        types = list(raw.get(key, [kind] * n))
        if types != [kind] * n:  # diffusers builds one block of this (only) type per channel entry
            raise ValueError(f"VAE config: {key} {types} must be {n} x {kind!r} (one per block_out_channels entry)")
    kwargs = {k: raw[k] for k in VAE_FIELDS if k in raw}
    if "block_out_channels" in kwargs:
        kwargs["block_out_channels"] = tuple(kwargs["block_out_channels"])
    return VAEConfig(**{**kwargs, **overrides})


def vae_class(cfg) -> str:
    """The diffusers class name of a VAE config."""
    from dreamactor_jax.models.vae15 import VAE15Config

    return VAE15_CLASS if isinstance(cfg, VAE15Config) else "AutoencoderKLHunyuanVideo"


def vae_config_to_dict(cfg) -> dict:
    out = {k: getattr(cfg, k) for k in (VAE15_FIELDS if vae_class(cfg) == VAE15_CLASS else VAE_FIELDS)}
    out["block_out_channels"] = list(out["block_out_channels"])
    return out
