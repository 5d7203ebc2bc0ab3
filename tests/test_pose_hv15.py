"""configs/pose_hv15.py: the paper's recipe on HunyuanVideo-1.5, and `launch/train.py` running its tiny
variant unchanged apart from the config."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from dreamactor_jax.models import lora as lora_lib
from dreamactor_jax.models.config import MMDiTConfig
from dreamactor_jax.train.state import run_spec

ROOT = Path(__file__).resolve().parents[1]


def _config(arg=None):
    spec = importlib.util.spec_from_file_location("pose_hv15_cfg", ROOT / "configs" / "pose_hv15.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.get_config(arg)


def test_full_recipe_is_the_papers_on_hv15():
    c = _config()
    spec = run_spec(c)
    m = spec.model
    assert m.backbone == "hunyuan_video15" and m.diffusers_class == "HunyuanVideo15Transformer3DModel"
    assert (m.num_layers, m.num_single_layers, m.hidden_size, m.patch_size) == (54, 0, 2048, 1)
    assert m.in_channels == 2 * m.out_channels + 1 == 65  # 32 noise + 32 canvas latent + 1 mask
    assert (spec.lora.rank, spec.lora.alpha) == (256, 256.0)
    assert (spec.optim.lr, spec.optim.weight_decay) == (5e-5, 0.01)
    assert c.data.global_batch == 2 and c.train.steps == 50_000 and spec.guidance is None
    assert sorted(lora_lib.targets(m, spec.lora)) == ["transformer_blocks.ff.net.0.proj", "transformer_blocks.ff.net.2"]
    assert m.dtype == "bfloat16" and m.param_dtype == "bfloat16" and c.preprocess.vae == "hunyuan15"  # models.vae15
    # FFN LoRA at rank 256 on 54 blocks: (2048 + 8192) * 256 * 2 per block
    assert lora_lib.count_lora_params(m, spec.lora) == 54 * 2 * (2048 + 8192) * 256


def test_tiny_variant():
    spec = run_spec(_config("tiny"))
    assert spec.model == MMDiTConfig.named("tiny-hv15", attention_impl="xla", param_dtype="bfloat16")
    assert spec.lora.targets == lora_lib.ffn_targets(spec.model)


def _run(*argv):
    r = subprocess.run([sys.executable, *map(str, argv)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


@pytest.mark.slow  # three subprocesses (random base, 3 training steps, 3 sampling steps): ~45 s on 2 busy cores
def test_random_base_train_and_sample_the_tiny_hv15_config(tmp_path):
    """`launch/train.py` and `launch/sample.py` run HunyuanVideo-1.5 unchanged apart from the config:
    a random tiny base (diffusers' HunyuanVideo15 transformer and VAE, converted), 3 LoRA steps, a video."""
    import numpy as np
    from PIL import Image

    from dreamactor_jax import media
    from dreamactor_jax.pose.keypoints import standard_person
    from dreamactor_jax.pose.render import render_pose

    base, run = tmp_path / "base", tmp_path / "run"
    _run("tools/make_random_base.py", base, "--backbone", "hv15")
    assert json.loads((base / "vae" / "config.json").read_text())["_class_name"] == "AutoencoderKLHunyuanVideo15"
    r = _run("launch/train.py", "--config", "configs/pose_hv15.py:tiny", "--workdir", run, "--config.train.steps=3",
             "--config.train.tensorboard=False", f"--config.base_checkpoint={base / 'transformer'}",
             f"--config.preprocess.vae_checkpoint={base / 'vae'}")
    assert "done: step 3" in r.stdout and "model tiny-hv15" in r.stderr
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 80, 3), np.uint8)).save(tmp_path / "ref.png")
    frames = [render_pose(standard_person((0.5, 0.5), 0.8), 48, 80) for _ in range(9)]
    media.write_video(tmp_path / "pose.mp4", np.stack(frames), fps=8)
    args = ["launch/sample.py", "--checkpoint", run, "--ref", tmp_path / "ref.png", "--pose", tmp_path / "pose.mp4",
            "-o", tmp_path / "out.mp4", "--no-text", "--steps", 3, "--quiet"]
    r = subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "--image-encoder: required for this backbone" in r.stderr.strip().splitlines()[-1]
    # the reference's image tokens from a local SigLIP folder (a tiny random one, safetensors)
    import transformers

    siglip = transformers.SiglipVisionModel(transformers.SiglipVisionConfig(
        hidden_size=20, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=8))
    siglip.save_pretrained(tmp_path / "siglip", safe_serialization=True)
    transformers.SiglipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path / "siglip")
    _run(*args, "--image-encoder", tmp_path / "siglip")
    v = media.read_video(tmp_path / "out.mp4")
    assert v.shape[0] == 9 and v.std() > 1.0
