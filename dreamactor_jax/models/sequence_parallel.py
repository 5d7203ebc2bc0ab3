"""Sequence-parallel attention over the mesh's `sequence` axis: Ulysses all-to-all, ring fallback.

`models.attention.attention` calls `sequence_parallel_attention` when a mesh is active
(`sharding.use_mesh`) whose `sequence` axis has more than one device; everything else in the
model is per-token, so XLA's SPMD partitioner splits it along the sequence by the `seq` logical
axis without help. Only attention needs all keys for every query.

The joint sequence is [video, text] (text right-padded, its padding masked by `kv_lengths`). It
is padded at the end to a multiple of the axis size P and split in P contiguous blocks. Padded
keys sit past every `kv_lengths`, so they are never attended; padded query rows are dropped
afterwards. (The TPU kernel pads further to its own block size: `models.kernels.splash_attention`.)

Two methods, chosen by `method="auto"`:
- **Ulysses** (default whenever the per-device heads divide by P): all-to-all turns
  sequence-sharded q/k/v [b, S/P, N, D] into head-sharded full-sequence [b, S, N/P, D], the local
  attention runs with the usual kernel choice (cuDNN flash / TPU splash / XLA), and a second
  all-to-all turns the output back. Communication is 4 all-to-alls of S*N*D/P per device per
  layer, independent of P; it keeps the fast fused kernels. This is the one to use on GPUs/TPUs:
  HunyuanVideo's 24 heads divide by 2, 3, 4, 6, 8, 12, 24.
- **Ring** (fallback when heads don't divide, e.g. P = 16): each device keeps its query block
  and the k/v blocks travel round the ring (`ppermute`, P steps) while an online softmax
  (running max, denominator, fp32 accumulator) gathers the result. It is written in plain XLA
  whatever `impl` says (no fused kernel returns the softmax statistics with a backward pass:
  splash's `save_residuals` has no VJP), so each step holds a [b, N, S/P, S/P] score block: fine for moderate S/P, slow and memory-hungry at 100k+ tokens
  per device. Prefer a sequence axis size that divides the heads.

Both are differentiable (all-to-all and ppermute transpose to themselves reversed), so the
LoRA backward pass works unchanged.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, PartitionSpec

from dreamactor_jax import sharding
from dreamactor_jax.models.kernels import check_impl, local_attention, resolve_impl

SEQ_AXIS = "sequence"
METHODS = ("auto", "ulysses", "ring")


def sequence_axis_size(mesh: Mesh | None) -> int:
    """Size of the mesh's `sequence` axis (1 without a mesh or without that axis)."""
    if mesh is None or SEQ_AXIS not in mesh.shape:
        return 1
    return int(mesh.shape[SEQ_AXIS])


def _mesh_axes(names: Any) -> tuple[str, ...]:
    if names is None:
        return ()
    return (names,) if isinstance(names, str) else tuple(names)


def _divisible_prefix(axes: tuple[str, ...], mesh: Mesh, size: int) -> tuple[str, ...]:
    """The longest prefix of `axes` whose product divides `size` (the rest is replicated)."""
    out: list[str] = []
    for a in axes:
        if size % math.prod(mesh.shape[n] for n in (*out, a)):
            break
        out.append(a)
    return tuple(out)


def _specs(q: jax.Array, mesh: Mesh, rules: Sequence[tuple[str, Any]] | None):
    """(batch mesh axes, head mesh axes) for q [B, S, N, D] under the logical rules."""
    spec = sharding.logical_to_spec(("batch", "seq", "act_heads", None), rules or sharding.RULES, mesh)
    batch = _divisible_prefix(tuple(a for a in _mesh_axes(spec[0]) if a != SEQ_AXIS), mesh, q.shape[0])
    heads = _divisible_prefix(tuple(a for a in _mesh_axes(spec[2]) if a != SEQ_AXIS), mesh, q.shape[2])
    return batch, heads


