"""Stage 2: the pose-based in-context LoRA on the frozen toy prior (section 3.3, scaled down).

Self-supervised like the paper: a training clip V of a training character, its own pose video P
(with pose augmentation, or raw for the Table 2 D ablation), the reference I_ref = V[0]; the
model reconstructs V from the in-context input. Only the LoRA (feed-forward layers,
`dreamactor_jax.models.lora` defaults) is trained.

Both layouts, the spatial one (the paper) and the temporal ablation (Table 2 A), run the project's
own train step, `dreamactor_jax.train.step.train_step` (objective, LoRA-only AdamW, NaN guard), on
batches built on the device from the toy clips; the layout is the run spec's (`FlowConfig.layout`),
so the loss covers `incontext.region_mask`'s region of either.
"""

from __future__ import annotations

import functools
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from dreamactor_jax.models import lora as lora_lib
from dreamactor_jax.toy import autoencoder as ae
from dreamactor_jax.toy import model as tm
from dreamactor_jax.toy.pretrain import ema_update, jitted, optim_config, run_steps
from dreamactor_jax.train import objective as obj
from dreamactor_jax.train.optim import make_optimizer
from dreamactor_jax.train.state import RunSpec
from dreamactor_jax.train.step import eval_loss, train_step


def motion_key(lc) -> str:
    """Which clips of the data drive adapter `lc`: augmented pose videos, raw ones, or RGB videos
    (`drive`, the end-to-end model: `lc.motion == "video"`)."""
    if lc.get("motion", "pose") == "video":
        return "drive"
    return "pose_aug" if bool(lc.pose_aug) else "pose"


def batch_from(data: dict, idx: jax.Array, key: jax.Array, motion: str):
    """Pixel video, motion video and reference of clips `idx` (for `pose_aug`, one random augmented copy)."""
    video = ae.to_pixels(data["video"][idx])
    if motion == "pose_aug":
        copy = jax.random.randint(key, idx.shape, 0, data["pose_aug"].shape[1])
        pose = data["pose_aug"][idx, copy]
    else:
        pose = data[motion][idx]
    return video, ae.to_pixels(pose), video[:, 0]


def model_batch(dev: dict, idx: jax.Array, key: jax.Array, statics) -> dict:
    """The trainer's batch (docs/design.md: target, canvas, mask, text, text_mask, pooled) on device."""
    spec, text_spec, layout, motion = statics[:4]
    video, pose, ref = batch_from(dev, idx, key, motion)
    tgt, cond, mask = tm.build(layout, video, pose, ref)
    text, text_mask, pooled = tm.text_context(text_spec, idx.shape[0])
    return {"target": tgt, "canvas": cond, "mask": mask, "text": text, "text_mask": text_mask, "pooled": pooled}


def lora_step(carry, base, dev: dict, key, statics):
    """One step on a batch drawn on the device from `dev` (video, pose or pose_aug clips).

    `carry` = (trainer state, moving average of the adapter). `statics` = (RunSpec, text spec, layout,
    motion key, batch, EMA decay): hashable, and the frozen base is an argument (never a baked-in
    constant), so runs with the same settings (two seeds) share one program.
    """
    state, ema = carry
    spec, batch, decay = statics[0], statics[4], statics[5]
    ki, kb = jax.random.split(key)
    idx = jax.random.randint(ki, (batch,), 0, dev["video"].shape[0])
    mb = model_batch(dev, idx, kb, statics)
    step = state["step"]
    state, metrics = train_step(state, base, mb, spec)
    return (state, ema_update(ema, state["lora"], step, decay)), metrics["loss"]


def fixed_batch_loss(lora, base, dev: dict, statics):
    """The loss on the first `batch` clips with fixed noise: comparable before and after training."""
    spec, batch = statics[0], statics[4]
    idx = jnp.arange(min(batch, dev["video"].shape[0]))
    mb = model_batch(dev, idx, jax.random.PRNGKey(5), statics)
    return eval_loss(lora, base, mb, jax.random.PRNGKey(77), spec)


def run_spec(c) -> RunSpec:
    """The trainer's static spec for the toy adapter of config `c`."""
    flow = obj.FlowConfig(sampling=str(c.objective.sampling), shift=float(c.objective.shift),
                          loss_region="target", layout=str(c.lora.layout))
    return RunSpec(model=tm.mmdit_config(c.model), lora=tm.lora_config(c.lora), flow=flow,
                   optim=optim_config(c.lora))


def train_lora(c, base: dict, data: dict[str, np.ndarray], *, log: Callable[[str], None] = print,
               init: dict | None = None):
    """Trains the adapter of config `c` (c.lora: rank, alpha, steps, batch, lr, layout, pose_aug, seed,
    motion, and `ema`: with a decay > 0 the adapter returned is the moving average of its weights).
    `init`: an adapter of the same shape to start from (a warm start; the optimiser starts afresh).

    Returns (lora params, losses, seconds, (before, after)): the loss on one fixed batch with fixed
    noise before and after training (the CI check that the loss falls; NaN unless c.check_loss).
    """
    lc = c.lora
    spec = run_spec(c)
    layout = str(lc.layout)
    key = jax.random.PRNGKey(int(lc.seed))
    lora = lora_lib.init_lora(spec.model, spec.lora, jax.random.fold_in(key, 0)) if init is None else init
    motion = motion_key(lc)
    log(f"[lora:{lc.name}] {tm.count(lora):,} adapter parameters (rank {spec.lora.rank}), layout {layout}, "
        f"motion {motion}" + (", warm start" if init is not None else ""))
    decay = float(lc.get("ema", 0.0))
    statics = (spec, tm.text_spec(c.model), layout, motion, int(lc.batch), decay)
    dev = {k: jnp.asarray(data[k]) for k in ("video", motion)}
    check, fast = bool(c.get("check_loss", True)), bool(c.get("fast_compile", False))
    loss_at = jitted(fixed_batch_loss, fast)
    before = float(loss_at(lora, base, dev, statics=statics)) if check else float("nan")
    state = {"step": jnp.zeros((), jnp.int32), "lora": lora, "opt_state": make_optimizer(spec.optim).init(lora),
             "rng": jax.random.fold_in(key, 2)}
    t0 = time.time()
    step = functools.partial(jitted(lora_step, fast), base=base, dev=dev, statics=statics)
    (state, ema), losses = run_steps([step], (state, lora), int(lc.steps), jax.random.fold_in(key, 1),
                                     log_every=int(c.log_every), log=log, name=f"lora:{lc.name}")
    seconds = time.time() - t0
    lora = ema if decay > 0 else state["lora"]
    after = float(loss_at(lora, base, dev, statics=statics)) if check else float("nan")
    if check:
        log(f"[lora:{lc.name}] fixed-batch loss {before:.4f} -> {after:.4f}")
    return lora, losses, seconds, (before, after)
