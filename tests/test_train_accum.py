"""Gradient accumulation (`train.grad_accum`): k micro-batches in one step equal the mean of their
separate gradients, and the trainer runs the paper's batch 2 as two micro-batches of 1."""

import dataclasses
import functools
import importlib.util
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dreamactor_jax.data.synthetic import synthetic_example, write_synthetic_shards
from dreamactor_jax.models import lora as lora_lib
from dreamactor_jax.models import mmdit
from dreamactor_jax.train import state as st
from dreamactor_jax.train.step import MODEL_KEYS, loss_and_grads, loss_fn, micro_batches
from dreamactor_jax.train.trainer import train

ROOT = Path(__file__).resolve().parents[1]


def _config(**train_over):
    spec = importlib.util.spec_from_file_location("pose_cfg", ROOT / "configs" / "pose.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    c = mod.get_config("tiny")
    c.model.dtype = "float32"
    c.model.base_dtype = "float32"
    c.train.tensorboard = False
    for k, v in train_over.items():
        setattr(c.train, k, v)
    return c


def _batch(spec, b, seed):
    rng = np.random.default_rng(seed)
    m = spec.model
    exs = [synthetic_example(rng, (2, 4, 8), channels=m.out_channels, text_len=8, text_dim=m.text_embed_dim,
                             pooled_dim=m.pooled_projection_dim) for _ in range(b)]
    return {k: jnp.asarray(np.stack([e[k] for e in exs])) for k in MODEL_KEYS}


def test_micro_batches_interleave_examples():
    x = {"a": jnp.arange(12.0).reshape(6, 2)}
    m = micro_batches(x, 3)["a"]
    assert m.shape == (3, 2, 2)
    np.testing.assert_array_equal(np.asarray(m[1]), np.asarray(x["a"])[[1, 4]])


def test_accumulated_gradients_equal_the_mean_of_the_micro_batches(k=2):
    spec = dataclasses.replace(st.run_spec(_config()), grad_accum=k)
    key = jax.random.PRNGKey(3)
    base = mmdit.init_params(spec.model, jax.random.PRNGKey(0))
    lora = lora_lib.init_lora(spec.model, spec.lora, jax.random.PRNGKey(1))
    # a non-zero adapter, so that its gradients depend on both factors
    lora = jax.tree.map(lambda a: a + 0.05 * jax.random.normal(jax.random.PRNGKey(a.size % 97), a.shape), lora)
    batch = _batch(spec, 4, seed=7)
    (loss, aux), grads = jax.jit(loss_and_grads, static_argnames="spec")(lora, base, batch, key, spec)

    one = dataclasses.replace(spec, grad_accum=1)
    micro = micro_batches(batch, k)
    grad_fn = jax.jit(jax.value_and_grad(functools.partial(loss_fn, spec=one), has_aux=True))
    parts = [grad_fn(lora, base, jax.tree.map(lambda a: a[i], micro), jax.random.fold_in(key, i)) for i in range(k)]
    want_loss = np.mean([float(p[0][0]) for p in parts])
    want = jax.tree.map(lambda *g: sum(g) / k, *[p[1] for p in parts])
    assert abs(float(loss) - want_loss) <= 1e-5 * abs(want_loss)
    assert aux["sigma"].shape == (4,)
    for g, w in zip(jax.tree.leaves(grads), jax.tree.leaves(want)):
        scale = float(jnp.max(jnp.abs(w)))
        assert scale > 0
        assert float(jnp.max(jnp.abs(g - w))) <= 1e-5 * scale


def test_trainer_runs_micro_batches_and_refuses_a_batch_it_cannot_split(tmp_path):
    shards = tmp_path / "shards"
    write_synthetic_shards(shards, [(2, 4, 8)], clips_per_shape=4, shards=1, seed=0, channels=16,
                           text_len=8, text_dim=32, pooled_dim=24)
    c = _config(steps=3, log_every=1, checkpoint_every=100, grad_accum=2)
    c.model.dtype = c.model.base_dtype = "bfloat16"
    c.data.shards = str(shards)
    out = train(c, tmp_path / "run")
    assert len(out["losses"]) == 3 and np.isfinite(out["losses"]).all()
    assert all(len(b) == 2 for b in out["batches"])  # the global batch is still 2 records
    c.train.grad_accum = 4
    with pytest.raises(ValueError, match="train.grad_accum 4"):
        train(c, tmp_path / "run2")
