"""Orbax checkpoints of a training run: adapter, optimizer state, step, RNG and the Grain iterator.

One checkpoint (`<workdir>/checkpoints/<step>/`) holds three items:
- `state`: the train-state pytree `{step, lora, opt_state, rng}` (sharded arrays, Orbax PyTree),
- `data`: the Grain iterator position, one JSON per process (grain's Orbax handler),
- `meta`: JSON with the config *fingerprint* (model architecture + LoRA shape), the *data
  fingerprint* (shard names, sizes, record counts and index hashes; data seed, global batch,
  shuffling, augmentation) and the full config.
Resuming from a checkpoint whose fingerprint differs from the run's is an error, not a silent
partial load; so is a different data fingerprint (the batches would differ from an uninterrupted
run) unless the run allows it (`resume.allow_data_change`), which then logs what changed.
A save runs in the background (async); `finish()` waits for it and reports the last *committed*
step, or discards a save that failed; a killed save leaves only a temporary folder, removed at the
next start. `PreemptionGuard` turns SIGTERM into "save at the next step, then exit".
"""

from __future__ import annotations

import logging
import shutil
import signal
import time
from pathlib import Path
from typing import Any, Mapping

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp

from dreamactor_jax import run_folder
from dreamactor_jax.utils import resolve_path

log = logging.getLogger("dreamactor_jax.train")


def diff_fingerprints(saved: Mapping, current: Mapping, prefix: str = "") -> list[str]:
    """Readable differences between two nested fingerprint dicts."""
    out = []
    for k in sorted(set(saved) | set(current)):
        a, b = saved.get(k, "<absent>"), current.get(k, "<absent>")
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += diff_fingerprints(a, b, f"{prefix}{k}.")
        elif a != b and not (isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and list(a) == list(b)):
            out.append(f"{prefix}{k}: checkpoint {a!r} vs run {b!r}")
    return out


