"""Videos -> pre-encoded training shards (pose canvas/target latents, masks, text embeddings).

    python tools/preprocess.py --config configs/pose.py --input videos/ --output shards/ \
        --text_embeddings text.safetensors --config.preprocess.vae_checkpoint=ckpt/vae

`--input` is a folder (every video inside, id = relative path), one video file, or a JSONL
manifest with rows `{"video": "a.mp4", "id": "a", "driving": "a_motion.mp4", "reference": "a.png",
"pose": "a_pose.json"}` (driving is required for configs/e2e.py; pose, a `tools/extract_pose.py
--json` file of the video, replaces the estimator; paths relative to the manifest).

Text embeddings come from tools/encode_text.py keyed by the same ids (the null prompt for ids
without one); without `--text_embeddings` every clip gets the zero text (no text encoder needed;
said in the summary). Panels follow each video's orientation (`--orientation auto`: a portrait
video gets the config's panel transposed, 832x480); `--orientation config` keeps height x width.
The VAE runs tiled, the tiles sized from the memory at hand (`--vae_tiling`). Canvases, targets and
masks take the run config's in-context layout (`--config.objective.layout`, spatial by default;
temporal for Table 2's ablation A), recorded in every record and shard index: the trainer refuses
shards of another layout than its own. The full-size VAE
needs `--config.preprocess.vae_checkpoint` (random weights only with `--random_vae`). A backbone with image
tokens (configs/pose_hv15.py) stores the reference frame's SigLIP tokens per clip (`--image_encoder`,
a local folder), or zeros with `--zero_image_embeds`; glyph tokens are not produced here (absent).

A rerun skips finished clips (and redoes those of damaged shards); unusable inputs are skipped,
counted and listed in the closing summary (also in OUTPUT/preprocess_report.json). A run that
writes nothing, with nothing done before, exits with status 2.
"""

from __future__ import annotations

import collections
import logging
import os
import sys

from absl import flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "run config (configs/pose.py or configs/e2e.py)",
                                          lock_config=True)
_INPUT = flags.DEFINE_string("input", None, "folder of videos, one video, or a JSONL manifest")
_OUTPUT = flags.DEFINE_string("output", None, "folder for the shards")
_TEXT = flags.DEFINE_string("text_embeddings", None,
                            "text embeddings file (tools/encode_text.py); without it: the zero text")
_ESTIMATOR = flags.DEFINE_enum("pose_estimator", "mediapipe", ["mediapipe", "dwpose"], "pose variant only")
_DET = flags.DEFINE_string("det_model", None, "dwpose: yolox ONNX path")
_POSE = flags.DEFINE_string("pose_model", None, "dwpose: pose ONNX path")
_ORIENT = flags.DEFINE_enum("orientation", "auto", ["auto", "config"],
                            "auto: each video's panel takes its orientation; config: always height x width")
_TILING = flags.DEFINE_string("vae_tiling", "auto", "auto (from free memory), framewise, pipeline, off, or a "
                              "spatial tile side in pixels")
_RANDOM_VAE = flags.DEFINE_bool("random_vae", False, "allow random weights for the full-size VAE (rehearsals)")
_IMAGE_ENC = flags.DEFINE_string("image_encoder", None, "backbones with image tokens (HunyuanVideo-1.5): local "
                                 "SigLIP folder (or the I2V pipeline folder) for the reference frame's tokens")
_ZERO_IMAGE = flags.DEFINE_bool("zero_image_embeds", False, "backbones with image tokens: store zero image tokens "
                                "instead (diffusers' text-to-video rule; no image encoder needed)")


def _items(src: str, report):
    from dreamactor_jax.data import preprocess as pp

    if os.path.isdir(src):
        return pp.scan_folder(src)
    if not os.path.isfile(src):
        raise FileNotFoundError(f"--input {src}: no such folder, video or manifest")
    if src.lower().endswith(pp.VIDEO_EXTS):
        from pathlib import Path

        return [pp.Item(Path(src).stem, Path(src))]
    return pp.read_manifest(src, report)


