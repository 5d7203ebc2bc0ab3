"""Rematerialisation: the named policies, per-layer plans, and `auto`, which picks a plan from the memory budget.

A remat spec (`MMDiTConfig.remat_policy`) is one of
    NAME                        every block (dual, then single) with the named policy (`POLICIES`)
    NAME*K,NAME2*K2,...[,NAME]  the first K blocks with NAME, the next K2 with NAME2, ...; a last item
                                without a count takes the rest, and blocks left over get `full`
    auto | auto:GIB             a plan chosen at trace time from the memory budget (`choose`): the
                                device's `memory_stats()["bytes_limit"]` or GIB per device

Blocks are counted over the dual-stream stack, then the single-stream one (`transformer_blocks`,
`single_transformer_blocks`; the text refiner never rematerialises). A plan of several policies runs
one `lax.scan` per run of equal policies. `none` (save everything) cannot be mixed with others: a
scan segment that saves everything would also save the weights it indexes.

`auto` estimates, per device, what a training step holds (`estimate`): the frozen base and the
adapter with its gradient and AdamW moments (16 bytes per adapter weight), the activations each
block saves under its policy (`saved_per_token`, in hidden-size units per token, counted from
`models.blocks`), and the working set of one block's recompute and backward (`WORK_LAYERS` blocks of
everything-saved residuals). It then takes the first plan that fits within `1 - MARGIN` of the budget:
`none`; `save_attention_and_dots` everywhere; `save_attention` everywhere with dots saved too in as
many blocks as fit; `save_attention` in as many blocks as fit, `full` in the rest; else `full`.
Unknown budget (a CPU without memory stats): `full`, the old default.

Calibration, one H200, full I2V-33ch + rank-256 FFN LoRA, 49 frames at 480x848 (41,596 tokens), bf16
(docs/benchmarks.md, issue 22): `full` peaked at 52.5 GiB, `save_attention` at 71.7 GiB. The block
counts below give 45.2 and 59.5 GiB before the working set; `WORK_LAYERS` is fitted to the first
(7.3 GiB) and `ATTENTION_EXTRA` (cuDNN's softmax statistics and the output's layout copy, per
token in hidden units) to the second. Everything else is counted, not fitted. Held out, the same counts give 83.3 GiB for the
121-frame clip (100,696 tokens, `full`) on one H200 and 57.1 GiB per GPU with sequence=2 over two,
measured 83.9 and 57.3 GiB (issue 10). Per-block counts are checked against what JAX saves on CPU
(tests/test_remat.py).
"""

from __future__ import annotations

import math
import warnings
from typing import Callable

import jax

POLICIES = ("none", "full", "dots", "dots_no_batch", "save_attention", "save_attention_and_dots")
MARGIN = 0.05            # share of the budget kept free (fragmentation, XLA temporaries)
WORK_LAYERS = 1.26       # one block's recompute + backward, in blocks of `none` residuals (fitted, see above)
ATTENTION_EXTRA = 0.34   # per token, hidden units, beyond the attention output (fitted, see above; not for xla)


def _save_attention(prim, *args, **params) -> bool:
    """Saves attention outputs (and the cuDNN kernel's softmax statistics): no attention recompute."""
    if prim.name.startswith("dot_product_attention_fwd"):
        return True
    return jax.checkpoint_policies.save_only_these_names("attention_out")(prim, *args, **params)


def policy(name: str) -> Callable | None:
    """The `jax.checkpoint` policy of a name; None means no remat at all."""
    cp = jax.checkpoint_policies
    table = {
        "none": None,
        "full": cp.nothing_saveable,
        "dots": cp.checkpoint_dots,
        "dots_no_batch": cp.dots_with_no_batch_dims_saveable,
        "save_attention": _save_attention,
        "save_attention_and_dots": cp.save_from_both_policies(_save_attention, cp.dots_with_no_batch_dims_saveable),
    }
    if name not in table:
        raise ValueError(f"remat_policy: expected one of {sorted(table)}, got {name!r}")
    return table[name]


