"""The three context streams of HunyuanVideo-1.5, built as diffusers' HunyuanVideo15 pipelines build them (PyTorch).

- text (`text`, `text_mask`, width 3584): the prompt as a system + user chat (the user turn a single
  space when the prompt is empty), the generation prompt appended, padded to `max_length + crop_start`
  tokens; the Qwen2.5-VL text model's hidden state `skip` layers before the last
  (`hidden_states[-(skip + 1)]`), the first `crop_start` (template) positions cropped.
- glyph (`text_2`, `text_2_mask`, width 1472): every quoted span of the prompt ("..." or “...”),
  repeated spans dropped when there are several, written as `Text "span". ` and encoded by the ByT5
  encoder at `glyph_max_length` tokens; a prompt with no quote gives zeros and an all-zero mask.
- image (`image_embeds`, width 1152): the SigLIP vision model's last hidden state of the reference
  image (preprocessed by its image processor; 729 tokens for the released 384 px model).

These are the inputs `models.mmdit.forward` takes as `text`, `text_2` / `text_2_mask` and `image_embeds`
for a HunyuanVideo-1.5 config. Checked against the pipeline's own `_get_mllm_prompt_embeds`,
`_get_byt5_prompt_embeds` and `_get_image_embeds` on tiny random encoders (tests/test_text_hv15.py).
The image stream is wired through the data path: `image_token_fn` (the reference's tokens, or zeros)
feeds tools/preprocess.py (records' `image_embeds`) and launch/sample.py (both CFG branches). The text
and glyph streams are written per prompt by `tools/encode_text.py --backbone hv15` (`encode_file`, from
a local diffusers HunyuanVideo-1.5 pipeline folder) and read back by preprocessing and sampling.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

import numpy as np
import torch

# The pipeline's system message and the number of template tokens it crops (Qwen2.5-VL's tokenizer).
SYSTEM_MESSAGE = (
    "You are a helpful assistant. Describe the video by detailing the following aspects: "
    "        1. The main content and theme of the video. "
    "        2. The color, shape, size, texture, quantity, text, and spatial relationships of the objects. "
    "        3. Actions, events, behaviors temporal relationships, physical movement changes of the objects. "
    "        4. background environment, light, style and atmosphere. "
    "        5. camera angles, movements, and transitions used in the video."
)
CROP_START = 108
MAX_LENGTH = 1000
GLYPH_MAX_LENGTH = 256
SKIP_LAYERS = 2
IMAGE_TOKENS = 729  # the released SigLIP's tokens (diffusers' `vision_num_semantic_tokens`)
_QUOTED = re.compile(r"\"(.*?)\"|“(.*?)”")


def glyph_text(prompt: str) -> str | None:
    """The text ByT5 encodes for a prompt: its quoted spans as `Text "a". Text "b". `, or None."""
    spans = [a or b for a, b in _QUOTED.findall(prompt)]
    if len(spans) > 1:
        spans = list(dict.fromkeys(spans))  # first occurrence of each, in order
    return "".join(f'Text "{s}". ' for s in spans) if spans else None


def text_embeddings(encoder: Any, tokenizer: Any, prompts: Sequence[str], *, max_length: int = MAX_LENGTH,
                    crop_start: int = CROP_START, skip: int = SKIP_LAYERS,
                    system: str = SYSTEM_MESSAGE) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, max_length, D] hidden states and [B, max_length] mask of the prompts (Qwen2.5-VL text model)."""
    chats = [[{"role": "system", "content": system}, {"role": "user", "content": p or " "}] for p in prompts]
    tok = tokenizer.apply_chat_template(chats, add_generation_prompt=True, tokenize=True, return_dict=True,
                                        padding="max_length", max_length=max_length + crop_start, truncation=True,
                                        return_tensors="pt")
    device = next(encoder.parameters()).device
    ids, mask = tok["input_ids"].to(device), tok["attention_mask"].to(device)
    hidden = encoder(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[-(skip + 1)]
    return hidden[:, crop_start:], mask[:, crop_start:]


def glyph_embeddings(encoder: Any, tokenizer: Any, prompts: Sequence[str], *,
                     max_length: int = GLYPH_MAX_LENGTH) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, max_length, d_model] ByT5 encoder states and [B, max_length] mask of the prompts' quoted text."""
    device = next(encoder.parameters()).device
    states, masks = [], []
    for p in prompts:
        text = glyph_text(p)
        if text is None:
            states.append(torch.zeros((1, max_length, encoder.config.d_model), device=device, dtype=encoder.dtype))
            masks.append(torch.zeros((1, max_length), device=device, dtype=torch.int64))
            continue
        tok = tokenizer(text, padding="max_length", max_length=max_length, truncation=True, add_special_tokens=True,
                        return_tensors="pt").to(device)
        states.append(encoder(input_ids=tok.input_ids, attention_mask=tok.attention_mask.float())[0])
        masks.append(tok.attention_mask)
    return torch.cat(states), torch.cat(masks)


