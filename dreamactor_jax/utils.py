"""Small shared helpers: atomic file output and one-line errors for command-line tools."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import threading
import tempfile
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, suffix: str | None = None) -> Iterator[Path]:
    """Yields a temporary path next to `path`; renames it onto `path` only if the block succeeds.

    Works for files and folders. Nothing is left behind on failure, so a reader never sees a
    half-written output. `suffix` (e.g. ".mp4") keeps the extension for writers that sniff it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix is None:
        suffix = path.suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    os.unlink(tmp)
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def exit_on_signals(signals=(signal.SIGTERM, signal.SIGHUP)) -> None:
    """Turns SIGTERM / SIGHUP into `SystemExit(128 + signum)`, so `finally` blocks and `atomic_path`
    remove their temporaries instead of the process dying with them on disk. Handlers already set
    (and ones set later, e.g. the trainer's save-on-SIGTERM) take precedence."""
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum, frame):
        raise SystemExit(128 + signum)
    for s in signals:
        if signal.getsignal(s) is signal.SIG_DFL:
            signal.signal(s, handler)


def cli_main(main, argv=None) -> None:
    """Runs `main(argv)`; a ValueError/FileNotFoundError becomes one line on stderr and exit code 2.
    SIGTERM exits cleanly (temporary files removed, `exit_on_signals`)."""
    exit_on_signals()
    try:
        code = main(argv)
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    sys.exit(code or 0)
