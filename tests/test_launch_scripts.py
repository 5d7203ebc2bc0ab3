"""The pod and cluster launchers (launch/tpu/train.sh, launch/slurm/train.sbatch), without a pod.

Static checks: `bash -n`, ShellCheck when installed, strict mode, --help. Then each script's dry run
prints the commands it would run, and the command that would run on every worker is executed
here, in a sandbox HOME with a stand-in `launch/train.py` that records its arguments: so the
quoting, the virtualenv and log handling and the exit code are checked, not only the text.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TPU = ROOT / "launch" / "tpu" / "train.sh"
SLURM = ROOT / "launch" / "slurm" / "train.sbatch"
SCRIPTS = (TPU, SLURM)


def _run(argv, env=None, cwd=None):
    full = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "TPU_NAME", "ZONE"))}
    full.update(env or {})
    return subprocess.run(argv, capture_output=True, text=True, env=full, cwd=cwd, timeout=60)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_static_checks(script):
    assert _run(["bash", "-n", str(script)]).returncode == 0
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash\n") and "\nset -euo pipefail\n" in text
    assert script.stat().st_mode & stat.S_IXUSR, f"{script} is not executable"
    assert "eval " not in text  # arguments are passed as arrays, never re-parsed
    help_ = _run(["bash", str(script), "--help"])
    assert help_.returncode == 0 and "launch/train.py" in help_.stdout
    if shutil.which("shellcheck"):
        lint = _run(["shellcheck", str(script)])
        assert lint.returncode == 0, lint.stdout


def _fake_repo(home: Path, exit_code: int = 0) -> Path:
    """HOME/dreamactor-jax with a launch/train.py that writes its argv and environment, and a venv."""
    repo = home / "dreamactor-jax"
    (repo / "launch").mkdir(parents=True)
    (repo / "launch" / "train.py").write_text(
        "import json, os, sys\n"
        "print(json.dumps({'argv': sys.argv[1:], 'venv': os.environ.get('IN_VENV'),\n"
        "                  'env': {k: v for k, v in os.environ.items() if k.startswith(('MEGASCALE', 'LIBTPU'))}}))\n"
        f"sys.exit({exit_code})\n")
    (repo / ".venv" / "bin").mkdir(parents=True)
    (repo / ".venv" / "bin" / "activate").write_text("export IN_VENV=yes\n")
    return repo


def _fake_bin(tmp: Path) -> Path:
    """A `curl` that answers the TPU metadata query with worker number 3 (no network)."""
    b = tmp / "bin"
    b.mkdir()
    (b / "curl").write_text("#!/bin/sh\necho 3\n")
    (b / "curl").chmod(0o755)
    return b


def _remote_commands(stdout: str) -> list[list[str]]:
    return [shlex.split(line) for line in stdout.splitlines() if line.startswith("gcloud compute tpus tpu-vm ssh")]


def test_tpu_dry_run_and_what_each_worker_runs(tmp_path):
    args = ["--config", "configs/pose.py", "--workdir", "gs://bucket/runs/a b", "--config.optim.lr=1e-5", "it's"]
    out = _run(["bash", str(TPU), "--dry-run", "--tpu", "my-v5p-64", "--zone", "us-east5-a", "--run", "r1",
                "--env", "LIBTPU_INIT_ARGS=--xla_a=1 --xla_b=2", "--", *args])
    assert out.returncode == 0, out.stderr
    (cmd,) = _remote_commands(out.stdout)
    assert cmd[:8] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "my-v5p-64", "--zone", "us-east5-a"]
    assert "--worker=all" in cmd and cmd[-2] == "--command"
    assert "MEGASCALE" not in cmd[-1]  # one slice: no multislice variables

    home = tmp_path / "home"
    _fake_repo(home)
    env = {"HOME": str(home), "PATH": f"{_fake_bin(tmp_path)}:{os.environ['PATH']}"}
    worker = _run(["bash", "-c", cmd[-1]], env=env, cwd=tmp_path)
    assert worker.returncode == 0, worker.stderr
    seen = json.loads(worker.stdout.strip().splitlines()[-1])
    assert seen["argv"] == ["--distributed", *args] and seen["venv"] == "yes"
    assert seen["env"] == {"LIBTPU_INIT_ARGS": "--xla_a=1 --xla_b=2"}
    log = home / "dreamactor-logs" / "r1.slice0.worker3.log"  # one log per host, named by worker number
    assert json.loads(log.read_text().strip().splitlines()[-1]) == seen


def test_tpu_worker_failure_is_the_exit_code(tmp_path):
    out = _run(["bash", str(TPU), "--dry-run", "--tpu", "t", "--zone", "z", "--run", "r2", "--", "--workdir", "w"])
    (cmd,) = _remote_commands(out.stdout)
    home = tmp_path / "home"
    _fake_repo(home, exit_code=3)
    env = {"HOME": str(home), "PATH": f"{_fake_bin(tmp_path)}:{os.environ['PATH']}"}
    assert _run(["bash", "-c", cmd[-1]], env=env, cwd=tmp_path).returncode == 3
    assert (home / "dreamactor-logs" / "r2.slice0.worker3.log").is_file()


def test_tpu_multislice_dry_run():
    out = _run(["bash", str(TPU), "--dry-run", "--tpu", "slice-a,slice-b", "--zone", "z", "--project", "p",
                "--gcs-logs", "gs://bucket/logs", "--", "--workdir", "gs://bucket/run"])
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert any(line.startswith("gcloud compute tpus tpu-vm describe slice-a --zone z --project p") for line in lines)
    cmds = _remote_commands(out.stdout)
    assert [c[5] for c in cmds] == ["slice-a", "slice-b"]
    for i, c in enumerate(cmds):
        remote = c[-1]
        assert f"MEGASCALE_SLICE_ID={i}" in remote and "MEGASCALE_NUM_SLICES=2" in remote
        assert "MEGASCALE_COORDINATOR_ADDRESS=" in remote and f".slice{i}.worker$W.log" in remote
        assert "gcloud storage cp" in remote and "gs://bucket/logs/" in remote


@pytest.mark.parametrize("argv, message", [
    ([], "--tpu: required"),
    (["--tpu", "t"], "--zone: required"),
    (["--tpu", "t", "--zone", "z", "--env", "1BAD=x"], "expected KEY=VALUE"),
    (["--tpu", "t", "--zone", "z", "--workdir", "w"], "unknown option --workdir"),
    (["--tpu", "t", "--zone", "z", "--gcs-logs", "/tmp/x"], "expected a gs:// URI"),
])
def test_tpu_bad_arguments(argv, message):
    out = _run(["bash", str(TPU), "--dry-run", *argv])
    assert out.returncode == 2 and message in out.stderr and out.stdout == ""


def test_slurm_dry_run_and_what_each_node_runs(tmp_path):
    home = tmp_path / "home"
    repo = _fake_repo(home)
    args = ["--config", "configs/pose.py", "--workdir", "runs/a b"]
    out = _run(["bash", str(SLURM), "--", *args], env={"DRY_RUN": "1", "REPO": str(repo)})
    assert out.returncode == 0, out.stderr
    cmd = shlex.split(out.stdout.strip().splitlines()[-1])
    assert cmd[0] == "srun" and "--kill-on-bad-exit=1" in cmd
    assert cmd[cmd.index("--output") + 1] == f"{repo}/logs/dreamactor-train-JOBID.%N.log"  # one log per node
    step = cmd[cmd.index("bash"):]  # what srun starts on every node
    node = _run(step, cwd=tmp_path)
    assert node.returncode == 0, node.stderr
    seen = json.loads(node.stdout.strip().splitlines()[-1])
    assert seen["argv"] == ["--distributed", *args] and seen["venv"] == "yes"
    refused = _run(["bash", str(SLURM), *args])  # not under sbatch, not a dry run
    assert refused.returncode == 2 and "not inside a SLURM job" in refused.stderr
