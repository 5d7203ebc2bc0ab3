"""Device mesh from the config, and logical axis names -> mesh axes.

Parameters and activations are annotated with *logical* axis names (`embed`, `mlp`, `heads`,
`batch`, `seq`, ...). `RULES` maps each to zero or more mesh axes (`data`, `fsdp`, `sequence`,
`tensor`). Model code calls `constrain(x, axes)`, which is a no-op unless a mesh is active via
`with use_mesh(mesh):`, so the same code runs unsharded on one device and sharded on many.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import math
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

import jax
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp", "sequence", "tensor")
log = logging.getLogger("dreamactor_jax.sharding")

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


def make_mesh(cfg: MeshConfig | Mapping[str, int] | None = None, devices: Sequence[jax.Device] | None = None,
              *, dcn_axis: str = "auto") -> Mesh:
    """A 4-axis mesh (data, fsdp, sequence, tensor) over `devices` (default: all); see `device_grid`."""
    if cfg is None:
        cfg = MeshConfig()
    elif not isinstance(cfg, MeshConfig):
        cfg = MeshConfig.from_mapping(cfg)
    devices = list(jax.devices() if devices is None else devices)
    return Mesh(device_grid(cfg.sizes(len(devices)), devices, dcn_axis=dcn_axis), MESH_AXES)


def granules(devices: Sequence[Any]) -> tuple[str | None, int]:
    """(attribute, count) of the slow-network units the devices span.

    TPU slices (`slice_index`, set on multislice TPU; also NVLink domains on GPU); else, on GPU,
    hosts (`process_index`: InfiniBand/Ethernet between nodes, NVLink inside one). (None, 1) when
    everything is one fast network (one slice, one host, CPU).
    """
    slices = {getattr(d, "slice_index", None) for d in devices}
    if None not in slices and len(slices) > 1:
        return "slice_index", len(slices)
    hosts = {getattr(d, "process_index", 0) for d in devices}
    if devices and devices[0].platform == "gpu" and len(hosts) > 1:
        return "process_index", len(hosts)
    return None, 1


def device_grid(sizes: Sequence[int], devices: Sequence[Any], *, dcn_axis: str = "auto") -> np.ndarray:
    """The devices arranged as a (data, fsdp, sequence, tensor) array for `Mesh`, by the topology.

    MESH_AXES are ordered by increasing traffic (data: one gradient all-reduce per step; fsdp: a
    weight all-gather per layer; sequence: four all-to-alls per attention; tensor: collectives in
    every matmul), which is the order `mesh_utils.create_device_mesh` expects: it maps the last axes
    onto the best-connected chips of a TPU torus. Over several slices (or GPU hosts, see
    `granules`) the mesh is hybrid (`create_hybrid_device_mesh`): one axis, `dcn_axis`, spans the
    slices over the data-centre network and every other axis stays inside a slice. "auto" puts the
    slices on `data` when its size divides by the slice count, else on `fsdp` (the FSDP all-gathers
    then cross DCN: prefer data). Sequence and tensor never cross slices.
    Other platforms, or a shape the torus cannot take, get the devices in id order.
    """
    sizes = tuple(int(s) for s in sizes)
    if len(sizes) != len(MESH_AXES) or math.prod(sizes) != len(devices):
        raise ValueError(f"mesh: sizes {sizes} do not fit {len(devices)} devices over axes {MESH_AXES}")
    attr, n = granules(devices)
    if n > 1:
        if dcn_axis == "auto":
            dcn_axis = next((a for a in ("data", "fsdp") if sizes[MESH_AXES.index(a)] % n == 0), "")
        if dcn_axis not in ("data", "fsdp") or sizes[MESH_AXES.index(dcn_axis)] % n:
            raise ValueError(
                f"mesh {dict(zip(MESH_AXES, sizes))}: the devices span {n} slices/hosts ({attr}); the "
                f"data or fsdp axis must divide by {n} (dcn_axis={dcn_axis or 'auto'})")
        i = MESH_AXES.index(dcn_axis)
        ici = tuple(s // n if j == i else s for j, s in enumerate(sizes))
        dcn = tuple(n if j == i else 1 for j in range(len(sizes)))
        return mesh_utils.create_hybrid_device_mesh(
            ici, dcn, devices, process_is_granule=attr == "process_index", allow_split_physical_axes=True)
    if dcn_axis not in ("auto", "data", "fsdp"):
        raise ValueError(f"mesh: dcn_axis expected auto, data or fsdp; got {dcn_axis!r}")
    if devices[0].platform == "tpu":
        try:
            return mesh_utils.create_device_mesh(sizes, devices, allow_split_physical_axes=True)
        except (ValueError, AssertionError, NotImplementedError) as e:
            log.warning("mesh %s: no topology-aware layout (%s); devices in id order", sizes, e)
    return np.asarray(sorted(devices, key=lambda d: d.id), dtype=object).reshape(sizes)


def describe(mesh: Mesh) -> str:
    """One line for the logs: axis sizes, device kind and count, slices/hosts, this process's share."""
    devices = list(mesh.devices.flat)
    attr, n = granules(devices)
    local = [d for d in devices if d.process_index == jax.process_index()]
    axes = " ".join(f"{a}={s}" for a, s in mesh.shape.items())
    span = f", {n} {'slices' if attr == 'slice_index' else 'hosts'} over DCN" if n > 1 else ""
    return (f"mesh {axes}: {len(devices)} x {devices[0].device_kind}{span}; process {jax.process_index()} "
            f"of {jax.process_count()} holds {len(local)} devices")


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
