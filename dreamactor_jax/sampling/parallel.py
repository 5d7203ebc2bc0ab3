"""Several devices for one video: CFG-parallel and sequence-parallel sampling over a mesh.

`sample_on_mesh` traces the sampler under `sharding.use_mesh(mesh)`, so the activation constraints of `models.blocks` place the work by `sharding.RULES`: the batch axis over
(fsdp, data) and the tokens over `sequence` (attention becomes Ulysses / ring, `models.attention`).
With true CFG (`velocity.InContextVelocity(cfg, true_cfg=True)`) the conditional and null-text
halves are one batch of 2B, so a mesh with data=2 runs them on two device groups at once
(CFG-parallel); sequence=N splits each half's tokens N ways. `OnMesh(model_fn, mesh)` puts the mesh
into the sampler's (hashable, static) model, so it compiles once per (model, mesh) and never reuses a
trace made without the mesh.

    mesh = sharding.make_mesh({"data": 2, "sequence": 4})
    latent = sample_on_mesh(InContextVelocity(cfg, true_cfg=True), params, cond, noise, sigmas, mesh)

Equal to one device (fp32): tests/test_sampling_parallel.py on 8 fake CPU devices. Speed on GPUs is
not measured yet.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from dreamactor_jax import sharding
from dreamactor_jax.sampling import sampler


@dataclasses.dataclass(frozen=True)
class OnMesh:
    """`model_fn` run with `mesh` active (activation shardings by `sharding.RULES`)."""

    model_fn: Any
    mesh: Mesh

    def __call__(self, params, x, timestep, cond):  # traced inside `sample_on_mesh`'s use_mesh block
        return self.model_fn(params, x, timestep, cond)


def sample_on_mesh(model_fn, params, cond: dict, noise, sigmas, mesh: Mesh, known=None, known_mask=None,
                   param_shardings=None):
    """`sampler.sample` with the work spread over `mesh`. Inputs are replicated onto the mesh (the
    weights too, unless `param_shardings` is given, e.g. `train.state.base_shardings(cfg, mesh)`)."""
    rep = NamedSharding(mesh, PartitionSpec())
    put = lambda tree: jax.tree_util.tree_map(lambda a: jax.device_put(a, rep), tree)  # noqa: E731
    params = put(params) if param_shardings is None else jax.device_put(params, param_shardings)
    known, known_mask = (None, None) if known is None else (put(known), put(known_mask))
    with sharding.use_mesh(mesh):
        return sampler.sample(OnMesh(model_fn, mesh), params, put(cond), put(noise), put(sigmas), known, known_mask)
