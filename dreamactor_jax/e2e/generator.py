"""`M_pose` of Eq. 3: a trained pose checkpoint run through the sampler of `launch/sample.py`.

This is the one place synthesis touches sampling: `sampling.loading` reads the run (adapter merged
into its converted base, its VAE), and every unit goes through `sampling.pipeline.Animator` with
`sampling.velocity.InContextVelocity`, exactly as `launch/sample.py` animates one character
(segments of `segment_frames` with `overlap` carried frames for long clips; the step compiles once
per shape and is reused by every unit).

Text: the file from `tools/encode_text.py`. A unit's prompt is the row keyed by the unit id, else
by the reference id (e.g. an appearance caption of the pool), else the null prompt (no CFG); true
classifier-free guidance at `guidance_scale` with a prompt, as the CLI does. A HunyuanVideo-1.5 file's
glyph tokens (`text_2`) go along (the null prompt's in the CFG branch).

Image tokens (backbones with an image stream, HunyuanVideo-1.5): the reference's SigLIP tokens from a
local `image_encoder` folder, or zeros with `zero_image_embeds`, as `launch/sample.py --image-encoder /
--zero-image-embeds` (`text.hv15.image_token_fn`); neither on such a run is a one-line error.

The checkpoint's fingerprint (run folder, step, config, and a hash of the saved adapter state's
bytes) goes into every unit, so a dataset says which model made it.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class SamplerSettings:
    steps: int = 50
    shift: float = 7.0
    guidance_scale: float = 5.0
    segment_frames: int = 121
    overlap: int = 5
    dtype: str | None = None      # default: bfloat16 on GPU/TPU, float32 on CPU


def read_run_config(checkpoint: str | Path) -> dict:
    """The pose run's config (cheap: no arrays); a one-line error if it is not a pose run."""
    from dreamactor_jax.sampling import loading

    config, _ = loading.read_config(checkpoint)
    variant = config.get("variant", "pose")
    if variant != "pose":
        raise ValueError(f"--checkpoint {checkpoint}: an {variant} run; synthesis animates poses, so it "
                         "needs a pose checkpoint (launch/train.py --config configs/pose.py)")
    return config


def checkpoint_fingerprint(checkpoint: str | Path, config: dict | None = None) -> dict:
    """Which adapter this is: folder, step, backbone, LoRA shape and a BLAKE2 hash of its saved state."""
    from dreamactor_jax import run_folder

    with run_folder.open_run(checkpoint) as run:
        folder, step = run.folder, run.step
        config = config if config is not None else run.config
    h = hashlib.blake2b(digest_size=16)
    state = folder / str(step) / "state"
    for f in sorted(p for p in state.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(state)).encode() + b"\0")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 24), b""):
                h.update(chunk)
    return {"path": str(folder.absolute()), "step": int(step), "variant": config.get("variant", "pose"),
            "model": (config.get("model") or {}).get("name"), "lora": config.get("lora"),
            "base": config.get("base_checkpoint"), "state_blake2b": h.hexdigest()}


