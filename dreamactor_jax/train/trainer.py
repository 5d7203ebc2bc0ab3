"""The training loop: `train(config, workdir)` in pieces (mesh, input, base, state from a checkpoint
or fresh, the loop with its progress log and stop report), called by `launch/train.py` and the tests."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any, Callable

import jax
import numpy as np

from dreamactor_jax import sharding
from dreamactor_jax.data.loader import make_dataset
from dreamactor_jax.data.shards import check_layout, list_shards, shard_fingerprint
from dreamactor_jax.data.synthetic import write_synthetic_shards
from dreamactor_jax.train import state as st
from dreamactor_jax.train.checkpoint import Checkpointer, PreemptionGuard, json_normal, restore_lora
from dreamactor_jax.train.step import batch_tokens, global_batch, make_train_step
from dreamactor_jax.utils import atomic_path, resolve_path

log = logging.getLogger("dreamactor_jax.train")


EXIT_PREEMPTED = 75  # launch/train.py's exit status after SIGTERM: checkpoint saved, re-run to resume


class NonFiniteLossError(FloatingPointError):
    """The loss or the gradient norm became NaN/inf; the state was left at its last finite value."""


def _synthetic_shards(config, spec: st.RunSpec, workdir: Path) -> Path:
    """Small synthetic shards in `workdir/synthetic_shards`, written once by process 0 into a
    temporary folder renamed into place, so an interrupted write never leaves a partial set."""
    folder = workdir / "synthetic_shards"
    if jax.process_index() == 0 and not folder.exists():
        shapes = [tuple(int(v) for v in s.split("x")) for s in config.data.synthetic_shapes.split(",")]
        with atomic_path(folder) as tmp:
            write_synthetic_shards(tmp, shapes, clips_per_shape=config.data.synthetic_clips, shards=2,
                                   seed=config.data.seed, layout=spec.flow.layout, channels=spec.model.out_channels,
                                   text_len=8, text_dim=spec.model.text_embed_dim,
                                   pooled_dim=spec.model.pooled_projection_dim,
                                   image_dim=spec.model.image_embed_dim, glyph_dim=spec.model.text_embed_2_dim)
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices("synthetic_shards")
    return folder


def data_fingerprint(config, shards: list[Path]) -> dict:
    """What must not change between a run and its resume for the batches to be the same: the
    shards (names, sizes, record counts, index hashes), the data seed, the global batch, the
    shuffling, and the augmentation the shards were made with (the trainer draws none itself)."""
    p = config.preprocess
    return {"shards": shard_fingerprint(shards), "seed": int(config.data.seed),
            "global_batch": int(config.data.global_batch), "shuffle": True,
            "augmentation": {"pose_augmentation": bool(p.pose_augmentation), "text_guidance": bool(p.text_guidance)}}


def _check_metrics(m: dict, step: int, indices: np.ndarray) -> dict:
    m = {k: float(v) for k, v in jax.device_get(m).items()}
    if not m["finite"]:
        raise NonFiniteLossError(
            f"non-finite loss at step {step} (loss {m['loss']}, grad_norm {m['grad_norm']}, lr {m['lr']:.3g}; "
            f"batch records {indices.tolist()}); the state was not updated. Lower optim.lr or check the data")
    return m


def make_base(config, spec: st.RunSpec, mesh) -> dict:
    """The frozen base: from `config.base_checkpoint`, or random from `config.seed` (tests)."""
    if config.base_checkpoint:
        return st.load_base(config.base_checkpoint, spec.model, mesh)
    return st.init_base(spec.model, jax.random.split(jax.random.PRNGKey(config.seed))[0], mesh,
                        fast_compile=config.train.fast_compile)


def _resume_checks(ckpt: Checkpointer, step: int, allow_data_change: bool) -> None:
    """Refuses a resume whose data differ from the checkpoint's (unless allowed: then says what)."""
    changes = ckpt.data_changes(step)
    if changes is None:
        log.warning("checkpoint %d has no data fingerprint (an older run): the data cannot be compared", step)
    elif changes and not allow_data_change:
        raise ValueError(f"resume: the data differ from checkpoint {ckpt.directory}/{step} "
                         f"({'; '.join(changes[:5])}), so the batches would not continue the run; "
                         f"pass --config.resume.allow_data_change=True to resume anyway, or use a fresh --workdir")
    elif changes:
        log.warning("resuming with changed data (resume.allow_data_change): %s", "; ".join(changes))


def _mesh(config, spec: st.RunSpec):
    """The device mesh, checked against the batch: (mesh, data-parallel ways)."""
    mesh = sharding.make_mesh(dict(config.mesh))
    data_ways = mesh.shape["data"] * mesh.shape["fsdp"]
    if config.data.global_batch % (data_ways * spec.grad_accum):
        raise ValueError(f"data.global_batch {config.data.global_batch}: must divide by the mesh's "
                         f"data x fsdp size {data_ways} times train.grad_accum {spec.grad_accum}")
    return mesh, data_ways


