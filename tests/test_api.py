"""The public API (`dreamactor_jax.api`, re-exported lazily by `import dreamactor_jax`) on a tiny random
base made in tmp the way tools/make_random_base.py makes one: the backbone's forward against diffusers
(fp32, CPU), a training run's adapter merged on load, and the animator end to end."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import dreamactor_jax as da  # noqa: E402
from dreamactor_jax.models import lora as lora_lib  # noqa: E402
from dreamactor_jax.models.config import MMDiTConfig  # noqa: E402

from convert_testlib import make_inputs, rel_err, torch_forward  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny random I2V-33ch base + VAE, converted, and a run with a random adapter trained on it."""
    import importlib.util
    from pathlib import Path

    from dreamactor_jax.train.checkpoint import Checkpointer
    from dreamactor_jax.train.state import RunSpec, fingerprint
    from dreamactor_jax.weights.convert import convert

    spec = importlib.util.spec_from_file_location("make_random_base", Path(__file__).parents[1] / "tools" / "make_random_base.py")
    mrb = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mrb)
    root = tmp_path_factory.mktemp("api")
    model, vae = mrb.build("tiny")
    model.save_pretrained(root / "hf" / "transformer")
    vae.save_pretrained(root / "hf" / "vae")
    convert(root / "hf" / "transformer", root / "base", dtype="fp32")
    convert(root / "hf" / "vae", root / "vae", dtype="fp32")

    cfg = MMDiTConfig.named("tiny-i2v-33ch")
    lcfg = lora_lib.LoRAConfig(rank=4, alpha=4.0)
    lora = lora_lib.init_lora(cfg, lcfg, jax.random.key(0))
    lora = jax.tree_util.tree_map(lambda a: a + 0.05 * jax.random.normal(jax.random.key(1), a.shape), lora)
    config = {"variant": "pose", "model": {"name": "tiny-i2v-33ch", "guidance": 1.0}, "lora": {"rank": 4, "alpha": 4.0},
              "base_checkpoint": str(root / "base"), "preprocess": {"vae_checkpoint": str(root / "vae")},
              "train": {"fast_compile": True}}  # the VAE at XLA -O0 on a CPU: quick to compile
    fp = fingerprint(RunSpec(cfg, lcfg, None, None))
    ck = Checkpointer(root / "run" / "checkpoints", fp, config=config, async_save=False)
    ck.save(7, {"step": jnp.asarray(7, jnp.int32), "lora": lora}, force=True)
    ck.close()
    return {"root": root, "model": model, "lora": lora, "lcfg": lcfg}


def test_import_is_light_and_names_resolve():
    code = ("import sys, dreamactor_jax as da; assert 'jax' not in sys.modules, 'jax imported';"
            "assert 'load_run' in dir(da); da.load_base; assert 'jax' in sys.modules")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-1000:]
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        da.nope  # noqa: B018


def test_base_forward_matches_diffusers(tiny):
    base = da.load_base(tiny["root"] / "base", dtype="float32")
    assert base.cfg.in_channels == 33 and str(base.cfg.dtype) == "float32"
    inp = make_inputs(base.cfg)
    got = base(inp["x"], inp["timestep"], inp["text"], inp["text_mask"], inp["pooled"])
    assert got.dtype == jnp.float32 and got.shape == inp["x"].shape[:-1] + (base.cfg.out_channels,)
    assert rel_err(got, torch_forward(tiny["model"], inp)) <= 1e-5
    with pytest.raises(ValueError, match="expected a converted backbone"):
        da.load_base(tiny["root"] / "vae")
    vcfg, vparams = da.load_vae(tiny["root"] / "vae", dtype="float32")
    assert vcfg.latent_channels == base.cfg.out_channels and vparams


def test_run_loads_with_its_adapter_merged(tiny):
    run = da.load_run(tiny["root"] / "run", dtype="float32")
    assert run.step == 7 and run.variant == "pose"
    base = da.load_base(run.base, dtype="float32")
    want = lora_lib.merge_lora(base.params, tiny["lora"], base.cfg, tiny["lcfg"])  # lora's own tests hold its forward
    diffs = jax.tree_util.tree_map(lambda a, b: float(jnp.max(jnp.abs(a - b))), run.params, want)
    assert max(jax.tree_util.tree_leaves(diffs)) <= 1e-6
    moved = jax.tree_util.tree_map(lambda a, b: float(jnp.max(jnp.abs(a - b))), run.params, base.params)
    assert max(jax.tree_util.tree_leaves(moved)) > 1e-3  # the adapter is in


@pytest.mark.slow  # compiles the sampler's step and the VAE (~20 s on 2 busy cores)
def test_animator_of_a_run(tiny):
    run = da.load_run(tiny["root"] / "run", dtype="float32")
    animator = da.make_animator(run, steps=2, segment_frames=5, overlap=1, seed=1)
    assert animator.settings.steps == 2 and not animator.model_fn.true_cfg
    rng = np.random.default_rng(0)
    ref = rng.integers(0, 256, (16, 16, 3), np.uint8)
    motion = rng.integers(0, 256, (5, 16, 16, 3), np.uint8)
    video, segments = animator.animate(ref, motion)
    assert video.shape == motion.shape and video.dtype == np.uint8 and len(segments) == 1
    again, _ = da.make_animator(run, steps=2, segment_frames=5, overlap=1, seed=1).animate(ref, motion)
    np.testing.assert_array_equal(video, again)  # seeded
