"""The first-block step cache (`sampling.step_cache`): threshold 0 gives the uncached sampler's result
(with and without true CFG, dual and single first blocks), a large threshold skips every step after
the first and still ends finite, and a skipped step reuses exactly the last full step's residual."""

import numpy as np
import pytest

import jax
import jax.numpy as jnp

from dreamactor_jax.models import mmdit
from dreamactor_jax.models.config import MMDiTConfig
from dreamactor_jax.sampling import pipeline, sampler, scheduler, step_cache
from dreamactor_jax.sampling.velocity import InContextVelocity

CFG = MMDiTConfig.named("tiny-i2v-33ch", attention_impl="xla", dtype="float32", param_dtype="float32")


def rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / np.abs(b).max())


def _inputs(cfg, scale):
    rng = np.random.default_rng(5)
    params = mmdit.init_params_numpy(cfg, seed=2, bias_std=0.05)
    t, h, w = 2, 4, 4
    mask = np.zeros((1, t, h, 2 * w, 1), np.float32)
    mask[:, 0, :, :w] = 1
    mask[:, :, :, w:] = 1
    canvas = rng.standard_normal((1, t, h, 2 * w, 16)).astype(np.float32) * mask
    rnd = lambda *s: rng.standard_normal(s).astype(np.float32)
    null = (rnd(1, 6, cfg.text_embed_dim), np.array([[1, 0, 0, 0, 0, 0]], np.int32), rnd(1, cfg.pooled_projection_dim))
    text = pipeline.text_cond(rnd(1, 6, cfg.text_embed_dim), np.array([[1, 1, 1, 1, 0, 0]], np.int32),
                              rnd(1, cfg.pooled_projection_dim), null=None if scale is None else null, scale=scale or 1.0)
    cond = {"canvas": jnp.asarray(canvas), "mask": jnp.asarray(mask), **{k: jnp.asarray(v) for k, v in text.items()}}
    return params, cond, jnp.asarray(rnd(*canvas.shape))


@pytest.mark.parametrize("scale,layers", [(None, 2), (4.0, 2), (None, 0)])
def test_threshold_zero_equals_the_uncached_sampler(scale, layers):
    cfg = CFG.replace(num_layers=layers)
    params, cond, noise = _inputs(cfg, scale)
    sig = jnp.asarray(scheduler.flow_sigmas(4, 5.0))
    want = sampler.sample(InContextVelocity(cfg, true_cfg=scale is not None), params, cond, noise, sig)
    got, skipped = step_cache.sample_cached(step_cache.CachedInContext(cfg, true_cfg=scale is not None), params,
                                            cond, noise, sig, threshold=0.0)
    assert int(skipped) == 0
    assert rel_err(got, want) < 1e-5, rel_err(got, want)


def test_threshold_zero_equals_the_uncached_sampler_with_hv15_image_and_glyph_tokens():
    cfg = MMDiTConfig.named("tiny-hv15", attention_impl="xla", dtype="float32", param_dtype="float32")
    params = mmdit.init_params_numpy(cfg, seed=2, bias_std=0.05)
    rng = np.random.default_rng(6)
    rnd = lambda *s: jnp.asarray(rng.standard_normal(s).astype(np.float32))  # noqa: E731
    mask = np.zeros((1, 2, 4, 8, 1), np.float32)
    mask[:, 0, :, :4] = mask[:, :, :, 4:] = 1
    cond = {"canvas": rnd(1, 2, 4, 8, cfg.out_channels) * mask, "mask": jnp.asarray(mask),
            "text": rnd(1, 6, cfg.text_embed_dim), "text_mask": jnp.asarray([[1, 1, 1, 0, 0, 0]]),
            "pooled": jnp.zeros((1, 0)), "null_text": rnd(1, 6, cfg.text_embed_dim),
            "null_text_mask": jnp.asarray([[1, 0, 0, 0, 0, 0]]), "null_pooled": jnp.zeros((1, 0)),
            "scale": jnp.float32(4.0), "image_embeds": rnd(1, 5, cfg.image_embed_dim),
            "text_2": rnd(1, 3, cfg.text_embed_2_dim), "text_2_mask": jnp.asarray([[1, 1, 0]]),
            "null_text_2": rnd(1, 3, cfg.text_embed_2_dim), "null_text_2_mask": jnp.asarray([[1, 0, 0]])}
    noise = rnd(1, 2, 4, 8, cfg.out_channels)
    sig = jnp.asarray(scheduler.flow_sigmas(3, 5.0))
    want = sampler.sample(InContextVelocity(cfg, true_cfg=True), params, cond, noise, sig)
    got, skipped = step_cache.sample_cached(step_cache.CachedInContext(cfg, true_cfg=True), params, cond, noise, sig,
                                            threshold=0.0)
    assert int(skipped) == 0
    assert rel_err(got, want) < 1e-5, rel_err(got, want)
    plain = {k: v for k, v in cond.items() if "image" not in k}
    assert rel_err(sampler.sample(InContextVelocity(cfg, true_cfg=True), params, plain, noise, sig), want) > 1e-4


