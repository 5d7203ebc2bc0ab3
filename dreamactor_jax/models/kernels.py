"""The attention kernels on one device's data: XLA, cuDNN flash (GPU), splash (TPU), and their checks.

Layout is [B, S, heads, head_dim]. Every kernel computes softmax(q k^T / sqrt(head_dim)) v with the
same key padding: `kv_lengths` [B] (keys at index >= length are ignored; all queries valid). Only
XLA takes a dense `mask` (the small text refiner). `models.attention` (the public function) and
`models.sequence_parallel` (Ulysses / ring) both call `local_attention` here; neither imports the
other's internals.

**Splash at any length.** The Pallas splash kernel tiles the sequence in blocks of 128 or more, and
real token counts are not multiples of that (49 frames at 480x832 in-context: 40,560 video + 256
text = 40,816 tokens). `splash_attention` pads q, k, v at the end to a whole number of blocks, masks
the padded keys together with the text padding through the kernel's segment ids (query id 0 for
every row; key id 0 below `kv_lengths`, 1 from there on), and slices the padded query rows off the
output. Padded query rows attend the valid keys like any other row (no row is ever fully masked),
and their output is dropped, so they add nothing to any gradient. The head dim is zero-padded to a
multiple of 128 (q.k and the valid output columns are unchanged; the scale uses the true head dim).
Off a TPU the kernel runs in Pallas interpret mode (slow; it is what the CPU tests exercise).

Import path: `jax.experimental.pallas.ops.tpu.splash_attention` holds the kernel in every jax from
0.4.25 to 0.11.1 (identical in 0.10.2, 0.11.0 and 0.11.1; later ones not read); its `interpret=`
argument exists from jax 0.5.0, below `pyproject.toml`'s `jax>=0.10`. `SPLASH_MODULE` is the one
name to change if the kernel moves.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp

IMPLS = ("auto", "xla", "cudnn", "tpu")
SPLASH_MODULE = "jax.experimental.pallas.ops.tpu.splash_attention"
LANE = 128  # TPU vector lane width: splash blocks and the head dim are multiples of it
# remat name of the splash residuals (output, logsumexp): the `save_attention` policies keep it
RESIDUAL_NAME = "attention_out"


def resolve_impl(impl: str, dtype) -> str:
    """"auto" -> "cudnn" on GPU for 16-bit inputs, "tpu" on TPU, else "xla"; checks the name."""
    if impl not in IMPLS:
        raise ValueError(f"attention: impl expected one of {', '.join(IMPLS)}; got {impl!r}")
    if impl != "auto":
        return impl
    backend = jax.default_backend()
    if backend == "gpu" and _is_half(dtype):
        return "cudnn"
    if backend == "tpu":
        return "tpu"
    return "xla"


def check_impl(impl: str, dtype) -> None:
    """Raises the one-line error for a kernel that cannot take `dtype` (cuDNN: 16-bit only)."""
    if impl == "cudnn" and not _is_half(dtype):
        raise ValueError(f"attention: the cudnn kernel needs bfloat16/float16 inputs, got {jnp.dtype(dtype)} "
                         "(set dtype='bfloat16')")


def _is_half(dtype) -> bool:
    return jnp.dtype(dtype) in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))


def local_attention(q, k, v, *, kv_lengths=None, mask=None, impl: str = "auto") -> jax.Array:
    """The kernel choice on one device's data; q, k, v [B, S, N, D] -> [B, S, N, D]."""
    impl = "xla" if mask is not None else resolve_impl(impl, q.dtype)
    check_impl(impl, q.dtype)
    if impl == "xla":
        return jax.nn.dot_product_attention(q, k, v, mask=mask, key_value_seq_lengths=kv_lengths, implementation="xla")
    if impl == "cudnn":
        s = q.shape[1]
        q, k, v, kv_lengths = pad_to_even(q, k, v, kv_lengths)
        # cuDNN's PADDING mask: all queries valid, keys valid below kv_lengths.
        q_lengths = None if kv_lengths is None else jnp.full((q.shape[0],), q.shape[1], jnp.int32)
        out = jax.nn.dot_product_attention(
            q, k, v, query_seq_lengths=q_lengths, key_value_seq_lengths=kv_lengths, implementation="cudnn"
        )
        return out[:, :s]
    return splash_attention(q, k, v, kv_lengths)


def pad_to_even(q, k, v, kv_lengths=None):
    """q, k, v [B, S, N, D] with one zero row appended when S is odd, and the key lengths that mask it.

    cuDNN's flash attention trains at even sequence lengths only (jax's `check_is_flash_attention`
    refuses "Unsupported sequence length Q 42581, KV 42581" in the backward rule), and real token counts
    are often odd (HunyuanVideo-1.5's 729 SigLIP image tokens, or 13 x 29 x 105 video tokens). The
    padded key is masked through `kv_lengths`; the padded query row attends the valid keys like any
    other and is sliced off by the caller, so it adds nothing to the output or to any gradient.
    """
    s = q.shape[1]
    if s % 2 == 0:
        return q, k, v, kv_lengths
    if kv_lengths is None:
        kv_lengths = jnp.full((q.shape[0],), s, jnp.int32)
    pad = lambda a: jnp.pad(a, ((0, 0), (0, 1), (0, 0), (0, 0)))
    return pad(q), pad(k), pad(v), jnp.minimum(kv_lengths, s).astype(jnp.int32)