class PoseModel:
    """(I_o, P_src) -> V_o with a trained pose run; `describe()` is what a unit records about it."""

    def __init__(self, checkpoint: str | Path, text_embeddings: str | Path, *, base: str | None = None,
                 vae: str | None = None, settings: SamplerSettings = SamplerSettings(),
                 image_encoder: str | None = None, zero_image_embeds: bool = False, image_device: str = "cpu"):
        from dreamactor_jax.models import vaes
        from dreamactor_jax.sampling import loading
        from dreamactor_jax.sampling.pipeline import SampleSettings
        from dreamactor_jax.text.store import load_text_embeddings

        config = read_run_config(checkpoint)
        SampleSettings(steps=settings.steps, shift=settings.shift, segment_frames=settings.segment_frames,
                       overlap=settings.overlap)  # checks the settings before the weights are read
        text = load_text_embeddings(text_embeddings)
        if text["null"] is None:
            raise ValueError(f"--text-embeddings {text_embeddings}: holds no null prompt (re-run tools/encode_text.py)")
        settings = dataclasses.replace(settings, dtype=settings.dtype or loading.default_dtype())
        self.fingerprint = checkpoint_fingerprint(checkpoint, config)
        plan = loading.check(checkpoint, base=base, vae=vae, dtype=settings.dtype)  # configs only
        from dreamactor_jax.text.hv15 import image_token_fn  # the image stream, when the backbone has one

        self.image_tokens = image_token_fn(plan.mcfg.image_embed_dim, image_encoder, zero=zero_image_embeds,
                                           device=image_device, flag="--image-encoder",
                                           zero_flag="--zero-image-embeds")  # before the weights are read
        self._image_source = None if self.image_tokens is None else (
            "zero" if zero_image_embeds else str(Path(image_encoder).absolute()))
        width = text["null"].text.shape[-1]
        if width != plan.mcfg.text_embed_dim:
            raise ValueError(f"--text-embeddings {text_embeddings}: width {width}, the backbone takes "
                             f"{plan.mcfg.text_embed_dim}")
        glyph = text["null"].text_2
        if glyph is not None and glyph.shape[-1] != plan.mcfg.text_embed_2_dim:
            raise ValueError(f"--text-embeddings {text_embeddings}: glyph (text_2) width {glyph.shape[-1]}, the "
                             f"backbone takes {plan.mcfg.text_embed_2_dim}")
        run = loading.load(checkpoint, plan=plan)
        self.run, self.text, self.settings = run, text, settings
        vmod = vaes.module_for(run.vcfg)
        self.encode = lambda x: vmod.encode_latents(run.vparams, run.vcfg, x)
        self.decode = lambda z: vmod.decode_latents(run.vparams, run.vcfg, z)
        self._guidance = None
        if run.mcfg.guidance_embeds:
            self._guidance = float((run.config.get("model") or {}).get("guidance", 1.0))

    def describe(self) -> dict:
        out = {"checkpoint": self.fingerprint, "sampler": dataclasses.asdict(self.settings)}
        if self._image_source is not None:  # only backbones with an image stream (older units stay comparable)
            out["image_tokens"] = self._image_source
        return out

    def _text(self, keys: Sequence[str]) -> tuple[dict, bool, str]:
        """(text cond, CFG on, which text: the key used or "null")."""
        from dreamactor_jax.sampling.pipeline import text_cond
        from dreamactor_jax.sampling.text_choice import glyph_cond

        t, null = self.text, self.text["null"]
        key = next((k for k in keys if k in t["index"]), None)
        prompts = t["prompts"] or []
        if key is None or (prompts and not prompts[t["index"][key]]):
            cond = text_cond(null.text, null.text_mask, null.pooled, guidance=self._guidance)
            return {**cond, **glyph_cond(null)}, False, "null"
        emb = t["emb"].take(t["index"][key])
        cfg_on = self.settings.guidance_scale != 1.0
        nul = (null.text, null.text_mask, null.pooled) if cfg_on else None
        cond = text_cond(emb.text, emb.text_mask, emb.pooled, null=nul, scale=self.settings.guidance_scale,
                         guidance=self._guidance)
        return {**cond, **glyph_cond(emb, null if cfg_on else None)}, cfg_on, key

    def __call__(self, reference: np.ndarray, pose: np.ndarray, *, seed: int,
                 text_keys: Sequence[str] = ()) -> tuple[np.ndarray, dict]:
        from dreamactor_jax.sampling import loading
        from dreamactor_jax.sampling.pipeline import Animator, SampleSettings
        from dreamactor_jax.sampling.velocity import InContextVelocity

        s = self.settings
        text, cfg_on, which = self._text(text_keys)
        animator = Animator(InContextVelocity(self.run.mcfg, true_cfg=cfg_on), self.run.params, self.encode,
                            self.decode, text, SampleSettings(steps=s.steps, shift=s.shift, seed=int(seed),
                                                              segment_frames=s.segment_frames, overlap=s.overlap,
                                                              layout=loading.layout_of(self.run.config)),
                            image_tokens=self.image_tokens)
        video, segments = animator.animate(reference, pose)
        return video, {"text": which, "cfg": cfg_on, "segments": len(segments), **dataclasses.asdict(s)}
