"""Either VAE by its config: HunyuanVideo's (`models.vae`) or HunyuanVideo-1.5's (`models.vae15`).

Both modules have `init_params(cfg, key)`, `encode`, `decode`, `encode_latents` and `decode_latents`
with the same signatures; callers (preprocessing, sampling, the app) pick the module with
`module_for(cfg)` and never test which backbone runs.
"""

from __future__ import annotations

from dreamactor_jax.models import vae, vae15


def named_config(name: str, **overrides):
    """`vae.VAEConfig` ('hunyuan', 'tiny', 'small') or `vae15.VAE15Config` ('hunyuan15', 'tiny15')."""
    return (vae15.VAE15Config if name.endswith("15") else vae.VAEConfig).named(name, **overrides)


def module_for(cfg):
    """The module that runs `cfg`."""
    return vae15 if isinstance(cfg, vae15.VAE15Config) else vae
