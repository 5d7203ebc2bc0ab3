"""LoRA-only AdamW: linear warm-up, optional cosine decay, global-norm clipping.

The optimizer only ever sees the LoRA pytree (the trainer differentiates w.r.t. the adapter alone,
so the frozen base has no gradients and no optimizer state). Paper: AdamW, lr 5e-5, weight decay 0.01.
"""

from __future__ import annotations

import dataclasses

import jax
import optax

SCHEDULES = ("constant", "cosine")


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    lr: float = 5e-5
    weight_decay: float = 0.01
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    warmup_steps: int = 500
    schedule: str = "constant"   # after warm-up: "constant" or "cosine" (to end_lr at total_steps)
    total_steps: int = 50_000
    end_lr: float = 0.0
    clip_norm: float = 1.0       # <= 0 disables clipping

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise ValueError(f"optim.schedule {self.schedule!r}: must be one of {SCHEDULES}")
        if not self.lr > 0:
            raise ValueError(f"optim.lr {self.lr}: must be > 0")
        if self.warmup_steps < 0:
            raise ValueError(f"optim.warmup_steps {self.warmup_steps}: must be >= 0")


def lr_schedule(cfg: OptimConfig) -> optax.Schedule:
    """Linear warm-up from 0 to `lr` over `warmup_steps`, then constant or cosine decay."""
    if cfg.schedule == "cosine":
        return optax.warmup_cosine_decay_schedule(
            0.0, cfg.lr, max(cfg.warmup_steps, 1), max(cfg.total_steps, cfg.warmup_steps + 1), cfg.end_lr)
    if cfg.warmup_steps == 0:
        return optax.constant_schedule(cfg.lr)
    return optax.join_schedules(
        [optax.linear_schedule(0.0, cfg.lr, cfg.warmup_steps), optax.constant_schedule(cfg.lr)],
        [cfg.warmup_steps])


def make_optimizer(cfg: OptimConfig) -> optax.GradientTransformation:
    """Clip by global norm, then AdamW with decoupled weight decay on every adapter weight."""
    parts = []
    if cfg.clip_norm > 0:
        parts.append(optax.clip_by_global_norm(cfg.clip_norm))
    parts.append(optax.adamw(lr_schedule(cfg), b1=cfg.b1, b2=cfg.b2, eps=cfg.eps,
                             weight_decay=cfg.weight_decay))
    return optax.chain(*parts)


def global_norm(tree) -> jax.Array:
    return optax.tree.norm(tree)
