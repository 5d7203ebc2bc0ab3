"""The backbone's flow-matching schedule (rectified flow), as diffusers' FlowMatchEulerDiscreteScheduler.

Convention (shared with training, `dreamactor_jax.train.objective`): a clean latent x0 and noise n are
mixed as `x_sigma = (1 - sigma) * x0 + sigma * n`, the model predicts the velocity `v = n - x0`, and the
timestep it is given is `sigma * 1000`. The HunyuanVideo pipelines sample with
`sigmas = linspace(1, 0, N + 1)[:-1]`, shifted by `shift * s / (1 + (shift - 1) * s)`, then a terminal 0;
one Euler step is `x <- x + (sigma_next - sigma) * v`.
"""

from __future__ import annotations

import numpy as np

NUM_TRAIN_TIMESTEPS = 1000


def shift_sigmas(sigmas: np.ndarray, shift: float) -> np.ndarray:
    """The static time shift of SD3/HunyuanVideo: larger `shift` spends more steps at high noise."""
    sigmas = np.asarray(sigmas, dtype=np.float32)
    return (shift * sigmas / (1.0 + (shift - 1.0) * sigmas)).astype(np.float32)


def flow_sigmas(num_steps: int, shift: float = 7.0) -> np.ndarray:
    """Returns `num_steps + 1` shifted sigmas from 1 down to a terminal 0 (float32)."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    if shift <= 0:
        raise ValueError(f"shift must be > 0, got {shift}")
    base = np.linspace(1.0, 0.0, num_steps + 1)[:-1]
    return np.concatenate([shift_sigmas(base, shift), np.zeros(1, np.float32)])


def timesteps_from_sigmas(sigmas: np.ndarray) -> np.ndarray:
    """The model's timestep input for each step (the terminal sigma is not a step)."""
    return (np.asarray(sigmas[:-1], np.float32) * NUM_TRAIN_TIMESTEPS).astype(np.float32)


def euler_step(x, velocity, sigma, sigma_next):
    """One deterministic Euler step of the flow ODE, computed in float32 and cast back to x's dtype."""
    out = x.astype("float32") + (sigma_next - sigma) * velocity.astype("float32")
    return out.astype(x.dtype)


def add_noise(x0, noise, sigma):
    """`(1 - sigma) * x0 + sigma * noise`: the forward process at noise level `sigma`."""
    return (1.0 - sigma) * x0 + sigma * noise
