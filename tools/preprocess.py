"""Videos -> pre-encoded training shards (pose canvas/target latents, masks, text embeddings).

    python tools/preprocess.py --config configs/pose.py --input videos/ --output shards/ \
        --text_embeddings text.safetensors --config.preprocess.vae_checkpoint=ckpt/vae

`--input` is a folder (every video inside, id = relative path) or a JSONL manifest with rows
`{"video": "a.mp4", "id": "a", "driving": "a_motion.mp4", "reference": "a.png"}` (driving is
required for configs/e2e.py; paths relative to the manifest). Text embeddings come from
tools/encode_text.py keyed by the same ids (the null prompt for ids without one). A rerun skips
finished clips; unusable inputs are skipped, counted and listed in the closing summary (also in
OUTPUT/preprocess_report.json).
"""

from __future__ import annotations

import logging
import os
import sys

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "run config (configs/pose.py or configs/e2e.py)",
                                          lock_config=True)
_INPUT = flags.DEFINE_string("input", None, "folder of videos or a JSONL manifest")
_OUTPUT = flags.DEFINE_string("output", None, "folder for the shards")
_TEXT = flags.DEFINE_string("text_embeddings", None, "text embeddings file (tools/encode_text.py)")
_ESTIMATOR = flags.DEFINE_enum("pose_estimator", "mediapipe", ["mediapipe", "dwpose"], "pose variant only")
_DET = flags.DEFINE_string("det_model", None, "dwpose: yolox ONNX path")
_POSE = flags.DEFINE_string("pose_model", None, "dwpose: pose ONNX path")


def main(argv) -> int:
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments {argv[1:]}")
    for name, v in (("--config", _CONFIG.value), ("--input", _INPUT.value), ("--output", _OUTPUT.value),
                    ("--text_embeddings", _TEXT.value)):
        if not v:
            raise ValueError(f"{name}: required")
    from dreamactor_jax.data import preprocess as pp
    from dreamactor_jax.models.config import MMDiTConfig

    c = _CONFIG.value
    p = c.preprocess
    cfg = pp.PreprocessConfig(variant=c.variant, min_frames=p.min_frames, max_frames=p.max_frames, fps=p.fps,
                              height=p.height, width=p.width, clips_per_video=p.clips_per_video,
                              clips_per_shard=p.clips_per_shard, pose_augmentation=p.pose_augmentation,
                              text_guidance=p.text_guidance, seed=c.data.seed)
    report = pp.Report()
    src = _INPUT.value
    if os.path.isdir(src):
        items = pp.scan_folder(src)
    elif os.path.isfile(src):
        items = pp.read_manifest(src, report)
    else:
        raise FileNotFoundError(f"--input {src}: no such folder or manifest")
    if not items and not report.skipped:
        raise ValueError(f"--input {src}: no videos found")
    text = pp.TextTable(_TEXT.value, use_captions=p.text_guidance)
    estimator = None
    if cfg.variant == "pose":  # before the VAE: a missing pose model fails fast
        from dreamactor_jax.pose.extract import make_estimator
        estimator = make_estimator(_ESTIMATOR.value, det_model=_DET.value, pose_model=_POSE.value)
    channels = MMDiTConfig.named(c.model.name).out_channels
    encode = pp.make_vae_encoder(p.vae, p.vae_checkpoint, latent_channels=channels, seed=c.seed)
    report = pp.run(items, _OUTPUT.value, cfg, encode=encode, text=text, estimator=estimator, report=report)
    print(report.summary())
    return 0


def _run(argv):
    from dreamactor_jax.utils import cli_main
    logging.getLogger("dreamactor_jax").setLevel(logging.INFO)
    cli_main(main, argv)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    app.run(_run)
