"""Helpers shared by the VAE tests: the diffusers reference built from a VAEConfig, same weights."""

from __future__ import annotations

import numpy as np
import pytest

from dreamactor_jax.models import vae
from dreamactor_jax.weights import vae_map

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")


def torch_vae(cfg: vae.VAEConfig, seed: int = 0):
    """A diffusers AutoencoderKLHunyuanVideo with random weights (biases and norms random too)."""
    from diffusers import AutoencoderKLHunyuanVideo

    torch.manual_seed(seed)
    n = len(cfg.block_out_channels)
    model = AutoencoderKLHunyuanVideo(
        in_channels=cfg.in_channels, out_channels=cfg.out_channels,
        latent_channels=cfg.latent_channels, block_out_channels=cfg.block_out_channels,
        down_block_types=("HunyuanVideoDownBlock3D",) * n, up_block_types=("HunyuanVideoUpBlock3D",) * n,
        layers_per_block=cfg.layers_per_block, norm_num_groups=cfg.norm_num_groups,
        scaling_factor=cfg.scaling_factor, mid_block_add_attention=cfg.mid_block_add_attention,
    ).eval()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1 and ("norm" in name):  # norms: perturb around (1, 0) so they matter
                base = 1.0 if name.endswith("weight") else 0.0
                p.copy_(base + 0.2 * torch.randn(p.shape, generator=gen))
            elif name.endswith("bias"):
                p.copy_(0.05 * torch.randn(p.shape, generator=gen))
    return model


def set_torch_tiling(model, t: vae.Tiling) -> None:
    """Mirror a Tiling onto the diffusers module's attributes."""
    model.use_framewise_encoding = t.framewise_encode
    model.use_framewise_decoding = t.framewise_decode
    model.use_tiling = t.spatial
    model.tile_sample_min_height = t.min_height
    model.tile_sample_min_width = t.min_width
    model.tile_sample_min_num_frames = t.min_num_frames
    model.tile_sample_stride_height = t.stride_height
    model.tile_sample_stride_width = t.stride_width
    model.tile_sample_stride_num_frames = t.stride_num_frames


def jax_params(cfg: vae.VAEConfig, model):
    sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    return vae_map.params_from_state_dict(cfg, sd)


def to_torch(x: np.ndarray):
    """[B, T, H, W, C] -> torch [B, C, T, H, W]."""
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(np.asarray(x), -1, 1)))


def from_torch(t) -> np.ndarray:
    return np.moveaxis(t.detach().numpy(), 1, -1)


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def torch_encode(model, video: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with torch.no_grad():
        dist = model.encode(to_torch(video)).latent_dist
    return from_torch(dist.mean), from_torch(dist.logvar)


def torch_decode(model, z: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return from_torch(model.decode(to_torch(z)).sample)
