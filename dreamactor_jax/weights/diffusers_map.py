"""diffusers `HunyuanVideoTransformer3DModel` state_dict <-> this project's Flax params, both ways.

The mapping is by rule, one tensor at a time, so a streaming converter can use it:

- key: dots become nesting; a numeric part joins its parent (`to_out.0` -> `to_out_0`,
  `net.0.proj` -> `net_0/proj`), except the layer index of a stacked list
  (`transformer_blocks.3.` -> layer 3 of the stacked `transformer_blocks` tree).
- leaf: Linear `weight` [out, in] -> `kernel` [in, out]; Conv3d `weight` [out, in, kt, kh, kw]
  -> `kernel` [kt, kh, kw, in, out]; norm `weight` -> `scale`; `bias` -> `bias`; an `nn.Embedding`
  `weight` [n, D] (the modules in `EMBEDDINGS`) -> `embedding` [n, D], as is.

`torch_to_flax(key, array)` maps one tensor; `flax_to_torch(path, layer, array)` maps back;
`expected_torch_shapes(cfg)` lists every diffusers key with its shape for a config;
`state_dict_to_params` / `params_to_state_dict` do a whole model with coverage checks.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Iterator, Mapping, NamedTuple

import jax
import numpy as np

from dreamactor_jax.models.config import MMDiTConfig
from dreamactor_jax.models.layers import is_spec
from dreamactor_jax.models.mmdit import STACKS, param_specs

# diffusers module names that end in a numeric part (joined with "_" on the Flax side)
_JOINED = {"to_out_0": "to_out.0", "net_0": "net.0", "net_2": "net.2"}
_PREFIX_TO_STACK = {v: k for k, v in STACKS.items()}
EMBEDDINGS = ("cond_type_embed",)  # nn.Embedding modules (HunyuanVideo-1.5's token-type embedding)


class Mapped(NamedTuple):
    """One converted tensor: its params path, its index on the stacked layer axis (or None), the array."""

    path: tuple[str, ...]
    layer: int | None
    array: np.ndarray


def _kind_of_weight(ndim: int) -> str:
    return {1: "scale", 2: "kernel", 5: "kernel"}.get(ndim, "")


def module_path(names: Iterable[str], path: Iterable[str] = ()) -> list[str] | None:
    """diffusers module names (a key split on dots) -> Flax module names, after `path`: a numeric part
    joins the name before it (`down_blocks.0.resnets` -> `down_blocks_0`, `resnets`). None when a
    numeric part has no name before it."""
    out = list(path)
    for name in names:
        if not name.isdigit():
            out.append(name)
        elif out:
            out[-1] = f"{out[-1]}_{name}"
        else:
            return None
    return out


def torch_key_to_path(key: str, ndim: int) -> tuple[tuple[str, ...], int | None]:
    """diffusers key (+ the tensor's rank) -> (params path, layer index or None)."""
    layer = None
    rest = key
    for prefix, stack in _PREFIX_TO_STACK.items():
        m = re.fullmatch(re.escape(prefix) + r"\.(\d+)\.(.+)", key)
        if m:
            layer, rest = int(m.group(1)), m.group(2)
            path = list(stack)
            break
    else:
        path = []
    *mods, leaf = rest.split(".")
    path = module_path(mods, path)
    if path is None:
        raise ValueError(f"diffusers key {key!r}: unexpected numeric part")
    if leaf == "weight" and tuple(mods) in {(e,) for e in EMBEDDINGS}:
        path.append("embedding")
    elif leaf == "weight":
        kind = _kind_of_weight(ndim)
        if not kind:
            raise ValueError(f"diffusers key {key!r}: weight of rank {ndim} is not a linear, conv or norm")
        path.append(kind)
    elif leaf == "bias":
        path.append("bias")
    else:
        raise ValueError(f"diffusers key {key!r}: expected a .weight or .bias tensor")
    return tuple(path), layer


def path_to_torch_key(path: tuple[str, ...], layer: int | None) -> str:
    """params path (+ layer index for stacked trees) -> diffusers key."""
    parts = list(path)
    prefix = ""
    for stack, pre in STACKS.items():
        if tuple(parts[: len(stack)]) == stack:
            if layer is None:
                raise ValueError(f"params path {'/'.join(path)}: stacked tree needs a layer index")
            prefix = f"{pre}.{layer}."
            parts = parts[len(stack) :]
            break
    else:
        if layer is not None:
            raise ValueError(f"params path {'/'.join(path)}: not stacked, got layer={layer}")
    *mods, leaf = parts
    leaf = {"kernel": "weight", "scale": "weight", "embedding": "weight", "bias": "bias"}[leaf]
    return prefix + ".".join([_JOINED.get(m, m) for m in mods] + [leaf])


def torch_to_flax(key: str, array: Any) -> Mapped:
    """Maps one diffusers tensor (numpy or torch) to its params path, layer index and layout."""
    a = np.asarray(array.detach().cpu().float().numpy() if hasattr(array, "detach") else array)
    path, layer = torch_key_to_path(key, a.ndim)
    return Mapped(path, layer, _relayout(a, path, to_flax=True))


def flax_to_torch(path: tuple[str, ...], layer: int | None, array: Any) -> tuple[str, np.ndarray]:
    """Inverse of `torch_to_flax` for one (unstacked) tensor: -> (diffusers key, torch-layout array)."""
    return path_to_torch_key(tuple(path), layer), _relayout(np.asarray(array), path, to_flax=False)


# torch -> flax axis order by rank: Linear [out, in] -> [in, out]; Conv3d [out, in, t, h, w] -> [t, h, w, in, out]
_TO_FLAX = {2: (1, 0), 5: (2, 3, 4, 1, 0)}


def _relayout(a: np.ndarray, path: tuple[str, ...], *, to_flax: bool) -> np.ndarray:
    """A tensor in the other framework's axis order (embedding tables and vectors keep theirs)."""
    perm = None if path[-1] == "embedding" else _TO_FLAX.get(a.ndim)
    if perm is not None:
        a = a.transpose(perm if to_flax else tuple(np.argsort(perm)))
    return np.ascontiguousarray(a)


def _torch_shape(shape: tuple[int, ...], path: tuple[str, ...] = ()) -> tuple[int, ...]:
    if path[-1:] == ("embedding",):
        return shape
    if len(shape) == 2:
        return shape[::-1]
    if len(shape) == 5:
        return (shape[4], shape[3], shape[0], shape[1], shape[2])
    return shape


def _flat_specs(cfg: MMDiTConfig) -> list:
    """(params path, ParamSpec) of every leaf."""
    flat = jax.tree_util.tree_flatten_with_path(param_specs(cfg), is_leaf=is_spec)[0]
    return [(tuple(k.key for k in kp), spec) for kp, spec in flat]


def _iter_specs(cfg: MMDiTConfig) -> Iterator[tuple[tuple[str, ...], int | None, tuple[int, ...]]]:
    """(path, layer, per-layer flax shape) for every tensor of the model (none for a stack of 0 layers)."""
    for path, spec in _flat_specs(cfg):
        if spec.axes[:1] == ("layers",):
            for i in range(spec.shape[0]):
                yield path, i, spec.shape[1:]
        else:
            yield path, None, spec.shape


def expected_torch_shapes(cfg: MMDiTConfig) -> dict[str, tuple[int, ...]]:
    """Every diffusers state_dict key of this config with its (PyTorch-layout) shape."""
    return {path_to_torch_key(p, i): _torch_shape(s, p) for p, i, s in _iter_specs(cfg)}


def state_dict_to_params(state_dict: Mapping[str, Any], cfg: MMDiTConfig, dtype=np.float32) -> dict:
    """A whole diffusers state_dict -> params (numpy), checking every key and shape is covered."""
    expected = expected_torch_shapes(cfg)
    missing = sorted(set(expected) - set(state_dict))
    extra = sorted(set(state_dict) - set(expected))
    if missing or extra:
        raise ValueError(f"state_dict: {len(missing)} missing keys (e.g. {missing[:3]}), {len(extra)} unexpected (e.g. {extra[:3]})")
    specs = param_specs(cfg)
    out: dict = {}
    for path, spec in _flat_specs(cfg):  # stacked leaves first: a stack of zero layers has no keys
        if spec.axes[:1] == ("layers",):
            node = out
            for name in path[:-1]:
                node = node.setdefault(name, {})
            node[path[-1]] = np.zeros(spec.shape, dtype)
    for key, tensor in state_dict.items():
        shape = tuple(tensor.shape)
        if shape != expected[key]:
            raise ValueError(f"state_dict[{key!r}]: expected shape {expected[key]}, got {shape}")
        m = torch_to_flax(key, tensor)
        node, spec = out, specs
        for name in m.path[:-1]:
            node, spec = node.setdefault(name, {}), spec[name]
        leaf = m.path[-1]
        if m.layer is None:
            node[leaf] = m.array.astype(dtype)
        else:
            node[leaf][m.layer] = m.array
    return out


def params_to_state_dict(params: Mapping[str, Any], cfg: MMDiTConfig) -> dict[str, np.ndarray]:
    """params -> diffusers state_dict (numpy float32, PyTorch layouts)."""
    out = {}
    for path, layer, _ in _iter_specs(cfg):
        node = params
        for name in path:
            node = node[name]
        a = np.asarray(node, dtype=np.float32)
        key, t = flax_to_torch(path, layer, a if layer is None else a[layer])
        out[key] = t
    return out
