"""Every configuration diffusers' AutoencoderKLHunyuanVideo accepts: mapping, encode and decode.

A seeded random sweep over 3-5 blocks, channel widths and GroupNorm groups, 0-2 resnets per block
(0 only with equal widths, as diffusers' blocks cannot change width without resnets), mid-block
attention on/off, the resnet activation (diffusers' `get_activation` names), spatial compression
2^0 .. 2^blocks, latent, input and output channels: the diffusers config.json read by
`vae_config_from_dict`, the state dict mapped, then posterior mean/logvar and decoded pixels
against diffusers (fp32, tiling off), relative error <= 1e-4 (the VAE bound of the README). Some
random configs are ill-conditioned (one channel per GroupNorm group over a few latent values):
there diffusers' own fp32 output is up to 4e-4 from its float64 evaluation (seeds 9 and 13), and
ours must be at least as close to that float64 result as diffusers' fp32 is.
Two configs run by default; 31 more with `-m exhaustive`.
"""

from __future__ import annotations

import numpy as np
import pytest

from vae_testlib import jax_params, rel_err, torch_decode, torch_encode

from dreamactor_jax.models import vae
from dreamactor_jax.weights.checkpoint import vae_config_from_dict

diffusers = pytest.importorskip("diffusers")
torch = pytest.importorskip("torch")

FAST = (("xla_backend_optimization_level", 0),)
TOL = 1e-4
ACTS = ("silu", "swish", "mish", "gelu", "relu")


def random_diffusers_config(rng: np.random.Generator) -> dict:
    """A small AutoencoderKLHunyuanVideo config.json (what diffusers builds)."""
    n = int(rng.integers(3, 6))
    groups = int(rng.choice([1, 2, 4]))
    layers = int(rng.integers(0, 3))
    if layers == 0:
        widths = [groups * int(rng.integers(1, 4))] * n
    else:
        widths = [groups * int(rng.integers(1, 4)) for _ in range(n)]
    return {
        "_class_name": "AutoencoderKLHunyuanVideo",
        "in_channels": int(rng.integers(1, 5)),
        "out_channels": int(rng.integers(1, 5)),
        "latent_channels": int(rng.integers(1, 9)),
        "down_block_types": ["HunyuanVideoDownBlock3D"] * n,
        "up_block_types": ["HunyuanVideoUpBlock3D"] * n,
        "block_out_channels": widths,
        "layers_per_block": layers,
        "act_fn": str(rng.choice(ACTS)),
        "norm_num_groups": groups,
        "scaling_factor": float(rng.uniform(0.2, 1.5)),
        "spatial_compression_ratio": 2 ** int(rng.integers(0, min(n, 4) + 1)),
        "temporal_compression_ratio": 4,
        "mid_block_add_attention": bool(rng.integers(2)),
    }


def reference(raw: dict, seed: int):
    torch.manual_seed(seed)
    model = diffusers.AutoencoderKLHunyuanVideo(**{k: v for k, v in raw.items() if not k.startswith("_")}).eval()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1 and "norm" in name:
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.2 * torch.randn(p.shape, generator=gen))
            elif name.endswith("bias"):
                p.copy_(0.05 * torch.randn(p.shape, generator=gen))
    model.use_framewise_encoding = model.use_framewise_decoding = False
    return model


def check_seed(seed: int) -> None:
    rng = np.random.default_rng(seed)
    raw = random_diffusers_config(rng)
    cfg = vae_config_from_dict(raw, xla_options=FAST, tiling=vae.Tiling.off())
    model = reference(raw, seed)
    params = jax_params(cfg, model)
    r = cfg.spatial_compression_ratio
    frames = int(rng.choice([1, 5, 9]))
    # at least 2 latent rows: torch's GroupNorm refuses groups of a single value
    size = (2 * r, r * int(rng.integers(1, 3)))
    video = rng.uniform(-1, 1, (1, frames, *size, cfg.in_channels)).astype(np.float32)
    mean_ref, logvar_ref = torch_encode(model, video)
    mean, logvar = vae.encode(params, cfg, video)
    assert mean.shape == mean_ref.shape == (1, (frames - 1) // 4 + 1, size[0] // r, size[1] // r, cfg.latent_channels)
    check_close(mean, mean_ref, model, lambda m: torch_encode(m, video.astype(np.float64))[0], (seed, raw, "mean"))
    check_close(logvar, logvar_ref, model, lambda m: torch_encode(m, video.astype(np.float64))[1], (seed, raw, "logvar"))
    z = rng.standard_normal(mean_ref.shape).astype(np.float32)
    out, out_ref = vae.decode(params, cfg, z), torch_decode(model, z)
    assert out.shape == out_ref.shape == (1, frames, *size, cfg.out_channels)
    check_close(out, out_ref, model, lambda m: torch_decode(m, z.astype(np.float64)), (seed, raw, "decode"))


def check_close(ours, ref32, model, run, what) -> None:
    """<= 1e-4 against diffusers fp32; where diffusers' own fp32 result is further than that from
    its float64 evaluation (ill-conditioned configs: one channel per GroupNorm group, tiny latents),
    ours must be at least as close to the float64 result as diffusers' fp32 is."""
    err = rel_err(ours, ref32)
    if err <= TOL:
        return
    try:
        ref64 = run(model.double())
    finally:
        model.float()
    ref_own = rel_err(ref32, ref64)
    assert rel_err(ours, ref64) <= max(TOL, ref_own), (what, err, ref_own, rel_err(ours, ref64))


# seed 1: changing widths, 2 resnets, relu, no mid attention, ratio 4; seed 2: 5 blocks without
# resnets, ratio 16, mid attention (the other activations run in the exhaustive seeds)
@pytest.mark.parametrize("seed", [1, 2])
def test_random_vae_config_matches_diffusers(seed):
    check_seed(seed)


@pytest.mark.exhaustive
@pytest.mark.parametrize("seed", [0, *range(3, 33)])
def test_random_vae_config_matches_diffusers_exhaustive(seed):
    check_seed(seed)


def test_vae_configs_diffusers_refuses_or_misreads_are_refused():
    base = {"block_out_channels": [8, 8, 8, 8], "norm_num_groups": 4, "layers_per_block": 1}
    bad = {
        "temporal_compression_ratio": dict(temporal_compression_ratio=8),  # diffusers' decoder raises
        "spatial_compression_ratio: 6": dict(spatial_compression_ratio=6),  # diffusers would use 4
        "spatial_compression_ratio: 32": dict(spatial_compression_ratio=32),  # more than 4 halvings
        "block_out_channels: 2 blocks": dict(block_out_channels=[8, 8]),  # time compressed by 2 only
        "act_fn": dict(act_fn="tanh"),  # not in diffusers' get_activation
        "layers_per_block: 0": dict(layers_per_block=0, block_out_channels=[8, 16, 16, 16]),
        "down_block_types": dict(down_block_types=["HunyuanVideoDownBlock3D"] * 3),
        "divisible by norm_num_groups": dict(norm_num_groups=3),
    }
    for match, over in bad.items():
        with pytest.raises(ValueError, match=match):
            vae_config_from_dict({**base, **over})
    assert vae_config_from_dict({**base, "spatial_compression_ratio": 16}).spatial_compression_ratio == 16