def _input(config, spec: st.RunSpec, workdir: Path, mesh) -> tuple[list[Path], Any]:
    """(the shard files, this process's batch iterator): the configured shards, or synthetic ones, made
    for the run's in-context layout (`objective.layout`; a shard of the other layout is refused)."""
    shards = config.data.shards
    if shards is None:
        if not config.data.synthetic:
            raise ValueError("data.shards: not set (a folder of shards from tools/preprocess.py), "
                             "and data.synthetic is off")
        shards = _synthetic_shards(config, spec, workdir)
    shard_paths = list_shards(shards)  # an unfinished shard or partial set is an error here
    check_layout(shard_paths, spec.flow.layout)
    ds = make_dataset(shard_paths, global_batch=config.data.global_batch, seed=config.data.seed,
                      process_index=jax.process_index(), process_count=jax.process_count(),
                      num_threads=config.data.num_threads, prefetch=config.data.prefetch,
                      worker_count=config.data.worker_count)
    # every process logs its share (launch/tpu and launch/slurm keep one log per host)
    log.info("%s; per-host batch %d of global %d (slice %d of every batch); reads records from %d shards "
             "(%s .. %s) by index", sharding.describe(mesh), config.data.global_batch // jax.process_count(),
             config.data.global_batch, jax.process_index(), len(shard_paths), shard_paths[0].name,
             shard_paths[-1].name)
    return shard_paths, iter(ds)


def _initial_state(config, spec: st.RunSpec, mesh, ckpt: Checkpointer, data_iter) -> tuple[dict, int | None]:
    """(the train state, the step resumed from or None): the run's latest checkpoint (with the data
    position), else a fresh state, its adapter warm-started from `init_lora` when given."""
    abstract, state_sh = st.state_shardings(spec, mesh)
    resumed_from = ckpt.latest_step()
    if resumed_from is not None:
        ckpt.check_compatible(resumed_from)
        _resume_checks(ckpt, resumed_from, bool((config.get("resume") or {}).get("allow_data_change", False)))
        state = ckpt.restore(abstract, data_iter, step=resumed_from)
        log.info("resumed from %s/%d", ckpt.directory, resumed_from)
        return state, resumed_from
    warm = None
    if config.init_lora:
        warm = restore_lora(config.init_lora, ckpt.fingerprint, state_sh["lora"])
        log.info("adapter warm-started from %s (its weights only: fresh optimizer state, step 0)", config.init_lora)
    elif config.get("variant") == "e2e":
        log.warning("no init_lora: the end-to-end adapter starts from zero (the paper warm-starts it "
                    "from a pose run: --config.init_lora=runs/pose)")
    k_state = jax.random.split(jax.random.PRNGKey(config.seed))[1]
    return st.init_state(spec, k_state, mesh, lora=warm, fast_compile=config.train.fast_compile), None


class _Progress:
    """Checks each step's metrics (the NaN guard), records them, and logs every `log_every` steps
    (tensorboard and `on_step` on process 0) with the time per step since the last log."""

    def __init__(self, config, workdir: Path, step: int, stop: int, on_step):
        self.total, self.stop, self.every = int(config.train.steps), stop, int(config.train.log_every)
        self.is_main, self.on_step = jax.process_index() == 0, on_step
        self.losses, self.batches = [], []
        self.t_start = self.t_last = time.perf_counter()
        self.s_last, self.compiled = step, False
        self.writer = None
        if self.is_main and config.train.tensorboard:
            from tensorboardX import SummaryWriter
            self.writer = SummaryWriter(str(workdir / "tensorboard"))

    def first_step_done(self, step: int, metrics) -> None:
        """After this process's first step (its compilation): restarts the clock."""
        self.compiled = True
        jax.block_until_ready(metrics)
        self.t_last, self.s_last = time.perf_counter(), step
        if self.is_main:
            log.info("first step (with compilation) done in %.1f s", self.t_last - self.t_start)

    def record(self, step: int, metrics, indices: np.ndarray, tokens: int) -> None:
        m = _check_metrics(metrics, step, indices)
        self.losses.append(m["loss"])
        self.batches.append(indices.tolist())
        if step % self.every and step != self.stop:
            return
        now = time.perf_counter()
        rate = "first step (timed with compilation above)"
        if step > self.s_last:  # the first step's clock was restarted after it: no rate of its own
            dt = (now - self.t_last) / (step - self.s_last)
            m["step_time_s"], m["tokens_per_s"] = dt, tokens / dt
            rate = f"{dt:.3f} s/step  {tokens / dt:.0f} tokens/s"
        self.t_last, self.s_last = now, step
        if not self.is_main:
            return
        log.info("step %d/%d  loss %.5f  grad_norm %.4g  lr %.3g  %s",
                 step, self.total, m["loss"], m["grad_norm"], m["lr"], rate)
        if self.writer is not None:
            for k, v in m.items():
                self.writer.add_scalar(f"train/{k}", v, step)
            self.writer.flush()
        if self.on_step is not None:
            self.on_step(step, m)