def batch_hint(out: str, global_batch: int) -> str | None:
    """A note when some latent shape has fewer clips than one training batch (the loader drops them)."""
    from dreamactor_jax.data.shards import list_shards, read_sidecar

    counts = collections.Counter(tuple(r["shape"]) for s in list_shards(out) for r in read_sidecar(s))
    small = {k: v for k, v in counts.items() if v < global_batch}
    if not small:
        return None
    shapes = ", ".join(f"{v} of {'x'.join(map(str, k))}" for k, v in sorted(small.items()))
    return (f"note: fewer clips than data.global_batch={global_batch} for latent shape(s) {shapes}: training "
            f"leaves those out (and stops if no shape fills a batch); add clips or train with "
            f"--config.data.global_batch=1")


def main(argv) -> int:
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments {argv[1:]}")
    for name, v in (("--config", _CONFIG.value), ("--input", _INPUT.value), ("--output", _OUTPUT.value)):
        if not v:
            raise ValueError(f"{name}: required")
    from dreamactor_jax.data import preprocess as pp
    from dreamactor_jax.models.config import MMDiTConfig

    logging.getLogger("dreamactor_jax").setLevel(logging.INFO)

    c = _CONFIG.value
    p = c.preprocess
    cfg = pp.PreprocessConfig(variant=c.variant, min_frames=p.min_frames, max_frames=p.max_frames, fps=p.fps,
                              height=p.height, width=p.width, clips_per_video=p.clips_per_video,
                              clips_per_shard=p.clips_per_shard, pose_augmentation=p.pose_augmentation,
                              text_guidance=p.text_guidance, seed=c.data.seed, orientation=_ORIENT.value,
                              layout=c.objective.layout)  # the run's in-context layout: one setting for both
    pp.check_vae_source(p.vae, p.vae_checkpoint, _RANDOM_VAE.value)  # before anything slow
    report = pp.Report()
    items = _items(_INPUT.value, report)
    if not items and not report.skipped:
        raise ValueError(f"--input {_INPUT.value}: no videos found")
    mcfg = MMDiTConfig.named(c.model.name)
    text = pp.TextTable(_TEXT.value, use_captions=p.text_guidance, text_dim=mcfg.text_embed_dim,
                        pooled_dim=mcfg.pooled_projection_dim, glyph_dim=mcfg.text_embed_2_dim)
    if _TEXT.value is None:
        print("text: no --text_embeddings, every clip gets the zero text (no text guidance; for the "
              "encoded empty prompt pass tools/encode_text.py --no-text's file)", file=sys.stderr)
    from dreamactor_jax.text.hv15 import image_token_fn  # the image stream, when the backbone has one

    image_tokens = image_token_fn(mcfg.image_embed_dim, _IMAGE_ENC.value, zero=_ZERO_IMAGE.value)
    estimator = None
    if cfg.variant == "pose" and any(it.pose is None for it in items):  # before the VAE: fails fast
        from dreamactor_jax.pose.extract import make_estimator
        estimator = make_estimator(_ESTIMATOR.value, det_model=_DET.value, pose_model=_POSE.value)
    shapes = [(cfg.height, cfg.width)] + ([(cfg.width, cfg.height)] if cfg.orientation == "auto" else [])
    wide = 2 if cfg.layout == "spatial" else 1  # a spatial canvas is two panels wide, a temporal one is one
    sizes = [("encode", cfg.max_frames, h, wide * w) for h, w in shapes]
    encode = pp.make_vae_encoder(p.vae, p.vae_checkpoint, latent_channels=mcfg.out_channels, seed=c.seed,
                                 tiling=_TILING.value, sizes=sizes, allow_random=_RANDOM_VAE.value,
                                 say=lambda s: print(s, file=sys.stderr))
    report = pp.run(items, _OUTPUT.value, cfg, encode=encode, text=text, estimator=estimator, report=report,
                    image_tokens=image_tokens)
    print(report.summary())
    hint = batch_hint(_OUTPUT.value, int(c.data.global_batch))
    if hint:
        print(hint)
    if report.written == 0 and report.already_done == 0:
        raise ValueError(f"--output {_OUTPUT.value}: no clip written (every input was skipped; see above)")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from dreamactor_jax.utils import absl_main

    absl_main(main)
