"""The sampling schedule of the backbone's flow matching, as diffusers' FlowMatchEulerDiscreteScheduler.

The HunyuanVideo pipelines sample with `sigmas = linspace(1, 0, N + 1)[:-1]`, shifted by
`shift * s / (1 + (shift - 1) * s)`, then a terminal 0; the model's timestep at each step is
`timesteps_from_sigmas(sigmas[:-1])`. The convention itself (noising, velocity, timestep, Euler step)
is `dreamactor_jax.flow`, shared with training.
"""

from __future__ import annotations

import numpy as np

from dreamactor_jax.flow import NUM_TRAIN_TIMESTEPS, add_noise, euler_step, shift_sigma, timesteps_from_sigmas

__all__ = ["NUM_TRAIN_TIMESTEPS", "add_noise", "euler_step", "flow_sigmas", "shift_sigmas", "timesteps_from_sigmas"]


def shift_sigmas(sigmas: np.ndarray, shift: float) -> np.ndarray:
    """`flow.shift_sigma` on a float32 numpy schedule."""
    return shift_sigma(np.asarray(sigmas, dtype=np.float32), shift).astype(np.float32)


def flow_sigmas(num_steps: int, shift: float = 7.0) -> np.ndarray:
    """Returns `num_steps + 1` shifted sigmas from 1 down to a terminal 0 (float32)."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    if shift <= 0:
        raise ValueError(f"shift must be > 0, got {shift}")
    base = np.linspace(1.0, 0.0, num_steps + 1)[:-1]
    return np.concatenate([shift_sigmas(base, shift), np.zeros(1, np.float32)])
