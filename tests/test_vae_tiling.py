"""Spatial + temporal tiling of the JAX VAE against diffusers, with tiles small enough to cut 32x48.

The tile sizes (24 px every 16, 9 frames every 4) make every blend of diffusers run: vertical,
horizontal and temporal, in encode (latent space) and decode (pixel space).
"""

from __future__ import annotations

import numpy as np
import pytest

from dreamactor_jax.models import vae, vae_tiling
from test_vae_parity import FAST, SMALL, check_parity
from vae_testlib import jax_params, rel_err, torch, torch_vae


@pytest.fixture(scope="module")
def tiny():
    cfg = vae.VAEConfig.named("tiny", xla_options=FAST)
    model = torch_vae(cfg)
    return cfg, model, jax_params(cfg, model)


@pytest.mark.parametrize("num_frames", [1, 5, 9, 17])
def test_tiny_parity_small_tiles(tiny, num_frames):
    cfg, model, params = tiny
    check_parity(cfg, model, params, num_frames, SMALL, np.random.default_rng(20 + num_frames))


def test_small_tiles_change_the_result(tiny):
    """Guard against a tiling switch that silently does nothing: small tiles differ from one pass."""
    cfg, _, params = tiny
    video = np.random.default_rng(3).uniform(-1, 1, (1, 9, 32, 48, 3)).astype(np.float32)
    a, _ = vae.encode(params, cfg, video, tiling=vae.Tiling.off())
    b, _ = vae.encode(params, cfg, video, tiling=SMALL)
    assert rel_err(b, a) > 1e-3


@pytest.mark.parametrize("axis", [1, 2, 3])
@pytest.mark.parametrize("extent", [1, 3, 8])
def test_blend_matches_diffusers(axis, extent):
    from diffusers import AutoencoderKLHunyuanVideo

    rng = np.random.default_rng(axis * 10 + extent)
    shape_a, shape_b = [1, 4, 5, 6, 2], [1, 4, 5, 6, 2]
    shape_a[axis], shape_b[axis] = 7, 4  # blend extent is capped by both lengths along the axis
    a = rng.standard_normal(shape_a).astype(np.float32)
    b = rng.standard_normal(shape_b).astype(np.float32)
    fn = {1: AutoencoderKLHunyuanVideo.blend_t, 2: AutoencoderKLHunyuanVideo.blend_v,
          3: AutoencoderKLHunyuanVideo.blend_h}[axis]
    ref = fn(None, torch.from_numpy(np.moveaxis(a, -1, 1).copy()),
             torch.from_numpy(np.moveaxis(b, -1, 1).copy()), extent)
    out = vae_tiling.blend(a, b, extent, axis)
    np.testing.assert_allclose(np.asarray(out), np.moveaxis(ref.numpy(), 1, -1), rtol=0, atol=1e-6)
    assert not np.allclose(np.asarray(out), b)


def test_tiling_rejects_bad_sizes():
    with pytest.raises(ValueError, match="stride_height"):
        vae.Tiling(min_height=16, stride_height=32)
    with pytest.raises(ValueError, match="min_width"):
        vae.Tiling(min_width=0)
