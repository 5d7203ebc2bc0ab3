"""Training faults (tiny config, CPU): no lost or phantom checkpoints, data checked on resume.

- an exception escaping the loop (a NaN loss, Ctrl-C) finishes the checkpoint save in flight and
  names only committed steps; a failed background save is discarded;
- a resume whose data differ (shards, data seed, global batch, augmentation) is refused, saying
  what changed, unless `resume.allow_data_change`;
- a shard without its index, or a numbered set with a shard missing, is an error naming the file;
  the synthetic shards appear whole or not at all.
"""

import importlib.util
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from dreamactor_jax.data.loader import epoch_plan
from dreamactor_jax.data.shards import sidecar_path, write_shard
from dreamactor_jax.data.synthetic import synthetic_example, write_synthetic_shards
from dreamactor_jax.train import trainer
from dreamactor_jax.train.checkpoint import Checkpointer
from dreamactor_jax.train.trainer import NonFiniteLossError, train

jax.config.update("jax_enable_x64", False)
ROOT = Path(__file__).resolve().parents[1]
SHAPE = (2, 4, 8)


def _config(shards, steps, **train_over):
    spec = importlib.util.spec_from_file_location("pose_cfg", ROOT / "configs" / "pose.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    c = mod.get_config("tiny")
    c.data.shards = None if shards is None else str(shards)
    c.train.steps = steps
    c.train.tensorboard = False
    c.train.log_every = 1
    for k, v in train_over.items():
        setattr(c.train, k, v)
    return c


def _examples(n, seed=0):
    rng = np.random.default_rng(seed)
    return [synthetic_example(rng, SHAPE, text_len=8, text_dim=32, pooled_dim=24) for _ in range(n)]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    d = tmp_path_factory.mktemp("shards")
    write_synthetic_shards(d, [SHAPE], clips_per_shape=4, shards=2, seed=0, channels=16, text_len=8,
                           text_dim=32, pooled_dim=24)
    return d


def _steps(workdir: Path) -> list[int]:
    return sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())


def _leftovers(workdir: Path) -> list[str]:
    return [p.name for p in (workdir / "checkpoints").iterdir() if "tmp" in p.name]


def _launch(*args, cwd_root=ROOT):
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(cwd_root))
    env.pop("XLA_FLAGS", None)
    return subprocess.run([sys.executable, str(cwd_root / "launch" / "train.py"), "--config",
                           str(cwd_root / "configs" / "pose.py") + ":tiny", *map(str, args)],
                          capture_output=True, text=True, timeout=600, env=env)


def test_nan_loss_finishes_the_save_in_flight_and_names_it(tmp_path):
    """The launcher, NaN at step 3 with a checkpoint every 2 steps: checkpoint 2 (being written in
    the background when the NaN is seen) is finished before the process exits, and it is the one
    the message names; exit status 3."""
    ex = _examples(6)
    third = epoch_plan([SHAPE[:3]] * 6, 2, 0, 0)[2]  # the records of step 3 (data seed 0)
    ex[int(third[0])]["target"][0, 0, 0, 0] = np.nan
    write_shard(tmp_path / "nan" / "s.array_record", [(e, {"clip_id": f"c{i}"}) for i, e in enumerate(ex)])
    r = _launch("--workdir", tmp_path / "run", f"--config.data.shards={tmp_path / 'nan'}",
                "--config.train.steps=6", "--config.train.checkpoint_every=2", "--config.train.tensorboard=False")
    assert r.returncode == 3, r.stderr[-2000:]
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: non-finite loss at step 3 ") and last.endswith("; last checkpoint: step 2"), last
    assert _steps(tmp_path / "run") == [2] and _leftovers(tmp_path / "run") == []
    ck = Checkpointer(tmp_path / "run" / "checkpoints", {})
    assert ck.committed_step() == 2 and ck.meta(2)["step"] == 2  # complete and readable
    ck.close()


def test_ctrl_c_finishes_the_save_in_flight(shards, tmp_path, caplog):
    def interrupt(step, metrics):
        if step == 3:
            raise KeyboardInterrupt

    with caplog.at_level(logging.ERROR, logger="dreamactor_jax.train"), pytest.raises(KeyboardInterrupt):
        train(_config(shards, 6, checkpoint_every=2), tmp_path, on_step=interrupt)
    assert "training stopped by KeyboardInterrupt at step 3; last checkpoint: step 2" in caplog.text
    assert _steps(tmp_path) == [2] and _leftovers(tmp_path) == []
    (tmp_path / "checkpoints" / "3.orbax-checkpoint-tmp-1").mkdir()  # what a save killed with the process leaves
    resumed = train(_config(shards, 4, checkpoint_every=2), tmp_path)
    assert resumed["resumed_from"] == 2 and resumed["step"] == 4
    assert _steps(tmp_path) == [2, 4] and _leftovers(tmp_path) == []  # removed at the start


