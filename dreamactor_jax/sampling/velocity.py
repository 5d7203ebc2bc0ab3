"""The backbone as the sampler's `model_fn`: in-context channel stack, text, and classifier-free guidance.

`InContextVelocity(cfg, true_cfg, lora_cfg)` is a frozen (hashable) dataclass, so `sampler.sample` /
`sampler.denoise_step` compile once per (config, shape) and every segment and call reuses the
compiled loop. Everything that varies (canvas latent, mask, text, guidance scale) is in `cond`:

    cond = {"canvas": [B, T', H', 2W', 16] condition latent (zeroed where the mask is 0),
            "mask": [B or 1, T', H', 2W', 1],
            "text": [B, L, D], "text_mask": [B, L], "pooled": [B, P],
            # true_cfg only: the null prompt (same L) and the scale
            "null_text": [B, L, D], "null_text_mask": [B, L], "null_pooled": [B, P], "scale": [],
            # guidance-distilled configs only: the embedded guidance (scale * 1000)
            "guidance": [B],
            # HunyuanVideo-1.5 only (optional): the reference's SigLIP tokens, the same in both CFG
            # branches as in diffusers' I2V pipeline; glyph tokens (with "null_text_2"/"null_text_2_mask"
            # of the null prompt under true CFG)
            "image_embeds": [B, M, D_image], "text_2": [B, N, D_glyph], "text_2_mask": [B, N]}

True CFG (the I2V-33ch backbone is not guidance-distilled) runs the conditional and the null-text
branch as one batch of 2B and returns `v_null + scale * (v_text - v_null)`, as diffusers'
HunyuanVideo I2V pipeline does with `true_cfg_scale`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from dreamactor_jax import incontext
from dreamactor_jax.models import mmdit
from dreamactor_jax.models.config import MMDiTConfig
from dreamactor_jax.sampling.sampler import guided_velocity


@dataclasses.dataclass(frozen=True)
class InContextVelocity:
    """`model_fn(params, x, timestep, cond) -> velocity` of the in-context MMDiT: params are the backbone
    with the adapter merged, or, with `lora_cfg`, `(base, lora)` with the adapter applied unmerged
    (the toy world's studies, which compare many adapters on one base)."""

    cfg: MMDiTConfig
    true_cfg: bool = False
    lora_cfg: Any = None  # models.lora.LoRAConfig of an unmerged adapter

    def __call__(self, params, x: jax.Array, timestep: jax.Array, cond: dict) -> jax.Array:
        args, extra = model_inputs(x, timestep, cond, self.true_cfg)
        if self.lora_cfg is not None:
            params, lora = params
            extra.update(lora=lora, lora_cfg=self.lora_cfg)
        v = mmdit.forward(params, self.cfg, *args, **extra)
        if not self.true_cfg:
            return v
        b = x.shape[0]
        return guided_velocity(v[:b], v[b:], cond["scale"])


def model_inputs(x: jax.Array, timestep: jax.Array, cond: dict, true_cfg: bool) -> tuple[tuple, dict]:
    """`mmdit.forward`'s positional inputs (x .. guidance) and keyword streams for `cond`: under true CFG
    one batch of 2B, the prompt's branch first, the null prompt's second. The image tokens are the same
    in both branches (diffusers' HunyuanVideo15ImageToVideoPipeline), the glyph tokens the prompt's and
    the null prompt's."""
    inp = incontext.stack_channels(x, cond["canvas"].astype(x.dtype), cond["mask"])
    guidance = cond.get("guidance")
    extra = {k: cond[k] for k in ("image_embeds", "text_2", "text_2_mask") if k in cond}
    if not true_cfg:
        return (inp, timestep, cond["text"], cond["text_mask"], cond["pooled"], guidance), extra
    two = lambda a, c: jnp.concatenate([a, c.astype(a.dtype)], axis=0)  # noqa: E731
    args = (two(inp, inp), two(timestep, timestep), two(cond["text"], cond["null_text"]),
            two(cond["text_mask"], cond["null_text_mask"]), two(cond["pooled"], cond["null_pooled"]),
            None if guidance is None else two(guidance, guidance))
    extra = {k: two(v, cond.get("null_" + k, v)) for k, v in extra.items()}  # image tokens: no null_ twin
    return args, extra


def context_length(cond: dict) -> int:
    """Context tokens per example: text, plus image and glyph tokens when `cond` has them."""
    return sum(cond[k].shape[1] for k in ("text", "image_embeds", "text_2") if k in cond)