def image_embeddings(encoder: Any, processor: Any, images: Sequence[Any]) -> torch.Tensor:
    """[B, N, D] SigLIP last hidden states of the (PIL) images, preprocessed by `processor`."""
    p = next(encoder.parameters())
    pixels = processor.preprocess(images=list(images), do_resize=True, return_tensors="pt", do_convert_rgb=True)
    pixels = pixels.to(device=p.device, dtype=p.dtype)
    return encoder(**pixels).last_hidden_state


def load_image_encoder(path: str, device: str = "cpu") -> tuple[Any, Any]:
    """(SiglipVisionModel, SiglipImageProcessor) from a local folder, never downloaded: a diffusers
    HunyuanVideo-1.5 I2V pipeline folder (its `image_encoder/` and `feature_extractor/`) or one folder
    holding both; safetensors weights only."""
    from pathlib import Path

    import transformers

    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"image encoder {path}: no such folder")
    enc_dir = root / "image_encoder" if (root / "image_encoder").is_dir() else root
    proc_dir = root / "feature_extractor" if (root / "feature_extractor").is_dir() else root
    try:
        enc = transformers.SiglipVisionModel.from_pretrained(enc_dir, local_files_only=True, use_safetensors=True)
        proc = transformers.SiglipImageProcessor.from_pretrained(proc_dir, local_files_only=True)
    except (OSError, ValueError) as e:
        raise ValueError(f"image encoder {path}: not a SigLIP vision model folder "
                         f"({str(e).splitlines()[0][:200]})") from None
    return enc.to(device).eval(), proc


def image_token_fn(width: int, path: str | None = None, *, zero: bool = False, device: str = "cpu",
                   flag: str = "--image_encoder", zero_flag: str = "--zero_image_embeds"):
    """`fn(image uint8 [H, W, 3]) -> float32 [M, width]`, the image stream of a backbone whose
    `image_embed_dim` is `width`: the SigLIP tokens of the image (`image_embeddings`, encoder at `path`),
    or with `zero` the zero tokens (diffusers' text-to-video rule: all-zero image tokens are masked
    out). None when `width` is 0 (no image stream); neither given: a one-line error naming the flags."""
    if width <= 0:
        return None
    if zero:
        return lambda image: np.zeros((IMAGE_TOKENS, width), np.float32)
    if path is None:
        raise ValueError(f"{flag}: required for this backbone (image_embed_dim={width}: the reference's SigLIP "
                         f"tokens); pass a local SigLIP / HunyuanVideo-1.5 I2V pipeline folder, or {zero_flag} "
                         "for zero image tokens (text-to-video conditioning)")
    encoder, processor = load_image_encoder(path, device)
    if encoder.config.hidden_size != width:
        raise ValueError(f"{flag} {path}: SigLIP width {encoder.config.hidden_size}, the backbone takes {width}")

    def fn(image):
        from PIL import Image

        with torch.no_grad():
            out = image_embeddings(encoder, processor, [Image.fromarray(np.asarray(image, np.uint8))])
        return out[0].float().cpu().numpy()
    return fn


