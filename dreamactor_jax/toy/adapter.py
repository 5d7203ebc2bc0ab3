"""Stage 2: the pose-based in-context LoRA on the frozen toy prior (section 3.3, scaled down).

Self-supervised like the paper: a training clip V of a training character, its own pose video P
(with pose augmentation, or raw for the Table 2 D ablation), the reference I_ref = V[0]; the
model reconstructs V from the in-context input. Only the LoRA (feed-forward layers,
`dreamactor_jax.models.lora` defaults) is trained, with the project's objective and LoRA AdamW.
`layout` picks spatial (Eq. 2, the paper) or temporal (Table 2 A) in-context.
"""

from __future__ import annotations

import functools
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dreamactor_jax.models import lora as lora_lib
from dreamactor_jax.toy import autoencoder as ae
from dreamactor_jax.toy import model as tm
from dreamactor_jax.toy.pretrain import flow_config, flow_step_loss, optim_config, run_steps
from dreamactor_jax.train.optim import make_optimizer


def batch_from(data: dict, idx: jax.Array, key: jax.Array, pose_aug: bool):
    """Pixel video, pose video and reference of clips `idx` (one random augmented copy each)."""
    video = ae.to_pixels(data["video"][idx])
    if pose_aug:
        copy = jax.random.randint(key, idx.shape, 0, data["pose_aug"].shape[1])
        pose = data["pose_aug"][idx, copy]
    else:
        pose = data["pose"][idx]
    return video, ae.to_pixels(pose), video[:, 0]


def _loss(lora, base, dev, idx, key, statics):
    cfg, lcfg, spec, flow, layout, pose_aug = statics[:6]
    kb, kl = jax.random.split(key)
    video, pose, ref = batch_from(dev, idx, kb, pose_aug)
    tgt, cond, mask = tm.build(layout, video, pose, ref)
    return flow_step_loss(base, lora, cfg, lcfg, spec, layout, tgt, cond, mask, kl, flow)


@functools.partial(jax.jit, static_argnames=("statics",))
def lora_step(state, base, dev, key, statics):
    """One LoRA-only AdamW step on a batch drawn on device from `dev` (video, pose[, pose_aug]).

    `statics` = (MMDiTConfig, LoRAConfig, text spec, FlowConfig, layout, pose_aug, OptimConfig,
    batch); the frozen base is an argument (never a baked-in constant), so runs with the same
    settings (e.g. two seeds) share one compiled program.
    """
    ocfg, batch = statics[6:]
    lora, opt_state = state
    ki, kl = jax.random.split(key)
    idx = jax.random.randint(ki, (batch,), 0, dev["video"].shape[0])
    loss, grads = jax.value_and_grad(_loss)(lora, base, dev, idx, kl, statics)
    updates, opt_state = make_optimizer(ocfg).update(grads, opt_state, lora)
    return (optax.apply_updates(lora, updates), opt_state), loss


@functools.partial(jax.jit, static_argnames=("statics",))
def fixed_batch_loss(lora, base, dev, statics):
    """The loss on the first `batch` clips with fixed noise: comparable before and after training."""
    idx = jnp.arange(min(statics[-1], dev["video"].shape[0]))
    return _loss(lora, base, dev, idx, jax.random.PRNGKey(77), statics)


def train_lora(c, base: dict, data: dict[str, np.ndarray], *, log: Callable[[str], None] = print):
    """Trains the adapter of config `c` (c.lora: rank, alpha, steps, batch, lr, layout, pose_aug, seed).

    Returns (lora params, losses, seconds, (before, after)): the loss on one fixed batch with fixed
    noise before and after training (the CI check that the loss falls; NaN unless c.check_loss).
    """
    cfg, lc = tm.mmdit_config(c.model), c.lora
    lcfg = tm.lora_config(lc)
    layout, pose_aug = str(lc.layout), bool(lc.pose_aug)
    key = jax.random.PRNGKey(int(lc.seed))
    lora = lora_lib.init_lora(cfg, lcfg, jax.random.fold_in(key, 0))
    log(f"[lora:{lc.name}] {tm.count(lora):,} adapter parameters (rank {lcfg.rank}), layout {layout}, "
        f"pose augmentation {'on' if pose_aug else 'off'}")
    ocfg = optim_config(lc)
    statics = (cfg, lcfg, tm.text_spec(c.model), flow_config(c), layout, pose_aug, ocfg, int(lc.batch))
    keys = ("video", "pose_aug") if pose_aug else ("video", "pose")
    dev = {k: jnp.asarray(data[k]) for k in keys}
    check = bool(c.get("check_loss", True))
    before = float(fixed_batch_loss(lora, base, dev, statics)) if check else float("nan")
    t0 = time.time()
    step = functools.partial(lora_step, base=base, dev=dev, statics=statics)
    (lora, _), losses = run_steps([step], (lora, make_optimizer(ocfg).init(lora)), int(lc.steps),
                                  jax.random.fold_in(key, 1), log_every=int(c.log_every), log=log,
                                  name=f"lora:{lc.name}")
    seconds = time.time() - t0
    after = float(fixed_batch_loss(lora, base, dev, statics)) if check else float("nan")
    if check:
        log(f"[lora:{lc.name}] fixed-batch loss {before:.4f} -> {after:.4f}")
    return lora, losses, seconds, (before, after)
