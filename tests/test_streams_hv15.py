"""HunyuanVideo-1.5's image (SigLIP) and glyph (ByT5) token streams through the data path: records that
carry them -> the loader -> the jitted train step, which hands them to `mmdit.forward`."""

import importlib.util
from pathlib import Path

import jax
import numpy as np
import pytest

from dreamactor_jax import sharding
from dreamactor_jax.data.loader import make_dataset
from dreamactor_jax.data.shards import batch_keys, decode_example, encode_example
from dreamactor_jax.data.synthetic import synthetic_example, write_synthetic_shards
from dreamactor_jax.train import state as st
from dreamactor_jax.train.step import global_batch, loss_fn, make_train_step

ROOT = Path(__file__).resolve().parents[1]


def _spec():
    spec = importlib.util.spec_from_file_location("pose_hv15_cfg", ROOT / "configs" / "pose_hv15.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    c = mod.get_config("tiny")
    c.model.dtype = c.model.base_dtype = "float32"
    return st.run_spec(c)


def _dims(m):
    return dict(channels=m.out_channels, text_len=8, text_dim=m.text_embed_dim, pooled_dim=m.pooled_projection_dim,
                image_dim=m.image_embed_dim, glyph_dim=m.text_embed_2_dim)


def test_records_carry_optional_streams_and_a_batch_takes_them_only_when_all_do():
    rng = np.random.default_rng(0)
    m = _spec().model
    ex = synthetic_example(rng, (2, 4, 8), **_dims(m))
    arrays, _ = decode_example(encode_example(ex, {"clip_id": "a"}))
    assert arrays["image_embeds"].shape == (4, m.image_embed_dim) and arrays["text_2_mask"].shape == (6,)
    plain = {k: v for k, v in ex.items() if k not in ("image_embeds", "text_2", "text_2_mask")}
    assert "image_embeds" not in batch_keys([plain, plain]) and "text_2" in batch_keys([ex, ex])
    with pytest.raises(ValueError, match="image_embeds is in 1 of its 2 records"):
        batch_keys([ex, plain])
    with pytest.raises(ValueError, match="text_2 / text_2_mask"):
        encode_example({k: v for k, v in ex.items() if k != "text_2_mask"})


def test_train_step_passes_image_and_glyph_tokens_from_the_loader(tmp_path):
    spec = _spec()
    write_synthetic_shards(tmp_path / "s", [(2, 4, 8)], clips_per_shape=2, shards=1, seed=1, **_dims(spec.model))
    local = next(iter(make_dataset(str(tmp_path / "s"), global_batch=2, seed=0, num_threads=1, prefetch=1)))
    assert {"image_embeds", "text_2", "text_2_mask"} <= set(local)
    mesh = sharding.make_mesh(devices=jax.devices()[:1])
    batch = global_batch(local, mesh)
    assert set(batch) == set(local) - {"index"}
    state = st.init_state(spec, jax.random.PRNGKey(0), mesh, fast_compile=True)
    base = st.init_base(spec.model, jax.random.PRNGKey(1), mesh, fast_compile=True)
    key = jax.random.fold_in(state["rng"], state["step"])
    want = float(jax.jit(loss_fn, static_argnames="spec")(state["lora"], base, batch, key, spec)[0])
    without = {k: v for k, v in batch.items() if k not in ("image_embeds", "text_2", "text_2_mask")}
    other = float(jax.jit(loss_fn, static_argnames="spec")(state["lora"], base, without, key, spec)[0])
    _, metrics = make_train_step(spec, mesh, True)(state, base, batch)
    got = float(metrics["loss"])
    assert abs(got - want) <= 1e-5 * abs(want)
    assert abs(other - want) > 1e-4 * abs(want)  # the streams reach the model
