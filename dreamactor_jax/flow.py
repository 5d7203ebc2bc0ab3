"""The flow-matching convention (rectified flow), one place for training and sampling alike.

A clean latent x0 and noise n are mixed as `x_sigma = (1 - sigma) * x0 + sigma * n` (`add_noise`),
the model predicts the velocity `v = n - x0` (`velocity_target`) given the timestep `sigma * 1000`
(`timesteps_from_sigmas`), and one Euler step of the flow ODE is `x <- x + (sigma_next - sigma) * v`
(`euler_step`). The backbone's time shift maps u in [0, 1] to `shift * u / (1 + (shift - 1) * u)`
(`shift_sigma`). All as diffusers' FlowMatchEulerDiscreteScheduler (`scale_noise`, `timesteps =
sigmas * num_train_timesteps`, `step`); `train.objective` draws the training noise levels,
`sampling.scheduler` makes the sampling schedule.
"""

from __future__ import annotations

import jax.numpy as jnp

NUM_TRAIN_TIMESTEPS = 1000


def shift_sigma(u, shift: float):
    """The static time shift of SD3/HunyuanVideo: larger `shift` spends more steps at high noise
    (numpy in, numpy out; jax in, jax out)."""
    return shift * u / (1.0 + (shift - 1.0) * u)


def add_noise(x0, noise, sigma):
    """`(1 - sigma) * x0 + sigma * noise`: the forward process at noise level `sigma`, a scalar or
    one per example ([B], broadcast over the latent [B, ...])."""
    sigma = jnp.asarray(sigma)
    s = sigma.reshape(sigma.shape + (1,) * (x0.ndim - sigma.ndim)).astype(x0.dtype)
    return (1.0 - s) * x0 + s * noise


def velocity_target(x0, noise):
    """What the backbone predicts: `noise - x0` (= d x_sigma / d sigma)."""
    return noise - x0


def timesteps_from_sigmas(sigma):
    """The model's timestep input for noise level(s) `sigma`: `sigma * 1000`, float32."""
    return (sigma * NUM_TRAIN_TIMESTEPS).astype(jnp.float32)


def euler_step(x, velocity, sigma, sigma_next):
    """One deterministic Euler step of the flow ODE, computed in float32 and cast back to x's dtype."""
    out = x.astype("float32") + (sigma_next - sigma) * velocity.astype("float32")
    return out.astype(x.dtype)
