"""The training loop: one linear `train(config, workdir)` in sections (mesh, input, model, state,
checkpoint, loop), called by `launch/train.py` and by the tests."""

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
from dreamactor_jax.data.shards import list_shards
from dreamactor_jax.data.synthetic import write_synthetic_shards
from dreamactor_jax.train import state as st
from dreamactor_jax.train.checkpoint import Checkpointer, PreemptionGuard, json_normal, restore_lora
from dreamactor_jax.train.step import batch_tokens, global_batch, make_train_step
from dreamactor_jax.utils import resolve_path

log = logging.getLogger("dreamactor_jax.train")


class NonFiniteLossError(FloatingPointError):
    """The loss or the gradient norm became NaN/inf; the state was left at its last finite value."""


def _synthetic_shards(config, spec: st.RunSpec, workdir: Path) -> Path:
    """Small synthetic shards in `workdir/synthetic_shards` (written once, by process 0)."""
    folder = workdir / "synthetic_shards"
    if jax.process_index() == 0 and not any(folder.glob("*.json")):
        shapes = [tuple(int(v) for v in s.split("x")) for s in config.data.synthetic_shapes.split(",")]
        write_synthetic_shards(folder, shapes, clips_per_shape=config.data.synthetic_clips, shards=2,
                               seed=config.data.seed, channels=spec.model.out_channels,
                               text_len=8, text_dim=spec.model.text_embed_dim,
                               pooled_dim=spec.model.pooled_projection_dim)
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices("synthetic_shards")
    return folder


def _check_metrics(m: dict, step: int, indices: np.ndarray, last_saved: int | None) -> dict:
    m = {k: float(v) for k, v in jax.device_get(m).items()}
    if not m["finite"]:
        raise NonFiniteLossError(
            f"non-finite loss at step {step} (loss {m['loss']}, grad_norm {m['grad_norm']}, lr {m['lr']:.3g}; "
            f"batch records {indices.tolist()}); the state was not updated, last checkpoint: "
            f"{'step ' + str(last_saved) if last_saved is not None else 'none'}. Lower optim.lr or check the data.")
    return m


def make_base(config, spec: st.RunSpec, mesh) -> dict:
    """The frozen base: from `config.base_checkpoint`, or random from `config.seed` (tests)."""
    if config.base_checkpoint:
        return st.load_base(config.base_checkpoint, spec.model, mesh)
    return st.init_base(spec.model, jax.random.split(jax.random.PRNGKey(config.seed))[0], mesh,
                        fast_compile=config.train.fast_compile)