def _report_stop(e: BaseException, ckpt: Checkpointer, step: int, micro_batch: int) -> None:
    """Whatever ended the loop early: finishes (or discards) the save in flight and says which step
    is the last committed one; a NaN loss is raised again with it."""
    committed = ckpt.finish()
    saved = f"step {committed}" if committed is not None else "none"
    if isinstance(e, NonFiniteLossError):
        raise NonFiniteLossError(f"{e}; last checkpoint: {saved}") from None
    log.error("training stopped by %s at step %d; last checkpoint: %s (re-run to resume from it)",
              type(e).__name__, step, saved)
    if "RESOURCE_EXHAUSTED" in str(e):
        log.error("out of device memory at a micro-batch of %d clip(s) per device: raise "
                  "--config.train.grad_accum (same global batch, less memory), shard over more devices "
                  "(--config.mesh.fsdp), or keep --config.model.remat_policy=full; on GPU, "
                  "XLA_PYTHON_CLIENT_MEM_FRACTION (launch/train.py sets 0.95 when unset) caps what JAX takes",
                  micro_batch)


def train(config, workdir: str | Path, *, stop_after: int | None = None,
          on_step: Callable[[int, dict], Any] | None = None) -> dict:
    """Trains (or resumes) the run in `workdir`.

    Returns a summary: per-step `losses` and `batches` (this process's record indices) of this
    invocation, the final `step`, `resumed_from` (a step or None), `preempted` (stopped by SIGTERM
    after saving) and the trained `lora`.

    `stop_after`: leave after that many steps in total (as a preemption would: checkpoint, exit).
    `on_step(step, metrics)`: called on process 0 after each logged step (tests, notebooks).
    Whatever ends the loop (an exception, a NaN loss, Ctrl-C, SIGTERM), a checkpoint save in
    flight is finished or discarded before leaving, and messages name committed steps only.
    """
    workdir = resolve_path(workdir)  # local (absolute) or gs://
    workdir.mkdir(parents=True, exist_ok=True)
    spec = st.run_spec(config)
    total = int(config.train.steps)
    is_main = jax.process_index() == 0
    mesh, data_ways = _mesh(config, spec)
    shard_paths, data_iter = _input(config, spec, workdir, mesh)
    base = make_base(config, spec, mesh)  # the frozen base
    fp = st.fingerprint(spec)
    ckpt = Checkpointer(workdir / "checkpoints", fp, config=config.to_dict(), keep=config.train.keep,
                        data_fingerprint=data_fingerprint(config, shard_paths), writer=True)
    state, resumed_from = _initial_state(config, spec, mesh, ckpt, data_iter)
    step = int(jax.device_get(state["step"]))
    train_step = make_train_step(spec, mesh, bool(config.train.fast_compile))
    stop = total if stop_after is None else min(total, stop_after)
    progress = _Progress(config, workdir, step, stop, on_step)
    if is_main:
        n_lora = sum(math.prod(a.shape) for a in jax.tree.leaves(state["lora"]))
        log.info("model %s, %d adapter params (rank %s), mesh %s, %d processes, steps %d -> %d",
                 config.model.name, n_lora, config.lora.rank, dict(mesh.shape), jax.process_count(), step, total)

    # One step at a time: the step's metrics are read before the next is dispatched, so the NaN
    # guard, the stop flag (agreed by all processes every step) and the data position all refer to
    # the same step. At full size a step takes seconds; the host gap between steps is milliseconds.
    guard, preempted = PreemptionGuard(), False
    try:
        with guard:
            while step < stop:
                local = next(data_iter)
                batch = global_batch(local, mesh)
                state, metrics = train_step(state, base, batch)
                step += 1
                if not progress.compiled:
                    progress.first_step_done(step, metrics)
                progress.record(step, metrics, local["index"], batch_tokens(batch["target"].shape, spec))
                preempted = guard.should_stop()
                if step % config.train.checkpoint_every == 0 or step == stop or preempted:
                    ckpt.save(step, state, data_iter, force=True)
                if preempted:
                    break
    except BaseException as e:
        _report_stop(e, ckpt, step, config.data.global_batch // (data_ways * spec.grad_accum))
        raise
    finally:
        _close(ckpt, progress.writer)
    if preempted and is_main:
        log.warning("SIGTERM: saved step %d, exiting (status %d; re-run the same command to resume)",
                    step, EXIT_PREEMPTED)
    if guard.checks and is_main:
        log.info("stop-flag agreement across %d processes: %.2f ms per step (%d steps)",
                 jax.process_count(), 1e3 * guard.check_seconds / guard.checks, guard.checks)
    return {"losses": progress.losses, "batches": progress.batches, "step": step, "resumed_from": resumed_from,
            "preempted": preempted, "lora": state["lora"], "fingerprint": json_normal(fp),
            "stop_check_s": guard.check_seconds / max(guard.checks, 1)}


def _close(ckpt: Checkpointer, writer) -> None:
    """Closes the checkpointer (its save already finished) and the tensorboard writer, quietly on
    an error path so the original exception is the one reported."""
    try:
        ckpt.close()
    except Exception as e:  # noqa: BLE001
        log.error("closing the checkpoint manager failed: %s", e)
    if writer is not None:
        writer.close()
