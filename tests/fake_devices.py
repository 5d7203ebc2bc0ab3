"""Runs a test file as a child process on 8 fake CPU devices (XLA's host device count is fixed
when jax starts, so multi-device tests run their `__main__` in a fresh interpreter)."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_on_fake_devices(path: str, count: int = 8, timeout: int = 600) -> str:
    """Runs `python path` with `count` fake CPU devices; asserts it exits 0 and returns its stdout."""
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={count}", JAX_PLATFORMS="cpu")
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, path], env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-4000:]
    return proc.stdout