def test_a_failed_background_save_is_discarded(tmp_path, monkeypatch, caplog):
    ck = Checkpointer(tmp_path, {"model": {}}, async_save=False)
    state = {"w": np.arange(3.0, dtype=np.float32)}
    ck.save(1, state)
    (tmp_path / "2.orbax-checkpoint-tmp-123").mkdir()  # what a save cut short leaves

    def fail(self):
        raise OSError("disk full")

    monkeypatch.setattr(type(ck.mngr), "wait_until_finished", fail)
    with caplog.at_level(logging.ERROR, logger="dreamactor_jax.train"):
        assert ck.finish() == 1
    assert "checkpoint save failed and was discarded: OSError: disk full" in caplog.text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1"]
    monkeypatch.undo()
    ck.close()


def test_resume_with_changed_data_is_refused_unless_allowed(shards, tmp_path, caplog):
    train(_config(shards, 2), tmp_path / "run")
    cases = {
        r"seed: checkpoint 0 vs run 1": lambda c: setattr(c.data, "seed", 1),
        r"global_batch: checkpoint 2 vs run 4": lambda c: setattr(c.data, "global_batch", 4),
        r"augmentation.pose_augmentation: checkpoint True vs run False":
            lambda c: setattr(c.preprocess, "pose_augmentation", False),
    }
    for match, change in cases.items():
        c = _config(shards, 4)
        change(c)
        with pytest.raises(ValueError, match=rf"resume: the data differ .*{match}.*allow_data_change=True"):
            train(c, tmp_path / "run")
    more = tmp_path / "more"
    shutil.copytree(shards, more)
    write_shard(more / "extra.array_record", [(e, {"clip_id": f"x{i}"}) for i, e in enumerate(_examples(2, 7))])
    with pytest.raises(ValueError, match=r"shards added: extra.array_record"):
        train(_config(more, 4), tmp_path / "run")
    victim = sorted(more.glob("synthetic-*.array_record"))[0]
    write_shard(victim, [(e, {"clip_id": f"y{i}"}) for i, e in enumerate(_examples(2, 8))])
    (more / "extra.array_record").unlink()
    sidecar_path(more / "extra.array_record").unlink()
    with pytest.raises(ValueError, match=rf"shards changed \(size, records or index\): {victim.name}"):
        train(_config(more, 4), tmp_path / "run")
    c = _config(more, 4)
    c.resume.allow_data_change = True
    with caplog.at_level(logging.WARNING, logger="dreamactor_jax.train"):
        out = train(c, tmp_path / "run")
    assert out["resumed_from"] == 2 and out["step"] == 4
    assert f"resuming with changed data (resume.allow_data_change): shards changed (size, records or index): {victim.name}" in caplog.text


def test_missing_index_or_partial_set_is_an_error_naming_the_file(shards, tmp_path):
    d = tmp_path / "shards"
    shutil.copytree(shards, d)
    first, second = sorted(d.glob("*.array_record"))
    sidecar_path(first).unlink()
    with pytest.raises(ValueError, match=rf"shard {first}: its index {sidecar_path(first).name} is missing"):
        train(_config(d, 2), tmp_path / "a")
    first.unlink()
    with pytest.raises(ValueError, match=r"incomplete: 1 of 2 shards missing, e.g. synthetic-00000-of-00002"):
        train(_config(d, 2), tmp_path / "b")


def test_synthetic_shards_appear_whole_or_not_at_all(tmp_path, monkeypatch):
    real = trainer.write_synthetic_shards

    def dies_half_way(folder, *a, **kw):
        real(folder, *a, **{**kw, "shards": 1})  # the first shard written ...
        raise KeyboardInterrupt  # ... then the process is stopped

    monkeypatch.setattr(trainer, "write_synthetic_shards", dies_half_way)
    c = _config(None, 1)
    with pytest.raises(KeyboardInterrupt):
        train(c, tmp_path)
    assert not (tmp_path / "synthetic_shards").exists()
    assert not [p for p in tmp_path.iterdir() if "synthetic_shards" in p.name]  # no temporary left
    monkeypatch.undo()
    out = train(c, tmp_path)
    assert out["step"] == 1 and len(list((tmp_path / "synthetic_shards").glob("*.array_record"))) == 2
