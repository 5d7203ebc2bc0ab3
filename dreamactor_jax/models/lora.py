"""LoRA on the MMDiT, by default only in the feed-forward layers of the video stream (the paper).

DreamActor-M2: "LoRA modules are inserted only into the feed-forward layers, excluding text".
Default targets: the dual blocks' video `ff` (both linears), the single blocks' `proj_mlp`, and the
MLP part of the single blocks' `proj_out` (its input rows after the attention output:
`single_transformer_blocks.proj_out:mlp`). Targets are regexes over the candidate names below,
so e.g. the text stream's `ff_context` can be added from the config.

The adapter is a separate pytree mirroring the params paths: `{..., "proj": {"a": [L, in, r],
"b": [L, r, out]}}` (L = stacked layers). `a` is random, `b` zero, so a fresh adapter changes
nothing. The update is `scale * x A B` with `scale = alpha / rank`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp

from dreamactor_jax.models.config import MMDiTConfig

DEFAULT_TARGETS = (
    r"transformer_blocks\.ff\.net\.0\.proj",
    r"transformer_blocks\.ff\.net\.2",
    r"single_transformer_blocks\.proj_mlp",
    r"single_transformer_blocks\.proj_out:mlp",
)



def ffn_targets(cfg: MMDiTConfig) -> tuple[str, ...]:
    """The paper's FFN-only targets for a backbone: `DEFAULT_TARGETS` of the block kinds it has.

    HunyuanVideo: dual `ff` + single `proj_mlp` / `proj_out:mlp`; HunyuanVideo-1.5 (no single-stream
    blocks): the dual blocks' `ff.net.0.proj` and `ff.net.2` only.
    """
    has = {"transformer_blocks": cfg.num_layers > 0, "single_transformer_blocks": cfg.num_single_layers > 0}
    return tuple(t for t in DEFAULT_TARGETS if has[t.split("\\.")[0]])


@dataclass(frozen=True)
class LoRAConfig:
    """Rank, alpha and target patterns (`re.fullmatch` against `candidate_names(cfg)`)."""

    rank: int = 256
    alpha: float = 256.0
    targets: tuple[str, ...] = DEFAULT_TARGETS
    dtype: str = "float32"  # dtype of the trainable A, B

    def __post_init__(self):
        if self.rank < 1:
            raise ValueError(f"lora rank: expected >= 1, got {self.rank}")
        object.__setattr__(self, "targets", tuple(self.targets))

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


class Target(NamedTuple):
    """One LoRA-able linear: where its kernel lives, where its adapter lives, and its sizes."""

    kernel_path: tuple[str, ...]  # path of the base kernel [L, in_full, out]
    lora_path: tuple[str, ...]  # path of {"a", "b"} in the LoRA tree
    rows: tuple[int, int]  # input rows of the kernel the adapter acts on
    in_axis: str
    out_axis: str


def _candidates(cfg: MMDiTConfig) -> dict[str, Target]:
    """Every linear of the blocks that the forward can adapt, by dotted diffusers-style name."""
    d, m = cfg.hidden_size, cfg.mlp_dim
    out: dict[str, Target] = {}

    def add(stack: str, name: str, path: tuple[str, ...], din: int, axes: tuple[str, str], rows=None, lora_path=None):
        lp = (stack, *(lora_path or path))
        out[f"{stack}.{name}"] = Target((stack, *path, "kernel"), lp, rows or (0, din), *axes)

    for stack, qkv, outs in (
        ("transformer_blocks", ("to_q", "to_k", "to_v", "add_q_proj", "add_k_proj", "add_v_proj"), ("to_out_0", "to_add_out")),
        ("single_transformer_blocks", ("to_q", "to_k", "to_v"), ()),
    ):
        for n in qkv:
            add(stack, f"attn.{n}", ("attn", n), d, ("embed", "heads"))
        for n in outs:
            add(stack, f"attn.{n.replace('_0', '.0')}", ("attn", n), d, ("heads", "embed"))
    for ff in ("ff", "ff_context"):
        add("transformer_blocks", f"{ff}.net.0.proj", (ff, "net_0", "proj"), d, ("embed", "mlp"))
        add("transformer_blocks", f"{ff}.net.2", (ff, "net_2"), m, ("mlp", "embed"))
    add("single_transformer_blocks", "proj_mlp", ("proj_mlp",), d, ("embed", "mlp"))
    add("single_transformer_blocks", "proj_out:attn", ("proj_out",), d, ("heads", "embed"), (0, d), ("proj_out", "attn"))
    add("single_transformer_blocks", "proj_out:mlp", ("proj_out",), d + m, ("mlp", "embed"), (d, d + m), ("proj_out", "mlp"))
    return out


def candidate_names(cfg: MMDiTConfig) -> list[str]:
    return list(_candidates(cfg))


def targets(cfg: MMDiTConfig, lora_cfg: LoRAConfig) -> dict[str, Target]:
    """The candidates selected by `lora_cfg.targets`; a pattern that selects nothing is an error."""
    cands = _candidates(cfg)
    chosen = {}
    for pat in lora_cfg.targets:
        hits = [n for n in cands if re.fullmatch(pat, n)]
        if not hits:
            raise ValueError(f"lora target {pat!r}: matches none of {sorted(cands)}")
        chosen.update({n: cands[n] for n in hits})
    return chosen


def _layers(cfg: MMDiTConfig, stack: str) -> int:
    return cfg.num_layers if stack == "transformer_blocks" else cfg.num_single_layers


def _set(tree: dict, path: tuple[str, ...], value) -> None:
    for name in path[:-1]:
        tree = tree.setdefault(name, {})
    tree[path[-1]] = value


def _get(tree: dict, path: tuple[str, ...]):
    for name in path:
        tree = tree[name]
    return tree


def init_lora(cfg: MMDiTConfig, lora_cfg: LoRAConfig, key: jax.Array) -> dict:
    """A fresh adapter: A ~ U(+-1/sqrt(in)) (PEFT's default), B = 0."""
    tree: dict = {}
    tg = targets(cfg, lora_cfg)
    keys = jax.random.split(key, max(len(tg), 1))
    dtype = jnp.dtype(lora_cfg.dtype)
    out_dim = {"embed": cfg.hidden_size, "mlp": cfg.mlp_dim, "heads": cfg.hidden_size}
    for k, (name, t) in zip(keys, sorted(tg.items())):
        n, din, r = _layers(cfg, t.lora_path[0]), t.rows[1] - t.rows[0], lora_cfg.rank
        bound = 1.0 / math.sqrt(din)
        a = jax.random.uniform(k, (n, din, r), jnp.float32, -bound, bound).astype(dtype)
        _set(tree, t.lora_path, {"a": a, "b": jnp.zeros((n, r, out_dim[t.out_axis]), dtype)})
    return tree


def lora_axes(cfg: MMDiTConfig, lora_cfg: LoRAConfig) -> dict:
    """Logical axis names of the LoRA tree (for `sharding.tree_shardings`)."""
    tree: dict = {}
    for t in targets(cfg, lora_cfg).values():
        _set(tree, t.lora_path, {"a": ("layers", t.in_axis, "lora_rank"), "b": ("layers", "lora_rank", t.out_axis)})
    return tree


def count_lora_params(cfg: MMDiTConfig, lora_cfg: LoRAConfig) -> int:
    shapes = jax.eval_shape(lambda k: init_lora(cfg, lora_cfg, k), jax.random.key(0))
    return sum(math.prod(x.shape) for x in jax.tree_util.tree_leaves(shapes))


def merge_lora(params: dict, lora: dict, cfg: MMDiTConfig, lora_cfg: LoRAConfig) -> dict:
    """Base params with `scale * A B` added to each targeted kernel's rows (a new tree)."""
    merged = jax.tree_util.tree_map(lambda x: x, params)  # new containers, shared leaves
    for t in targets(cfg, lora_cfg).values():
        ab = _get(lora, t.lora_path)
        kernel = _get(merged, t.kernel_path)
        delta = jnp.einsum("lir,lro->lio", ab["a"].astype(jnp.float32), ab["b"].astype(jnp.float32)) * lora_cfg.scale
        lo, hi = t.rows
        new = kernel.astype(jnp.float32).at[:, lo:hi, :].add(delta).astype(kernel.dtype)
        _set(merged, t.kernel_path, new)
    return merged
