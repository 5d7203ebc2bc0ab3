"""Helpers for sampler tests: random weights for a small MMDiT, every leaf drawn (so a test sees every
parameter), fast (numpy draws, no initialiser run)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from dreamactor_jax.models import mmdit


def random_params(cfg, rng: np.random.Generator) -> dict:
    """`mmdit.init_params(cfg)`'s tree with every leaf drawn from `rng`: matrices scaled by 0.5 / sqrt(fan-in),
    vectors 1 + N(0, 0.1^2)."""
    shapes = jax.eval_shape(lambda k: mmdit.init_params(cfg, k), jax.random.key(0))
    return jax.tree_util.tree_map(
        lambda a: jnp.asarray(rng.standard_normal(a.shape).astype(np.float32)
                              * (0.5 / np.sqrt(a.shape[-2]) if a.ndim >= 2 else 0.1) + (a.ndim == 1)), shapes)
