"""Helpers for the HunyuanVideo-1.5 tests: a tiny random diffusers `HunyuanVideo15Transformer3DModel`,
random inputs (text, glyph and image tokens, MeanFlow's timestep_r) and its channels-last forward."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

from convert_testlib import channels_last_forward, randomize  # noqa: E402

from dreamactor_jax.models.config import MMDiTConfig  # noqa: E402


def tiny_hv15(cfg: MMDiTConfig, seed: int = 0):
    """diffusers HunyuanVideo15Transformer3DModel with every tensor random (norm weights around 1)."""
    torch.manual_seed(seed)
    return randomize(diffusers.HunyuanVideo15Transformer3DModel(**cfg.to_diffusers_config()).eval())


def hv15_inputs(cfg: MMDiTConfig, seed: int = 1, image: str = "random", glyph: str = "partial",
                frames: int = 3, height: int = 4, width: int = 6, text_len: int = 7, glyph_len: int = 5,
                image_len: int = 4) -> dict:
    """Batch 2, uneven text padding (item 1 not a prefix). image: "random" | "zeros" (text-to-video)
    | "none"; glyph: "partial" | "masked" (no valid glyph token) | "none"."""
    rng = np.random.default_rng(seed)
    b = 2
    mask = np.zeros((b, text_len), np.int64)
    mask[0, :] = 1
    mask[1, [0, 1, 4]] = 1
    m2 = np.zeros((b, glyph_len), np.int64)
    if glyph == "partial":
        m2[0, :2] = 1
        m2[1, :] = 1
    img = rng.standard_normal((b, image_len, cfg.image_embed_dim)).astype(np.float32)
    inp = dict(
        x=rng.standard_normal((b, frames, height, width, cfg.in_channels)).astype(np.float32),
        timestep=np.array([437.5, 81.25], np.float32),
        text=rng.standard_normal((b, text_len, cfg.text_embed_dim)).astype(np.float32),
        text_mask=mask,
        text_2=None if glyph == "none" else rng.standard_normal((b, glyph_len, cfg.text_embed_2_dim)).astype(np.float32),
        text_2_mask=None if glyph == "none" else m2,
        image_embeds={"random": img, "zeros": np.zeros_like(img), "none": None}[image],
        timestep_r=np.array([250.0, 30.0], np.float32) if cfg.use_meanflow else None,
    )
    return inp


def hv15_torch_forward(model, cfg: MMDiTConfig, inp: dict) -> np.ndarray:
    """diffusers forward on channels-last inputs (absent glyph / image tokens given as diffusers
    spells "none": an all-masked glyph sequence, all-zero image embeddings); channels-last output."""
    b = inp["x"].shape[0]
    text_2, m2 = inp["text_2"], inp["text_2_mask"]
    if text_2 is None:
        text_2, m2 = np.ones((b, 1, cfg.text_embed_2_dim), np.float32), np.zeros((b, 1), np.int64)
    image = inp["image_embeds"]
    if image is None:
        image = np.zeros((b, 1, cfg.image_embed_dim), np.float32)
    out = channels_last_forward(model, inp, timestep_r=inp["timestep_r"], encoder_hidden_states_2=text_2,
                                encoder_attention_mask_2=m2, image_embeds=image)
    return out.double().numpy()


def jax_kwargs(inp: dict) -> dict:
    """The keyword inputs of `mmdit.forward` for these inputs."""
    return {k: inp[k] for k in ("text_2", "text_2_mask", "image_embeds", "timestep_r")}


def recording_i2v_pipeline(latent_ch: int = 32, guidance_scale: float = 1.0):
    """diffusers' `HunyuanVideo15ImageToVideoPipeline` on a tiny random VAE and SigLIP, with a stand-in
    transformer that records every call's inputs (`x` = hidden_states, `image_embeds` and the keyword
    streams) and predicts zeros. Returns (pipe, recorder, vae); CFG is on when guidance_scale > 1."""
    import transformers
    from diffusers import AutoencoderKLHunyuanVideo15, ClassifierFreeGuidance, FlowMatchEulerDiscreteScheduler
    from diffusers.configuration_utils import ConfigMixin, register_to_config
    from diffusers.models.cache_utils import CacheMixin
    from diffusers.models.modeling_utils import ModelMixin
    from diffusers.pipelines.hunyuan_video1_5.pipeline_hunyuan_video1_5_image2video import (
        HunyuanVideo15ImageToVideoPipeline,
    )

    class Recorder(ModelMixin, ConfigMixin, CacheMixin):
        @register_to_config
        def __init__(self, in_channels=2 * latent_ch + 1, target_size=64, image_embed_dim=16, use_meanflow=False):
            super().__init__()
            self.dummy = torch.nn.Parameter(torch.zeros(1))
            self.calls = []

        def forward(self, hidden_states, image_embeds, timestep, timestep_r=None, attention_kwargs=None,
                    return_dict=True, **kw):
            self.calls.append({"x": hidden_states.detach().clone(), "image_embeds": image_embeds.detach().clone(),
                               **{k: v.detach().clone() for k, v in kw.items()}})
            return (torch.zeros_like(hidden_states[:, :latent_ch]),)

    torch.manual_seed(0)
    vae = AutoencoderKLHunyuanVideo15(latent_channels=latent_ch, block_out_channels=(8, 16, 32, 64, 64),
                                      layers_per_block=1).eval()
    siglip = transformers.SiglipVisionModel(transformers.SiglipVisionConfig(
        hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=32,
        patch_size=8)).eval()
    rec = Recorder()
    guider = ClassifierFreeGuidance(guidance_scale=guidance_scale, enabled=guidance_scale > 1.0)
    pipe = HunyuanVideo15ImageToVideoPipeline(
        text_encoder=None, tokenizer=None, transformer=rec, vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0), text_encoder_2=None, tokenizer_2=None,
        guider=guider, image_encoder=siglip,
        feature_extractor=transformers.SiglipImageProcessor(size={"height": 32, "width": 32}),
    )
    return pipe, rec, vae
