"""diffusers AutoencoderKLHunyuanVideo (and ...HunyuanVideo15) state_dict <-> the JAX VAE's parameter tree.

Names: the diffusers name split on dots, a numeric part joined to the one before it with "_"
(`encoder.down_blocks.0.resnets.1.conv1.conv.weight` -> `("encoder", "down_blocks_0",
"resnets_1", "conv1", "conv", "kernel")`). Leaves: conv/linear `weight` -> `kernel`, GroupNorm
`weight` -> `scale`, `bias` stays, the HunyuanVideo-1.5 RMS norms' `gamma` [C, 1, 1, 1] stays as is. Layouts: Conv3d `[O, I, kt, kh, kw]` -> `[kt, kh, kw, I, O]`,
Linear `[O, I]` -> `[I, O]`. Every function here works one tensor at a time, so a streaming
converter can call `to_flax` per safetensors entry without holding the checkpoint twice.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import numpy as np

from dreamactor_jax.models import vae, vae15
from dreamactor_jax.models.vae import VAEConfig
from dreamactor_jax.weights.diffusers_map import module_path


def param_shapes(cfg) -> dict:
    """The parameter shapes of either VAE (`vae.VAEConfig` or `vae15.VAE15Config`)."""
    return (vae15 if isinstance(cfg, vae15.VAE15Config) else vae).param_shapes(cfg)

_INDEXED = re.compile(r"^(.*)_(\d+)$")


def _to_numpy(tensor: Any) -> np.ndarray:
    """numpy view of a numpy array or a torch tensor (bf16 kept as ml_dtypes.bfloat16)."""
    if isinstance(tensor, np.ndarray):
        return tensor
    if hasattr(tensor, "detach"):  # torch, imported lazily by the caller
        t = tensor.detach().cpu()
        if str(t.dtype) == "torch.bfloat16":
            import ml_dtypes
            return t.view(dtype=_torch_int16()).numpy().view(ml_dtypes.bfloat16)
        return t.numpy()
    return np.asarray(tensor)


def _torch_int16():
    import torch
    return torch.int16


def _path_to_name(path: tuple[str, ...]) -> str:
    parts = []
    for p in path[:-1]:
        m = _INDEXED.match(p)
        parts.extend([m.group(1), m.group(2)] if m else [p])
    leaf = path[-1]
    parts.append("weight" if leaf in ("kernel", "scale") else leaf)
    return ".".join(parts)


def _flatten(tree: dict, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flatten(v, prefix + (k,)))
        else:
            out[prefix + (k,)] = v
    return out


def _torch_shape(flax_shape: tuple[int, ...]) -> tuple[int, ...]:
    if len(flax_shape) == 5:
        kt, kh, kw, i, o = flax_shape
        return (o, i, kt, kh, kw)
    if len(flax_shape) == 2:
        return (flax_shape[1], flax_shape[0])
    return tuple(flax_shape)


def flax_paths(cfg: VAEConfig) -> dict[str, tuple[str, ...]]:
    """{diffusers_name: flax path} for every parameter of `cfg`."""
    return {_path_to_name(path): path
            for path, shape in _flatten(param_shapes(cfg)).items()}


def expected_keys(cfg: VAEConfig) -> dict[str, tuple[int, ...]]:
    """{diffusers_name: PyTorch shape} for every parameter of `cfg` (the state_dict's keys)."""
    return {_path_to_name(path): _torch_shape(shape)
            for path, shape in _flatten(param_shapes(cfg)).items()}


def to_flax(name: str, tensor: Any) -> tuple[tuple[str, ...], np.ndarray]:
    """One diffusers tensor -> (flax path, numpy array in the JAX layout). Dtype is kept."""
    a = _to_numpy(tensor)
    parts = name.split(".")
    if len(parts) < 2 or parts[-1] not in ("weight", "bias", "gamma"):
        raise ValueError(f"name: {name!r} is not a VAE parameter name (expected '...weight', '...bias' or '...gamma')")
    path = module_path(parts[:-1])
    if path is None:
        raise ValueError(f"name: {name!r} starts with an index")
    leaf = parts[-1]
    if leaf == "weight":
        if a.ndim == 5:
            leaf, a = "kernel", np.transpose(a, (2, 3, 4, 1, 0))
        elif a.ndim == 2:
            leaf, a = "kernel", np.transpose(a, (1, 0))
        elif a.ndim == 1:
            leaf = "scale"
        else:
            raise ValueError(f"tensor {name!r}: unexpected weight rank {a.ndim} (shape {a.shape})")
    return (*path, leaf), np.ascontiguousarray(a)


def to_diffusers(path: tuple[str, ...], array: Any) -> tuple[str, np.ndarray]:
    """The inverse of `to_flax`: (flax path, array) -> (diffusers name, array in PyTorch layout)."""
    a = np.asarray(array)
    if path[-1] == "kernel":
        a = np.transpose(a, (4, 3, 0, 1, 2)) if a.ndim == 5 else np.transpose(a, (1, 0))
    return _path_to_name(tuple(path)), np.ascontiguousarray(a)


def _set(tree: dict, path: tuple[str, ...], value: Any) -> None:
    for p in path[:-1]:
        tree = tree.setdefault(p, {})
    tree[path[-1]] = value


def params_from_state_dict(cfg: VAEConfig, state_dict: Mapping[str, Any], *,
                           dtype=None) -> dict:
    """A whole parameter tree from a diffusers state_dict, checking names and shapes.

    Raises ValueError on a missing key, an unexpected key or a shape mismatch (one line).
    `dtype` (e.g. np.float32) casts every tensor; None keeps the stored dtype.
    """
    import jax.numpy as jnp

    want = expected_keys(cfg)
    missing = sorted(set(want) - set(state_dict))
    extra = sorted(set(state_dict) - set(want))
    if missing:
        raise ValueError(f"state_dict: {len(missing)} VAE keys missing, e.g. {missing[:3]}")
    if extra:
        raise ValueError(f"state_dict: {len(extra)} unexpected keys, e.g. {extra[:3]}")
    tree: dict = {}
    for name, tensor in state_dict.items():
        shape = tuple(tensor.shape)
        if shape != want[name]:
            raise ValueError(f"state_dict[{name!r}]: shape {shape}, expected {want[name]}")
        path, a = to_flax(name, tensor)
        _set(tree, path, jnp.asarray(a if dtype is None else a.astype(dtype)))
    return tree


def state_dict_from_params(params: dict) -> dict[str, np.ndarray]:
    """A diffusers-named state_dict of numpy arrays (PyTorch layout) from a parameter tree."""
    out = {}
    for path, value in _flatten(params).items():
        name, a = to_diffusers(path, np.asarray(value))
        out[name] = a
    return out
