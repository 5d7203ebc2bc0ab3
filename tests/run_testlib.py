"""Helpers for tests that sample: a tiny converted base + VAE (diffusers -> the converter), and a
training-run folder holding a random rank-4 adapter, written as the trainer writes one."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from dreamactor_jax.models import lora as lora_lib  # noqa: E402
from dreamactor_jax.models.config import MMDiTConfig  # noqa: E402
from dreamactor_jax.models.vae import VAEConfig  # noqa: E402

CFG = MMDiTConfig.named("tiny-i2v-33ch")
LORA = lora_lib.LoRAConfig(rank=4, alpha=4.0)
# what the trainer writes for LORA on CFG (train.state.fingerprint)
FINGERPRINT = {"model": CFG.to_diffusers_config(), "lora": dataclasses.asdict(LORA)}


def tiny_vae(seed: int = 0):
    """diffusers AutoencoderKLHunyuanVideo of the project's `tiny` VAE config (16 latent channels)."""
    cfg = VAEConfig.named("tiny", latent_channels=16)
    n = len(cfg.block_out_channels)
    torch.manual_seed(seed)
    return diffusers.AutoencoderKLHunyuanVideo(
        latent_channels=16, block_out_channels=cfg.block_out_channels,
        down_block_types=("HunyuanVideoDownBlock3D",) * n, up_block_types=("HunyuanVideoUpBlock3D",) * n,
        layers_per_block=cfg.layers_per_block, norm_num_groups=cfg.norm_num_groups)


def converted_tiny_base(root: Path) -> tuple[Path, Path]:
    """(root/base, root/vae): the tiny I2V-33ch transformer (random, seed 0) and VAE, converted."""
    from convert_testlib import tiny_transformer

    from dreamactor_jax.weights.convert import convert

    tiny_transformer(CFG, seed=0).save_pretrained(root / "hf_base")
    convert(root / "hf_base", root / "base", dtype="fp32")
    tiny_vae().save_pretrained(root / "hf_vae")
    convert(root / "hf_vae", root / "vae", dtype="fp32")
    return root / "base", root / "vae"


def random_adapter():
    lora = lora_lib.init_lora(CFG, LORA, jax.random.key(0))
    return jax.tree_util.tree_map(lambda a: a + 0.05 * jax.random.normal(jax.random.key(1), a.shape), lora)


def run_config(root: Path, **extra) -> dict:
    """A pose run's config on root/base and root/vae (fps 8)."""
    return {"variant": "pose", "model": {"name": "tiny-i2v-33ch", "guidance": 1.0}, "lora": {"rank": 4, "alpha": 4.0},
            "base_checkpoint": str(root / "base"), "preprocess": {"vae_checkpoint": str(root / "vae"), "fps": 8.0},
            **extra}


def save_run(workdir: Path, config: dict, lora, step: int = 10) -> None:
    """A training-run folder with one checkpoint of `lora` at `step`."""
    from dreamactor_jax.train.checkpoint import Checkpointer

    ck = Checkpointer(workdir / "checkpoints", FINGERPRINT, config=config, async_save=False)
    ck.save(step, {"step": jnp.asarray(step, jnp.int32), "lora": lora}, force=True)
    ck.close()


def sampling_run(root: Path, rng) -> tuple[dict, dict]:
    """What sampling needs under `root`: the converted tiny base and VAE (`converted_tiny_base`), a run
    folder root/run holding a random adapter (`save_run`) and root/text.safetensors (`save_text`,
    drawn from `rng`). Returns the run's (config, adapter), to save variants of the run."""
    converted_tiny_base(root)
    config, lora = run_config(root), random_adapter()
    save_run(root / "run", config, lora)
    save_text(root / "text.safetensors", rng)
    return config, lora


def save_text(path: Path, rng) -> None:
    """A tools/encode_text.py file for the tiny backbone (text 32 wide, pooled 24): id "prompt"
    ("a dancer", 3 tokens) and a null prompt, drawn from `rng`."""
    import numpy as np

    from dreamactor_jax.text.store import TextEmbeddings, save_text_embeddings

    emb = TextEmbeddings(rng.standard_normal((1, 6, 32)).astype(np.float32), np.array([[1, 1, 1, 0, 0, 0]], np.int32),
                         rng.standard_normal((1, 24)).astype(np.float32))
    null = TextEmbeddings(rng.standard_normal((1, 6, 32)).astype(np.float32), np.array([[1, 0, 0, 0, 0, 0]], np.int32),
                          rng.standard_normal((1, 24)).astype(np.float32))
    save_text_embeddings(path, emb, ["prompt"], null=null, prompts=["a dancer"])
