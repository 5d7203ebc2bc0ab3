"""The backbone's text inputs, built as diffusers' HunyuanVideo pipelines build them (PyTorch).

T2V (`HunyuanVideoPipeline`): the prompt goes into a chat template; the LLaMA text model runs
with output_hidden_states and hidden_states[-(skip + 1)] (= [-3]) is kept; the template tokens
(the first `crop_start`) are cropped, leaving `max_length` (256) right-padded tokens and a mask.
I2V (`HunyuanVideoImageToVideoPipeline`): the LLaVA model sees the image through an <image>
token expanded to `image_emb_len` (576) slots; the output is the image slots (every
`image_embed_interleave`-th: 2 for latent_concat / 33ch, 4 for token_replace) followed by the
text tokens without the 4 assistant-header tokens; all image slots are unmasked.
Both: CLIP-L's pooler_output of the prompt at max length 77 (no attention mask, as diffusers).
The null text (for CFG) is the empty prompt ("" and, for I2V, a black image).

Prompts longer than the limits are truncated, as the reference does; the counts are reported.

Where the encoders come from: `default_model_path(mode)` is the diffusers repo of the mode (T2V or
I2V); `local_model_path` turns a folder or a hub id into a folder on this machine (the Hugging
Face cache, never the network) or one line saying it is not here, so an offline machine fails at
once instead of after a minute of hub retries. Only an explicit encode may download
(`allow_download`, and never under HF_HUB_OFFLINE=1).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any, Sequence

import numpy as np
import torch

from dreamactor_jax.text.store import TextEmbeddings, load_text_embeddings, save_text_embeddings

__all__ = ["default_model_path", "local_model_path", "PromptTemplate", "T2V_TEMPLATE", "I2V_TEMPLATE", "TextEncoderConfig", "TextEncoders",
           "encode_prompts", "encode_texts", "null_embeddings", "template_crop_start", "save_text_embeddings",
           "load_text_embeddings", "TextEmbeddings"]

log = logging.getLogger(__name__)


HUB_REPOS = {"t2v": "hunyuanvideo-community/HunyuanVideo", "i2v": "hunyuanvideo-community/HunyuanVideo-I2V"}


def default_model_path(mode: str) -> str:
    """The diffusers pipeline repo holding the text encoders of `mode` (t2v: LLaMA, i2v: LLaVA)."""
    if mode not in HUB_REPOS:
        raise ValueError(f"text mode: expected 't2v' or 'i2v', got {mode!r}")
    return HUB_REPOS[mode]


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def local_model_path(model_path: str | None, mode: str, *, allow_download: bool = False,
                     flag: str = "--model-path") -> str:
    """A folder holding the text encoders of `mode`: `model_path` itself, or the cached snapshot of a
    hub id (no network). A hub id not in the cache is returned as is only if `allow_download` (and
    HF_HUB_OFFLINE is not set); otherwise a one-line ValueError says what to do."""
    path = model_path or default_model_path(mode)
    if os.path.isdir(path):
        return path
    if os.path.exists(path) or path.startswith((".", "/", "~")) or path.count("/") != 1:
        raise ValueError(f"{flag} {path}: no such folder (a diffusers pipeline folder with text_encoder/, "
                         "tokenizer/, text_encoder_2/, tokenizer_2/)")
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(path, local_files_only=True)
    except Exception:  # noqa: BLE001 - not cached (LocalEntryNotFoundError), or no huggingface_hub
        if allow_download and not _offline():
            return path
    why = "HF_HUB_OFFLINE is set" if _offline() else "not downloaded"
    raise ValueError(f"text encoders {path}: not on this machine ({why}; not in the Hugging Face cache); "
                     f"download them (huggingface-cli download {path}) or pass {flag} DIR")


@dataclasses.dataclass(frozen=True)
class PromptTemplate:
    text: str                          # with one "{}" for the prompt
    crop_start: int | None = None      # template tokens to drop; None: count them
    image_emb_start: int | None = None  # I2V only: where the <image> slots start / end
    image_emb_end: int | None = None
    image_emb_len: int | None = None


_ASPECTS = ("1. The main content and theme of the video."
            "2. The color, shape, size, texture, quantity, text, and spatial relationships of the objects."
            "3. Actions, events, behaviors temporal relationships, physical movement changes of the objects."
            "4. background environment, light, style and atmosphere."
            "5. camera angles, movements, and transitions used in the video:<|eot_id|>")
T2V_TEMPLATE = PromptTemplate(
    "<|start_header_id|>system<|end_header_id|>\n\nDescribe the video by detailing the following aspects: "
    + _ASPECTS + "<|start_header_id|>user<|end_header_id|>\n\n{}<|eot_id|>", crop_start=95)
I2V_TEMPLATE = PromptTemplate(
    "<|start_header_id|>system<|end_header_id|>\n\n<image>\nDescribe the video by detailing the following "
    "aspects according to the reference image: " + _ASPECTS + "\n\n"
    "<|start_header_id|>user<|end_header_id|>\n\n{}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
    crop_start=103, image_emb_start=5, image_emb_end=581, image_emb_len=576)
ASSISTANT_TOKENS = 4  # <|eot_id|> <|start_header_id|> assistant <|end_header_id|>, dropped in I2V


@dataclasses.dataclass(frozen=True)
class TextEncoderConfig:
    """Where the encoders are and how prompts are encoded. The default layout is the diffusers
    repos hunyuanvideo-community/HunyuanVideo (t2v) and .../HunyuanVideo-I2V (i2v)."""
    mode: str = "t2v"                   # "t2v" (LlamaModel) or "i2v" (LlavaForConditionalGeneration)
    model_path: str = "hunyuanvideo-community/HunyuanVideo"  # local folder or hub id
    llm_subfolder: str = "text_encoder"
    tokenizer_subfolder: str = "tokenizer"
    clip_subfolder: str = "text_encoder_2"
    clip_tokenizer_subfolder: str = "tokenizer_2"
    image_processor_subfolder: str = "image_processor"
    template: PromptTemplate | None = None  # None: the mode's default
    max_length: int = 256
    clip_max_length: int = 77
    hidden_layers_to_skip: int = 2      # hidden_states[-(skip + 1)]
    image_embed_interleave: int = 2     # 2: latent_concat (33ch), 4: token_replace
    device: str = "cpu"
    dtype: str = "auto"                 # auto: bfloat16 on cuda, float32 on cpu
    batch_size: int = 8

    def __post_init__(self):
        if self.mode not in ("t2v", "i2v"):
            raise ValueError(f"mode: expected 't2v' or 'i2v', got {self.mode!r}")
        if self.max_length <= 0 or self.clip_max_length <= 0 or self.batch_size <= 0:
            raise ValueError("max_length, clip_max_length, batch_size: must be positive")

    @property
    def prompt_template(self) -> PromptTemplate:
        if self.template is not None:
            return self.template
        return T2V_TEMPLATE if self.mode == "t2v" else I2V_TEMPLATE

    @property
    def torch_dtype(self) -> torch.dtype:
        if self.dtype == "auto":
            return torch.bfloat16 if str(self.device).startswith("cuda") else torch.float32
        try:
            return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[self.dtype]
        except KeyError:
            raise ValueError(f"dtype: expected auto/float32/bfloat16/float16, got {self.dtype!r}") from None


@dataclasses.dataclass
class TextEncoders:
    """The loaded PyTorch modules (eval mode, on cfg.device)."""
    cfg: TextEncoderConfig
    tokenizer: Any
    text_encoder: Any        # LlamaModel (t2v) or LlavaForConditionalGeneration (i2v)
    tokenizer_2: Any
    text_encoder_2: Any      # CLIPTextModel
    image_processor: Any = None

    @classmethod
    def load(cls, cfg: TextEncoderConfig) -> "TextEncoders":
        """Loads through transformers' from_pretrained (local folder or hub id); failures are one line."""
        root, dt = cfg.model_path, cfg.torch_dtype

        def sub(name: str) -> dict:
            return {"subfolder": name} if name else {}
        if os.path.isdir(root):
            for name in (cfg.llm_subfolder, cfg.tokenizer_subfolder, cfg.clip_subfolder,
                         cfg.clip_tokenizer_subfolder):
                if not os.path.isdir(os.path.join(root, name or "")):
                    raise FileNotFoundError(f"{root}: missing the {name!r} folder")
        try:
            return cls._load(cfg, root, dt, sub)
        except (OSError, ValueError) as e:  # missing files, a broken download, no network
            raise ValueError(f"text encoders {root}: cannot load them ({(str(e).splitlines() or [''])[0][:200]})") from None

    @classmethod
    def _load(cls, cfg: TextEncoderConfig, root: str, dt, sub) -> "TextEncoders":
        from transformers import AutoModel, AutoTokenizer, CLIPTextModel
        tok = AutoTokenizer.from_pretrained(root, **sub(cfg.tokenizer_subfolder))
        tok2 = AutoTokenizer.from_pretrained(root, **sub(cfg.clip_tokenizer_subfolder))
        proc = None
        if cfg.mode == "t2v":
            llm = AutoModel.from_pretrained(root, **_dtype_kw(dt), **sub(cfg.llm_subfolder))
        else:
            from transformers import CLIPImageProcessor, LlavaForConditionalGeneration
            llm = LlavaForConditionalGeneration.from_pretrained(root, **_dtype_kw(dt), **sub(cfg.llm_subfolder))
            proc = CLIPImageProcessor.from_pretrained(root, **sub(cfg.image_processor_subfolder))
        clip = CLIPTextModel.from_pretrained(root, **_dtype_kw(dt), **sub(cfg.clip_subfolder))
        t = cfg.prompt_template
        if t.crop_start is not None:
            counted = template_crop_start(tok, dataclasses.replace(t, crop_start=None))
            if counted != t.crop_start:
                log.warning("template: crop_start=%d, but this tokenizer puts %d tokens before the "
                            "prompt (a different tokenizer than the reference's?)", t.crop_start, counted)
        return cls(cfg, tok, llm.to(cfg.device).eval(), tok2, clip.to(cfg.device).eval(), proc)


