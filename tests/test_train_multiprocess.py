"""Two processes on one machine (CPU, jax.distributed on localhost): preempted, checkpointed, resumed."""

import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from dreamactor_jax.data.synthetic import write_synthetic_shards
from dreamactor_jax.train.trainer import EXIT_PREEMPTED

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 900  # hang guard; the test takes ~1.5 min on an idle 2-core machine (three 2-process runs)
# XLA's persistent cache, shared by the processes and the resume (keys include jax version and flags)
CACHE = Path(tempfile.gettempdir()) / "dreamactor-jax-test-xla-cache"


def _free_port() -> int:
    import portpicker
    return portpicker.pick_unused_port()


def _start(workdir, shards, steps, stop_after=None):
    """Both processes of one run, their stdout/stderr drained into lists by threads (no pipe stalls)."""
    port = _free_port()
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT), JAX_COMPILATION_CACHE_DIR=str(CACHE),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    env.pop("XLA_FLAGS", None)
    run = []
    for pid in range(2):
        cmd = [sys.executable, str(ROOT / "launch" / "train.py"),
               "--config", str(ROOT / "configs" / "pose.py") + ":tiny", "--workdir", str(workdir),
               f"--config.data.shards={shards}", f"--config.train.steps={steps}",
               "--config.train.log_every=1", "--config.train.checkpoint_every=100",
               "--config.train.tensorboard=False",
               f"--coordinator_address=localhost:{port}", "--num_processes=2", f"--process_id={pid}"]
        if stop_after:
            cmd.append(f"--stop_after={stop_after}")
        p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out, err = [], []
        for stream, sink in ((p.stdout, out), (p.stderr, err)):
            threading.Thread(target=lambda st=stream, sk=sink: [sk.append(line) for line in st], daemon=True).start()
        run.append((p, out, err))
    return run


def _finish(run, codes=(0, 0)):
    deadline = time.time() + TIMEOUT_S
    for p, _, _ in run:
        try:
            p.wait(timeout=max(deadline - time.time(), 1))
        except subprocess.TimeoutExpired:  # a hang guard only: kill both, show what they said
            for q, _, _ in run:
                q.kill()
            pytest.fail(f"2-process run did not finish in {TIMEOUT_S} s; stderr tail:\n{''.join(run[0][2])[-3000:]}")
    time.sleep(0.2)  # let the reader threads take the last lines
    for (p, _, err), code in zip(run, codes):
        assert p.returncode == code, "".join(err)[-3000:]
    return [("".join(out), "".join(err)) for _, out, err in run]


def _losses(stderr: str) -> dict[int, float]:
    return {int(m[1]): float(m[2]) for m in re.finditer(r"step (\d+)/\d+  loss ([0-9.]+)", stderr)}


def _state(workdir: Path, step: int) -> dict:
    import orbax.checkpoint as ocp

    path = workdir / "checkpoints" / str(step) / "state"
    meta = ocp.PyTreeCheckpointHandler().metadata(path)
    meta = getattr(getattr(meta, "item_metadata", meta), "tree", meta)
    one = jax.sharding.SingleDeviceSharding(jax.devices()[0])  # saved over 2 processes, read on one
    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype, sharding=one), meta)
    return ocp.StandardCheckpointer().restore(path, target)


@pytest.mark.slow
def test_sigterm_on_one_host_stops_both_and_resume_equals_an_uninterrupted_run(tmp_path):
    """Two processes; SIGTERM reaches only process 1 after step 2. Both stop after the same step k
    (the flag is agreed every step), save it and exit 75; re-running resumes from k and ends with
    the parameters, optimizer state, data position and per-step losses of an uninterrupted run."""
    shards = tmp_path / "shards"
    write_synthetic_shards(shards, [(2, 4, 8)], clips_per_shape=4, shards=2, channels=16, text_len=8,
                           text_dim=32, pooled_dim=24)
    steps = 10
    straight = _finish(_start(tmp_path / "straight", shards, steps))
    assert f"done: step {steps} (resumed from None)" in straight[0][0]

    work = tmp_path / "run"
    run = _start(work, shards, steps)
    deadline = time.time() + TIMEOUT_S
    while not _losses("".join(run[0][2])).get(2) and time.time() < deadline and run[0][0].poll() is None:
        time.sleep(0.05)
    run[1][0].send_signal(signal.SIGTERM)  # one host preempted
    first = _finish(run, codes=(EXIT_PREEMPTED, EXIT_PREEMPTED))
    k = int(re.search(r"preempted: saved step (\d+)", first[0][0])[1])
    assert 2 <= k < steps, first[0]
    names = {p.name for p in (work / "checkpoints" / str(k) / "data").iterdir()}
    assert {"process_0-of-2.json", "process_1-of-2.json"} <= names  # both saved the same step
    assert "SIGTERM: saved step" not in first[1][1]  # the message comes from process 0 only
    timing = re.search(r"stop-flag agreement across 2 processes: ([0-9.]+) ms per step", first[0][1])
    assert timing, first[0][1][-2000:]

    second = _finish(_start(work, shards, steps))
    assert f"done: step {steps} (resumed from {k})" in second[0][0]
    resumed = {**_losses(first[0][1]), **_losses(second[0][1])}
    want = _losses(straight[0][1])
    assert sorted(resumed) == sorted(want) == list(range(1, steps + 1))
    np.testing.assert_allclose([resumed[i] for i in want], [want[i] for i in want], rtol=1e-6)
    a, b = _state(tmp_path / "straight", steps), _state(work, steps)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):  # adapter, optimizer, step, RNG
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=0, atol=1e-6)
    for pid in range(2):
        name = f"process_{pid}-of-2.json"
        assert (tmp_path / "straight" / "checkpoints" / str(steps) / "data" / name).read_text() == \
            (work / "checkpoints" / str(steps) / "data" / name).read_text()  # the same data position
