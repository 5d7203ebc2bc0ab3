"""Step caching of the first-block-cache kind: skip the blocks after the first when the input barely moved.

At every step the first block runs. Its residual on the video tokens, `r1 = block1(h0) - h0`, is
compared with the one of the last step that ran all blocks (`ref`):

    rel = mean|r1 - ref| / mean|ref|

If `rel < threshold`, the other blocks are skipped and their residual from that last full step is
added instead (`h_L = h_1 + rest`); otherwise they run and `ref` and `rest` are renewed. `ref` stays
the last full step's, so small changes add up until one passes the threshold and the blocks run
again (as TeaCache accumulates its estimate). The decision is one scalar for the whole batch (true
CFG's cond and null halves, or a batch of cases, skip together), and `lax.cond` runs one branch only,
so a skipped step costs the embedding, one block and the output layer.

`threshold = 0` never skips (and gives the uncached result); the sampler's default is no cache at
all. Quality against the uncached output on the trained toy model: docs/benchmarks.md.

    model = CachedInContext(cfg, true_cfg)        # lora_cfg=...: params = (base, lora), adapter unmerged
    latent, skipped = sample_cached(model, params, cond, noise, sigmas, threshold=0.05)

`cond` is the one of `velocity.InContextVelocity` (canvas, mask, text, and the null text and scale
for true CFG).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from dreamactor_jax.models import blocks, mmdit
from dreamactor_jax.models.config import MMDiTConfig
from dreamactor_jax.sampling.sampler import _clamp, guided_velocity
from dreamactor_jax.sampling.scheduler import NUM_TRAIN_TIMESTEPS, euler_step
from dreamactor_jax.sampling.velocity import context_length, model_inputs


def _seq(h):
    return jnp.concatenate(h, axis=1) if isinstance(h, tuple) else h


def forward_cached(params, cfg: MMDiTConfig, x, timestep, text, text_mask, pooled, guidance=None, lora=None,
                   lora_cfg=None, *, cache: dict, threshold, **streams) -> tuple[jax.Array, dict, jax.Array]:
    """`mmdit.forward` with the first-block cache: (velocity, new cache, skipped bool[]); `streams`:
    HunyuanVideo-1.5's keyword inputs (`image_embeds`, `text_2`, `text_2_mask`)."""
    e = mmdit.embed(params, cfg, x, timestep, text, text_mask, pooled, guidance, lora, lora_cfg, **streams)
    n_video = e.img.shape[1]
    dual, single = params["transformer_blocks"], params["single_transformer_blocks"]
    ld, ls = e.lora.get("transformer_blocks"), e.lora.get("single_transformer_blocks")
    first_dual = cfg.num_layers > 0
    n_single = cfg.num_single_layers
    run = lambda fn, stack, lo, h, a, b: mmdit.run_layers(fn, stack, lo, h, e.ctx, cfg, layers=(a, b))  # noqa: E731
    if first_dual:
        h0 = (e.img, e.txt)
        h1 = run(blocks.dual_block, dual, ld, h0, 0, 1)
    else:
        h0 = jnp.concatenate([e.img, e.txt], axis=1)
        h1 = run(blocks.single_block, single, ls, h0, 0, 1)
    s1 = _seq(h1)
    r1 = (s1[:, :n_video] - e.img).astype(jnp.float32)

    def rest(h):
        if first_dual:
            h = run(blocks.dual_block, dual, ld, h, 1, cfg.num_layers)
            h = run(blocks.single_block, single, ls, _seq(h), 0, n_single)
        else:
            h = run(blocks.single_block, single, ls, h, 1, n_single)
        return (h - s1).astype(jnp.float32)

    ref = cache["ref"]
    rel = jnp.mean(jnp.abs(r1 - ref)) / jnp.maximum(jnp.mean(jnp.abs(ref)), 1e-12)
    skip = cache["valid"] & (rel < threshold)
    res = jax.lax.cond(skip, lambda h: cache["rest"], rest, h1)
    v = mmdit.final(params, cfg, e, (s1.astype(jnp.float32) + res).astype(s1.dtype))
    new = {"ref": jnp.where(skip, ref, r1), "rest": res, "valid": jnp.ones((), bool)}
    return v, new, skip


def empty_cache(cfg: MMDiTConfig, batch: int, n_video: int, n_text: int) -> dict:
    """The cache before the first step (`valid` False: the first step always runs every block)."""
    d = cfg.hidden_size
    return {"ref": jnp.zeros((batch, n_video, d), jnp.float32),
            "rest": jnp.zeros((batch, n_video + n_text, d), jnp.float32), "valid": jnp.zeros((), bool)}


@dataclasses.dataclass(frozen=True)
class CachedInContext:
    """The cached twin of `velocity.InContextVelocity` (same `cond`; true CFG as one batch of 2B)."""

    cfg: MMDiTConfig
    true_cfg: bool = False
    lora_cfg: Any = None      # set: params = (base, lora), the adapter applied unmerged

    def init_cache(self, x: jax.Array, cond: dict) -> dict:
        b = x.shape[0] * (2 if self.true_cfg else 1)
        pt, p = self.cfg.patch_size_t, self.cfg.patch_size
        n_video = (x.shape[1] // pt) * (x.shape[2] // p) * (x.shape[3] // p)
        return empty_cache(self.cfg, b, n_video, context_length(cond))

    def __call__(self, params, x, timestep, cond: dict, cache: dict, threshold):
        base, lora = params if self.lora_cfg is not None else (params, None)
        args, streams = model_inputs(x, timestep, cond, self.true_cfg)
        v, cache, skip = forward_cached(base, self.cfg, *args, lora=lora, lora_cfg=self.lora_cfg, cache=cache,
                                        threshold=threshold, **streams)
        if self.true_cfg:
            b = x.shape[0]
            v = guided_velocity(v[:b], v[b:], cond["scale"])
        return v, cache, skip


def sample_cached(model, params, cond: dict, noise: jax.Array, sigmas: jax.Array, known=None, known_mask=None,
                  *, threshold: float = 0.0) -> tuple[jax.Array, jax.Array]:
    """`sampler.sample` with the step cache: (final latent float32, number of steps that skipped)."""
    return _sample_cached(model, params, cond, noise, sigmas, known, known_mask, jnp.float32(threshold))


def _body(model, params, cond, noise, sigmas, known, known_mask, threshold, i, carry):
    x, cache, skipped = carry
    sigma, sigma_next = sigmas[i], sigmas[i + 1]
    x = _clamp(x, noise, sigma, known, known_mask)
    timestep = jnp.full((x.shape[0],), sigma * NUM_TRAIN_TIMESTEPS, jnp.float32)
    v, cache, skip = model(params, x, timestep, cond, cache, threshold)
    return euler_step(x, v.astype(jnp.float32), sigma, sigma_next), cache, skipped + skip.astype(jnp.int32)


def _sample_impl(model, params, cond, noise, sigmas, known, known_mask, threshold):
    x = noise.astype(jnp.float32)
    sigmas = sigmas.astype(jnp.float32)
    carry = (x, model.init_cache(x, cond), jnp.zeros((), jnp.int32))
    body = lambda i, c: _body(model, params, cond, noise, sigmas, known, known_mask, threshold, i, c)
    x, _, skipped = jax.lax.fori_loop(0, sigmas.shape[0] - 1, body, carry)
    return _clamp(x, noise, sigmas[-1], known, known_mask), skipped


_sample_cached = jax.jit(_sample_impl, static_argnums=(0,))
