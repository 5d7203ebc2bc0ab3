"""The backbone as the sampler's `model_fn`: in-context channel stack, text, and classifier-free guidance.

`InContextVelocity(cfg, true_cfg)` is a frozen (hashable) dataclass, so `sampler.sample` /
`sampler.denoise_step` compile once per (config, shape) and every segment and call reuses the
compiled loop. Everything that varies (canvas latent, mask, text, guidance scale) is in `cond`:

    cond = {"canvas": [B, T', H', 2W', 16] condition latent (zeroed where the mask is 0),
            "mask": [B or 1, T', H', 2W', 1],
            "text": [B, L, D], "text_mask": [B, L], "pooled": [B, P],
            # true_cfg only: the null prompt (same L) and the scale
            "null_text": [B, L, D], "null_text_mask": [B, L], "null_pooled": [B, P], "scale": [],
            # guidance-distilled configs only: the embedded guidance (scale * 1000)
            "guidance": [B]}

True CFG (the I2V-33ch backbone is not guidance-distilled) runs the conditional and the null-text
branch as one batch of 2B and returns `v_null + scale * (v_text - v_null)`, as diffusers'
HunyuanVideo I2V pipeline does with `true_cfg_scale`.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from dreamactor_jax import incontext
from dreamactor_jax.models import mmdit
from dreamactor_jax.models.config import MMDiTConfig
from dreamactor_jax.sampling.sampler import guided_velocity


@dataclasses.dataclass(frozen=True)
class InContextVelocity:
    """`model_fn(params, x, timestep, cond) -> velocity` of the in-context MMDiT (adapter merged)."""

    cfg: MMDiTConfig
    true_cfg: bool = False

    def __call__(self, params, x: jax.Array, timestep: jax.Array, cond: dict) -> jax.Array:
        inp = incontext.stack_channels(x, cond["canvas"].astype(x.dtype), cond["mask"])
        guidance = cond.get("guidance")
        if not self.true_cfg:
            return mmdit.forward(params, self.cfg, inp, timestep, cond["text"], cond["text_mask"],
                                 cond["pooled"], guidance)
        b = x.shape[0]
        two = lambda a, c: jnp.concatenate([a, c.astype(a.dtype)], axis=0)
        v = mmdit.forward(
            params, self.cfg, two(inp, inp), two(timestep, timestep),
            two(cond["text"], cond["null_text"]), two(cond["text_mask"], cond["null_text_mask"]),
            two(cond["pooled"], cond["null_pooled"]), None if guidance is None else two(guidance, guidance))
        return guided_velocity(v[:b], v[b:], cond["scale"])