def parse(spec: str) -> list[tuple[str, int | None]] | None:
    """[(policy, count or None)] of a spec, None for `auto`; raises ValueError naming the spec."""
    if spec == "auto" or spec.startswith("auto:"):
        if spec != "auto":
            try:
                if not float(spec[5:]) > 0:
                    raise ValueError
            except ValueError:
                raise ValueError(f"remat_policy {spec!r}: auto:GIB needs a positive number of GiB") from None
        return None
    items = []
    parts = spec.split(",")
    for i, part in enumerate(parts):
        name, _, count = part.strip().partition("*")
        if name not in POLICIES:
            raise ValueError(f"remat_policy {spec!r}: {name!r} is not one of {POLICIES} (or auto, auto:GIB)")
        if count:
            if not count.isdigit():
                raise ValueError(f"remat_policy {spec!r}: count {count!r} must be a whole number")
            items.append((name, int(count)))
        elif i != len(parts) - 1:
            raise ValueError(f"remat_policy {spec!r}: only the last item may leave out its *COUNT")
        else:
            items.append((name, None))
    if len(items) > 1 and any(n == "none" for n, _ in items):
        raise ValueError(f"remat_policy {spec!r}: 'none' cannot be mixed with other policies")
    return items


def per_block(spec: str, n_blocks: int) -> list[str]:
    """The policy of each block (dual, then single) of a non-auto spec."""
    items = parse(spec)
    if items is None:
        raise ValueError("remat_policy 'auto': resolve it first (`resolve`)")
    out = []
    for name, count in items:
        out += [name] * (n_blocks - len(out) if count is None else count)
    return (out + ["full"] * n_blocks)[:n_blocks]


def plan_string(names: list[str]) -> str:
    """The shortest spec of a per-block list (`per_block`'s inverse)."""
    runs: list[list] = []
    for n in names:
        if runs and runs[-1][0] == n:
            runs[-1][1] += 1
        else:
            runs.append([n, 1])
    if len(runs) == 1:
        return runs[0][0]
    return ",".join(f"{n}*{k}" for n, k in runs)


# ------------------------------------------------------------------------------ the estimate


def saved_per_token(name: str, cfg, lora_out: float = 0.0, n_tokens: int = 0) -> float:
    """Elements (compute dtype) one block saves per token under a policy, in units of hidden size d.

    Counted from `models.blocks` (both block kinds: q, k, v, the attention output projection(s), the
    MLP in (m = mlp_ratio d) and out; the single block's proj_out is two matmuls, d each), plus the
    block input that the layer scan keeps under any remat. `lora_out`: the adapter's matmul outputs
    per token per block (rank + out features per adapted linear), in units of d. `none` adds the
    elementwise intermediates (norms, modulation, GELU, RoPE) and, for the XLA attention, the
    probabilities (heads x tokens per token, fp32).
    """
    m = cfg.mlp_dim / cfg.hidden_size
    xla = cfg.attention_impl == "xla" or (cfg.attention_impl == "auto" and jax.default_backend() == "cpu")
    carry, attn = 1.0, 1.0 + (0.0 if xla else ATTENTION_EXTRA)
    dots = 5.0 + m + lora_out
    if name == "full":
        return carry
    if name == "save_attention":
        return carry + attn
    if name in ("dots_no_batch", "dots"):
        return carry + dots
    if name == "save_attention_and_dots":
        return carry + dots + attn
    if name == "none":
        probs = 0.0
        if xla:
            probs = 2 * cfg.num_attention_heads * n_tokens / cfg.hidden_size  # fp32 scores in compute units
        return carry + dots + attn + 4.0 + m + probs
    raise ValueError(f"remat_policy: no estimate for {name!r}")


def lora_units(lora: dict | None, d: int, n_blocks: int) -> float:
    """Adapter matmul outputs per token per block (rank + out features of every adapted linear, summed
    over the stacked layers, divided by the blocks), in units of d."""
    if not lora or not n_blocks:
        return 0.0
    total = 0
    for leaf_path, leaf in jax.tree_util.tree_flatten_with_path(lora)[0]:
        if str(getattr(leaf_path[-1], "key", "")) == "b":
            total += leaf.shape[0] * (leaf.shape[-2] + leaf.shape[-1])
    return total / n_blocks / d


