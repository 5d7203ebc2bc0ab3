"""The public API: load a converted base, load a training run, build the animator, run the forward.

    import dreamactor_jax as da

    base = da.load_base("ckpt/i2v-33ch")                    # a converted backbone (tools/convert_weights.py)
    v = base(x, timestep, text, text_mask, pooled)           # the MMDiT forward, jitted once per shape
    run = da.load_run("runs/pose")                          # adapter merged into its base, with the VAE
    animator = da.make_animator(run, steps=30)               # the sampler; zero text unless `text` is given
    video, segments = animator.animate(ref, motion)          # uint8 [H, W, 3], [N, H, W, 3] -> [N, H, W, 3]

One dtype convention: `dtype` is the name of the compute and weight dtype ("float32" or "bfloat16");
None means float32 on a CPU and bfloat16 on a GPU or TPU (`default_dtype()`). Every loader takes it.
`import dreamactor_jax` stays light: these names are imported on first use.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from dreamactor_jax.models import mmdit
from dreamactor_jax.models.config import MMDiTConfig
from dreamactor_jax.sampling import loading
from dreamactor_jax.sampling.loading import Loaded
from dreamactor_jax.sampling.pipeline import Animator, SampleSettings, text_cond

__all__ = ["Base", "Loaded", "Animator", "SampleSettings", "default_dtype", "load_base", "load_vae", "load_run",
           "make_animator", "forward", "text_cond"]

default_dtype = loading.default_dtype


@functools.partial(jax.jit, static_argnums=1)
def forward(params: dict, cfg: MMDiTConfig, x, timestep, text, text_mask, pooled, guidance=None) -> jax.Array:
    """`models.mmdit.forward`, jitted (the config is static): velocity [B, T', H', W', C_out] float32 for
    latents x [B, T', H', W', C_in], timestep [B] (sigma x 1000), text [B, L, D], text_mask [B, L],
    pooled [B, P], and guidance [B] (scale x 1000) for guidance-distilled backbones only."""
    return mmdit.forward(params, cfg, x, timestep, text, text_mask, pooled, guidance)


@dataclasses.dataclass(frozen=True, eq=False)
class Base:
    """A converted backbone: its config (dtype set) and weights. Calling it runs `forward`."""

    cfg: MMDiTConfig
    params: dict

    def __call__(self, x, timestep, text, text_mask, pooled, guidance=None) -> jax.Array:
        return forward(self.params, self.cfg, x, timestep, text, text_mask, pooled, guidance)


def _converted(path: str | Path, kind: str):
    from dreamactor_jax.weights.checkpoint import read_config_json

    found = (read_config_json(path).get("_dreamactor") or {}).get("model")
    if found != kind:
        raise ValueError(f"{path}: holds {found or 'no converted model'}, expected a converted "
                         f"{'backbone' if kind == 'mmdit' else 'VAE'} (tools/convert_weights.py)")


def load_base(path: str | Path, *, dtype: str | None = None, shardings: Any = None) -> Base:
    """A converted backbone folder -> `Base` in `dtype` (weights and compute). `shardings`: as
    `weights.checkpoint.load_params` (None: the first device)."""
    from dreamactor_jax.weights.checkpoint import load_config, load_params

    _converted(path, "mmdit")
    dtype = dtype or default_dtype()
    cfg = load_config(path, dtype=dtype, param_dtype=dtype)
    return Base(cfg, load_params(path, shardings=shardings, dtype=jnp.dtype(dtype)))


def load_vae(path: str | Path, *, dtype: str | None = None) -> tuple[Any, dict]:
    """A converted VAE folder -> (VAEConfig or VAE15Config computing in `dtype`, float32 weights); use it
    with `models.vaes.module_for(cfg).encode_latents` / `decode_latents`."""
    from dreamactor_jax.weights.checkpoint import load_config, load_params

    _converted(path, "vae")
    return load_config(path, dtype=dtype or default_dtype()), load_params(path)


def load_run(checkpoint: str | Path, *, base: str | None = None, vae: str | None = None,
             dtype: str | None = None) -> Loaded:
    """A training run (`launch/train.py --workdir`, its checkpoints/ or one step) or a packed run ->
    `Loaded`: the adapter merged into the converted base it names (or `base`), the VAE, the run's
    config. Checks they fit together first; never random weights."""
    return loading.load(checkpoint, base=base, vae=vae, dtype=dtype)


def make_animator(run: Loaded, *, text: dict | None = None, tiling=None, image_tokens=None,
                  **settings) -> Animator:
    """The sampler of a loaded run. `text`: a `text_cond(...)` dict (with `null=` for true
    classifier-free guidance); None: the run's fixed text (packed runs) or the zero text. `settings`:
    `SampleSettings` fields (steps, shift, seed, segment_frames, overlap), defaulting to a packed
    run's own and then HunyuanVideo's; the in-context layout is the run's own (`loading.layout_of`).
    `tiling`: a `models.vae_tiling.Tiling` for the VAE.
    `image_tokens`: backbones with an image stream (HunyuanVideo-1.5), `text.hv15.image_token_fn(...)`;
    None there: no image tokens."""
    from dreamactor_jax.sampling.velocity import InContextVelocity

    own = {k: v for k, v in (run.config.get("sampling") or {}).items()
           if k in {f.name for f in dataclasses.fields(SampleSettings)}}
    s = SampleSettings(**{"layout": loading.layout_of(run.config), **own, **settings})
    if text is None:
        text = getattr(run, "text", None)
    if text is None:
        from dreamactor_jax.text.store import zero_text

        z = zero_text(run.mcfg.text_embed_dim, run.mcfg.pooled_projection_dim)
        text = text_cond(z.text, z.text_mask, z.pooled)
    if run.mcfg.guidance_embeds and "guidance" not in text:
        g = float((run.config.get("model") or {}).get("guidance", 1.0))
        text = {**text, "guidance": np.full((1,), g * 1000.0, np.float32)}  # as `text_cond(guidance=g)`
    encode, decode = loading.codec(run, tiling)
    return Animator(InContextVelocity(run.mcfg, true_cfg="null_text" in text), run.params, encode, decode, text, s,
                    image_tokens=image_tokens)
