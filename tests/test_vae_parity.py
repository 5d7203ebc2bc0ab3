"""Parity of the JAX VAE with diffusers' AutoencoderKLHunyuanVideo (CPU, fp32, same random weights).

Frame counts 1, 5, 9, 17 with tiling off and diffusers' defaults (framewise: at 17 frames both
encode and decode run in temporal tiles); small spatial tiles are in test_vae_tiling.py. The
published width runs on one frame and on 9 frames (small spatial size) by default; its full
matrix is in test_vae_full_width.py (exhaustive).
Relative error max|a-b|/max|b| <= 1e-4.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from dreamactor_jax.models import vae
from vae_testlib import jax_params, rel_err, set_torch_tiling, torch_decode, torch_encode, torch_vae

FAST = (("xla_backend_optimization_level", 0),)
TILINGS = {
    "off": vae.Tiling.off(),
    "default": vae.Tiling(),
}
# 24-px tiles every 16 px (latent 3 every 2), 9-frame tiles every 4 frames: every blend runs.
SMALL = vae.Tiling(spatial=True, min_height=24, min_width=24, stride_height=16, stride_width=16,
                   min_num_frames=8, stride_num_frames=4)
TOL = 1e-4


def check_parity(cfg, model, params, num_frames, tiling, rng, batch=1, size=(32, 48)):
    set_torch_tiling(model, tiling)
    video = rng.uniform(-1, 1, (batch, num_frames, *size, 3)).astype(np.float32)
    mean_ref, logvar_ref = torch_encode(model, video)
    mean, logvar = vae.encode(params, cfg, video, tiling=tiling)
    assert rel_err(mean, mean_ref) <= TOL
    assert rel_err(logvar, logvar_ref) <= TOL
    z = rng.standard_normal(mean_ref.shape).astype(np.float32)
    out = vae.decode(params, cfg, z, tiling=tiling)
    out_ref = torch_decode(model, z)
    assert out.shape == (batch, num_frames, *size, 3)
    assert rel_err(out, out_ref) <= TOL


@pytest.fixture(scope="module")
def tiny():
    cfg = vae.VAEConfig.named("tiny", xla_options=FAST)
    model = torch_vae(cfg)
    return cfg, model, jax_params(cfg, model)


@pytest.mark.parametrize("tiling", list(TILINGS))
@pytest.mark.parametrize("num_frames", [1, 5, 9, 17])
def test_tiny_parity(tiny, num_frames, tiling):
    cfg, model, params = tiny
    check_parity(cfg, model, params, num_frames, TILINGS[tiling], np.random.default_rng(num_frames))


def test_tiny_parity_batch(tiny):
    cfg, model, params = tiny
    check_parity(cfg, model, params, 5, TILINGS["off"], np.random.default_rng(7), batch=2)


@pytest.fixture(scope="module")
def full():
    cfg = vae.VAEConfig.named("hunyuan", xla_options=FAST)
    model = torch_vae(cfg)
    return cfg, model, jax_params(cfg, model)


def test_full_width_parity_one_frame(full):
    """The published width (128..512 channels, 246M params) on one 32x48 frame, tiling off."""
    cfg, model, params = full
    check_parity(cfg, model, params, 1, TILINGS["off"], np.random.default_rng(11))


def test_full_width_parity_several_frames(full):
    """The published width over 9 frames (3 latent frames: both temporal down/up-samplings and the
    causal padding run) on a small 16x24 frame, tiling off; ~10 s of CPU."""
    cfg, model, params = full
    check_parity(cfg, model, params, 9, TILINGS["off"], np.random.default_rng(12), size=(16, 24))
