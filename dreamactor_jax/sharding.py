"""Device mesh from the config, and logical axis names -> mesh axes.

Parameters and activations are annotated with *logical* axis names (`embed`, `mlp`, `heads`,
`batch`, `seq`, ...). `RULES` maps each to zero or more mesh axes (`data`, `fsdp`, `sequence`,
`tensor`). Model code calls `constrain(x, axes)`, which is a no-op unless a mesh is active via
`with use_mesh(mesh):`, so the same code runs unsharded on one device and sharded on many.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

import jax
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp", "sequence", "tensor")

# logical axis -> mesh axes (a tuple shards over several mesh axes; None replicates)
RULES: tuple[tuple[str, Any], ...] = (
    # parameters
    ("layers", None),
    ("embed", "fsdp"),  # the hidden (3072) dim of weights: fully-sharded data parallel
    ("heads", "tensor"),  # q/k/v output features (heads x head_dim)
    ("mlp", "tensor"),  # feed-forward hidden features
    ("mod", "tensor"),  # adaLN modulation outputs (6 x hidden)
    ("mlp_in", "tensor"),  # single blocks' proj_out input (hidden + mlp)
    ("text_embed", None),
    ("pooled", None),
    ("patch", None),
    ("time", None),
    ("out", None),
    ("norm", None),
    ("head_dim", None),
    ("lora_rank", None),
    # activations
    ("batch", ("fsdp", "data")),  # this order: see tests/test_sharding.py (XLA bug with data-major)
    ("seq", "sequence"),
    ("act_embed", None),
    ("act_heads", "tensor"),
    ("act_mlp", "tensor"),
)


@dataclass(frozen=True)
class MeshConfig:
    """Sizes of the mesh axes; exactly one may be -1 (fills the remaining devices)."""

    data: int = 1
    fsdp: int = -1
    sequence: int = 1
    tensor: int = 1

    @classmethod
    def from_mapping(cls, m: Mapping[str, int]) -> "MeshConfig":
        unknown = sorted(set(m) - set(MESH_AXES))
        if unknown:
            raise ValueError(f"mesh config: unknown axes {unknown}, expected a subset of {MESH_AXES}")
        return cls(**{k: int(v) for k, v in m.items()})

    def sizes(self, num_devices: int) -> tuple[int, ...]:
        sizes = [self.data, self.fsdp, self.sequence, self.tensor]
        if sizes.count(-1) > 1:
            raise ValueError(f"mesh config: at most one axis may be -1, got {dict(zip(MESH_AXES, sizes))}")
        known = math.prod(s for s in sizes if s != -1)
        if any(s == 0 or s < -1 for s in sizes):
            raise ValueError(f"mesh config: sizes must be positive or -1, got {dict(zip(MESH_AXES, sizes))}")
        if -1 in sizes:
            if num_devices % known:
                raise ValueError(f"mesh config: {num_devices} devices are not divisible by the fixed axes ({known})")
            sizes[sizes.index(-1)] = num_devices // known
        if math.prod(sizes) != num_devices:
            raise ValueError(
                f"mesh config: axes {dict(zip(MESH_AXES, sizes))} need {math.prod(sizes)} devices, have {num_devices}"
            )
        return tuple(sizes)


def make_mesh(cfg: MeshConfig | Mapping[str, int] | None = None, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 4-axis mesh (data, fsdp, sequence, tensor) over `devices` (default: all)."""
    if cfg is None:
        cfg = MeshConfig()
    elif not isinstance(cfg, MeshConfig):
        cfg = MeshConfig.from_mapping(cfg)
    devices = list(jax.devices() if devices is None else devices)
    sizes = cfg.sizes(len(devices))
    try:
        arr = mesh_utils.create_device_mesh(sizes, devices=devices)
    except Exception:  # odd topologies / CPU: plain row-major order
        arr = np.asarray(devices, dtype=object).reshape(sizes)
    return Mesh(arr, MESH_AXES)


# ----------------------------------------------------------------------------------------------
# logical axes -> PartitionSpec
# ----------------------------------------------------------------------------------------------


def logical_to_spec(axes: Sequence[str | None], rules: Sequence[tuple[str, Any]] = RULES, mesh: Mesh | None = None) -> PartitionSpec:
    """PartitionSpec for one array; a mesh axis is used at most once (later dims give it up)."""
    table = dict(rules)
    used: set[str] = set()
    out = []
    for name in axes:
        target = table.get(name) if name is not None else None
        if name is not None and name not in table:
            raise ValueError(f"logical axis {name!r} has no sharding rule")
        names = (target,) if isinstance(target, str) else tuple(target or ())
        names = tuple(n for n in names if n not in used and (mesh is None or mesh.shape[n] > 1))
        used.update(names)
        out.append(names[0] if len(names) == 1 else (names or None))
    return PartitionSpec(*out)


def tree_shardings(axes_tree: Any, mesh: Mesh, rules: Sequence[tuple[str, Any]] = RULES) -> Any:
    """NamedShardings for a tree whose leaves are tuples of logical axis names."""
    is_axes = lambda x: isinstance(x, tuple) and all(a is None or isinstance(a, str) for a in x)
    return jax.tree_util.tree_map(
        lambda ax: NamedSharding(mesh, logical_to_spec(ax, rules, mesh)), axes_tree, is_leaf=is_axes
    )


# ----------------------------------------------------------------------------------------------
# activation constraints, active only inside `use_mesh`
# ----------------------------------------------------------------------------------------------

_RULES: contextvars.ContextVar[tuple] = contextvars.ContextVar("dreamactor_rules", default=RULES)
_MESH: contextvars.ContextVar[Mesh | None] = contextvars.ContextVar("dreamactor_mesh", default=None)


def active_mesh() -> tuple[Mesh, tuple] | None:
    """(mesh, rules) of the enclosing `use_mesh` block, or None outside one."""
    mesh = _MESH.get()
    return None if mesh is None else (mesh, _RULES.get())


@contextlib.contextmanager
def use_mesh(mesh: Mesh, rules: Sequence[tuple[str, Any]] = RULES) -> Iterator[Mesh]:
    """Within this block (at trace time), `constrain` pins activations to the mesh by the rules.

    The mesh goes through `jax.set_mesh`, so jit's trace cache tells traces made inside and outside
    apart. The rules are read at trace time: keep one rule set per process (or use fresh jit objects).
    """
    token, mtoken = _RULES.set(tuple(rules)), _MESH.set(mesh)
    try:
        with jax.set_mesh(mesh):
            yield mesh
    finally:
        _MESH.reset(mtoken)
        _RULES.reset(token)


def constrain(x: jax.Array, axes: Sequence[str | None]) -> jax.Array:
    """`with_sharding_constraint` by logical axis names; identity when no mesh is active."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh is None or mesh.empty:
        return x
    if len(axes) != x.ndim:
        raise ValueError(f"constrain: {len(axes)} axis names for an array of rank {x.ndim}")
    return jax.lax.with_sharding_constraint(x, logical_to_spec(axes, _RULES.get(), mesh))
