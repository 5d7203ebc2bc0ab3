"""The VAE's config, parameter tree, weight map and input checks (no parity here: see test_vae_parity)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dreamactor_jax.models import vae
from dreamactor_jax.weights import vae_map

FAST = (("xla_backend_optimization_level", 0),)


def test_hunyuan_param_count():
    cfg = vae.VAEConfig.named("hunyuan")
    assert vae.count_params(cfg) == 246_478_803
    # The abstract tree is what init_params builds, and jax.eval_shape of the forward pass accepts it.
    tiny = vae.VAEConfig.named("tiny")
    real = jax.tree_util.tree_map(lambda a: (a.shape, a.dtype), vae.init_params(tiny, jax.random.key(0)))
    abstract = jax.tree_util.tree_map(lambda a: (a.shape, a.dtype), vae.abstract_params(tiny))
    assert real == abstract
    video = jax.ShapeDtypeStruct((1, 9, 64, 96, 3), jnp.float32)
    out = jax.eval_shape(lambda p, v: vae._encode_tile(p, cfg, v), vae.abstract_params(cfg), video)
    assert out.shape == (1, 3, 8, 12, 32)


def test_named_rejects_unknown():
    with pytest.raises(ValueError, match="unknown name"):
        vae.VAEConfig.named("nope")
    with pytest.raises(ValueError, match="norm_num_groups"):
        vae.VAEConfig(block_out_channels=(8, 12, 16, 16), norm_num_groups=8)


def test_strides_match_diffusers():
    cfg = vae.VAEConfig.named("hunyuan")
    assert cfg.down_strides() == [(1, 2, 2), (2, 2, 2), (2, 2, 2), None]


def test_expected_keys_match_diffusers_full_size():
    """Every name and shape of the published model (built on the meta device, no memory)."""
    torch = pytest.importorskip("torch")
    accelerate = pytest.importorskip("accelerate")
    from diffusers import AutoencoderKLHunyuanVideo

    with accelerate.init_empty_weights():
        model = AutoencoderKLHunyuanVideo()
    ref = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert vae_map.expected_keys(vae.VAEConfig.named("hunyuan")) == ref
    del torch


def test_map_round_trip():
    cfg = vae.VAEConfig.named("tiny")
    params = vae.init_params(cfg, jax.random.key(0))
    sd = vae_map.state_dict_from_params(params)
    assert {k: v.shape for k, v in sd.items()} == vae_map.expected_keys(cfg)
    back = vae_map.params_from_state_dict(cfg, sd)
    same = jax.tree_util.tree_map(lambda a, b: np.array_equal(np.asarray(a), np.asarray(b)), params, back)
    assert all(jax.tree_util.tree_leaves(same))


def test_to_flax_layouts():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((8, 4, 3, 3, 3)).astype(np.float32)
    path, a = vae_map.to_flax("encoder.down_blocks.1.resnets.0.conv1.conv.weight", w)
    assert path == ("encoder", "down_blocks_1", "resnets_0", "conv1", "conv", "kernel")
    assert a.shape == (3, 3, 3, 4, 8) and a[2, 1, 0, 3, 5] == w[5, 3, 2, 1, 0]
    lin = rng.standard_normal((6, 5)).astype(np.float32)
    path, a = vae_map.to_flax("decoder.mid_block.attentions.0.to_out.0.weight", lin)
    assert path == ("decoder", "mid_block", "attentions_0", "to_out_0", "kernel")
    np.testing.assert_array_equal(a, lin.T)
    path, _ = vae_map.to_flax("encoder.conv_norm_out.weight", rng.standard_normal(4))
    assert path == ("encoder", "conv_norm_out", "scale")
    torch = pytest.importorskip("torch")
    path, a = vae_map.to_flax("quant_conv.bias", torch.arange(3, dtype=torch.bfloat16))
    assert path == ("quant_conv", "bias") and a.dtype.name == "bfloat16"
    np.testing.assert_array_equal(a.astype(np.float32), [0, 1, 2])


def test_state_dict_errors_are_one_line():
    cfg = vae.VAEConfig.named("tiny")
    sd = vae_map.state_dict_from_params(vae.init_params(cfg, jax.random.key(0)))
    missing = dict(sd)
    missing.pop("quant_conv.bias")
    with pytest.raises(ValueError, match="missing"):
        vae_map.params_from_state_dict(cfg, missing)
    with pytest.raises(ValueError, match="unexpected"):
        vae_map.params_from_state_dict(cfg, {**sd, "extra.weight": np.ones(2)})
    bad = {**sd, "quant_conv.bias": np.ones(3, np.float32)}
    with pytest.raises(ValueError, match=r"quant_conv.bias.*shape"):
        vae_map.params_from_state_dict(cfg, bad)


def test_input_checks():
    cfg = vae.VAEConfig.named("tiny")
    params = vae.init_params(cfg, jax.random.key(0))
    with pytest.raises(ValueError, match="4k\\+1 frames"):
        vae.encode(params, cfg, np.ones((1, 6, 16, 16, 3), np.float32))
    with pytest.raises(ValueError, match="multiples of 8"):
        vae.encode(params, cfg, np.ones((1, 5, 12, 16, 3), np.float32))
    with pytest.raises(ValueError, match="video: expected"):
        vae.encode(params, cfg, np.ones((5, 16, 16, 3), np.float32))
    with pytest.raises(ValueError, match="latents: expected"):
        vae.decode(params, cfg, np.ones((1, 2, 2, 2, 3), np.float32))


@pytest.mark.parametrize("frames,trim,pad", [(1, 1, 1), (5, 5, 5), (6, 5, 9), (8, 5, 9), (9, 9, 9)])
def test_fit_num_frames(frames, trim, pad):
    video = np.random.default_rng(frames).uniform(-1, 1, (2, frames, 4, 4, 3)).astype(np.float32)
    t = vae.fit_num_frames(video, "trim")
    p = vae.fit_num_frames(jnp.asarray(video), "pad")
    assert t.shape[1] == trim and p.shape[1] == pad
    np.testing.assert_array_equal(t, video[:, :trim])
    np.testing.assert_array_equal(np.asarray(p)[:, :frames], video)
    np.testing.assert_array_equal(np.asarray(p)[:, frames:], np.repeat(video[:, -1:], pad - frames, 1))
    with pytest.raises(ValueError, match="mode"):
        vae.fit_num_frames(video, "cut")


def test_posterior_and_scaling():
    """encode_latents = mode * scaling (or a keyed sample); decode_latents undoes the scaling."""
    cfg = vae.VAEConfig.named("tiny", xla_options=FAST)
    params = vae.init_params(cfg, jax.random.key(0))
    video = jax.random.uniform(jax.random.key(1), (1, 5, 16, 16, 3), minval=-1, maxval=1)
    mean, logvar = vae.encode(params, cfg, video)
    assert mean.shape == logvar.shape == (1, 2, 2, 2, 4)
    assert float(logvar.min()) >= -30 and float(logvar.max()) <= 20
    np.testing.assert_array_equal(vae.posterior_mode(mean, logvar), mean)
    np.testing.assert_array_equal(vae.posterior_mean(mean, logvar), mean)
    np.testing.assert_allclose(vae.encode_latents(params, cfg, video), mean * cfg.scaling_factor,
                               rtol=1e-6)
    key = jax.random.key(2)
    s1 = vae.posterior_sample(mean, logvar, key)
    np.testing.assert_array_equal(s1, vae.posterior_sample(mean, logvar, key))
    noise = (s1 - mean) / jnp.exp(0.5 * logvar)
    np.testing.assert_allclose(noise, jax.random.normal(key, mean.shape), rtol=1e-4, atol=1e-4)
    z = vae.encode_latents(params, cfg, video, key=key)
    np.testing.assert_allclose(z, s1 * cfg.scaling_factor, rtol=1e-6)
    ref = np.asarray(vae.decode(params, cfg, s1))
    got = np.asarray(vae.decode_latents(params, cfg, z))  # z / scaling == s1 up to rounding
    assert np.max(np.abs(got - ref)) <= 1e-4 * np.max(np.abs(ref))


def test_bfloat16_close_to_float32():
    """bf16 compute (fp32 norm statistics) stays near the fp32 result and returns fp32."""
    cfg = vae.VAEConfig.named("tiny", xla_options=FAST)
    params = vae.init_params(cfg, jax.random.key(0))
    video = jax.random.uniform(jax.random.key(1), (1, 5, 16, 16, 3), minval=-1, maxval=1)
    a, _ = vae.encode(params, cfg, video)
    b, _ = vae.encode(params, cfg, video, dtype="bfloat16")
    assert b.dtype == jnp.float32
    err = float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(a)))
    assert 0 < err < 5e-2
