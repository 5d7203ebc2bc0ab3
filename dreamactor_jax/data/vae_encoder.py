"""The VAE encoder preprocessing runs: converted weights (or, for test sizes, random ones), tiled.

`make_vae_encoder` returns `encode(pixels) -> scaled latents` that runs the VAE tile by tile (each
tile its own jitted function, so device memory stays one tile's), with the tiling chosen from the
memory at hand (`models.vae_tiling.resolve_tiling`). The full-size VAE never encodes with random
weights unless asked (`check_vae_source`).
"""

from __future__ import annotations

import logging
from typing import Callable

log = logging.getLogger(__name__)


def check_vae_source(name: str, checkpoint: str | None, allow_random: bool = False) -> None:
    """The full-size VAE needs its weights: random ones would make meaningless training latents."""
    if not checkpoint and name == "hunyuan" and not allow_random:
        raise ValueError("--config.preprocess.vae_checkpoint: not given; the full-size VAE would encode "
                         "with random weights (convert it: python tools/convert_weights.py "
                         "HunyuanVideo-I2V/vae ckpt/vae --dtype fp32; --random_vae to do it anyway)")


def make_vae_encoder(name: str, checkpoint: str | None, latent_channels: int | None = None, seed: int = 0, *,
                     tiling="framewise", sizes=(), dtype: str | None = None, allow_random: bool = False,
                     say: Callable[[str], None] = log.info) -> Callable:
    """`encode(pixels [B, T, H, W, 3] in [-1, 1]) -> scaled latents`, tile by tile (bounded memory).

    `tiling`: a `vae.Tiling`, or a `--vae_tiling` value (auto / framewise / pipeline / off / a tile
    side) resolved for `sizes` [(op, frames, H, W)] from the memory at hand. Without a checkpoint the
    weights are random: allowed for the small test VAEs, and for the published one only with
    `allow_random` (never by accident: that would train on meaningless latents).
    """
    import dataclasses as dc

    import jax

    from dreamactor_jax.models import vae, vaes

    check_vae_source(name, checkpoint, allow_random)
    if checkpoint:
        from dreamactor_jax.weights.checkpoint import load_config, load_params

        vcfg = load_config(checkpoint)
        params = load_params(checkpoint)
    else:
        over = {} if latent_channels is None else {"latent_channels": latent_channels}
        vcfg = vaes.named_config(name, **over)  # "hunyuan15" / "tiny15": HunyuanVideo-1.5's VAE
        params = vaes.module_for(vcfg).init_params(vcfg, jax.random.PRNGKey(seed))
        log.warning("VAE: random weights (no vae_checkpoint given): for tests and smoke runs only")
    dtype = dtype or ("float32" if jax.default_backend() == "cpu" else "bfloat16")
    vcfg = dc.replace(vcfg, dtype=dtype)
    if isinstance(tiling, vae.Tiling):
        t = tiling
    else:
        from dreamactor_jax.models.vae_tiling import resolve_tiling

        t, line = resolve_tiling(tiling, sizes, base_channels=vcfg.block_out_channels[0], dtype=dtype,
                                 framewise=vcfg.tiling.framewise_encode)
        say(line)
    vcfg = dc.replace(vcfg, tiling=t)
    params = vae.cast_params(params, dtype)
    # not jitted as a whole: each tile runs its own jitted function, so memory stays one tile's
    return lambda x: vaes.module_for(vcfg).encode_latents(params, vcfg, x)


def random_vae_params(vcfg, seed: int = 0) -> dict:
    """Random VAE weights for `vcfg` (benchmarks and tests)."""
    import jax

    from dreamactor_jax.models import vaes

    return vaes.module_for(vcfg).init_params(vcfg, jax.random.PRNGKey(seed))