def _dtype_kw(dt: torch.dtype) -> dict:
    """from_pretrained's dtype argument: `dtype` since transformers 4.56, `torch_dtype` before."""
    import transformers
    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    return {"dtype": dt} if (major, minor) >= (4, 56) else {"torch_dtype": dt}


def template_crop_start(tokenizer: Any, template: PromptTemplate) -> int:
    """Number of tokens the template puts before the prompt (what the crop removes)."""
    if template.crop_start is not None:
        return template.crop_start
    if template.text.count("{}") != 1:
        raise ValueError("template: expected exactly one '{}' placeholder")
    return len(tokenizer(template.text.split("{}")[0]).input_ids)


def image_slots(enc: "TextEncoders") -> tuple[int, int, int]:
    """(start, end, length) of the image tokens in the expanded I2V sequence: from the template,
    or, where it leaves them None, from the tokenizer (<image> position) and the model
    (image_seq_length). A template that disagrees with the model is an error."""
    t, cfg = enc.cfg.prompt_template, enc.text_encoder.config
    model_len = getattr(cfg, "image_seq_length", None)
    n = t.image_emb_len if t.image_emb_len is not None else model_len
    if n is None:
        raise ValueError("template: image_emb_len unknown (not in the template nor the model config)")
    if model_len is not None and n != model_len:
        raise ValueError(f"template: image_emb_len={n}, but the model makes {model_len} image tokens")
    start = t.image_emb_start
    if start is None:
        image_token = getattr(cfg, "image_token_index", None)
        ids = enc.tokenizer(t.text).input_ids
        if image_token is None or image_token not in ids:
            raise ValueError("template: no image token in the i2v template")
        start = ids.index(image_token)
    end = t.image_emb_end if t.image_emb_end is not None else start + n
    if end - start != n:
        raise ValueError(f"template: image_emb_end - image_emb_start = {end - start}, expected {n}")
    return start, end, n