def test_large_threshold_skips_every_step_after_the_first():
    params, cond, noise = _inputs(CFG, 3.0)
    sig = jnp.asarray(scheduler.flow_sigmas(5, 5.0))
    model = step_cache.CachedInContext(CFG, true_cfg=True)
    got, skipped = step_cache.sample_cached(model, params, cond, noise, sig, threshold=1e9)
    assert int(skipped) == 4 and np.isfinite(np.asarray(got)).all()
    want = sampler.sample(InContextVelocity(CFG, true_cfg=True), params, cond, noise, sig)
    assert rel_err(got, want) > 1e-4  # the skipped blocks did change the result


def test_skipped_step_reuses_the_last_full_residual():
    params, cond, noise = _inputs(CFG, None)
    model = step_cache.CachedInContext(CFG)
    t = jnp.array([700.0])
    cache = model.init_cache(noise, cond)
    fwd = jax.jit(model)
    v_full, cache1, skip1 = fwd(params, noise, t, cond, cache, 0.5)
    assert not bool(skip1) and bool(cache1["valid"])
    # the same input again: r1 equals the reference exactly, so the step skips and reproduces v_full
    v_skip, cache2, skip2 = fwd(params, noise, t, cond, cache1, 0.5)
    assert bool(skip2)
    assert rel_err(v_skip, v_full) < 1e-6
    np.testing.assert_array_equal(np.asarray(cache2["ref"]), np.asarray(cache1["ref"]))
    want = InContextVelocity(CFG)(params, noise, t, cond)
    assert rel_err(v_full, want) < 1e-5


def test_animator_with_the_step_cache_equals_without_when_nothing_skips():
    """`SampleSettings(step_cache=...)` (launch/sample.py --step-cache) runs the cached loop; a threshold
    no step passes gives the plain sampler's video."""
    cfg = CFG.replace(num_layers=1, num_single_layers=1)
    params = mmdit.init_params_numpy(cfg, seed=4, bias_std=0.05)

    def encode(px):  # [1, T, H, W, 3] -> [1, T', H/8, W/8, 16]: every 4th frame, 8x8 means, channels tiled
        px = jnp.asarray(px)
        b, t, h, w, c = px.shape
        z = px[:, ::4].reshape(b, (t - 1) // 4 + 1, h // 8, 8, w // 8, 8, c).mean((3, 5))
        return jnp.tile(z, (1, 1, 1, 1, 6))[..., :16]

    def decode(z):
        z = jnp.repeat(jnp.repeat(jnp.asarray(z)[..., :3], 8, 2), 8, 3)
        return jnp.repeat(z, 4, 1)[:, 3:]

    rng = np.random.default_rng(6)
    text = pipeline.text_cond(rng.standard_normal((4, cfg.text_embed_dim)), np.ones(4, np.int32),
                              rng.standard_normal(cfg.pooled_projection_dim))
    ref = rng.uniform(-1, 1, (32, 32, 3)).astype(np.float32)
    motion = rng.uniform(-1, 1, (5, 32, 32, 3)).astype(np.float32)
    out = {}
    for th in (0.0, 1e-12):
        s = pipeline.SampleSettings(steps=3, shift=5.0, segment_frames=5, overlap=1, step_cache=th)
        anim = pipeline.Animator(InContextVelocity(cfg), params, encode, decode, text, s)
        seen = []
        out[th] = anim.segment(0, ref, motion, None, on_step=seen.append)
        assert seen == [0, 1, 2]
    assert rel_err(out[1e-12], out[0.0]) < 1e-5
    with pytest.raises(ValueError, match="--step-cache"):
        pipeline.SampleSettings(step_cache=-1.0)
