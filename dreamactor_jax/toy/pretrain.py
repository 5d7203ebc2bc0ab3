"""Stage 1: pretrain the toy video prior (full parameters), standing in for the backbone.

The paper fine-tunes a backbone pretrained on huge video data and relies on what that backbone
already does in context. Here the backbone is the project's MMDiT at small width, trained from
scratch on toy videos: single characters at W as image-to-video (condition: the first frame, mask
on frame 0), and two-person videos at 2W (split-screen duos and one-scene duos, `toy.data`) as
image-to-video or, for a share `prior.completion` of them, as video completion (one half of the
frame given at every frame). Video completion with masks is how current video backbones are
pretrained for editing and extension; on duos it gives the stand-in the in-context ability the
paper's recipe builds on: animate one panel the way the other panel moves. It never sees a pose
skeleton.
Project objective (`dreamactor_jax.train.objective`) and AdamW (`dreamactor_jax.train.optim`); the
training data stays on the device and batches are drawn there. With `prior.ema` > 0 the prior
returned is the exponential moving average of the weights (`ema_update`), which samples cleaner
than the last iterate after a short training. `prior.devices` > 1 trains data
parallel over that many devices (parameters and data replicated, each batch split; the same
numbers as one device up to summation order).
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

from dreamactor_jax import sharding
from dreamactor_jax.models import mmdit
from dreamactor_jax.sampling import packed
from dreamactor_jax.toy import autoencoder as ae
from dreamactor_jax.toy import model as tm
from dreamactor_jax.train import objective as obj
from dreamactor_jax.train.optim import OptimConfig, make_optimizer
from dreamactor_jax.utils import atomic_path

PRIOR_SHARD_BYTES = 15 * 2**20  # keeps each file small enough to move around (and under 16 MiB)


def flow_config(c) -> obj.FlowConfig:
    return obj.FlowConfig(sampling=str(c.objective.sampling), shift=float(c.objective.shift), loss_region="canvas")


def optim_config(s) -> OptimConfig:
    return OptimConfig(lr=float(s.lr), weight_decay=float(s.weight_decay), warmup_steps=int(s.warmup),
                       schedule="cosine", total_steps=int(s.steps), end_lr=0.1 * float(s.lr), clip_norm=1.0)


def prior_loss(params, cfg, spec, tgt, cond, mask, key, flow: obj.FlowConfig, layout: str = "i2v"):
    """Flow-matching loss of one batch for training every parameter (latents): the I2V prior's
    pretraining (`i2v`, the whole clip scored) or benchmarks/toy_canvas_probe.py's full-parameter
    probe of a layout (its video part). Adapters train through `train.step.train_step` instead."""
    k1, k2 = jax.random.split(key)
    b = tgt.shape[0]
    noise = jax.random.normal(k1, tgt.shape, tgt.dtype)
    sigma = obj.sample_sigmas(k2, b, flow)
    xt = obj.add_noise(tgt, noise, sigma)
    text, tmask, pooled = tm.text_context(spec, b)
    xin = jnp.concatenate([xt, cond, mask], -1)
    pred = mmdit.forward(params, cfg, xin, obj.timesteps_from_sigmas(sigma), text, tmask, pooled)
    w = tm.loss_weights(layout, tgt.shape)[None]
    err = jnp.square(pred.astype(jnp.float32) - obj.velocity_target(tgt, noise).astype(jnp.float32)) * w
    return jnp.sum(err) / (jnp.sum(w) * b * tgt.shape[4])


def run_steps(step_fns: list[Callable], state, steps: int, key, *, log_every: int = 100,
              log: Callable[[str], None] = print, name: str = "train") -> tuple[object, list[float]]:
    """Calls the jitted `step_fns` in turn (state, key) -> (state, loss); returns state and losses."""
    losses, t0 = [], time.time()
    for i in range(steps):
        key, sk = jax.random.split(key)
        state, loss = step_fns[i % len(step_fns)](state, key=sk)
        if (i + 1) % log_every == 0 or i == 0 or i + 1 == steps:
            losses_now = float(loss)
            log(f"[{name}] step {i + 1}/{steps} loss {losses_now:.4f} ({time.time() - t0:.1f}s)")
        losses.append(loss)
    return state, [float(x) for x in jax.device_get(losses)]


def ema_update(ema, params, step, decay: float):
    """One step of the weights' moving average; the decay ramps up as min(decay, (1 + t) / (10 + t))
    so the first steps do not keep the initialisation. `decay` 0 returns `params` (no average)."""
    if decay <= 0:
        return params
    d = jnp.minimum(decay, (1.0 + step) / (10.0 + step)).astype(jnp.float32)
    return jax.tree.map(lambda e, p: (d * e + (1 - d) * p.astype(jnp.float32)).astype(e.dtype), ema, params)


@functools.lru_cache(maxsize=None)
def jitted(fn: Callable, fast_compile: bool = False) -> Callable:
    """`jax.jit(fn)` with `statics` static; `fast_compile` skips XLA's CPU backend optimisation
    (several times faster compiles, slower steps: for CI and smoke runs)."""
    opts = {"xla_backend_optimization_level": 0} if fast_compile and jax.default_backend() == "cpu" else None
    return jax.jit(fn, static_argnames=("statics",), compiler_options=opts)


def completion_masks(key, batch: int, t: int, h: int, w: int, share: float) -> jax.Array:
    """[B, T, h, w, 1] conditioning masks for pretraining on wide scenes: per sample, with
    probability `share` a video-completion mask (one half of the frame given at every frame, the
    other half on frame 0 only, the half drawn at random), else the I2V mask (frame 0 given)."""
    k1, k2 = jax.random.split(key)
    first = (jnp.arange(t) == 0)[:, None, None]
    left = (jnp.arange(w) < w // 2)[None, None, :]
    given_left = jax.random.bernoulli(k2, 0.5, (batch, 1, 1, 1))
    half = jnp.where(given_left, left, ~left) | first  # [B, T, 1, w]
    use = jax.random.bernoulli(k1, share, (batch, 1, 1, 1))
    mask = jnp.where(use, half, first)
    return jnp.broadcast_to(mask, (batch, t, h, w))[..., None].astype(jnp.float32)


def prior_step(state, clips, key, statics):
    """One AdamW step of the prior on a batch drawn (on device) from `clips` uint8 [N, T, H, W, 3].

    Narrow clips train image-to-video (frame 0 given); wide scenes (W > H) also, for a share
    `completion` of their samples, video completion (`completion_masks`). The condition is always
    the target latent where the mask is 1, zero elsewhere (the I2V backbone's convention).
    `statics` = (MMDiTConfig, text spec, FlowConfig, OptimConfig, batch, completion share, batch
    sharding or None, EMA decay): hashable, so every call with the same settings reuses one compiled
    program. `state` = (params, optimiser state, EMA of the params, step).
    """
    cfg, spec, flow, ocfg, batch, completion, split, decay = statics
    params, opt_state, ema, step = state
    ki, kl, km = jax.random.split(key, 3)
    idx = jax.random.randint(ki, (batch,), 0, clips.shape[0])
    video = ae.to_pixels(clips[idx])
    if split is not None:  # data parallel: the batch split over the devices, the rest follows it
        video = jax.lax.with_sharding_constraint(video, split)
    tgt, cond, mask = tm.build("i2v", video, None, video[:, 0])
    if completion > 0 and video.shape[3] > video.shape[2]:
        mask = completion_masks(km, batch, *tgt.shape[1:4], completion)
        cond = tgt * mask
    loss, grads = jax.value_and_grad(
        lambda p: prior_loss(p, cfg, spec, tgt, cond, mask, kl, flow))(params)
    updates, opt_state = make_optimizer(ocfg).update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    return (params, opt_state, ema_update(ema, params, step, decay), step + 1), loss


def data_parallel(n: int, batch: int) -> tuple[object, NamedSharding | None]:
    """(placement of parameters and data, sharding of a batch) for `n` devices: replicated over the
    project's mesh with data=n and split along the batch; for n == 1 the default device and no split."""
    if n < 1 or n > jax.device_count():
        raise ValueError(f"prior.devices: expected 1..{jax.device_count()} (the devices present), got {n}")
    if batch % n:
        raise ValueError(f"prior.batch: {batch} does not split over prior.devices={n}")
    if n == 1:
        return jax.devices()[0], None
    mesh = sharding.make_mesh({"data": n, "fsdp": 1}, devices=jax.devices()[:n])
    return NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))


