"""Stateless building blocks of the MMDiT: parameter specs, linear, norms, modulation, RoPE, embeddings.

Every function takes its parameters as a plain dict (`{"kernel": [in, out], "bias": [out]}` for a
linear) and the compute dtype; numerics follow diffusers (norm statistics, RoPE and the timestep
sinusoid in float32, everything else in the compute dtype).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from einops import rearrange

from dreamactor_jax.sharding import constrain

# ----------------------------------------------------------------------------------------------
# Parameter specs: one table describes every parameter's shape, logical axes and initialiser.
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParamSpec:
    """Shape, logical axis names (one per dim, see `dreamactor_jax.sharding`) and initialiser."""

    shape: tuple[int, ...]
    axes: tuple[str | None, ...]
    init: str = "normal"  # "normal" (fan-in scaled), "zeros", "ones"

    def stacked(self, n: int) -> "ParamSpec":
        return ParamSpec((n, *self.shape), ("layers", *self.axes), self.init)


def linear_spec(din: int, dout: int, axes: tuple[str | None, str | None], bias: bool = True) -> dict:
    spec = {"kernel": ParamSpec((din, dout), axes)}
    if bias:
        spec["bias"] = ParamSpec((dout,), (axes[1],), "zeros")
    return spec


def norm_spec(dim: int, axis: str | None = "norm", bias: bool = True) -> dict:
    spec = {"scale": ParamSpec((dim,), (axis,), "ones")}
    if bias:
        spec["bias"] = ParamSpec((dim,), (axis,), "zeros")
    return spec


def is_spec(x: Any) -> bool:
    return isinstance(x, ParamSpec)


def init_from_specs(specs: dict, key: jax.Array, dtype) -> dict:
    """Random parameters for a spec tree: fan-in scaled normal kernels, zero biases, unit scales."""
    leaves, treedef = jax.tree_util.tree_flatten(specs, is_leaf=is_spec)
    keys = jax.random.split(key, len(leaves))

    def one(spec: ParamSpec, k):
        if spec.init == "zeros":
            return jnp.zeros(spec.shape, dtype)
        if spec.init == "ones":
            return jnp.ones(spec.shape, dtype)
        shape = spec.shape[1:] if spec.axes[:1] == ("layers",) else spec.shape
        fan_in = math.prod(shape[:-1])  # linear [in, out]; patch conv [kt, kh, kw, in, out]
        return (jax.random.normal(k, spec.shape, jnp.float32) / math.sqrt(fan_in)).astype(dtype)

    return jax.tree_util.tree_unflatten(treedef, [one(s, k) for s, k in zip(leaves, keys)])


def init_from_specs_numpy(specs: dict, seed: int, dtype=np.float32, bias_std: float = 0.0) -> dict:
    """Host-side (numpy) twin of `init_from_specs`: no XLA compilation, for tests and toy runs.

    `bias_std > 0` also randomises biases and norm scales (around 0 and 1), so every parameter matters.
    """
    rng = np.random.default_rng(seed)

    def one(spec: ParamSpec):
        shape = spec.shape[1:] if spec.axes[:1] == ("layers",) else spec.shape
        if spec.init == "normal":
            a = rng.standard_normal(spec.shape) / math.sqrt(math.prod(shape[:-1]))
        else:
            a = np.full(spec.shape, 1.0 if spec.init == "ones" else 0.0) + bias_std * rng.standard_normal(spec.shape)
        return jnp.asarray(a.astype(dtype))

    return jax.tree_util.tree_map(one, specs, is_leaf=is_spec)


# ----------------------------------------------------------------------------------------------
# Linear layers (with optional LoRA) and activations
# ----------------------------------------------------------------------------------------------


def linear(p: dict, x: jax.Array, lora: dict | None = None, lora_scale: float = 1.0) -> jax.Array:
    """`x @ kernel + bias` in x's dtype; `lora = {"a": [in, r], "b": [r, out]}` adds `scale * x A B`.
    An fp8 kernel (`models.fp8.quantize_blocks`: `kernel_fp8`, `kernel_scale`) multiplies in e4m3."""
    if "kernel_fp8" in p:
        from dreamactor_jax.models import fp8

        y = fp8.matmul(x, p["kernel_fp8"], p["kernel_scale"])
    else:
        y = jnp.einsum("...i,io->...o", x, p["kernel"].astype(x.dtype))
    if lora is not None:
        y = y + lora_delta(lora, x, lora_scale)
    if "bias" in p:
        y = y + p["bias"].astype(x.dtype)
    return y


def lora_delta(lora: dict, x: jax.Array, scale: float) -> jax.Array:
    """The low-rank update `scale * (x A) B`, computed as two thin matmuls (never forming A B)."""
    h = jnp.einsum("...i,ir->...r", x, lora["a"].astype(x.dtype))
    return jnp.einsum("...r,ro->...o", h, lora["b"].astype(x.dtype)) * jnp.asarray(scale, x.dtype)


def gelu_tanh(x: jax.Array) -> jax.Array:
    return jax.nn.gelu(x, approximate=True)


# ----------------------------------------------------------------------------------------------
# Norms and modulation
# ----------------------------------------------------------------------------------------------


def _stat_dtype(dtype):
    """Where the reference computes in float32: float32, or float64 for float64 checks on CPU."""
    return jnp.promote_types(dtype, jnp.float32)


def layer_norm(x: jax.Array, p: dict | None = None, eps: float = 1e-6) -> jax.Array:
    """LayerNorm over the last axis; statistics in float32, optional affine `p = {scale, bias}`."""
    x32 = x.astype(_stat_dtype(x.dtype))
    mean = jnp.mean(x32, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
    y = ((x32 - mean) * jax.lax.rsqrt(var + eps)).astype(x.dtype)
    if p is not None:
        y = y * p["scale"].astype(x.dtype) + p["bias"].astype(x.dtype)
    return y


def rms_norm(x: jax.Array, scale: jax.Array, eps: float = 1e-6) -> jax.Array:
    """RMSNorm over the last axis (diffusers `RMSNorm`: variance in float32, then times weight)."""
    x32 = x.astype(_stat_dtype(x.dtype))
    var = jnp.mean(jnp.square(x32), axis=-1, keepdims=True)
    return (x32 * jax.lax.rsqrt(var + eps)).astype(x.dtype) * scale.astype(x.dtype)


def qk_norm(x: jax.Array, p: dict | None, kind: str | None, eps: float = 1e-6) -> jax.Array:
    """The per-head query/key norm of diffusers' `Attention(qk_norm=kind)` over the last axis.

    "rms_norm" (weight), "layer_norm" (weight, bias), "fp32_layer_norm" (no affine), "l2"
    (`F.normalize`: x / max(|x|, eps)), None (identity). Statistics in float32 (or wider).
    """
    if kind is None:
        return x
    if kind == "rms_norm":
        return rms_norm(x, p["scale"], eps)
    if kind in ("layer_norm", "fp32_layer_norm"):
        return layer_norm(x, p if kind == "layer_norm" else None, eps)
    if kind == "l2":
        x32 = x.astype(_stat_dtype(x.dtype))
        norm = jnp.sqrt(jnp.sum(jnp.square(x32), axis=-1, keepdims=True))
        return (x32 / jnp.maximum(norm, eps)).astype(x.dtype)
    raise ValueError(f"qk_norm: unknown kind {kind!r}")


def modulation(p: dict, emb: jax.Array, n: int, dtype) -> list[jax.Array]:
    """`linear(silu(emb))` chunked into n vectors of [B, 1, D] (the adaLN shift/scale/gate)."""
    out = linear(p, jax.nn.silu(emb.astype(dtype)))
    return [c[:, None, :] for c in jnp.split(out, n, axis=-1)]


def modulate(x: jax.Array, shift: jax.Array, scale: jax.Array) -> jax.Array:
    return x * (1 + scale) + shift


def select_tokens(first: jax.Array, rest: jax.Array, n_first: int, seq_len: int) -> jax.Array:
    """Per-token choice between two [B, 1, D] vectors: the first `n_first` tokens take `first`.

    Used by the `token_replace` variant, whose first-frame tokens are modulated with timestep 0.
    """
    is_first = (jnp.arange(seq_len) < n_first)[None, :, None]
    return jnp.where(is_first, first, rest)


# ----------------------------------------------------------------------------------------------
# Embeddings
# ----------------------------------------------------------------------------------------------


def timestep_sinusoid(t: jax.Array, dim: int = 256, max_period: float = 10000.0, dtype=jnp.float32) -> jax.Array:
    """diffusers `Timesteps(dim, flip_sin_to_cos=True, downscale_freq_shift=0)`: [B] -> [B, dim] fp32
    (fp64 when `dtype` is float64, for reference checks)."""
    half = dim // 2
    sd = _stat_dtype(dtype)
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=sd) / half)
    args = t.astype(sd)[:, None] * freqs[None, :]
    return jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)


def mlp2(p: dict, x: jax.Array, act) -> jax.Array:
    """`linear_2(act(linear_1(x)))`, the shape of diffusers' TimestepEmbedding / PixArt projection."""
    return linear(p["linear_2"], act(linear(p["linear_1"], x)))


