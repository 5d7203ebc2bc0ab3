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
import numpy as np

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
    sigmas = sigmas.astype(jnp.float32)

    def body(i, x):
        return _step(model_fn, params, cond, x, noise, sigmas[i], sigmas[i + 1], known, known_mask)

    x = jax.lax.fori_loop(0, sigmas.shape[0] - 1, body, x)
    return _clamp(x, noise, sigmas[-1], known, known_mask)


def _clamp(x, noise, sigma, known, known_mask):
    """Replaces x by `known` noised to `sigma` (with the initial noise) where `known_mask` is 1."""
    if known is None:
        return x
    target = add_noise(known.astype(jnp.float32), noise.astype(jnp.float32), sigma)
    return jnp.where(known_mask > 0, target, x)


def _step(model_fn, params, cond, x, noise, sigma, sigma_next, known, known_mask):
    x = _clamp(x, noise, sigma, known, known_mask)
    timestep = jnp.full((x.shape[0],), sigma * NUM_TRAIN_TIMESTEPS, jnp.float32)
    v = model_fn(params, x, timestep, cond)
    return euler_step(x, v.astype(jnp.float32), sigma, sigma_next)


denoise_step = jax.jit(_step, static_argnames=("model_fn",))
denoise_step.__doc__ = """One clamped Euler step (jitted once per shape): the body of `sample`, for loops that report progress."""
final_clamp = jax.jit(_clamp)


def sample_loop(
    model_fn: ModelFn,
    params: Any,
    cond: Any,
    noise: jax.Array,
    sigmas,
    known: jax.Array | None = None,
    known_mask: jax.Array | None = None,
    on_step: Callable[[int], None] | None = None,
) -> jax.Array:
    """The same integration as `sample`, one jitted step per Python iteration so `on_step(i)` can
    report progress (a progress bar); the step compiles once per shape and is reused."""
    x = jnp.asarray(noise, jnp.float32)
    sig = [float(s) for s in np.asarray(sigmas, np.float32)]
    for i in range(len(sig) - 1):
        x = denoise_step(model_fn, params, cond, x, noise, np.float32(sig[i]), np.float32(sig[i + 1]),
                         known, known_mask)
        if on_step is not None:
            x.block_until_ready()  # so the progress shown is work done, not work queued
            on_step(i)
    return final_clamp(x, noise, np.float32(sig[-1]), known, known_mask)