def pretrain_prior(c, data: dict[str, np.ndarray], *, log: Callable[[str], None] = print, init: dict | None = None):
    """Trains the prior on `data` (from `toy.data.prior_set`); returns (params on the first device,
    losses, seconds).

    `init`: parameters to continue from (a prior saved by an earlier run) instead of a fresh
    initialisation; the optimiser starts afresh (warm-up and cosine over `prior.steps` again), so a
    long pretraining can be split over several calls of limited length (a warm restart).
    """
    cfg = tm.mmdit_config(c.model)
    flow, s = flow_config(c), c.prior
    key = jax.random.PRNGKey(int(c.seed))
    params = mmdit.init_params(cfg, jax.random.fold_in(key, 0)) if init is None else init
    if init is not None:  # another stream of batches and noise than the run that made `init`
        key = jax.random.fold_in(key, 1 + int(s.restart))
    log(f"[prior] {tm.count(params):,} parameters; {cfg.num_layers}+{cfg.num_single_layers} blocks, "
        f"hidden {cfg.hidden_size}" + (" (continued from a saved prior)" if init is not None else ""))
    ocfg = optim_config(s)
    placement, split = data_parallel(int(s.devices), int(s.batch))
    decay = float(s.get("ema", 0.0))
    statics = (cfg, tm.text_spec(c.model), flow, ocfg, int(s.batch), float(s.completion), split, decay)
    state = jax.device_put((params, make_optimizer(ocfg).init(params), params, jnp.zeros((), jnp.int32)),
                           placement)
    sets = [jax.device_put(data[k], placement) for k in ("video", "wide") if len(data[k])]
    step = jitted(prior_step, bool(c.get("fast_compile", False)))
    fns = [functools.partial(step, clips=x, statics=statics) for x in sets]
    t0 = time.time()
    (params, _, ema, _), losses = run_steps(fns, state, int(s.steps), jax.random.fold_in(key, 1),
                                            log_every=int(c.log_every), log=log, name="prior")
    # Back on one device: the adapter, sampler and evaluation that follow run there.
    return jax.device_put(ema if decay > 0 else params, jax.devices()[0]), losses, time.time() - t0


