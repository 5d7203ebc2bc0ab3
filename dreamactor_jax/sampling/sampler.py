"""The denoising loop: flow-matching Euler steps, classifier-free guidance, and clamped context frames.

`sample` is compiled once per input shape and reused: everything that changes between calls (weights,
conditioning, noise, sigmas, context latents) is an argument, never a constant folded into the graph.
The model is any `model_fn(params, x, timestep, cond) -> velocity` (see `mmdit_model_fn`).
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp

from dreamactor_jax.sampling.scheduler import NUM_TRAIN_TIMESTEPS, add_noise, euler_step

ModelFn = Callable[[Any, jax.Array, jax.Array, Any], jax.Array]


def guided_velocity(v_cond: jax.Array, v_uncond: jax.Array, scale: float | jax.Array) -> jax.Array:
    """Classifier-free guidance: `v_uncond + scale * (v_cond - v_uncond)` (scale 1 gives v_cond)."""
    return v_uncond + scale * (v_cond - v_uncond)


@functools.partial(jax.jit, static_argnames=("model_fn",))
def sample(
    model_fn: ModelFn,
    params: Any,
    cond: Any,
    noise: jax.Array,
    sigmas: jax.Array,
    known: jax.Array | None = None,
    known_mask: jax.Array | None = None,
) -> jax.Array:
    """Integrates the flow ODE from `noise` (sigma = sigmas[0]) to sigma = sigmas[-1].

    Args:
      model_fn: `model_fn(params, x, timestep, cond) -> velocity`, timestep = sigma * 1000, shape [B].
      params: the model's weights (adapter already merged).
      cond: a pytree of conditioning arrays handed to `model_fn` unchanged.
      noise: [B, ...] the initial latent.
      sigmas: [N + 1] the schedule (`scheduler.flow_sigmas`).
      known, known_mask: optional clean latents and a {0,1} mask broadcastable to `noise`; where the mask
        is 1 the sample is clamped, at every step, to `known` noised to the current sigma with the same
        initial noise (replacement guidance). Used for the context frames of long videos.
    Returns: the final latent, float32.
    """
    x = noise.astype(jnp.float32)
    batch = x.shape[0]
    sigmas = sigmas.astype(jnp.float32)

    def clamp(x, sigma):
        if known is None:
            return x
        target = add_noise(known.astype(jnp.float32), noise.astype(jnp.float32), sigma)
        return jnp.where(known_mask > 0, target, x)

    def body(i, x):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        x = clamp(x, sigma)
        timestep = jnp.full((batch,), sigma * NUM_TRAIN_TIMESTEPS, jnp.float32)
        v = model_fn(params, x, timestep, cond)
        return euler_step(x, v.astype(jnp.float32), sigma, sigma_next)

    x = jax.lax.fori_loop(0, sigmas.shape[0] - 1, body, x)
    return clamp(x, sigmas[-1])
