"""The one attention function: the only place an attention kernel is chosen.

Layout everywhere is [B, S, heads, head_dim] (what cuDNN flash attention wants). Masks come in two
forms: `kv_lengths` [B] (keys at index >= length are ignored: the MMDiT's text key padding, which
every kernel supports) or a dense boolean `mask` [B, 1|N, S, S] (the small text refiner only,
always computed by XLA).

With a mesh active (`sharding.use_mesh`) whose `sequence` axis has more than one device, key-padded
attention runs sequence-parallel (`models.sequence_parallel`: Ulysses all-to-all over heads, ring
when the heads don't divide), calling `local_attention` on each device.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.ad_checkpoint import checkpoint_name


def resolve_impl(impl: str, dtype) -> str:
    """"auto" -> "cudnn" on GPU for 16-bit inputs, "tpu" on TPU, else "xla"."""
    if impl != "auto":
        return impl
    backend = jax.default_backend()
    half = jnp.dtype(dtype) in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))
    if backend == "gpu" and half:
        return "cudnn"
    if backend == "tpu":
        return "tpu"
    return "xla"


def attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    *,
    kv_lengths: jax.Array | None = None,
    mask: jax.Array | None = None,
    impl: str = "auto",
) -> jax.Array:
    """Softmax attention with scale 1/sqrt(head_dim); q, k, v [B, S, N, D] -> [B, S, N, D].

    `kv_lengths` [B] int: keys at positions >= length are masked (all queries stay valid).
    `mask` [B, 1|N, Sq, Sk] bool: True = attend (XLA only; meant for short sequences).
    `impl`: "xla" (CPU, tests), "cudnn" (GPU flash attention, bf16/fp16), "tpu" (splash kernel), "auto".
    The output is tagged `attention_out` for the `save_attention` remat policies.
    """
    if q.ndim != 4 or k.shape != v.shape or q.shape[0] != k.shape[0] or q.shape[2:] != k.shape[2:]:
        raise ValueError(f"attention: expected q, k, v [B, S, N, D] with matching B, N, D; got {q.shape}, {k.shape}, {v.shape}")
    if kv_lengths is not None and mask is not None:
        raise ValueError("attention: pass kv_lengths or mask, not both")
    if kv_lengths is not None:
        kv_lengths = kv_lengths.astype(jnp.int32)
    if mask is None:
        from dreamactor_jax import sharding
        from dreamactor_jax.models import sequence_parallel as sp

        active = sharding.active_mesh()
        if active is not None and sp.sequence_axis_size(active[0]) > 1:
            out = sp.sequence_parallel_attention(q, k, v, mesh=active[0], kv_lengths=kv_lengths, impl=impl, rules=active[1])
            return checkpoint_name(out, "attention_out")
    return checkpoint_name(local_attention(q, k, v, kv_lengths=kv_lengths, mask=mask, impl=impl), "attention_out")


def local_attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    *,
    kv_lengths: jax.Array | None = None,
    mask: jax.Array | None = None,
    impl: str = "auto",
) -> jax.Array:
    """The kernel choice on one device's data (arguments as in `attention`, already checked)."""
    impl = "xla" if mask is not None else resolve_impl(impl, q.dtype)
    if impl == "xla":
        out = jax.nn.dot_product_attention(q, k, v, mask=mask, key_value_seq_lengths=kv_lengths, implementation="xla")
    elif impl == "cudnn":
        if q.dtype not in (jnp.bfloat16, jnp.float16):
            raise ValueError(f"attention: the cudnn kernel needs bfloat16/float16 inputs, got {q.dtype} (set dtype='bfloat16')")
        # cuDNN's PADDING mask: all queries valid, keys valid below kv_lengths.
        q_lengths = None if kv_lengths is None else jnp.full((q.shape[0],), q.shape[1], jnp.int32)
        out = jax.nn.dot_product_attention(
            q, k, v, query_seq_lengths=q_lengths, key_value_seq_lengths=kv_lengths, implementation="cudnn"
        )
    elif impl == "tpu":
        out = _splash_attention(q, k, v, kv_lengths)
    else:
        raise ValueError(f"attention: impl expected one of auto, xla, cudnn, tpu; got {impl!r}")
    return out


def _splash_attention(q: jax.Array, k: jax.Array, v: jax.Array, kv_lengths: jax.Array | None) -> jax.Array:
    """TPU splash attention (Pallas); key padding through segment ids. Sequence must tile by 128.

    Not exercised by the CPU tests (no TPU here); it computes the same function as the XLA path.
    """
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as sk
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_mask as sm

    b, s, n, d = q.shape
    if s % 128:
        raise ValueError(f"attention: the tpu kernel needs a sequence length divisible by 128, got {s}")
    kernel = sk.make_splash_mha(mask=sm.MultiHeadMask([sm.FullMask((s, s))] * n), head_shards=1, q_seq_shards=1)
    q = q * jnp.asarray(1.0 / math.sqrt(d), q.dtype)
    to_nsd = lambda t: jnp.swapaxes(t, 1, 2)  # [B, N, S, D]
    if kv_lengths is None:
        out = jax.vmap(kernel)(to_nsd(q), to_nsd(k), to_nsd(v))
    else:
        kv_seg = (jnp.arange(s)[None, :] >= kv_lengths[:, None]).astype(jnp.int32)  # 0 valid, 1 padding
        q_seg = jnp.zeros((b, s), jnp.int32)
        seg = sk.SegmentIds(q=q_seg, kv=kv_seg)
        one = lambda q1, k1, v1, seg1: kernel(q1, k1, v1, segment_ids=seg1)
        out = jax.vmap(one)(to_nsd(q), to_nsd(k), to_nsd(v), seg)
    return jnp.swapaxes(out, 1, 2)
