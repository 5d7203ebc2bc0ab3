"""The one attention function: the only place the model asks for attention.

Layout everywhere is [B, S, heads, head_dim] (what cuDNN flash attention wants). Masks come in two
forms: `kv_lengths` [B] (keys at index >= length are ignored: the MMDiT's text key padding, which
every kernel supports) or a dense boolean `mask` [B, 1|N, S, S] (the small text refiner only,
always computed by XLA).

The kernels themselves (XLA, cuDNN, TPU splash) and their checks live in `models.kernels`. With a
mesh active (`sharding.use_mesh`) whose `sequence` axis has more than one device, key-padded
attention runs sequence-parallel (`models.sequence_parallel`: Ulysses all-to-all over heads, ring
when the heads don't divide), which calls the same kernels on each device.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.ad_checkpoint import checkpoint_name

from dreamactor_jax import sharding
from dreamactor_jax.models import sequence_parallel as sp
from dreamactor_jax.models.kernels import local_attention, resolve_impl  # noqa: F401  (re-exported)


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
    `impl`: "xla" (CPU, tests), "cudnn" (GPU flash attention, bf16/fp16), "tpu" (splash kernel, any
    length; Pallas interpret mode off a TPU), "auto".
    The output is tagged `attention_out` for the `save_attention` remat policies.
    """
    if q.ndim != 4 or k.shape != v.shape or q.shape[0] != k.shape[0] or q.shape[2:] != k.shape[2:]:
        raise ValueError(f"attention: expected q, k, v [B, S, N, D] with matching B, N, D; got {q.shape}, {k.shape}, {v.shape}")
    if kv_lengths is not None and mask is not None:
        raise ValueError("attention: pass kv_lengths or mask, not both")
    if kv_lengths is not None:
        kv_lengths = kv_lengths.astype(jnp.int32)
    if mask is None:
        active = sharding.active_mesh()
        if active is not None and sp.sequence_axis_size(active[0]) > 1:
            out = sp.sequence_parallel_attention(q, k, v, mesh=active[0], kv_lengths=kv_lengths, impl=impl, rules=active[1])
            return checkpoint_name(out, "attention_out")
    return checkpoint_name(local_attention(q, k, v, kv_lengths=kv_lengths, mask=mask, impl=impl), "attention_out")
