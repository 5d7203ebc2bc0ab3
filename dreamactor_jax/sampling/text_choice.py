"""Which text a sampling run is conditioned on, from the sampling command's text flags.

Exactly one source: an embeddings file of tools/encode_text.py (`--text-embeddings`, one of its ids
with `--text-id`), the zero text (`--no-text`: no encoder), or a prompt encoded now by the local
text encoders (`--prompt`; none given: the empty prompt), never downloaded. `source()` settles that
before anything slow (the file read, the encoders found); `condition()` makes the text part of the
sampler's `cond` (`pipeline.text_cond`), with true classifier-free guidance at `guidance_scale` when
the prompt is not empty and a null prompt is at hand, and the embedded guidance of
guidance-distilled backbones (`embedded_guidance`, else the run's `model.guidance`). A file with
HunyuanVideo-1.5 glyph tokens (`text_2`) adds them to `cond` (the null prompt's in the CFG branch).

Which encoders encode a prompt is the backbone's (`BACKBONES[...].text_encoders`, a key of `ENCODERS`):
HunyuanVideo's LLaVA / LLaMA + CLIP (`text.embed`, `--text-mode`), or HunyuanVideo-1.5's Qwen2.5-VL +
ByT5 glyph encoder (`text.hv15`, from the local pipeline folder `--text-model-path`).
"""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class TextSpec:
    """The text flags of launch/sample.py (and of anything that samples like it)."""

    prompt: str | None = None
    text_embeddings: str | None = None
    no_text: bool = False
    text_id: str | None = None
    text_mode: str = "i2v"                 # which text encoder encodes a prompt: "t2v" / "i2v"
    text_model_path: str | None = None     # diffusers pipeline folder of the encoders (default: the local HF cache)
    text_device: str = "cpu"
    guidance_scale: float = 5.0
    embedded_guidance: float | None = None

    @classmethod
    def from_args(cls, args) -> "TextSpec":
        """From an argparse namespace with these attribute names."""
        return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)})

    def source(self, mcfg=None) -> tuple[str, Any]:
        """("file", the loaded file) / ("zero", None) / ("encode", the encoders' folder); a one-line
        ValueError when the encoders are needed and not on this machine. `mcfg`: the backbone, whose
        text encoders a prompt needs (default: HunyuanVideo's)."""
        if self.text_embeddings:
            from dreamactor_jax.text.store import load_text_embeddings

            return "file", load_text_embeddings(self.text_embeddings)
        if self.no_text:
            return "zero", None
        try:
            return "encode", ENCODERS[encoders_of(mcfg)].find(self)
        except ValueError as e:
            what = "--prompt" if self.prompt else "the empty prompt (no text flag given)"
            raise ValueError(f"{what}: {e}; or pass --text-embeddings FILE (tools/encode_text.py) or --no-text") from None

    def condition(self, source: tuple[str, Any], ref, mcfg, train_cfg: dict) -> tuple[dict, bool, str]:
        """(the text cond, whether it uses CFG, what the text is, in words) from a settled `source`,
        for the backbone `mcfg` (widths checked) and the reference image `ref` (i2v encoding)."""
        from dreamactor_jax.sampling.pipeline import text_cond

        guidance = None
        if mcfg.guidance_embeds:
            guidance = self.embedded_guidance
            if guidance is None:
                guidance = float((train_cfg.get("model") or {}).get("guidance", 1.0))
        kind, value = source
        if kind == "file":
            f = value
            tid = self.text_id or f["ids"][0]
            if tid not in f["index"]:
                raise ValueError(f"--text-id {tid}: not in {self.text_embeddings} (ids: {f['ids'][:5]})")
            emb, null = f["emb"].take(f["index"][tid]), f["null"]
            prompt = (f["prompts"] or [""] * len(f["ids"]))[f["index"][tid]]
            if null is None and self.guidance_scale != 1.0 and prompt:
                raise ValueError(f"--text-embeddings {self.text_embeddings}: holds no null prompt for CFG; "
                                 "re-run tools/encode_text.py or pass --guidance-scale 1")
            what = f"{self.text_embeddings} ({tid})"
        elif kind == "zero":
            from dreamactor_jax.text.store import zero_text

            emb, null, prompt, what = zero_text(mcfg.text_embed_dim, mcfg.pooled_projection_dim), None, "", "none"
        else:
            prompt = self.prompt or ""
            family = ENCODERS[encoders_of(mcfg)]
            emb, null = family.encode(self, value, prompt, ref)
            what = f"{'prompt' if prompt else 'empty prompt'} encoded ({family.describe(self)})"
        for name, have, want in (("text", emb.text.shape[-1], mcfg.text_embed_dim),
                                 ("pooled", emb.pooled.shape[-1], mcfg.pooled_projection_dim)):
            if have != want:
                raise ValueError(f"text embeddings: {name} width {have}, the backbone takes {want}")
        glyph_dim = getattr(mcfg, "text_embed_2_dim", 0)
        if emb.text_2 is not None and emb.text_2.shape[-1] != glyph_dim:
            raise ValueError(f"text embeddings: glyph (text_2) width {emb.text_2.shape[-1]}, the backbone takes "
                             f"{glyph_dim}")
        cfg_on = bool(prompt) and self.guidance_scale != 1.0 and null is not None
        nul = (null.text, null.text_mask, null.pooled) if cfg_on else None
        cond = text_cond(emb.text, emb.text_mask, emb.pooled, null=nul, scale=self.guidance_scale, guidance=guidance)
        cond.update(glyph_cond(emb, null if cfg_on else None))
        return cond, cfg_on, what