def sequence_parallel_attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    *,
    mesh: Mesh,
    kv_lengths: jax.Array | None = None,
    impl: str = "auto",
    method: str = "auto",
    rules: Sequence[tuple[str, Any]] | None = None,
) -> jax.Array:
    """Attention of q, k, v [B, S, N, D] split over `mesh`'s sequence axis; same result as one device.

    `kv_lengths` [B]: keys at index >= length are ignored. `impl`: the local kernel (Ulysses only;
    see `attention.attention`). `method`: "ulysses", "ring" or "auto" (Ulysses when the heads per
    device divide by the sequence axis size, else ring). Works for an axis of size 1 too.
    """
    if method not in METHODS:
        raise ValueError(f"sequence_parallel_attention: method expected one of {METHODS}, got {method!r}")
    if SEQ_AXIS not in mesh.shape:
        raise ValueError(f"sequence_parallel_attention: mesh has no {SEQ_AXIS!r} axis (axes {mesh.axis_names})")
    n_seq = sequence_axis_size(mesh)
    b, s, n, d = q.shape
    batch_axes, head_axes = _specs(q, mesh, rules)
    local_heads = n // math.prod(mesh.shape[a] for a in head_axes)
    divides = local_heads % n_seq == 0
    if method == "auto":
        method = "ulysses" if divides else "ring"
    if method == "ulysses" and not divides:
        raise ValueError(
            f"sequence_parallel_attention: ulysses needs the heads per device ({local_heads}) to divide by "
            f"the sequence axis size {n_seq}; use method='ring' or another mesh"
        )
    impl = resolve_impl(impl, q.dtype)
    check_impl(impl, q.dtype)

    # pad the sequence to a multiple of the axis size (a TPU kernel pads further to its blocks)
    s_pad = -(-s // n_seq) * n_seq
    lengths = jnp.full((b,), s, jnp.int32) if kv_lengths is None else jnp.minimum(kv_lengths.astype(jnp.int32), s)
    if s_pad != s:
        pad = ((0, 0), (0, s_pad - s), (0, 0), (0, 0))
        q, k, v = (jnp.pad(t, pad) for t in (q, k, v))

    spec = PartitionSpec(batch_axes or None, SEQ_AXIS, head_axes or None, None)
    len_spec = PartitionSpec(batch_axes or None)
    if method == "ulysses":
        body = lambda q, k, v, lens: _ulysses_local(q, k, v, lens, impl=impl)
    else:
        body = lambda q, k, v, lens: _ring_local(q, k, v, lens, n_seq=n_seq)
    fn = jax.shard_map(body, mesh=mesh, in_specs=(spec, spec, spec, len_spec), out_specs=spec, check_vma=False)
    out = fn(q, k, v, lengths)
    return out[:, :s] if s_pad != s else out


def _ulysses_local(q, k, v, lengths, *, impl: str) -> jax.Array:
    """Per device: [b, S/P, n, D] -> all-to-all -> [b, S, n/P, D] -> attention -> back."""
    to_heads = lambda t: jax.lax.all_to_all(t, SEQ_AXIS, split_axis=2, concat_axis=1, tiled=True)
    out = local_attention(to_heads(q), to_heads(k), to_heads(v), kv_lengths=lengths, impl=impl)
    return jax.lax.all_to_all(out, SEQ_AXIS, split_axis=1, concat_axis=2, tiled=True)


def _ring_local(q, k, v, lengths, *, n_seq: int) -> jax.Array:
    """Per device: query block fixed, k/v blocks passed round the ring, online softmax in fp32.

    Step 0 uses the local block; a `scan` of P - 1 steps each receives the previous device's block
    (`ppermute`) and folds it in, so the program size does not grow with P.
    """
    b, blk, n, d = q.shape
    me = jax.lax.axis_index(SEQ_AXIS)
    qf = q.astype(jnp.float32) * (1.0 / math.sqrt(d))
    perm = [(i, (i + 1) % n_seq) for i in range(n_seq)]

    def fold(state, kb, vb, step):
        m, l, acc = state
        src = (me - step) % n_seq  # which block of keys this device holds at this step
        scores = jnp.einsum("bqnd,bknd->bnqk", qf, kb.astype(jnp.float32))
        valid = (src * blk + jnp.arange(blk))[None, :] < lengths[:, None]  # [b, k]
        scores = jnp.where(valid[:, None, None, :], scores, -jnp.inf)
        m_new = jnp.maximum(m, scores.max(-1))
        m_safe = jnp.where(jnp.isfinite(m_new), m_new, 0.0)  # a row with no valid key yet
        p = jnp.exp(scores - m_safe[..., None])
        corr = jnp.exp(m - m_safe)
        l = l * corr + p.sum(-1)
        acc = acc * corr[..., None] + jnp.einsum("bnqk,bknd->bnqd", p, vb.astype(jnp.float32))
        return m_new, l, acc

    state = (
        jnp.full((b, n, blk), -jnp.inf, jnp.float32),  # running max
        jnp.zeros((b, n, blk), jnp.float32),  # running denominator
        jnp.zeros((b, n, blk, d), jnp.float32),  # running numerator
    )
    state = fold(state, k, v, 0)

    def body(carry, step):
        kb, vb, state = carry
        kb, vb = jax.lax.ppermute((kb, vb), SEQ_AXIS, perm)
        return (kb, vb, fold(state, kb, vb, step)), None

    if n_seq > 1:
        (_, _, state), _ = jax.lax.scan(body, (k, v, state), jnp.arange(1, n_seq))
    _, l, acc = state
    out = acc / jnp.where(l > 0, l, 1.0)[..., None]
    return jnp.swapaxes(out, 1, 2).astype(q.dtype)  # [b, blk, n, d]
