"""The toy models: the project's MMDiT at small width, and the three input layouts it is trained on.

One backbone (`dreamactor_jax.models.mmdit`, `image_condition_type="latent_concat"`) sees
`[noisy latent (12), condition latent (12), mask (1)]` channels, exactly like the I2V-33ch backbone
(16 + 16 + 1) with the toy autoencoder's 12 channels. Layouts build (target, condition, mask) from
pixel videos, on the device, inside jit:

- `i2v`: image-to-video pretraining of the prior: condition = frame 0, zeros after; mask on frame 0.
- `spatial` (the paper, Eq. 2) and `temporal` (Table 2 model A): `dreamactor_jax.incontext`'s
  canvas, target, mask and loss region, unchanged (the Haar latent has no temporal compression,
  so the latent frame count is T). The "zero image" of Eq. 2 becomes a zero latent there.
Text is not used by the toy world: every sample gets the same fixed random text context.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from dreamactor_jax import incontext
from dreamactor_jax.models.config import MMDiTConfig
from dreamactor_jax.models.lora import LoRAConfig
from dreamactor_jax.toy import autoencoder as ae
from dreamactor_jax.train import objective as obj

LAYOUTS = ("i2v", "spatial", "temporal")


def mmdit_config(m) -> MMDiTConfig:
    """The toy backbone from a config section `m` (heads, head_dim, layers, ...)."""
    return MMDiTConfig(
        in_channels=2 * ae.LATENT_CHANNELS + 1, out_channels=ae.LATENT_CHANNELS,
        num_attention_heads=int(m.heads), attention_head_dim=int(m.head_dim),
        num_layers=int(m.layers), num_single_layers=int(m.single_layers),
        num_refiner_layers=int(m.refiner_layers), text_embed_dim=int(m.text_dim),
        pooled_projection_dim=int(m.pooled_dim), rope_axes_dim=tuple(int(d) for d in m.rope_axes_dim),
        guidance_embeds=False, image_condition_type="latent_concat", patch_size=int(m.patch_size),
        dtype=str(m.dtype), attention_impl=str(m.attention_impl), remat_policy="none")


def lora_config(lc) -> LoRAConfig:
    """Rank, alpha and (optionally, `lc.targets`) the layers; default: feed-forward only (the paper)."""
    kw = {"targets": tuple(lc.targets)} if lc.get("targets") else {}
    return LoRAConfig(rank=int(lc.rank), alpha=float(lc.alpha), **kw)


def text_spec(m) -> tuple[int, int, int]:
    """(text tokens, text width, pooled width) of a model config section (hashable)."""
    if isinstance(m, tuple):
        return m
    return int(m.text_len), int(m.text_dim), int(m.pooled_dim)


def text_context(m, batch: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The fixed text condition (a seeded random embedding, the same for every sample)."""
    n, d, dp = text_spec(m)
    rng = np.random.default_rng(1234)
    text = rng.normal(size=(1, n, d)).astype(np.float32)
    pooled = rng.normal(size=(1, dp)).astype(np.float32)
    return (jnp.broadcast_to(jnp.asarray(text), (batch, n, d)), jnp.ones((batch, n), jnp.int32),
            jnp.broadcast_to(jnp.asarray(pooled), (batch, dp)))


def sample_cond(m, canvas: jax.Array, mask: jax.Array) -> dict:
    """The sampler's `cond` for `sampling.velocity.InContextVelocity`: the condition latent, the mask and
    the fixed text context of the model section `m` (`text_context`)."""
    text, text_mask, pooled = text_context(m, canvas.shape[0])
    return {"canvas": canvas, "mask": mask, "text": text, "text_mask": text_mask, "pooled": pooled}


def _i2v_mask(t: int, h: int, w: int) -> jax.Array:
    return (jnp.arange(t) == 0).astype(jnp.float32)[:, None, None, None] * jnp.ones((t, h, w, 1), jnp.float32)


def build(layout: str, video: jax.Array, pose: jax.Array | None, ref: jax.Array):
    """Latent (target, condition, mask) of one layout from pixel clips in [-1, 1].

    video [B, T, H, W, 3] (zeros at inference), pose [B, T, H, W, 3] (None for `i2v`),
    ref [B, H, W, 3]. Returns target and condition [B, T', h, w', 12] and mask [B, T', h, w', 1]:
    `i2v` keeps the clip's shape; `spatial` and `temporal` are `dreamactor_jax.incontext`'s
    layouts (w' = 2w, or T' = T + 1 with the reference as a leading frame).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout: expected one of {LAYOUTS}, got {layout!r}")
    b, t, h, w = video.shape[:4]
    if layout == "i2v":
        tgt = ae.encode(video)
        cond = jnp.concatenate([ae.encode(ref)[:, None], jnp.zeros_like(tgt[:, 1:])], 1)
        mask = _i2v_mask(t, h // ae.FACTOR, w // ae.FACTOR)
    else:
        canvas = incontext.make_canvas(ref, pose, layout, fill=0.0)
        cond = incontext.encode_canvas(ae.encode, canvas, layout)
        tgt = incontext.encode_canvas(ae.encode, incontext.make_target(video, pose, layout), layout,
                                      zero_unmasked=False)
        mask = incontext.make_mask(t, h // ae.FACTOR, w // ae.FACTOR, layout)
    return tgt, cond, jnp.broadcast_to(mask, tgt.shape[:4] + (1,))


def video_part(layout: str, latents: jax.Array) -> jax.Array:
    """The generated character video (latents) out of a full layout sample."""
    return latents if layout == "i2v" else incontext.target_half(latents, layout)


def loss_weights(layout: str, shape) -> jax.Array:
    """[T', h, w', 1] loss weights for latents of `shape` [B, T', h, w', C]: the video part only."""
    if layout == "i2v":
        return jnp.ones(tuple(shape[1:4]) + (1,), jnp.float32)
    return obj.loss_weights(shape, "target", layout)


def count(tree: Any) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(tree)))