def patchify(x: jax.Array, pt: int, p: int) -> jax.Array:
    """[B, T, H, W, C] -> [B, T/pt * H/p * W/p, pt*p*p*C], tokens in (t, h, w) order."""
    return rearrange(x, "b (t pt) (h ph) (w pw) c -> b (t h w) (pt ph pw c)", pt=pt, ph=p, pw=p)


def unpatchify(x: jax.Array, grid: tuple[int, int, int], pt: int, p: int) -> jax.Array:
    """[B, T'*H'*W', C*pt*p*p] (diffusers' channel order c, pt, ph, pw) -> [B, T, H, W, C]."""
    t, h, w = grid
    return rearrange(
        x, "b (t h w) (c pt ph pw) -> b (t pt) (h ph) (w pw) c", t=t, h=h, w=w, pt=pt, ph=p, pw=p
    )


# ----------------------------------------------------------------------------------------------
# 3D RoPE on video tokens
# ----------------------------------------------------------------------------------------------


def rope_cos_sin(grid: tuple[int, int, int], axes_dim: tuple[int, ...], theta: float,
                 dtype=jnp.float32) -> tuple[jax.Array, jax.Array]:
    """cos, sin tables [T'*H'*W', head_dim] in float32 (diffusers `HunyuanVideoRotaryPosEmbed`)."""
    sd = _stat_dtype(dtype)
    coords = jnp.meshgrid(*[jnp.arange(n, dtype=sd) for n in grid], indexing="ij")
    cos, sin = [], []
    for pos, d in zip(coords, axes_dim):
        freqs = 1.0 / (theta ** (jnp.arange(0, d, 2, dtype=sd) / max(d, 1)))
        ang = pos.reshape(-1)[:, None] * freqs[None, :]
        cos.append(jnp.repeat(jnp.cos(ang), 2, axis=-1))
        sin.append(jnp.repeat(jnp.sin(ang), 2, axis=-1))
    return jnp.concatenate(cos, axis=-1), jnp.concatenate(sin, axis=-1)


def apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """Rotates adjacent pairs of x [B, S, N, Dh] by the [S, Dh] tables, in float32 like the reference."""
    x32 = x.astype(_stat_dtype(x.dtype))
    pairs = rearrange(x32, "... (d two) -> ... d two", two=2)
    rotated = jnp.stack([-pairs[..., 1], pairs[..., 0]], axis=-1).reshape(x.shape)
    out = x32 * cos[None, :, None, :] + rotated * sin[None, :, None, :]
    return out.astype(x.dtype)


def split_heads(x: jax.Array, heads: int) -> jax.Array:
    x = rearrange(x, "b s (n d) -> b s n d", n=heads)
    return constrain(x, ("batch", "seq", "act_heads", None))


def merge_heads(x: jax.Array) -> jax.Array:
    return rearrange(x, "b s n d -> b s (n d)")