def _pad_token_id(model: Any, tokenizer: Any) -> int:
    for c in (model.config, getattr(model.config, "text_config", None)):
        v = getattr(c, "pad_token_id", None) if c is not None else None
        if v is not None:
            return int(v)
    if tokenizer.pad_token_id is None:
        raise ValueError("tokenizer: has no pad token")
    return int(tokenizer.pad_token_id)


def _expand_image_tokens(ids: torch.Tensor, max_len: int, image_token: int, t: PromptTemplate,
                         pad_id: int) -> dict:
    """diffusers' _expand_input_ids_with_image_tokens: one <image> id becomes image_emb_len ids."""
    special = ids == image_token
    b_idx, keep = torch.where(~special)
    new_len = max_len + int(special.sum(-1).max()) * (t.image_emb_len - 1)
    new_pos = torch.cumsum(special * (t.image_emb_len - 1) + 1, -1) - 1
    out = torch.full((ids.shape[0], new_len), pad_id, dtype=ids.dtype, device=ids.device)
    out[b_idx, new_pos[b_idx, keep]] = ids[b_idx, keep]
    out[:, t.image_emb_start:t.image_emb_end] = image_token
    mask = (out != pad_id).long()
    position_ids = (mask.cumsum(-1) - 1).masked_fill_(mask == 0, 1)
    return {"input_ids": out, "attention_mask": mask, "position_ids": position_ids}


