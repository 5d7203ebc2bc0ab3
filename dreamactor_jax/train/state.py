"""The pieces of a run that the step needs: static specs, shardings, base weights, the train state.

Train state (a pytree, everything that changes and is checkpointed):
    {"step": int32 [], "lora": adapter (fp32), "opt_state": AdamW state, "rng": PRNG key data uint32 [2]}
The frozen base (bf16) is a separate argument, never differentiated, never checkpointed by the
trainer. Everything is created straight into its shards: `jax.eval_shape` -> shardings ->
`jax.jit(init, out_shardings=...)`, so no full copy ever sits on one device.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from dreamactor_jax import sharding
from dreamactor_jax.data.shards import RECORD_NDIM
from dreamactor_jax.run_folder import architecture_diffs
from dreamactor_jax.models import lora as lora_lib
from dreamactor_jax.models import mmdit
from dreamactor_jax.models.config import MMDiTConfig
from dreamactor_jax.train.objective import FlowConfig
from dreamactor_jax.train.optim import OptimConfig, make_optimizer
from dreamactor_jax.utils import as_path


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """Everything static about the train step (hashable)."""

    model: MMDiTConfig
    lora: Any            # models.lora.LoRAConfig
    flow: FlowConfig
    optim: OptimConfig
    guidance: float | None = None   # embedded guidance scale (guidance-distilled backbones only)
    grad_accum: int = 1             # micro-batches per step: gradients summed over them, one update


def run_spec(config) -> RunSpec:
    """Builds the static specs from an `ml_collections` run config (configs/*.py)."""
    m = config.model
    mcfg = MMDiTConfig.named(m.name, dtype=m.dtype, param_dtype=m.base_dtype,
                             attention_impl=m.attention_impl, remat_policy=m.remat_policy,
                             scan_layers=m.scan_layers)
    lcfg = lora_lib.LoRAConfig(**dict(config.lora))
    flow = FlowConfig(**dict(config.objective))
    optim = OptimConfig(**dict(config.optim))
    guidance = float(m.guidance) if mcfg.guidance_embeds else None
    accum = int(config.train.get("grad_accum", 1))
    if accum < 1:
        raise ValueError(f"train.grad_accum: must be 1 or more, got {accum}")
    return RunSpec(mcfg, lcfg, flow, optim, guidance, accum)


def fingerprint(spec: RunSpec) -> dict:
    """What a checkpoint must agree on to be resumed: the backbone architecture and the LoRA shape."""
    lora = dataclasses.asdict(spec.lora) if dataclasses.is_dataclass(spec.lora) else dict(spec.lora)
    return {"model": spec.model.to_diffusers_config(), "lora": lora}


# ----------------------------------------------------------------------------------------------
# shardings
# ----------------------------------------------------------------------------------------------


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def base_shardings(mcfg: MMDiTConfig, mesh: Mesh) -> Any:
    return sharding.tree_shardings(mmdit.param_axes(mcfg), mesh)


def lora_shardings(spec: RunSpec, mesh: Mesh) -> Any:
    return sharding.tree_shardings(lora_lib.lora_axes(spec.model, spec.lora), mesh)


def batch_shardings(mesh: Mesh) -> dict:
    """Batch arrays (every record key, optional ones included): the leading axis over (data, fsdp),
    the rest replicated."""
    def sh(ndim):
        return NamedSharding(mesh, sharding.logical_to_spec(("batch",) + (None,) * (ndim - 1), mesh=mesh))
    return {k: sh(ndim + 1) for k, ndim in RECORD_NDIM.items()}


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """One sharding for a whole batch dict, whichever optional keys it holds (a pytree prefix: the
    leading axis over (data, fsdp), the rest replicated, as `batch_shardings`)."""
    return NamedSharding(mesh, sharding.logical_to_spec(("batch",), mesh=mesh))


def state_shardings(spec: RunSpec, mesh: Mesh) -> tuple[Any, Any]:
    """(abstract state with shardings attached, state shardings)."""
    optimizer = make_optimizer(spec.optim)
    abstract = jax.eval_shape(functools.partial(_init_state, spec), jax.random.PRNGKey(0))
    lsh = lora_shardings(spec, mesh)
    osh = optax.tree_map_params(optimizer, lambda _, s: s, abstract["opt_state"], lsh,
                                transform_non_params=lambda _: replicated(mesh))
    shardings = {"step": replicated(mesh), "lora": lsh, "opt_state": osh, "rng": replicated(mesh)}
    abstract = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings)
    return abstract, shardings


# ----------------------------------------------------------------------------------------------
# initialisation
# ----------------------------------------------------------------------------------------------


def _init_state(spec: RunSpec, key: jax.Array, lora: Any = None) -> dict:
    k_lora, k_rng = jax.random.split(key)
    if lora is None:
        lora = lora_lib.init_lora(spec.model, spec.lora, k_lora)
    lora = jax.tree.map(lambda x: x.astype(jnp.float32), lora)
    return {"step": jnp.zeros((), jnp.int32), "lora": lora,
            "opt_state": make_optimizer(spec.optim).init(lora), "rng": k_rng}


def compiler_options(fast_compile: bool) -> dict | None:
    """XLA options: with `fast_compile` on CPU, skip backend optimisation (3x faster compiles, for
    smoke runs and tests); None otherwise."""
    if fast_compile and jax.default_backend() == "cpu":
        return {"xla_backend_optimization_level": 0}
    return None


@functools.lru_cache(maxsize=8)
def _state_initializer(spec: RunSpec, mesh: Mesh, fast_compile: bool):
    _, shardings = state_shardings(spec, mesh)
    return jax.jit(functools.partial(_init_state, spec), out_shardings=shardings,
                   compiler_options=compiler_options(fast_compile))


@functools.lru_cache(maxsize=8)
def _base_initializer(mcfg: MMDiTConfig, mesh: Mesh, fast_compile: bool):
    return jax.jit(functools.partial(mmdit.init_params, mcfg), out_shardings=base_shardings(mcfg, mesh),
                   compiler_options=compiler_options(fast_compile))


def init_state(spec: RunSpec, key: jax.Array, mesh: Mesh, lora: Any = None, fast_compile: bool = False) -> dict:
    """A fresh train state, created in its shards; `lora` (e.g. a warm start) replaces the random adapter."""
    init = _state_initializer(spec, mesh, fast_compile)
    return init(key) if lora is None else init(key, lora)


def init_base(mcfg: MMDiTConfig, key: jax.Array, mesh: Mesh, fast_compile: bool = False) -> dict:
    """Random frozen base in `mcfg.param_dtype`, created in its shards (tests, benchmarks)."""
    return _base_initializer(mcfg, mesh, fast_compile)(key)


def load_base(path: str | Path, mcfg: MMDiTConfig, mesh: Mesh) -> dict:
    """Base params from a converted folder (tools/convert_weights.py), read straight into shards.

    The folder's config.json must describe the same architecture as `mcfg`; arrays are cast to
    `mcfg.param_dtype` (bf16 for training) while reading.
    """
    from dreamactor_jax.weights.checkpoint import load_config, load_params

    path = as_path(path)  # local or gs://
    if not path.exists():
        raise FileNotFoundError(f"base_checkpoint {path}: does not exist")
    diffs = architecture_diffs(load_config(path), mcfg)
    if diffs:
        raise ValueError(f"base_checkpoint {path}: architecture differs from config.model ({', '.join(diffs[:4])})")
    return load_params(path, base_shardings(mcfg, mesh), dtype=jnp.dtype(mcfg.param_dtype))

