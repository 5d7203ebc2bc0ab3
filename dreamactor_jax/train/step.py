"""The jitted train step: noise the target, predict the velocity, grad w.r.t. the adapter only, AdamW.

Model input (docs/design.md): `stack_channels(noisy target latent, canvas latent, mask)`, 33
channels (65 for HunyuanVideo-1.5, with the batch's optional image / glyph tokens passed on as
`mmdit.forward`'s keyword inputs when the batch has them). Gradients flow to the LoRA pytree
alone (`jax.grad` w.r.t. that argument); the base is a plain (bf16) input. A non-finite loss or
gradient leaves the state untouched and is reported through `metrics["finite"]`, so the host can
stop with a clear message before anything bad is saved.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from dreamactor_jax import sharding
from dreamactor_jax.data.shards import OPTIONAL, RECORD_NDIM, REQUIRED
from dreamactor_jax.incontext import stack_channels
from dreamactor_jax.models import mmdit
from dreamactor_jax.train import objective as obj
from dreamactor_jax.train.optim import lr_schedule, make_optimizer
from dreamactor_jax.train.state import (RunSpec, base_shardings, batch_sharding, batch_shardings, compiler_options,
                                        replicated, state_shardings)

MODEL_KEYS = REQUIRED  # the batch keys every batch has (`data.shards.RECORD_NDIM`; + OPTIONAL ones when present)


def loss_fn(lora: Any, base: Any, batch: dict, key: jax.Array, spec: RunSpec) -> tuple[jax.Array, dict]:
    """Rectified-flow loss of one batch (see `train.objective`)."""
    x0 = batch["target"].astype(jnp.float32)
    b = x0.shape[0]
    k_sigma, k_noise = jax.random.split(key)
    sigma = obj.sample_sigmas(k_sigma, b, spec.flow)
    noise = jax.random.normal(k_noise, x0.shape, jnp.float32)
    x_t = obj.add_noise(x0, noise, sigma)
    x = stack_channels(x_t, batch["canvas"].astype(jnp.float32), batch["mask"].astype(jnp.float32))
    guidance = None if spec.guidance is None else jnp.full((b,), spec.guidance * 1000.0, jnp.float32)
    extra = {k: batch[k] for k in OPTIONAL if k in batch}  # HunyuanVideo-1.5's image / glyph tokens
    pred = mmdit.forward(base, spec.model, x, obj.timesteps_from_sigmas(sigma), batch["text"],
                         batch["text_mask"], batch["pooled"], guidance=guidance, lora=lora,
                         lora_cfg=spec.lora, **extra)
    loss, per_example = obj.flow_loss(pred, obj.velocity_target(x0, noise), spec.flow.loss_region,
                                      spec.flow.layout)
    return loss, {"sigma": sigma, "per_example": per_example}


@functools.partial(jax.jit, static_argnames="spec")
def eval_loss(lora: Any, base: Any, batch: dict, key: jax.Array, spec: RunSpec) -> jax.Array:
    """The loss at fixed noise and noise levels (`key`): for comparing adapters on the same batch."""
    return loss_fn(lora, base, batch, key, spec)[0]


def micro_batches(batch: dict, k: int) -> dict:
    """[B, ...] -> [k, B/k, ...]: micro-batch i holds examples i, i+k, i+2k, ... so that, with the batch
    sharded in contiguous blocks over the devices, every micro-batch keeps each device's share local."""
    def split(a):
        b = a.shape[0]
        return jnp.swapaxes(a.reshape((b // k, k) + a.shape[1:]), 0, 1)
    return jax.tree.map(split, batch)


def loss_and_grads(lora: Any, base: Any, batch: dict, key: jax.Array, spec: RunSpec) -> tuple:
    """((loss, aux), grads) of one step. With `spec.grad_accum` = k > 1 the batch runs as k micro-batches
    in a `lax.scan` (activations of one micro-batch alive at a time; micro-batch i draws its noise from
    `fold_in(key, i)`), and loss and gradients are the means over them: the same as one batch of B when
    the loss is a mean over examples, at the memory of B/k."""
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    k = spec.grad_accum
    if k == 1:
        return grad_fn(lora, base, batch, key, spec)

    def body(carry, xs):
        i, micro = xs
        (loss, aux), grads = grad_fn(lora, base, micro, jax.random.fold_in(key, i), spec)
        loss_sum, grad_sum = carry
        return (loss_sum + loss, jax.tree.map(jnp.add, grad_sum, grads)), aux["sigma"]

    zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), lora)
    (loss_sum, grad_sum), sigmas = jax.lax.scan(body, (jnp.zeros((), jnp.float32), zeros),
                                                (jnp.arange(k), micro_batches(batch, k)))
    grads = jax.tree.map(lambda g, p: (g / k).astype(p.dtype), grad_sum, lora)
    return (loss_sum / k, {"sigma": sigmas.reshape(-1)}), grads


def train_step(state: dict, base: Any, batch: dict, spec: RunSpec) -> tuple[dict, dict]:
    key = jax.random.fold_in(state["rng"], state["step"])
    (loss, aux), grads = loss_and_grads(state["lora"], base, batch, key, spec)
    gnorm = optax.tree.norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(gnorm)
    optimizer = make_optimizer(spec.optim)
    updates, opt_state = optimizer.update(grads, state["opt_state"], state["lora"])
    lora = optax.apply_updates(state["lora"], updates)
    new = {"step": state["step"] + 1, "lora": lora, "opt_state": opt_state, "rng": state["rng"]}
    new = jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, state)  # NaN/inf guard
    metrics = {"loss": loss, "grad_norm": gnorm, "finite": finite,
               "lr": lr_schedule(spec.optim)(state["step"]),
               "sigma_mean": jnp.mean(aux["sigma"])}
    return new, metrics


@functools.lru_cache(maxsize=8)
def make_train_step(spec: RunSpec, mesh: Mesh, fast_compile: bool = False) -> Callable:
    """`step(state, base, batch) -> (state, metrics)`, jitted with explicit shardings, state donated.

    Cached per (spec, mesh), so runs in one process (resume, tests) share the compiled step.
    """
    _, state_sh = state_shardings(spec, mesh)
    jitted = jax.jit(functools.partial(train_step, spec=spec),
                     in_shardings=(state_sh, base_shardings(spec.model, mesh), batch_sharding(mesh)),
                     out_shardings=(state_sh, replicated(mesh)), donate_argnums=(0,),
                     compiler_options=compiler_options(fast_compile))

    def step(state, base, batch):
        with sharding.use_mesh(mesh):
            return jitted(state, base, batch)

    step.jitted = jitted
    return step


def global_batch(local: dict, mesh: Mesh) -> dict:
    """This process's numpy batch -> global jax arrays sharded along the batch axis."""
    shs = batch_shardings(mesh)
    out = {}
    for k in RECORD_NDIM:
        if k not in local:  # an optional key (`data.shards.OPTIONAL`) these records do not carry
            continue
        a = np.asarray(local[k])
        if a.dtype == np.float64:
            a = a.astype(np.float32)
        out[k] = jax.make_array_from_process_local_data(shs[k], a)
    return out


def batch_tokens(batch_shape: tuple[int, ...], spec: RunSpec) -> int:
    """Video tokens in one global batch [B, T', H', 2W', C] (for tokens/s)."""
    b, t, h, w = batch_shape[:4]
    m = spec.model
    return b * (t // m.patch_size_t) * (h // m.patch_size) * (w // m.patch_size)