def encoders_of(mcfg) -> str:
    """The `ENCODERS` key of a backbone config (HunyuanVideo's when none is given)."""
    if mcfg is None:
        return "hunyuan"
    from dreamactor_jax.models.config import BACKBONES

    return BACKBONES[mcfg.backbone].text_encoders


@dataclasses.dataclass(frozen=True)
class Encoders:
    """How one family of text encoders is found (`find(spec)` -> folder, a one-line ValueError when it
    is not on this machine) and run (`encode(spec, folder, prompt, ref)` -> (embeddings, the empty
    prompt's), batch 1)."""

    find: Any
    encode: Any
    describe: Any


def _find_hunyuan(spec: TextSpec) -> str:
    from dreamactor_jax.text.embed import local_model_path

    return local_model_path(spec.text_model_path, spec.text_mode, flag="--text-model-path")


def _encode_hunyuan(spec: TextSpec, path: str, prompt: str, ref):
    from dreamactor_jax.text.embed import TextEncoderConfig, encode_texts

    tcfg = TextEncoderConfig(mode=spec.text_mode, device=spec.text_device, model_path=path)
    emb, null, _ = encode_texts(tcfg, [prompt], [ref] if spec.text_mode == "i2v" else None, progress=False)
    return emb, null


def _find_hv15(spec: TextSpec) -> str:
    from dreamactor_jax.text.hv15 import text_encoder_folder

    return text_encoder_folder(spec.text_model_path, "--text-model-path")


def _encode_hv15(spec: TextSpec, path: str, prompt: str, ref):
    from dreamactor_jax.text import hv15

    enc = hv15.load_text_encoders(path, spec.text_device, flag="--text-model-path")
    return hv15.encode_file(enc, [prompt])  # its text and glyph streams; the empty prompt's with them


ENCODERS = {
    "hunyuan": Encoders(_find_hunyuan, _encode_hunyuan, lambda spec: spec.text_mode),
    "hv15": Encoders(_find_hv15, _encode_hv15, lambda spec: "Qwen2.5-VL + ByT5"),
}


def glyph_cond(emb, null=None) -> dict:
    """The glyph part of `cond` (batch 1; HunyuanVideo-1.5's ByT5 tokens, `text_2` / `text_2_mask`, and
    with `null` the empty prompt's as `null_text_2` / `null_text_2_mask`), {} when `emb` has none."""
    import numpy as np

    if emb.text_2 is None:
        return {}
    out = {"text_2": np.asarray(emb.text_2[:1], np.float32), "text_2_mask": np.asarray(emb.text_2_mask[:1], np.int32)}
    if null is not None and null.text_2 is not None:
        out.update(null_text_2=np.asarray(null.text_2[:1], np.float32),
                   null_text_2_mask=np.asarray(null.text_2_mask[:1], np.int32))
    return out
