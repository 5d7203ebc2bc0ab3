"""The training objective: rectified flow (flow matching) with a velocity target.

The paper writes its objective (Eq. 1) as noise prediction, `|| eps - eps_theta(z_t, c, t) ||^2`.
The backbone we fine-tune (HunyuanVideo; Seedance 1.0 likewise) is a rectified-flow model, so we
train in *its* parameterisation, which is what the pretrained weights and the sampler expect
(checked against diffusers' `FlowMatchEulerDiscreteScheduler` and the HunyuanVideo pipelines):

    x_t = (1 - sigma) * x0 + sigma * noise          (`scale_noise`; `flow.add_noise`)
    timestep = sigma * 1000                         (`flow.timesteps_from_sigmas`)
    v_target = noise - x0 = d x_t / d sigma         (Euler: x_next = x + (sigma_next - sigma) * v)

and minimise `|| v_target - v_theta(x_t, c, t) ||^2`. Both are the same family of denoising
objectives (noise prediction is the velocity plus a sigma-dependent rescaling); the velocity form
keeps the fine-tune consistent with the pretraining and with `dreamactor_jax.sampling`.

Noise levels: `uniform` (u ~ U(0, 1)), `logit_normal` (u = sigmoid(N(mean, std)), SD3) or `mode`
(SD3's mode sampling), then the backbone's shift `sigma = s u / (1 + (s - 1) u)`. With `uniform`
and the sampler's shift (7.0 for HunyuanVideo-I2V) the training noise levels follow the
distribution the Euler sampler visits.

Loss region: the whole canvas (`canvas`) or only the generated character video (`target`): the left
half of a spatial canvas (the paper's layout; the right half is the motion signal, which the model
also sees clean in the condition), or the frames after the reference frame of a temporal one
(Table 2's model A). The layout is a setting of the run (`FlowConfig.layout`); the region itself is
`incontext.region_mask`'s, the one definition of it.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from dreamactor_jax import incontext
from dreamactor_jax.flow import add_noise, shift_sigma, timesteps_from_sigmas, velocity_target

__all__ = ["FlowConfig", "add_noise", "flow_loss", "loss_weights", "sample_sigmas", "shift_sigma",
           "timesteps_from_sigmas", "velocity_target"]

SAMPLINGS = ("uniform", "logit_normal", "mode")
REGIONS = ("canvas", "target")


@dataclasses.dataclass(frozen=True)
class FlowConfig:
    """Noise-level sampling and the loss region (hashable: a static argument)."""

    sampling: str = "uniform"
    logit_mean: float = 0.0
    logit_std: float = 1.0
    mode_scale: float = 1.29
    shift: float = 7.0
    loss_region: str = "target"
    layout: str = "spatial"  # the in-context layout of the run's canvases (incontext.LAYOUTS)

    def __post_init__(self):
        if self.sampling not in SAMPLINGS:
            raise ValueError(f"objective.sampling {self.sampling!r}: must be one of {SAMPLINGS}")
        if self.loss_region not in REGIONS:
            raise ValueError(f"objective.loss_region {self.loss_region!r}: must be one of {REGIONS}")
        if self.layout not in incontext.LAYOUTS:
            raise ValueError(f"objective.layout {self.layout!r}: must be one of {incontext.LAYOUTS}")
        if not self.shift > 0:
            raise ValueError(f"objective.shift {self.shift}: must be > 0")
        if not self.logit_std > 0:
            raise ValueError(f"objective.logit_std {self.logit_std}: must be > 0")


def sample_sigmas(key: jax.Array, batch: int, cfg: FlowConfig) -> jax.Array:
    """Noise levels sigma in (0, 1), shape [batch], float32."""
    if cfg.sampling == "logit_normal":
        u = jax.nn.sigmoid(cfg.logit_mean + cfg.logit_std * jax.random.normal(key, (batch,)))
    else:
        u = jax.random.uniform(key, (batch,))
        if cfg.sampling == "mode":
            u = 1.0 - u - cfg.mode_scale * (jnp.cos(math.pi * u / 2.0) ** 2 - 1.0 + u)
    return shift_sigma(u, cfg.shift).astype(jnp.float32)


def loss_weights(shape: tuple[int, ...], region: str, layout: str = "spatial") -> jax.Array:
    """[T', H', W', 1] 0/1 weights of the loss region for canvas latents of `shape` [B, T', H', W', C]:
    `incontext.region_mask` of the layout (spatial: W' = 2 panels; temporal: T' = 1 + the video's)."""
    return incontext.region_mask(*incontext.clip_dims(shape[1:4], layout), layout, region)


def flow_loss(pred: jax.Array, target: jax.Array, region: str, layout: str = "spatial") -> tuple[jax.Array, jax.Array]:
    """Mean squared error over the chosen region of the layout (`loss_weights`), in fp32.

    Returns (loss, per_example [B]): each example's mean over its region, then the batch mean.
    """
    w = loss_weights(pred.shape, region, layout)[None]
    err = jnp.square(pred.astype(jnp.float32) - target.astype(jnp.float32)) * w
    denom = jnp.sum(w) * pred.shape[4]
    per_example = jnp.sum(err, axis=(1, 2, 3, 4)) / denom
    return jnp.mean(per_example), per_example
