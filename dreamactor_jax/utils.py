"""Small shared helpers: local or cloud-storage paths, atomic file output, one-line errors and `--help`
for command-line tools."""

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


# ----------------------------------------------------------------------------------------------
# paths: local, or on an object store (gs://, s3://, ...) through etils.epath
# ----------------------------------------------------------------------------------------------

REMOTE_SCHEMES = ("gs://", "s3://", "az://", "hf://")


def is_remote(path: str | os.PathLike) -> bool:
    """True for object-store URIs (gs://, s3://, az://, hf://)."""
    return str(path).startswith(REMOTE_SCHEMES)


def as_path(path: str | os.PathLike):
    """A path object for a local path (`pathlib.Path`, `file://` stripped) or a remote URI
    (`etils.epath.Path`: same pathlib API; gs:// needs `gcsfs` or TensorFlow installed)."""
    if is_remote(path):
        from etils import epath

        return epath.Path(str(path))
    text = os.fspath(path)
    return Path(text[len("file://"):] if text.startswith("file://") else text)


def resolve_path(path: str | os.PathLike):
    """`as_path`, made absolute when local (a run folder must not depend on the working directory)."""
    p = as_path(path)
    return p if is_remote(p) else p.absolute()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, suffix: str | None = None) -> Iterator[Path]:
    """Yields a local temporary path; on success it becomes `path` all at once, on failure it goes.

    A reader never sees a half-written output. Local `path`: the temporary is a sibling (file or
    folder) renamed onto `path` with `os.replace` (atomic on one filesystem). Remote `path` (an
    object store, where rename is copy + delete): the temporary is a local file, uploaded to `path`
    in one write once complete; an object store creates the object only when its upload finishes,
    so readers see the old object or the new one. Folders cannot be replaced atomically on an
    object store: a remote folder is an error (write its files one by one; shards mark a finished
    shard by writing its sidecar last, checkpoints use Orbax's own commit protocol).
    `suffix` (e.g. ".mp4") keeps the extension for writers that sniff it.
    """
    if is_remote(path):
        with _atomic_remote(as_path(path), suffix) as tmp:
            yield tmp
        return
    path = as_path(path)
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


@contextlib.contextmanager
def _atomic_remote(dest, suffix: str | None) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="dreamactor-upload-") as folder:
        tmp = Path(folder) / f"{dest.name}.tmp{dest.suffix if suffix is None else suffix}"
        yield tmp
        if tmp.is_dir():
            raise ValueError(f"{dest}: a folder cannot be written atomically to an object store; "
                             "write its files one by one")
        if not tmp.is_file():
            raise FileNotFoundError(f"{dest}: the writer produced no file")
        with open(tmp, "rb") as src:
            out = dest.open("wb")
            try:
                shutil.copyfileobj(src, out, 8 << 20)
            except BaseException:
                discard = getattr(out, "discard", None)  # fsspec: drop the upload, write nothing
                if discard is not None:
                    discard()
                raise
            out.close()


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


HELP_FLAGS = ("-h", "--help", "--helpshort", "--helpfull")


def wants_help(argv) -> bool:
    """True when a help flag stands before any `--` among `argv` (without the program name)."""
    argv = list(argv)
    return any(a in HELP_FLAGS for a in (argv[:argv.index("--")] if "--" in argv else argv))


FLAG_ERRORS = (AttributeError, KeyError, ValueError, TypeError)  # and absl's flags.Error
QUOTES = "'\""


def absl_main(main, argv=None) -> None:
    """The entry of a command with absl flags (`--config` files, launch/train.py, tools/preprocess.py).

    `--help` prints the command's docstring and its flags, exit 0 (absl's own help exits 1, and only
    after `app.run`); a bad flag or a mistyped `--config.x` key is one line on stderr, exit 2; then
    `main(argv)` runs under `cli_main` (one-line errors, clean SIGTERM).
    """
    from absl import app, flags

    argv = list(sys.argv if argv is None else argv)
    if wants_help(argv[1:]):
        doc = (getattr(sys.modules.get("__main__"), "__doc__", None) or "").strip()
        print(f"{doc}\n\nflags:\n{flags.FLAGS.main_module_help()}" if doc else flags.FLAGS.main_module_help())
        sys.exit(0)
    try:
        rest = flags.FLAGS(argv)
    except (flags.Error, *FLAG_ERRORS) as e:
        print(f"error: bad flag: {flag_error(e)}", file=sys.stderr)
        sys.exit(2)
    app.run(lambda a: cli_main(main, a), flags_parser=lambda _: rest)


def flag_error(e: Exception) -> str:
    """One line of a flag parser's error (absl's, or a config file's own: its last line)."""
    msg = " ".join(str(e).replace("\\n", " ").replace("\\'", "'").split())
    if "Traceback" in msg:  # an error raised by the config file: keep its last line
        msg = msg.rsplit("Error: ", 1)[-1]
    if isinstance(e, (AttributeError, KeyError)):  # str() of "'name' Did you mean ...?" in quotes
        name, _, hint = msg.strip(QUOTES).partition("'")
        return f"no such config field '{name}'" + (f" ({hint.strip()})" if hint.strip() else "")
    return msg[1:-1] if len(msg) > 1 and msg[0] == msg[-1] and msg[0] in QUOTES else msg


def load_config_file(spec: str, overrides=()):
    """A config file `FILE[:ARG]` and `--config.key=value` overrides, read as launch/train.py's `--config`
    flag reads them (ml_collections' config_flags, the config locked: a mistyped key is an error) by
    commands whose other arguments are argparse's. Errors: ValueError with one line."""
    from absl import flags
    from ml_collections import config_flags

    bad = [a for a in overrides if a.startswith("-") and not a.startswith("--config.")]
    if bad:
        raise ValueError(f"unrecognized arguments: {' '.join(bad)}")
    if not Path(spec.split(":", 1)[0]).is_file():
        raise FileNotFoundError(f"--config {spec}: no such config file")
    argv = ["config", f"--config={spec}", *overrides]
    fv = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "config file", flag_values=fv, lock_config=True, sys_argv=argv)
    try:
        rest = fv(argv)
    except (flags.Error, *FLAG_ERRORS) as e:
        raise ValueError(f"--config: {flag_error(e)}") from None
    if len(rest) > 1:
        raise ValueError(f"unrecognized arguments: {' '.join(rest[1:])}")
    return fv.config