def estimate(names: list[str], cfg, *, tokens: int, batch: int, fixed_bytes: float, lora_out: float = 0.0,
             act_share: float = 1.0) -> float:
    """Peak bytes per device of a training step with the per-block policies `names`."""
    unit = tokens * batch * cfg.hidden_size * jax.numpy.dtype(cfg.compute_dtype).itemsize * act_share
    saved = sum(saved_per_token(n, cfg, lora_out, tokens) for n in names)
    work = WORK_LAYERS * saved_per_token("none", cfg, lora_out, tokens)
    return fixed_bytes + unit * (saved + work)


def choose(cfg, n_blocks: int, *, tokens: int, batch: int, budget_bytes: float | None, fixed_bytes: float,
           lora_out: float = 0.0, act_share: float = 1.0) -> str:
    """The fastest plan whose `estimate` fits in `(1 - MARGIN) * budget_bytes` (see the module doc)."""
    if budget_bytes is None:
        return "full"
    room = (1 - MARGIN) * budget_bytes
    est = lambda names: estimate(names, cfg, tokens=tokens, batch=batch, fixed_bytes=fixed_bytes,  # noqa: E731
                                 lora_out=lora_out, act_share=act_share)
    for name in ("none", "save_attention_and_dots"):
        if est([name] * n_blocks) <= room:
            return name
    for rich, base in (("save_attention_and_dots", "save_attention"), ("save_attention", "full")):
        if est([base] * n_blocks) > room:
            continue
        k = max(k for k in range(n_blocks + 1) if est([rich] * k + [base] * (n_blocks - k)) <= room)
        return plan_string([rich] * k + [base] * (n_blocks - k))
    return "full"


def budget_from_device() -> float | None:
    """`bytes_limit` of the first device's memory stats (None where the backend has none, e.g. CPU)."""
    try:
        stats = jax.devices()[0].memory_stats() or {}
    except Exception:  # noqa: BLE001  (backends without memory stats raise or return None)
        return None
    return float(stats["bytes_limit"]) if stats.get("bytes_limit") else None


def resolve(spec: str, cfg, *, tokens: int, batch: int, params, lora=None, mesh=None) -> list[str]:
    """Per-block policies of `spec` for this step; `auto` estimates from the arrays' shapes (global)
    and the mesh: weights divided over fsdp x tensor, activations over data x fsdp x sequence."""
    n_blocks = cfg.num_layers + cfg.num_single_layers
    if parse(spec) is not None:
        return per_block(spec, n_blocks)
    budget = float(spec[5:]) * 2**30 if spec.startswith("auto:") else budget_from_device()
    shape = dict(mesh.shape) if mesh is not None else {}
    w_share = 1.0 / (shape.get("fsdp", 1) * shape.get("tensor", 1))
    act_share = 1.0 / (shape.get("data", 1) * shape.get("fsdp", 1) * shape.get("sequence", 1))
    nbytes = lambda tree: sum(math.prod(a.shape) * a.dtype.itemsize for a in jax.tree_util.tree_leaves(tree))  # noqa: E731
    n_lora = sum(math.prod(a.shape) for a in jax.tree_util.tree_leaves(lora or {}))
    fixed = (nbytes(params) + 16 * n_lora) * w_share
    lora_out = lora_units(lora, cfg.hidden_size, n_blocks)
    plan = per_block(choose(cfg, n_blocks, tokens=tokens, batch=batch, budget_bytes=budget, fixed_bytes=fixed,
                            lora_out=lora_out, act_share=act_share), n_blocks)
    if budget is not None:
        need = estimate(plan, cfg, tokens=tokens, batch=batch, fixed_bytes=fixed, lora_out=lora_out, act_share=act_share)
        if need > budget:
            warnings.warn(f"remat_policy {spec!r}: even remat 'full' needs ~{need / 2**30:.1f} GiB per device, more than "
                          f"the {budget / 2**30:.1f} GiB budget ({tokens} tokens x batch {batch}); expect out of memory "
                          "(fewer frames, or more devices on the sequence axis)", stacklevel=2)
    return plan
