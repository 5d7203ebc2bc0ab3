"""Running a command's `main` in the test process: its file loaded as a module, its exit status
returned (`utils.cli_main`: one-line errors, exit 2), so tests assert on statuses and stderr."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from dreamactor_jax.utils import cli_main

ROOT = Path(__file__).resolve().parents[1]


def load_tool(relpath: str):
    """The module of the command at `relpath` (e.g. "tools/evaluate.py"), freshly loaded."""
    spec = importlib.util.spec_from_file_location(Path(relpath).stem + "_tool", ROOT / relpath)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run_main(main, argv) -> int:
    """`main(argv)` (arguments made strings) under `cli_main`: its exit status."""
    try:
        cli_main(main, [str(a) for a in argv])
    except SystemExit as e:
        return e.code
    return 0


def run_tool(relpath: str, argv) -> int:
    return run_main(load_tool(relpath).main, argv)
