"""The trainer on CPU with the tiny MMDiT: loss falls, exact resume (also after SIGTERM), clear errors."""

import importlib.util
import signal
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from dreamactor_jax.data.synthetic import synthetic_example, write_synthetic_shards
from dreamactor_jax.data.shards import write_shard
from dreamactor_jax.train.trainer import NonFiniteLossError, train

jax.config.update("jax_enable_x64", False)
ROOT = Path(__file__).resolve().parents[1]


def _config(shards, steps, **train_over):
    """The tiny recipe on `shards`; the step spec (model, LoRA, optimizer) is the same in every test,
    so the file compiles the train step once."""
    spec = importlib.util.spec_from_file_location("pose_cfg", ROOT / "configs" / "pose.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    c = mod.get_config("tiny")
    c.data.shards = str(shards)
    c.train.steps = steps
    c.train.tensorboard = False
    for k, v in train_over.items():
        setattr(c.train, k, v)
    return c


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    d = tmp_path_factory.mktemp("shards")
    write_synthetic_shards(d, [(2, 4, 8)], clips_per_shape=4, shards=2, seed=0, channels=16,
                           text_len=8, text_dim=32, pooled_dim=24)
    return d


def test_tiny_training_loss_falls_and_checkpoints(shards, tmp_path):
    c = _config(shards, 24, log_every=4, checkpoint_every=8, keep=2)
    c.train.tensorboard = True
    out = train(c, tmp_path)
    losses = np.asarray(out["losses"])
    assert len(losses) == 24 and np.isfinite(losses).all()
    assert losses[-6:].mean() < 0.85 * losses[:6].mean(), losses
    assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()) == [16, 24]
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    # every batch comes from the shards, 2 records each, each epoch covers all 4 records
    assert all(len(b) == 2 for b in out["batches"])
    assert sorted(sum(out["batches"][:2], [])) == [0, 1, 2, 3]


def test_resume_after_sigterm_equals_straight_run(shards, tmp_path):
    n = 6
    straight = train(_config(shards, n, log_every=1, checkpoint_every=100), tmp_path / "a")

    def preempt(step, metrics):
        if step == n // 2:
            signal.raise_signal(signal.SIGTERM)  # the guard turns it into save-and-exit

    first = train(_config(shards, n, log_every=1, checkpoint_every=100), tmp_path / "b", on_step=preempt)
    k = first["step"]  # the flag is read after every step: the run stops after the signalled one
    assert k == n // 2 and first["preempted"] and (tmp_path / "b" / "checkpoints" / str(k)).is_dir()
    second = train(_config(shards, n, log_every=1, checkpoint_every=100), tmp_path / "b")
    assert second["resumed_from"] == k and second["step"] == n and not second["preempted"]
    assert first["batches"] + second["batches"] == straight["batches"]  # same data order
    np.testing.assert_allclose(first["losses"] + second["losses"], straight["losses"], rtol=1e-6, atol=1e-7)
    for a, b in zip(jax.tree.leaves(straight["lora"]), jax.tree.leaves(second["lora"])):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=1e-6)
    assert max(float(np.abs(np.asarray(x)).max()) for x in jax.tree.leaves(second["lora"])) > 0


def test_checkpoint_of_another_config_is_refused(shards, tmp_path):
    train(_config(shards, 1), tmp_path)
    c = _config(shards, 2)
    c.lora.rank = 8
    with pytest.raises(ValueError, match=r"another config \(lora.rank: checkpoint 4 vs run 8"):
        train(c, tmp_path)


def test_non_finite_loss_stops_with_a_clear_message(tmp_path):
    rng = np.random.default_rng(0)
    ex = [synthetic_example(rng, (2, 4, 8), text_len=8, text_dim=32, pooled_dim=24) for _ in range(2)]
    ex[1]["target"][0, 0, 0, 0] = np.nan
    write_shard(tmp_path / "nan" / "bad.array_record", [(e, {"clip_id": f"c{i}"}) for i, e in enumerate(ex)])
    c = _config(tmp_path / "nan", 3)
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at step 1 .*batch records \[[01], [01]\].*; last checkpoint: none$"):
        train(c, tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoints" / "1").exists()  # nothing bad was saved


def test_corrupt_shard_names_the_file(shards, tmp_path):
    import shutil
    d = tmp_path / "shards"
    shutil.copytree(shards, d)
    victim = sorted(d.glob("*.array_record"))[0]
    data = bytearray(victim.read_bytes())
    data[40:-40] = bytes(len(data) - 80)
    victim.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=victim.name):
        train(_config(d, 4), tmp_path / "run")


def test_launcher_rejects_a_mistyped_override(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "launch" / "train.py"), "--config",
                        str(ROOT / "configs" / "pose.py") + ":tiny", "--workdir", str(tmp_path),
                        "--config.optim.lrr=0.1"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "error: bad flag: no such config field 'lrr' (Did you mean \"lr\" instead of \"lrr\"?)"]


def test_e2e_config_warm_starts_from_a_pose_run(shards, tmp_path):
    pose = train(_config(shards, 2), tmp_path / "pose")
    spec = importlib.util.spec_from_file_location("e2e_cfg", ROOT / "configs" / "e2e.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    c = mod.get_config("tiny")
    c.data.shards, c.init_lora, c.train.tensorboard = str(shards), str(tmp_path / "pose"), False
    e2e = train(c, tmp_path / "e2e", stop_after=0)  # no step: the adapter is exactly the warm start
    for a, b in zip(jax.tree.leaves(pose["lora"]), jax.tree.leaves(e2e["lora"])):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert max(float(np.abs(np.asarray(x)).max()) for x in jax.tree.leaves(e2e["lora"])) > 0
