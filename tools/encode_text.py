"""Captions -> the backbone's text embeddings file (LLaMA hidden states + mask, CLIP pooled).

    python tools/encode_text.py OUT.safetensors (--captions CAPTIONS.jsonl | --prompt TEXT | --no-text)
        [--id ID] [--mode t2v|i2v] [--model-path hunyuanvideo-community/HunyuanVideo]
        [--manifest ITEMS.jsonl | --image IMG] [--device cpu|cuda] [--dtype auto|float32|bfloat16]
        [--batch-size 8] [--image-embed-interleave 2] [--max-length 256] [--crop-start reference|auto|N]

CAPTIONS is what tools/caption.py writes (or any captions file it accepts); --prompt encodes one
new prompt for launch/sample.py and --no-text the empty prompt, both under --id (default
"prompt"). The encoders are read from --model-path or the Hugging Face cache; --no-text never
uses the network (it says at once when the encoders are not on this machine), --prompt and
--captions may download them unless HF_HUB_OFFLINE=1. Without any text encoder, skip this tool:
tools/preprocess.py (no --text_embeddings) and launch/sample.py --no-text use the zero text. --mode i2v uses the LLaVA text encoder of HunyuanVideo-I2V, which also sees the
reference image: from --manifest (by id) or --image. OUT also holds the null prompt's embedding
(for classifier-free guidance) and, in its metadata, which text path produced each caption.
Read it with `dreamactor_jax.text.store.load_text_embeddings`.

--backbone hv15 (HunyuanVideo-1.5) writes Qwen2.5-VL text embeddings (width 3584, --max-length
default 1000, crop 108) and the ByT5 glyph embeddings of the prompt's quoted text (`text_2`, width
1472, --glyph-max-length 256) from --model-path, a LOCAL diffusers HunyuanVideo-1.5 pipeline folder
(never downloaded); --mode, --manifest, --image and --crop-start auto do not apply.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dreamactor_jax.utils import cli_main  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", help="output .safetensors")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--captions", help="captions JSONL / JSON keyed by id")
    src.add_argument("--prompt", help="one prompt to encode")
    src.add_argument("--no-text", action="store_true", help="encode the empty prompt (no text guidance)")
    p.add_argument("--id", default="prompt", help="id of --prompt / --no-text")
    p.add_argument("--backbone", default="hunyuan", choices=["hunyuan", "hv15"],
                   help="whose text encoders: HunyuanVideo (LLaMA + CLIP) or HunyuanVideo-1.5 (Qwen2.5-VL + ByT5)")
    p.add_argument("--mode", default="t2v", choices=["t2v", "i2v"])
    p.add_argument("--glyph-max-length", type=int, default=256, help="hv15: ByT5 glyph tokens (reference: 256)")
    p.add_argument("--model-path", default=None,
                   help="diffusers pipeline folder or hub id (default: hunyuanvideo-community/HunyuanVideo"
                        "[-I2V])")
    p.add_argument("--manifest", help="i2v: items {id, image} giving each caption's reference image")
    p.add_argument("--image", help="i2v: the reference image of --prompt / --no-text")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-length", type=int, default=None,
                   help="text tokens kept after the crop (reference: 256; hv15: 1000)")
    p.add_argument("--image-embed-interleave", type=int, default=2,
                   help="i2v: keep every n-th image token (2 for the 33ch model, 4 for token_replace)")
    p.add_argument("--crop-start", default="reference",
                   help="template tokens to crop: 'reference' (95 t2v / 103 i2v, as diffusers), 'auto' "
                        "(count them with the tokenizer; i2v: image slots from the model too) or a number")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)

    from dreamactor_jax.text.captions import load_captions_file, load_items
    if args.captions:
        caps = load_captions_file(args.captions)
        ids = list(caps)
        texts = [caps[i]["fused"] for i in ids]
        sources = [caps[i]["source"] for i in ids]
    else:
        ids = [args.id]
        texts = [args.prompt if args.prompt is not None else ""]
        sources = ["prompt" if args.prompt is not None else "none"]
        if args.prompt is not None and not args.prompt.strip():
            raise ValueError("--prompt: empty; use --no-text to ask for no text")
    if args.backbone == "hv15":
        return _main_hv15(args, ids, texts, sources)
    if args.max_length is None:
        args.max_length = 256
    images = None
    if args.mode == "i2v":
        from dreamactor_jax.media.image import read_image
        if args.image:
            if args.captions:
                raise ValueError("--image: only with --prompt / --no-text (use --manifest with --captions)")
            paths = {args.id: args.image}
        elif args.manifest:
            paths = {it.id: it.image for it in load_items(args.manifest)}
        else:
            raise ValueError("--mode i2v: needs the reference images (--manifest or --image)")
        missing = [i for i in ids if not paths.get(i)]
        if missing:
            raise ValueError(f"--manifest: no image for {len(missing)} ids (first: {missing[:3]})")
        images = [read_image(paths[i]) for i in ids]
    elif args.image or args.manifest:
        raise ValueError("--image/--manifest: only used with --mode i2v")

    import dataclasses
    from dreamactor_jax.text.embed import (TextEncoderConfig, TextEncoders, encode_prompts, local_model_path,
                                           null_embeddings)
    from dreamactor_jax.text.embed import template_crop_start
    from dreamactor_jax.text.store import save_text_embeddings
    cfg = TextEncoderConfig(mode=args.mode, device=args.device, dtype=args.dtype, batch_size=args.batch_size,
                            max_length=args.max_length, image_embed_interleave=args.image_embed_interleave)
    if args.crop_start != "reference":
        extra = {}
        if args.crop_start == "auto":
            crop = None
            extra = dict(image_emb_start=None, image_emb_end=None, image_emb_len=None)
        elif args.crop_start.isdigit():
            crop = int(args.crop_start)
        else:
            raise ValueError(f"--crop-start: expected reference, auto or a number, got {args.crop_start!r}")
        cfg = dataclasses.replace(cfg, template=dataclasses.replace(cfg.prompt_template, crop_start=crop, **extra))
    try:
        path = local_model_path(args.model_path, args.mode, allow_download=not args.no_text)
    except ValueError as e:
        if not args.no_text:
            raise
        raise ValueError(f"--no-text: {e}; without text encoders, leave the text out instead: "
                         "tools/preprocess.py without --text_embeddings and launch/sample.py --no-text "
                         "use the zero text") from None
    cfg = dataclasses.replace(cfg, model_path=path)
    enc = TextEncoders.load(cfg)
    emb, stats = encode_prompts(enc, texts, images, progress=not args.quiet)
    null = null_embeddings(enc)
    text_source = dict(collections.Counter(sources))
    meta = {"text_source": text_source, "mode": cfg.mode, "model_path": cfg.model_path,
            "max_length": cfg.max_length, "clip_max_length": cfg.clip_max_length,
            "crop_start": template_crop_start(enc.tokenizer, cfg.prompt_template),
            "hidden_state": -(cfg.hidden_layers_to_skip + 1), "stats": stats}
    if cfg.mode == "i2v":
        meta["image_embed_interleave"] = cfg.image_embed_interleave
    save_text_embeddings(args.out, emb, ids, null=null, prompts=texts, meta=meta)
    summary = {"out": str(args.out), "n": len(ids), "text": list(emb.text.shape),
               "text_source": text_source, **stats}
    print(json.dumps(summary))
    return 0


def _main_hv15(args, ids, texts, sources) -> int:
    """--backbone hv15: both HunyuanVideo-1.5 text streams from the local pipeline folder."""
    from dreamactor_jax.text import hv15
    from dreamactor_jax.text.store import save_text_embeddings

    if args.mode != "t2v" or args.image or args.manifest:
        raise ValueError("--backbone hv15: --mode i2v / --image / --manifest do not apply (its text encoder "
                         "sees no image; the image stream is launch/sample.py's --image-encoder)")
    if args.crop_start == "reference":
        crop = hv15.CROP_START
    elif args.crop_start.isdigit():
        crop = int(args.crop_start)
    else:
        raise ValueError(f"--crop-start: with --backbone hv15 expected reference or a number, got {args.crop_start!r}")
    max_length = hv15.MAX_LENGTH if args.max_length is None else args.max_length
    import torch
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16,
             "auto": torch.float32 if args.device == "cpu" else torch.bfloat16}[args.dtype]
    enc = hv15.load_text_encoders(args.model_path, args.device, dtype, flag="--model-path")
    emb, null = hv15.encode_file(enc, texts, max_length=max_length, crop_start=crop,
                                 glyph_max_length=args.glyph_max_length, batch_size=args.batch_size)
    text_source = dict(collections.Counter(sources))
    meta = {"text_source": text_source, "backbone": "hv15", "model_path": str(args.model_path),
            "max_length": max_length, "crop_start": crop, "glyph_max_length": args.glyph_max_length,
            "hidden_state": -(hv15.SKIP_LAYERS + 1)}
    save_text_embeddings(args.out, emb, ids, null=null, prompts=texts, meta=meta)
    print(json.dumps({"out": str(args.out), "n": len(ids), "text": list(emb.text.shape),
                      "text_2": list(emb.text_2.shape), "text_source": text_source,
                      "with_glyphs": int(emb.text_2_mask.any(axis=1).sum())}))
    return 0


if __name__ == "__main__":
    cli_main(main)
