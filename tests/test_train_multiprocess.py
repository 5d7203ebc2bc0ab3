"""Two processes on one machine (CPU, jax.distributed on localhost) train, checkpoint and resume."""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from dreamactor_jax.data.synthetic import write_synthetic_shards

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 900  # hang guard; the test takes ~1 min on an idle 2-core machine
# XLA's persistent cache, shared by the processes and the resume (keys include jax version and flags)
CACHE = Path(tempfile.gettempdir()) / "dreamactor-jax-test-xla-cache"


def _free_port() -> int:
    import portpicker
    return portpicker.pick_unused_port()


def _launch(workdir, shards, steps, stop_after=None):
    port = _free_port()
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT), JAX_COMPILATION_CACHE_DIR=str(CACHE),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    env.pop("XLA_FLAGS", None)
    procs = []
    for pid in range(2):
        cmd = [sys.executable, str(ROOT / "launch" / "train.py"),
               "--config", str(ROOT / "configs" / "pose.py") + ":tiny", "--workdir", str(workdir),
               f"--config.data.shards={shards}", f"--config.train.steps={steps}",
               "--config.train.log_every=1", "--config.train.tensorboard=False",
               f"--coordinator_address=localhost:{port}", "--num_processes=2", f"--process_id={pid}"]
        if stop_after:
            cmd.append(f"--stop_after={stop_after}")
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outs = []
    for p in procs:
        try:
            out, err = p.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:  # a hang guard only: kill both, show what they said
            for q in procs:
                q.kill()
            out, err = p.communicate()
            pytest.fail(f"2-process run did not finish in {TIMEOUT_S} s; stderr tail:\n{err[-3000:]}")
        outs.append((p.returncode, out, err))
    for rc, out, err in outs:
        assert rc == 0, err[-3000:]
    return outs


@pytest.mark.slow
def test_two_processes_train_checkpoint_and_resume(tmp_path):
    shards = tmp_path / "shards"
    write_synthetic_shards(shards, [(2, 4, 8)], clips_per_shape=4, shards=2, channels=16, text_len=8,
                           text_dim=32, pooled_dim=24)
    work = tmp_path / "run"
    first = _launch(work, shards, steps=4, stop_after=2)
    ck = work / "checkpoints" / "2"
    assert ck.is_dir()
    names = {p.name for p in (ck / "data").iterdir()}
    assert {"process_0-of-2.json", "process_1-of-2.json"} <= names  # each process's data position
    assert "done: step 2 (resumed from None)" in first[0][1]
    second = _launch(work, shards, steps=4)
    assert "done: step 4 (resumed from 2)" in second[0][1]
    assert (work / "checkpoints" / "4").is_dir()
