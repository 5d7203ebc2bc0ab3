"""Pose-based DreamActor-M2 on HunyuanVideo-1.5 (8.3B, `MMDiTConfig.named("hv15")`): the paper's recipe.

The same recipe as `configs/pose.py` (sec. 4.1: LoRA rank 256 in the feed-forward layers only,
frozen bf16 base, fp32 adapter, AdamW lr 5e-5 / weight decay 0.01, batch 2, 50,000 steps) on the
second backbone. Only the model changes: 54 dual-stream blocks at 2048, patch 1 on a 16x / 4x VAE
with 32 latent channels, input 65 = 32 noisy latent + 32 canvas latent + 1 mask (the same
`incontext.stack_channels` as the first backbone; checked against diffusers'
`HunyuanVideo15ImageToVideoPipeline` in tests/test_incontext_hv15.py). LoRA targets
(`models.lora.ffn_targets`): `transformer_blocks.ff.net.0.proj` and `transformer_blocks.ff.net.2`
(the video stream's FFN; this backbone has no single-stream blocks, the text stream's `ff_context`
stays frozen).

Base weights: convert diffusers' `transformer/` folder of HunyuanVideo-1.5 I2V:

    python tools/convert_weights.py HunyuanVideo-1.5-Diffusers-480p_i2v/transformer ckpt/hv15 --dtype bf16
    python launch/train.py --config configs/pose_hv15.py --workdir runs/pose-hv15 \
        --config.base_checkpoint=ckpt/hv15 --config.data.shards=shards-hv15/

Data: `tools/preprocess.py --config configs/pose_hv15.py` encodes with this backbone's VAE
(`models.vae15`, `AutoencoderKLHunyuanVideo15`; convert its `vae/` folder with the same tool and pass
`--config.preprocess.vae_checkpoint`), and stores the reference frame's SigLIP image tokens per clip
(`--image_encoder` = the pipeline folder, or `--zero_image_embeds`); launch/sample.py takes the same
(`--image-encoder` / `--zero-image-embeds`). Not yet here: tools/encode_text.py does not produce the
Qwen2.5-VL text or the ByT5 glyph tokens (glyph tokens are carried when a record has them, absent
otherwise: no such tokens). Not measured on a GPU (speed, memory, largest clip).

CPU smoke run (tiny HunyuanVideo-1.5 MMDiT, random base, synthetic shards), then sampling from it:

    python tools/make_random_base.py /tmp/base-hv15 --backbone hv15
    python launch/train.py --config configs/pose_hv15.py:tiny --workdir /tmp/pose-hv15-tiny \
        --config.base_checkpoint=/tmp/base-hv15/transformer --config.preprocess.vae_checkpoint=/tmp/base-hv15/vae
    python launch/sample.py --checkpoint /tmp/pose-hv15-tiny --ref ref.png --pose pose.mp4 -o out.mp4 --no-text \
        --zero-image-embeds   # or --image-encoder SIGLIP_FOLDER
"""

from dreamactor_jax.models.config import MMDiTConfig
from dreamactor_jax.models.lora import ffn_targets
from dreamactor_jax.train import recipe


def get_config(arg=None):
    opts = recipe.parse_arg(arg)
    c = recipe.base_config("pose")
    if opts.get("tiny"):
        c = recipe.make_tiny(c)
    c.model.name = "tiny-hv15" if opts.get("tiny") else "hv15"
    c.lora.targets = ffn_targets(MMDiTConfig.named(c.model.name))
    c.preprocess.vae = "tiny15" if opts.get("tiny") else "hunyuan15"  # HunyuanVideo-1.5's VAE (models.vae15)
    return c