def _count_truncated(tokenizer: Any, texts: Sequence[str], limit: int) -> int:
    return sum(len(ids) > limit for ids in tokenizer(list(texts)).input_ids)


@torch.no_grad()
def _llm_batch(enc: TextEncoders, prompts: list[str], images: list | None) -> tuple[torch.Tensor, torch.Tensor]:
    cfg, t, tok = enc.cfg, enc.cfg.prompt_template, enc.tokenizer
    crop = template_crop_start(tok, t)
    max_len = cfg.max_length + crop
    texts = [t.text.format(p) for p in prompts]
    inputs = tok(texts, max_length=max_len, padding="max_length", truncation=True, return_tensors="pt")
    ids = inputs.input_ids.to(cfg.device)
    mask = inputs.attention_mask.to(cfg.device)
    layer = -(cfg.hidden_layers_to_skip + 1)
    if cfg.mode == "t2v":
        h = enc.text_encoder(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[layer]
        return h[:, crop:], mask[:, crop:]
    # i2v: LLaVA with the image spliced in at the <image> token
    if images is None or len(images) != len(prompts):
        raise ValueError(f"images: i2v needs one image per prompt, got "
                         f"{None if images is None else len(images)} for {len(prompts)}")
    t = dataclasses.replace(t, **dict(zip(("image_emb_start", "image_emb_end", "image_emb_len"),
                                          image_slots(enc))))
    pixels = enc.image_processor(images, return_tensors="pt").pixel_values.to(cfg.device, enc.text_encoder.dtype)
    model_cfg = enc.text_encoder.config
    image_token = getattr(model_cfg, "image_token_index", None)
    if image_token is None:
        image_token = model_cfg.image_token_id
    expanded = _expand_image_tokens(ids, max_len, image_token, t, _pad_token_id(enc.text_encoder, tok))
    h = enc.text_encoder(**expanded, pixel_values=pixels, output_hidden_states=True).hidden_states[layer]
    end_header = tok.convert_tokens_to_ids("<|end_header_id|>")
    text_crop = crop - 1 + t.image_emb_len
    rows_h, rows_m = [], []
    for i in range(ids.shape[0]):
        where = torch.where(ids[i] == end_header)[0]
        # the assistant header is the 3rd; a prompt cut by truncation loses it (diffusers' fallback)
        last = int(where[-1]) if len(where) >= 3 else ids.shape[-1] - 1
        a = last + 1
        rows_h.append(torch.cat([h[i, text_crop:a - 1 + t.image_emb_len - ASSISTANT_TOKENS],
                                 h[i, a - 1 + t.image_emb_len:]]))
        rows_m.append(torch.cat([mask[i, crop:a - ASSISTANT_TOKENS], mask[i, a:]]))
    step = cfg.image_embed_interleave if 0 < cfg.image_embed_interleave < 6 else 1
    img_h = h[:, t.image_emb_start:t.image_emb_end][:, ::step]
    img_m = torch.ones(img_h.shape[:2], dtype=mask.dtype, device=mask.device)
    return torch.cat([img_h, torch.stack(rows_h)], 1), torch.cat([img_m, torch.stack(rows_m)], 1)


@torch.no_grad()
def _clip_batch(enc: TextEncoders, prompts: list[str]) -> torch.Tensor:
    ids = enc.tokenizer_2(prompts, padding="max_length", max_length=enc.cfg.clip_max_length,
                          truncation=True, return_tensors="pt").input_ids
    return enc.text_encoder_2(ids.to(enc.cfg.device), output_hidden_states=False).pooler_output


def encode_prompts(enc: TextEncoders, prompts: Sequence[str], images: Sequence | None = None, *,
                   progress: bool = True) -> tuple[TextEmbeddings, dict]:
    """Encodes prompts in batches of cfg.batch_size -> (TextEmbeddings, stats).

    `images` (i2v only): one PIL image or uint8 [H, W, 3] array per prompt (the reference image).
    stats: n, llm_truncated, clip_truncated (prompts cut at max_length / clip_max_length).
    """
    from tqdm.auto import tqdm
    prompts = list(prompts)
    if not prompts:
        raise ValueError("prompts: empty list")
    for i, p in enumerate(prompts):
        if not isinstance(p, str):
            raise ValueError(f"prompts[{i}]: expected a string, got {type(p).__name__}")
    cfg = enc.cfg
    if cfg.mode == "t2v" and images is not None:
        raise ValueError("images: only the i2v mode takes images")
    if cfg.mode == "i2v" and (images is None or len(images) != len(prompts)):
        raise ValueError(f"images: i2v needs one image per prompt, got "
                         f"{None if images is None else len(images)} for {len(prompts)}")
    images = None if images is None else [_as_pil(im) for im in images]
    parts = []
    bs = cfg.batch_size
    with tqdm(total=len(prompts), desc=f"text embeddings ({cfg.mode})", unit="prompt",
              disable=not progress) as bar:
        for s in range(0, len(prompts), bs):
            batch = prompts[s:s + bs]
            h, m = _llm_batch(enc, batch, None if images is None else images[s:s + bs])
            pooled = _clip_batch(enc, batch)
            parts.append(TextEmbeddings(h.float().cpu().numpy(), m.to(torch.int32).cpu().numpy(),
                                        pooled.float().cpu().numpy()))
            bar.update(len(batch))
    t = cfg.prompt_template
    crop = template_crop_start(enc.tokenizer, t)
    stats = {"n": len(prompts),
             "llm_truncated": _count_truncated(enc.tokenizer, [t.text.format(p) for p in prompts],
                                               cfg.max_length + crop),
             "clip_truncated": _count_truncated(enc.tokenizer_2, prompts, cfg.clip_max_length)}
    for key, limit in (("llm_truncated", cfg.max_length), ("clip_truncated", cfg.clip_max_length)):
        if stats[key]:
            log.warning("%d of %d prompts truncated at %d tokens (%s), as the reference pipeline does",
                        stats[key], len(prompts), limit, key.split("_")[0])
    return TextEmbeddings.concat(parts), stats


def _as_pil(image: Any):
    import PIL.Image
    if isinstance(image, PIL.Image.Image):
        return image.convert("RGB")
    a = np.asarray(image)
    if a.ndim != 3 or a.shape[-1] not in (3, 4) or a.dtype != np.uint8:
        raise ValueError(f"images: expected uint8 [H, W, 3] arrays or PIL images, got {a.dtype} {a.shape}")
    return PIL.Image.fromarray(a[..., :3])


def null_embeddings(enc: TextEncoders) -> TextEmbeddings:
    """The empty prompt as the reference pipelines encode it for CFG (I2V: with a black image)."""
    images = None
    if enc.cfg.mode == "i2v":
        images = [np.zeros((64, 64, 3), np.uint8)]
    emb, _ = encode_prompts(enc, [""], images, progress=False)
    return emb


def encode_texts(cfg: TextEncoderConfig, prompts: Sequence[str], images: Sequence | None = None, *,
                 progress: bool = True) -> tuple[TextEmbeddings, TextEmbeddings, dict]:
    """Loads the encoders once and returns (embeddings of `prompts`, the null prompt's, stats):
    what launch/sample.py needs for a new prompt and its CFG branch."""
    enc = TextEncoders.load(cfg)
    emb, stats = encode_prompts(enc, prompts, images, progress=progress)
    return emb, null_embeddings(enc), stats
