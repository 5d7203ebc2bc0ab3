"""Meshes for TPU slices and pods (sharding.device_grid), built from fake device records.

JAX's mesh utilities read only a device's `platform`, `device_kind`, `id`, `coords`, `core_on_chip`,
`slice_index` and `process_index`, so plain records with a TPU's attributes stand in for the chips
of a v5p or v6e slice (or of several slices): the same code path a pod takes, minus the hardware.
Checked: every slice occupies one contiguous block along the DCN axis (data, else fsdp), nothing
else crosses slices, neighbours along the busiest axes are neighbours in the torus, and bad shapes
fail with a clear message. The real-device path (CPU) is covered by tests/test_sharding.py.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pytest

from dreamactor_jax import sharding


@dataclass(frozen=True)
class FakeChip:
    id: int
    coords: tuple[int, int, int]
    slice_index: int
    process_index: int
    platform: str = "tpu"
    device_kind: str = "TPU v5p"
    core_on_chip: int = 0


def tpu_slices(shape: tuple[int, int, int], slices: int, kind: str = "TPU v5p", chips_per_host: int = 4):
    """Chips of `slices` slices of torus `shape`, in the order jax.devices() lists them (by slice, z, y, x)."""
    out = []
    for s in range(slices):
        for z, y, x in itertools.product(*(range(n) for n in reversed(shape))):
            i = len(out)
            out.append(FakeChip(i, (x, y, z), s, i // chips_per_host, device_kind=kind))
    return out


def _ring_neighbours(a: FakeChip, b: FakeChip, shape) -> bool:
    """One hop in the torus (wrap-around links included)."""
    diffs = [min(abs(p - q), n - abs(p - q)) for p, q, n in zip(a.coords, b.coords, shape)]
    return sorted(diffs) == [0, 0, 1]


def _axis(name: str) -> int:
    return sharding.MESH_AXES.index(name)


def test_two_v5p_slices_data_over_dcn():
    """2 x v5p-16 (2x2x2 chips each): data=2 across slices, fsdp=2 x sequence=4 inside each."""
    devs = tpu_slices((2, 2, 2), 2)
    grid = sharding.device_grid((2, 2, 4, 1), devs)
    assert grid.shape == (2, 2, 4, 1) and sorted(d.id for d in grid.flat) == list(range(16))
    for i in range(2):  # slice i is exactly the block data=i
        assert {d.slice_index for d in grid[i].flat} == {i}
    for d0 in range(2):
        for f in range(2):
            ring = grid[d0, f, :, 0]
            assert all(_ring_neighbours(a, b, (2, 2, 2)) for a, b in zip(ring, np.roll(ring, -1))), ring


def test_slices_go_on_fsdp_when_data_cannot_take_them():
    """4 x v5p-8 (2x2x1), data=1: fsdp=8 spans the slices (2 chips per slice), sequence=2 stays inside."""
    devs = tpu_slices((2, 2, 1), 4)
    grid = sharding.device_grid((1, 8, 2, 1), devs)
    for s in range(4):
        assert {d.slice_index for d in grid[0, 2 * s:2 * s + 2].flat} == {s}
    for f in range(8):  # sequence pairs never cross a slice and are torus neighbours
        a, b = grid[0, f, :, 0]
        assert a.slice_index == b.slice_index and _ring_neighbours(a, b, (2, 2, 1))
    with pytest.raises(ValueError, match="the data or fsdp axis must divide by 4"):
        sharding.device_grid((1, 2, 8, 1), devs)  # only the sequence axis could take 4 slices
    with pytest.raises(ValueError, match="must divide by 4"):
        sharding.device_grid((2, 8, 1, 1), devs, dcn_axis="data")


def test_v6e_slices_and_a_single_slice():
    """v6e ("TPU v6 lite", 2D torus 4x4): two slices with data over DCN; one slice alone uses the torus."""
    devs = tpu_slices((4, 4, 1), 2, kind="TPU v6 lite", chips_per_host=4)
    grid = sharding.device_grid((2, 4, 4, 1), devs)
    assert all({d.slice_index for d in grid[i].flat} == {i} for i in range(2))
    one = tpu_slices((4, 4, 1), 1, kind="TPU v6 lite")
    grid = sharding.device_grid((1, 4, 4, 1), one)
    for f in range(4):
        ring = grid[0, f, :, 0]  # the sequence axis: a ring of 4 neighbouring chips (a torus row, as in id order)
        assert all(_ring_neighbours(a, b, (4, 4, 1)) for a, b in zip(ring, np.roll(ring, -1))), ring
    # a shape the torus cannot take as whole rings falls back to id order, still a valid mesh
    grid = sharding.device_grid((1, 1, 16, 1), one)
    assert sorted(d.id for d in grid.flat) == list(range(16))


def test_gpu_hosts_are_granules():
    """2 GPU hosts x 4 GPUs (no slice_index): data over the hosts, sequence inside a host (NVLink)."""
    @dataclass(frozen=True)
    class FakeGPU:
        id: int
        process_index: int
        platform: str = "gpu"
        device_kind: str = "NVIDIA H100 80GB HBM3"

    devs = [FakeGPU(i, i // 4) for i in range(8)]
    assert sharding.granules(devs) == ("process_index", 2)
    grid = sharding.device_grid((2, 1, 4, 1), devs)
    assert [{d.process_index for d in grid[i].flat} for i in range(2)] == [{0}, {1}]
    assert sharding.granules(devs[:4]) == (None, 1)


def test_make_mesh_api_and_describe():
    """The existing `make_mesh` API on real (CPU) devices, and the one-line description."""
    import jax

    mesh = sharding.make_mesh({"fsdp": -1})
    assert mesh.axis_names == sharding.MESH_AXES and mesh.devices.size == jax.device_count()
    line = sharding.describe(mesh)
    assert line.startswith("mesh data=1 fsdp=") and "process 0 of 1 holds" in line
    with pytest.raises(ValueError, match="dcn_axis expected auto, data or fsdp"):
        sharding.make_mesh({"fsdp": -1}, dcn_axis="tensor")
    with pytest.raises(ValueError, match="do not fit"):
        sharding.device_grid((2, 1, 1, 1), jax.devices()[:1])