TEXT_FOLDERS = ("text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2")


def text_encoder_folder(path: str | None, flag: str = "--model-path") -> str:
    """`path` checked to be a local diffusers HunyuanVideo-1.5 pipeline folder with the text encoders'
    sub-folders (`TEXT_FOLDERS`), without loading anything; else a one-line error naming `flag`."""
    from pathlib import Path

    if not path or not Path(path).is_dir():
        raise ValueError(f"{flag} {'DIR: required' if not path else str(path) + ': no such folder'} (a local "
                         "diffusers HunyuanVideo-1.5 pipeline folder with text_encoder/, tokenizer/, "
                         "text_encoder_2/, tokenizer_2/; never downloaded)")
    for sub in TEXT_FOLDERS:
        if not (Path(path) / sub).is_dir():
            raise ValueError(f"{flag} {path}: no {sub}/ folder (a diffusers HunyuanVideo-1.5 pipeline folder)")
    return str(path)


def load_text_encoders(path: str | None, device: str = "cpu", dtype: Any = None,
                       flag: str = "--model-path") -> dict:
    """The Qwen2.5-VL text model + tokenizer (`text_encoder/`, `tokenizer/`) and ByT5 encoder + tokenizer
    (`text_encoder_2/`, `tokenizer_2/`) of a local diffusers HunyuanVideo-1.5 pipeline folder, never
    downloaded, safetensors weights only; a missing part: a one-line error naming `flag`."""
    from pathlib import Path

    import transformers

    root, out = Path(text_encoder_folder(path, flag)), {}
    for key, sub, load in (
            ("text_encoder", "text_encoder", lambda d: transformers.Qwen2_5_VLTextModel.from_pretrained(
                d, local_files_only=True, use_safetensors=True, torch_dtype=dtype)),
            ("tokenizer", "tokenizer", lambda d: transformers.AutoTokenizer.from_pretrained(d, local_files_only=True)),
            ("glyph_encoder", "text_encoder_2", lambda d: transformers.T5EncoderModel.from_pretrained(
                d, local_files_only=True, use_safetensors=True, torch_dtype=dtype)),
            ("glyph_tokenizer", "tokenizer_2",
             lambda d: transformers.AutoTokenizer.from_pretrained(d, local_files_only=True))):
        try:
            out[key] = load(root / sub)
        except (OSError, ValueError) as e:
            raise ValueError(f"{flag} {path}: cannot read {sub}/ ({str(e).splitlines()[0][:200]})") from None
    for key in ("text_encoder", "glyph_encoder"):
        out[key] = out[key].to(device).eval()
    return out


def encode_file(enc: dict, prompts: Sequence[str], *, max_length: int = MAX_LENGTH, crop_start: int = CROP_START,
                glyph_max_length: int = GLYPH_MAX_LENGTH, batch_size: int = 8):
    """(prompts' `store.TextEmbeddings`, the empty prompt's) with both streams: `text` / `text_mask` from
    `text_embeddings`, `text_2` / `text_2_mask` from `glyph_embeddings`, and a width-0 `pooled`
    (HunyuanVideo-1.5 has no pooled text vector). The empty prompt is the pipelines' negative prompt."""
    from dreamactor_jax.text.store import TextEmbeddings

    def run(batch):
        with torch.no_grad():
            t, m = text_embeddings(enc["text_encoder"], enc["tokenizer"], batch, max_length=max_length,
                                   crop_start=crop_start)
            g, gm = glyph_embeddings(enc["glyph_encoder"], enc["glyph_tokenizer"], batch, max_length=glyph_max_length)
        f = lambda x, dt: x.float().cpu().numpy().astype(dt)  # noqa: E731
        return TextEmbeddings(f(t, np.float32), f(m, np.int32), np.zeros((len(batch), 0), np.float32),
                              f(g, np.float32), f(gm, np.int32))

    parts = [run(list(prompts[i:i + batch_size])) for i in range(0, len(prompts), batch_size)]
    return TextEmbeddings.concat(parts), run([""])