class Checkpointer:
    """Keep-N Orbax checkpoint manager for one run directory."""

    def __init__(self, directory: str | Path, fingerprint: Mapping, config: Mapping | None = None,
                 keep: int = 3, async_save: bool = True, data_fingerprint: Mapping | None = None,
                 writer: bool = False):
        self.directory = resolve_path(directory)  # local (absolute) or gs://
        self.fingerprint = dict(fingerprint)
        self.data_fingerprint = None if data_fingerprint is None else json_normal(data_fingerprint)
        self.config = dict(config or {})
        self.mngr = run_folder.manager(
            self.directory,
            ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=async_save,
                                         # only the run that writes here may remove the temporary
                                         # folders of its killed saves (a reader, e.g. a warm start,
                                         # could race a live save)
                                         cleanup_tmp_directories=writer))

    def latest_step(self) -> int | None:
        return self.mngr.latest_step()

    def all_steps(self) -> list[int]:
        return list(self.mngr.all_steps())

    def meta(self, step: int) -> dict:
        return run_folder.restore_meta(self.mngr, step)

    def check_compatible(self, step: int) -> None:
        """Raises ValueError if checkpoint `step` was made with another model/LoRA config."""
        meta = self.meta(step)
        diffs = diff_fingerprints(json_normal(meta.get("fingerprint", {})), json_normal(self.fingerprint))
        if diffs:
            raise ValueError(f"checkpoint {self.directory}/{step} was made with another config "
                             f"({'; '.join(diffs[:4])}); use a fresh --workdir")

    def data_changes(self, step: int) -> list[str] | None:
        """What differs between checkpoint `step`'s data and this run's ([] = the same, None = the
        checkpoint predates data fingerprints)."""
        saved = self.meta(step).get("data")
        if saved is None or self.data_fingerprint is None:
            return None
        return describe_data_change(saved, self.data_fingerprint)

    def save(self, step: int, state: Any, data_iter: Any = None, force: bool = False) -> bool:
        meta = {"fingerprint": json_normal(self.fingerprint), "config": json_normal(self.config), "step": int(step)}
        if self.data_fingerprint is not None:
            meta["data"] = self.data_fingerprint
        args = {"state": ocp.args.StandardSave(state), "meta": ocp.args.JsonSave(meta)}
        if data_iter is not None:
            args["data"] = grain.checkpoint.CheckpointSave(data_iter)
        return self.mngr.save(int(step), args=ocp.args.Composite(**args), force=force)

    def restore(self, abstract_state: Any, data_iter: Any = None, step: int | None = None) -> Any:
        """Restores `state` into the shardings/dtypes of `abstract_state` (and the iterator in place)."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise ValueError(f"checkpoint dir {self.directory}: no checkpoint to restore")
        self.check_compatible(step)
        args = {"state": ocp.args.StandardRestore(abstract_state)}
        if data_iter is not None:
            args["data"] = grain.checkpoint.CheckpointRestore(data_iter)
        return self.mngr.restore(step, args=ocp.args.Composite(**args)).state

    def wait(self) -> None:
        self.mngr.wait_until_finished()

    def committed_step(self) -> int | None:
        """The latest step whose checkpoint is complete on disk (a save in flight does not count)."""
        self.mngr.reload()
        return self.mngr.latest_step()

    def finish(self) -> int | None:
        """Finishes the save in flight, or discards it if it fails; returns the last committed step.

        For every exit path of a training loop: a background save is either completed or leaves
        nothing but a temporary folder (removed here, and by the next start), never a step that
        looks saved but is not.
        """
        try:
            self.mngr.wait_until_finished()
        except Exception as e:  # noqa: BLE001 - a failed background save: discard it, say so
            log.error("checkpoint save failed and was discarded: %s: %s", type(e).__name__, str(e)[:300])
            for tmp in self.directory.glob("*.orbax-checkpoint-tmp*"):
                shutil.rmtree(tmp, ignore_errors=True)
        return self.committed_step()

    def close(self) -> None:
        self.mngr.wait_until_finished()
        self.mngr.close()


def restore_lora(directory: str | Path, fingerprint: Mapping, shardings: Any = None) -> Any:
    """The adapter of the latest checkpoint in `directory` (a workdir or its `checkpoints/`): warm start.

    The fingerprint must match (same backbone and LoRA shape and targets), else a one-line
    ValueError naming the differences; optimizer state and step are not taken.
    """
    if not resolve_path(directory).is_dir():
        raise FileNotFoundError(f"init_lora {directory}: no such checkpoint folder")
    with run_folder.open_run(directory, what="init_lora") as run:
        diffs = diff_fingerprints(json_normal(run.fingerprint), json_normal(fingerprint))
        if diffs:
            raise ValueError(f"init_lora {directory}: its adapter (step {run.step}) does not fit this run "
                             f"({'; '.join(diffs[:3])}); warm-start from a run with the same model and lora settings")
        lora = run.read_lora()
    if shardings is not None:
        lora = jax.device_put(lora, shardings)
    return lora


def describe_data_change(saved: Mapping, current: Mapping) -> list[str]:
    """Readable differences between two data fingerprints (`trainer.data_fingerprint`)."""
    saved, current = json_normal(saved), json_normal(current)
    out = []
    old_shards = {s["name"]: s for s in saved.get("shards", [])}
    new_shards = {s["name"]: s for s in current.get("shards", [])}
    gone, added = sorted(set(old_shards) - set(new_shards)), sorted(set(new_shards) - set(old_shards))
    changed = sorted(n for n in set(old_shards) & set(new_shards) if old_shards[n] != new_shards[n])
    for what, names in (("gone", gone), ("added", added), ("changed (size, records or index)", changed)):
        if names:
            more = f" (+{len(names) - 3} more)" if len(names) > 3 else ""
            out.append(f"shards {what}: {', '.join(names[:3])}{more}")
    rest_old = {k: v for k, v in saved.items() if k != "shards"}
    rest_new = {k: v for k, v in current.items() if k != "shards"}
    out += diff_fingerprints(rest_old, rest_new)
    return out


def json_normal(x: Any) -> Any:
    """Tuples to lists, numpy scalars to Python, so fingerprints compare equal after a JSON round trip."""
    if isinstance(x, Mapping):
        return {str(k): json_normal(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_normal(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    return x


class PreemptionGuard:
    """SIGTERM sets a flag instead of killing the process; the loop saves a checkpoint and exits.

    With several processes the flag is OR-ed across them at every step (`should_stop`, a
    `process_allgather` of one int32 per process), so every process stops after the same step even
    when only one host was signalled. `check_seconds` accumulates the time those checks take.
    """

    def __init__(self, signals=(signal.SIGTERM,)):
        self.signals = signals
        self.requested = False
        self._previous = {}
        self.check_seconds = 0.0
        self.checks = 0

    def _handler(self, signum, frame):
        self.requested = True

    def __enter__(self) -> "PreemptionGuard":
        for s in self.signals:
            try:
                self._previous[s] = signal.signal(s, self._handler)
            except ValueError:  # not the main thread: no handler, never preempted
                pass
        return self

    def __exit__(self, *exc) -> None:
        for s, h in self._previous.items():
            signal.signal(s, h)

    def should_stop(self) -> bool:
        """True if any process was asked to stop (same answer on every process; call on all of them)."""
        if jax.process_count() == 1:
            return self.requested
        from jax.experimental import multihost_utils
        t0 = time.perf_counter()
        flags = multihost_utils.process_allgather(np.asarray(self.requested, np.int32))
        self.check_seconds += time.perf_counter() - t0
        self.checks += 1
        return bool(np.any(flags))
