"""Orbax checkpointing: state + Grain iterator round trip, keep-N, fingerprint check, SIGTERM guard."""

import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dreamactor_jax.data.loader import make_dataset
from dreamactor_jax.data.synthetic import write_synthetic_shards
from dreamactor_jax.train.checkpoint import Checkpointer, PreemptionGuard, restore_lora
from dreamactor_jax.train.optim import OptimConfig, make_optimizer

FP = {"model": {"name": "tiny", "in_channels": 33, "rope": (4, 6, 6)}, "lora": {"rank": 4, "alpha": 4.0}}


def _state(seed):
    rng = np.random.default_rng(seed)
    lora = {"blk": {"a": jnp.asarray(rng.normal(size=(3, 4)), jnp.float32),
                    "b": jnp.asarray(rng.normal(size=(4, 2)), jnp.float32)}}
    opt = make_optimizer(OptimConfig(warmup_steps=0))
    return {"step": jnp.asarray(seed, jnp.int32), "lora": lora, "opt_state": opt.init(lora),
            "rng": jax.random.PRNGKey(seed)}


def _eq(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_save_restore_state_and_data_position(tmp_path):
    write_synthetic_shards(tmp_path / "shards", [(1, 2, 4)], clips_per_shape=6, shards=2)
    ds = make_dataset(tmp_path / "shards", global_batch=2, seed=0)
    straight = [b["index"].tolist() for b, _ in zip(iter(ds), range(6))]
    it = iter(ds)
    for _ in range(4):
        next(it)
    ck = Checkpointer(tmp_path / "ck", FP, config={"x": 1}, keep=2)
    st = _state(7)
    ck.save(4, st, it)
    ck.wait()
    it2 = iter(make_dataset(tmp_path / "shards", global_batch=2, seed=0))
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), _state(0))
    got = ck.restore(abstract, it2)
    _eq(got, st)
    assert [next(it2)["index"].tolist() for _ in range(2)] == straight[4:]
    ck.close()


def test_keep_n_and_latest(tmp_path):
    ck = Checkpointer(tmp_path, FP, keep=2, async_save=False)
    for s in (1, 2, 3):
        ck.save(s, _state(s))
    assert ck.all_steps() == [2, 3] and ck.latest_step() == 3
    ck.close()
    ck2 = Checkpointer(tmp_path, FP, keep=2)  # a new process sees the same run
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), _state(0))
    _eq(ck2.restore(abstract), _state(3))
    _eq(restore_lora(tmp_path, FP), _state(3)["lora"])
    ck2.close()


def test_checkpoint_from_another_config_is_refused(tmp_path):
    ck = Checkpointer(tmp_path, FP, async_save=False)
    ck.save(1, _state(1))
    ck.close()
    other = {"model": FP["model"], "lora": {"rank": 8, "alpha": 4.0}}
    ck2 = Checkpointer(tmp_path, other)
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), _state(0))
    with pytest.raises(ValueError, match=r"another config \(lora.rank: checkpoint 4 vs run 8"):
        ck2.restore(abstract)
    with pytest.raises(ValueError, match="lora.rank"):
        restore_lora(tmp_path, other)
    ck2.close()


def test_sigterm_sets_the_flag_instead_of_killing():
    before = signal.getsignal(signal.SIGTERM)
    with PreemptionGuard() as guard:
        assert not guard.should_stop()
        signal.raise_signal(signal.SIGTERM)
        assert guard.should_stop()
    assert signal.getsignal(signal.SIGTERM) == before
