"""Every command answers `--help` with exit 0 and its flags, as a new user would try it.

The entry points are found, not listed: launch/*.py, tools/*.py, benchmarks/*.py and the
`python -m dreamactor_jax...` modules, each file with an `if __name__ == "__main__":` block. They run
in parallel (a few import JAX before parsing their flags).
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from dreamactor_jax.utils import wants_help

ROOT = Path(__file__).resolve().parents[1]


def _is_entry(path: Path) -> bool:
    return 'if __name__ == "__main__":' in path.read_text()


def entry_points() -> list[tuple[str, list[str]]]:
    out = []
    for folder in ("launch", "tools", "benchmarks"):
        for f in sorted((ROOT / folder).glob("*.py")):
            if _is_entry(f):
                out.append((f"{folder}/{f.name}", [sys.executable, str(f)]))
    for f in sorted((ROOT / "dreamactor_jax").rglob("*.py")):
        if _is_entry(f):
            mod = ".".join(f.relative_to(ROOT).with_suffix("").parts)
            out.append((mod, [sys.executable, "-m", mod]))
    return out


def _help(cmd: list[str]) -> tuple[int, str]:
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))
    p = subprocess.run(cmd + ["--help"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout + p.stderr


def test_every_entry_point_answers_help():
    entries = entry_points()
    names = [n for n, _ in entries]
    for must in ("launch/train.py", "launch/sample.py", "tools/preprocess.py", "tools/make_random_base.py",
                 "dreamactor_jax.toy.demo", "dreamactor_jax.toy.report"):
        assert must in names, f"{must} not found among the entry points {names}"
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda e: _help(e[1]), entries))
    bad = [f"{n}: exit {rc}: {out.strip().splitlines()[-1:] }" for (n, _), (rc, out) in zip(entries, results)
           if rc != 0 or "usage" not in out.lower() and "flags:" not in out]
    assert not bad, "\n".join(bad)
    for (name, _), (_, out) in zip(entries, results):
        if name in ("launch/train.py", "tools/preprocess.py"):  # absl flags: the docstring and every flag
            assert "--config" in out and "--workdir" in out if name == "launch/train.py" else "--input" in out


def test_wants_help_stops_at_double_dash():
    assert wants_help(["--config", "x", "--help"]) and wants_help(["-h"])
    assert not wants_help(["--pairs", "p.jsonl", "--", "--help"]) and not wants_help(["--helpme"])