def save_prior(folder: str | os.PathLike, params: dict, cfg, meta: dict | None = None) -> None:
    """Writes the prior's parameters (fp32) as safetensors shards `prior-K.safetensors` and `prior.json`
    (the MMDiT config and `meta`) into a new folder, atomically (the folder appears whole or not at all)."""
    from safetensors.numpy import save_file

    flat = {name: v.astype(np.float32) for name, v in packed.flatten(params).items()}
    shards, size = [{}], 0
    for name, arr in flat.items():
        if size and size + arr.nbytes > PRIOR_SHARD_BYTES:
            shards, size = shards + [{}], 0
        shards[-1][name] = np.ascontiguousarray(arr)
        size += arr.nbytes
    folder = Path(folder)
    if folder.exists():
        raise FileExistsError(f"{folder}: prior folder exists already (choose a new one)")
    with atomic_path(folder, suffix="") as tmp:
        tmp.mkdir()
        for i, shard in enumerate(shards):
            save_file(shard, str(tmp / f"prior-{i}.safetensors"))
        info = {"model": dataclasses.asdict(cfg), "shards": len(shards), **(meta or {})}
        (tmp / "prior.json").write_text(json.dumps(info, indent=1))


def load_prior(folder: str | os.PathLike, cfg) -> dict:
    """Reads a prior written by `save_prior` (or the base of a packed toy model), checked name by name
    and shape by shape against `cfg`."""
    from safetensors.numpy import load_file

    folder = Path(folder)
    if (folder / "run.json").is_file():  # a packed toy model: its base is the prior

        mcfg, base, _, _ = packed.load_parts(folder, "float32")
        if mcfg.to_diffusers_config() != cfg.to_diffusers_config():
            raise ValueError(f"{folder}: packed model's backbone differs from the config's")
        return base
    if not (folder / "prior.json").is_file():
        raise FileNotFoundError(f"{folder}: not a toy prior folder (no prior.json)")
    shards = int(json.loads((folder / "prior.json").read_text())["shards"])
    flat = {}
    for i in range(shards):
        path = folder / f"prior-{i}.safetensors"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: prior shard missing")
        flat.update(load_file(str(path)))
    like = jax.eval_shape(lambda: mmdit.init_params(cfg, jax.random.PRNGKey(0)))
    return packed.fill(like, flat, f"{folder}: prior", jnp.float32)
