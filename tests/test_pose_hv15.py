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
    assert m.dtype == "bfloat16" and m.param_dtype == "bfloat16" and c.preprocess.vae == "hunyuan15"
    # FFN LoRA at rank 256 on 54 blocks: (2048 + 8192) * 256 * 2 per block
    assert lora_lib.count_lora_params(m, spec.lora) == 54 * 2 * (2048 + 8192) * 256


def test_tiny_variant():
    spec = run_spec(_config("tiny"))
    assert spec.model == MMDiTConfig.named("tiny-hv15", attention_impl="xla", param_dtype="bfloat16")
    assert spec.lora.targets == lora_lib.ffn_targets(spec.model)


@pytest.mark.slow  # a subprocess: imports, synthetic shards and one compile (~30 s on 2 busy cores)
def test_launch_train_runs_the_tiny_hv15_config(tmp_path):
    r = subprocess.run([sys.executable, "launch/train.py", "--config", "configs/pose_hv15.py:tiny", "--workdir",
                        str(tmp_path), "--config.train.steps=4", "--config.train.tensorboard=False"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "done: step 4" in r.stdout + r.stderr
    assert "model tiny-hv15" in r.stderr
    ckpts = [p for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()]
    assert [int(p.name) for p in ckpts] == [4]