# ----------------------------------------------------------------------------------------------
# splash (TPU)
# ----------------------------------------------------------------------------------------------


def _splash_module():
    """The splash kernel package (see the module docstring for the versions that have it)."""
    try:
        return importlib.import_module(SPLASH_MODULE)
    except ImportError as e:
        raise ImportError(f"attention: impl='tpu' needs jax's Pallas splash kernel ({SPLASH_MODULE}), "
                          f"not importable in jax {jax.__version__}: {e}") from None


@dataclass(frozen=True)
class SplashPlan:
    """How one sequence is tiled: padded length, block size, padded head dim."""

    seq: int  # the true sequence length
    seq_padded: int  # a multiple of `block`
    block: int  # q and kv block (forward and backward kernels)
    head_dim: int  # the true head dim
    head_dim_padded: int  # a multiple of 128


def splash_plan(seq: int, head_dim: int, max_waste: float = 1 / 32) -> SplashPlan:
    """Block size for the head dim, then the largest block whose padding stays small.

    The preferred block is 512 at head dim 128 (maxdiffusion's v5p default for Wan's 128-dim heads),
    scaled down for wider heads so that the q/k/v tiles and the fp32 score tile keep the same VMEM
    footprint: 256 at 256, 128 from 512 on. A block is taken if padding `seq` to it costs at most
    `max_waste` of the sequence beyond the 128-padding (at 40,816 tokens: block 512, 40,960 tokens,
    0.35% extra); else the next smaller one, down to 128.
    """
    if seq < 1 or head_dim < 1:
        raise ValueError(f"attention: sequence length and head dim must be >= 1, got {seq}, {head_dim}")
    d_pad = -(-head_dim // LANE) * LANE
    preferred = max(LANE, 512 * LANE // d_pad)
    s128 = -(-seq // LANE) * LANE
    block = LANE
    for b in (preferred >> i for i in range(8)):
        if b < LANE:
            break
        if -(-seq // b) * b - s128 <= s128 * max_waste:
            block = b
            break
    return SplashPlan(seq, -(-seq // block) * block, block, head_dim, d_pad)


def _block_sizes(sa, block: int):
    return sa.BlockSizes(block_q=block, block_kv=block, block_kv_compute=block,
                         block_q_dkv=block, block_kv_dkv=block, block_kv_dkv_compute=block,
                         block_q_dq=block, block_kv_dq=block)


def splash_attention(q, k, v, kv_lengths=None, *, interpret: bool | None = None) -> jax.Array:
    """Splash attention of q, k, v [B, S, N, D] at any S; keys at index >= kv_lengths[b] masked.

    `interpret`: run the Pallas kernel in interpret mode (default: whenever the backend is not TPU).
    """
    sa = _splash_module()
    b, s, n, d = q.shape
    plan = splash_plan(s, d)
    if interpret is None:
        interpret = jax.default_backend() != "tpu"
    lengths = jnp.full((b,), s, jnp.int32) if kv_lengths is None else jnp.minimum(kv_lengths.astype(jnp.int32), s)

    q = q * jnp.asarray(1.0 / math.sqrt(d), q.dtype)  # the kernel has no scale argument
    pad = ((0, 0), (0, plan.seq_padded - s), (0, 0), (0, plan.head_dim_padded - d))
    to_nsd = lambda t: jnp.swapaxes(jnp.pad(t, pad), 1, 2)  # [B, N, S', D']
    q, k, v = to_nsd(q), to_nsd(k), to_nsd(v)

    kernel = sa.make_splash_mha(
        mask=sa.MultiHeadMask([sa.FullMask((plan.seq_padded, plan.seq_padded))] * n),
        block_sizes=_block_sizes(sa, plan.block), head_shards=1, q_seq_shards=1,
        residual_checkpoint_name=RESIDUAL_NAME, interpret=interpret,
    )
    positions = jnp.arange(plan.seq_padded)[None, :]
    segments = sa.SegmentIds(
        q=jnp.zeros((b, plan.seq_padded), jnp.int32),  # every query row (padded ones too) is valid
        kv=(positions >= lengths[:, None]).astype(jnp.int32),  # 0 = valid key, 1 = text or block padding
    )
    out = jax.vmap(lambda q1, k1, v1, seg1: kernel(q1, k1, v1, segment_ids=seg1))(q, k, v, segments)
    return jnp.swapaxes(out, 1, 2)[:, :s, :, :d]