def train(config, workdir: str | Path, *, stop_after: int | None = None,
          on_step: Callable[[int, dict], Any] | None = None) -> dict:
    """Trains (or resumes) the run in `workdir`.

    Returns a summary: per-step `losses` and `batches` (this process's record indices) of this
    invocation, the final `step`, `resumed_from` (a step or None) and the trained `lora`.

    `stop_after`: leave after that many steps in total (as a preemption would: checkpoint, exit).
    `on_step(step, metrics)`: called on process 0 after each logged step (tests, notebooks).
    """
    workdir = resolve_path(workdir)  # local (absolute) or gs://
    workdir.mkdir(parents=True, exist_ok=True)
    spec = st.run_spec(config)
    total = int(config.train.steps)
    is_main = jax.process_index() == 0

    # ---------------- mesh ----------------
    mesh = sharding.make_mesh(dict(config.mesh))
    data_ways = mesh.shape["data"] * mesh.shape["fsdp"]
    if config.data.global_batch % data_ways:
        raise ValueError(f"data.global_batch {config.data.global_batch}: must divide by the mesh's "
                         f"data x fsdp size {data_ways}")

    # ---------------- input ----------------
    shards = config.data.shards
    if shards is None:
        if not config.data.synthetic:
            raise ValueError("data.shards: not set (a folder of shards from tools/preprocess.py), "
                             "and data.synthetic is off")
        shards = _synthetic_shards(config, spec, workdir)
    shard_paths = list_shards(shards)
    ds = make_dataset(shard_paths, global_batch=config.data.global_batch, seed=config.data.seed,
                      process_index=jax.process_index(), process_count=jax.process_count(),
                      num_threads=config.data.num_threads, prefetch=config.data.prefetch,
                      worker_count=config.data.worker_count)
    data_iter = iter(ds)
    # every process logs its share (launch/tpu and launch/slurm keep one log per host)
    log.info("%s; per-host batch %d of global %d (slice %d of every batch); reads records from %d shards "
             "(%s .. %s) by index", sharding.describe(mesh), config.data.global_batch // jax.process_count(),
             config.data.global_batch, jax.process_index(), len(shard_paths), shard_paths[0].name,
             shard_paths[-1].name)

    # ---------------- model (frozen base) ----------------
    base = make_base(config, spec, mesh)
    k_state = jax.random.split(jax.random.PRNGKey(config.seed))[1]

    # ---------------- state + checkpoint ----------------
    abstract, state_sh = st.state_shardings(spec, mesh)
    fp = st.fingerprint(spec)
    ckpt = Checkpointer(workdir / "checkpoints", fp, config=config.to_dict(), keep=config.train.keep)
    resumed_from = ckpt.latest_step()
    if resumed_from is not None:
        state = ckpt.restore(abstract, data_iter, step=resumed_from)
        log.info("resumed from %s/checkpoints/%d", workdir, resumed_from)
    else:
        warm = None
        if config.init_lora:
            warm = restore_lora(config.init_lora, fp, state_sh["lora"])
            log.info("adapter warm-started from %s (its weights only: fresh optimizer state, step 0)",
                     config.init_lora)
        elif config.get("variant") == "e2e":
            log.warning("no init_lora: the end-to-end adapter starts from zero (the paper warm-starts it "
                        "from a pose run: --config.init_lora=runs/pose)")
        state = st.init_state(spec, k_state, mesh, lora=warm, fast_compile=config.train.fast_compile)
    step = int(jax.device_get(state["step"]))
    last_saved = resumed_from

    # ---------------- update ----------------
    train_step = make_train_step(spec, mesh, bool(config.train.fast_compile))
    writer = None
    if is_main and config.train.tensorboard:
        from tensorboardX import SummaryWriter
        writer = SummaryWriter(str(workdir / "tensorboard"))
    n_lora = sum(math.prod(a.shape) for a in jax.tree.leaves(state["lora"]))
    if is_main:
        log.info("model %s, %d adapter params (rank %s), mesh %s, %d processes, steps %d -> %d",
                 config.model.name, n_lora, config.lora.rank, dict(mesh.shape), jax.process_count(),
                 step, total)

    # ---------------- loop ----------------
    losses, batches, pending, t_last, s_last = [], [], None, time.perf_counter(), step
    t_start, first = t_last, True
    stop = total if stop_after is None else min(total, stop_after)

    def settle(p):
        """Checks the metrics of an already dispatched step (NaN guard), logs them."""
        nonlocal t_last, s_last
        m = _check_metrics(p["metrics"], p["step"], p["indices"], last_saved)
        losses.append(m["loss"])
        batches.append(p["indices"].tolist())
        if p["step"] % config.train.log_every == 0 or p["step"] == stop:
            now = time.perf_counter()
            dt = (now - t_last) / max(p["step"] - s_last, 1)
            t_last, s_last = now, p["step"]
            m["step_time_s"] = dt
            m["tokens_per_s"] = p["tokens"] / dt
            if is_main:
                log.info("step %d/%d  loss %.5f  grad_norm %.4g  lr %.3g  %.3f s/step  %.0f tokens/s",
                         p["step"], total, m["loss"], m["grad_norm"], m["lr"], dt, m["tokens_per_s"])
                if writer is not None:
                    for k, v in m.items():
                        writer.add_scalar(f"train/{k}", v, p["step"])
                    writer.flush()
                if on_step is not None:
                    on_step(p["step"], m)

    with PreemptionGuard() as guard:
        while step < stop:
            local = next(data_iter)
            batch = global_batch(local, mesh)
            state, metrics = train_step(state, base, batch)
            step += 1
            if first:  # the first step of this process: compile time
                first = False
                jax.block_until_ready(metrics)
                t_last, s_last = time.perf_counter(), step
                if is_main:
                    log.info("first step (with compilation) done in %.1f s", t_last - t_start)
            if pending is not None:
                settle(pending)
            pending = {"metrics": metrics, "step": step, "indices": local["index"],
                       "tokens": batch_tokens(batch["target"].shape, spec)}
            check_stop = jax.process_count() == 1 or step % config.train.log_every == 0
            preempted = check_stop and guard.should_stop()
            if step % config.train.checkpoint_every == 0 or step == stop or preempted:
                settle(pending)
                pending = None
                ckpt.save(step, state, data_iter, force=True)
                last_saved = step
            if preempted:
                log.warning("SIGTERM: saved step %d, exiting", step)
                break
        if pending is not None:
            settle(pending)
    ckpt.close()
    if writer is not None:
        writer.close()
    return {"losses": losses, "batches": batches, "step": step, "resumed_from": resumed_from,
            "lora": state["lora"], "fingerprint": json_normal(fp)}
