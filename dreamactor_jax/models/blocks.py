"""The three transformer blocks of HunyuanVideo as pure functions of one layer's parameters.

- `refiner_block`: the text token refiner (self-attention over text, adaLN gates from t + text).
- `dual_block`: separate weights for video and text tokens, joint attention (diffusers
  `HunyuanVideoTransformerBlock`, and its token-replace twin when `ctx.n_first > 0`).
- `single_block`: one weight set over [video, text] with parallel attention + MLP
  (`HunyuanVideoSingleTransformerBlock`).

`lora` arguments are the same layer's LoRA sub-tree (or None); see `models.lora`.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from dreamactor_jax.models.attention import attention
from dreamactor_jax.models.config import MMDiTConfig
from dreamactor_jax.models.layers import (
    apply_rope,
    gelu_tanh,
    layer_norm,
    linear,
    lora_delta,
    merge_heads,
    modulate,
    modulation,
    qk_norm,
    select_tokens,
    split_heads,
)
from dreamactor_jax.sharding import constrain

EPS = 1e-6


class BlockContext(NamedTuple):
    """Per-call inputs shared by all blocks (closed over by the layer scan)."""

    temb: jax.Array  # [B, D] timestep + guidance + pooled-text embedding
    tr_emb: jax.Array | None  # [B, D] token-replace embedding (timestep 0), or None
    n_first: int  # tokens modulated by tr_emb (first latent frame), 0 unless token_replace
    rope_cos: jax.Array  # [S_video + S_text, Dh]; identity rows for text tokens
    rope_sin: jax.Array
    kv_lengths: jax.Array  # [B] int32: video tokens + valid text tokens
    lora_scale: float


def _sub(tree: dict | None, *path: str) -> dict | None:
    for name in path:
        if tree is None:
            return None
        tree = tree.get(name)
    return tree


def _ffn(p: dict, x: jax.Array, lora: dict | None, scale: float) -> jax.Array:
    """diffusers FeedForward(gelu-approximate): net.0.proj -> GELU(tanh) -> net.2."""
    h = gelu_tanh(linear(p["net_0"]["proj"], x, _sub(lora, "net_0", "proj"), scale))
    h = constrain(h, ("batch", "seq", "act_mlp"))
    return linear(p["net_2"], h, _sub(lora, "net_2"), scale)


def _qkv(p: dict, x: jax.Array, names: tuple[str, str, str], norms: tuple[str, str] | None, cfg: MMDiTConfig, lora, s):
    q, k, v = (split_heads(linear(p[n], x, _sub(lora, n), s), cfg.num_attention_heads) for n in names)
    if norms is not None:  # per-head q/k norms of the kind cfg.qk_norm
        q = qk_norm(q, p.get(norms[0]), cfg.qk_norm, EPS)
        k = qk_norm(k, p.get(norms[1]), cfg.qk_norm, EPS)
    return q, k, v


def _modulations(p: dict, ctx: BlockContext, n: int, seq_len: int, dtype) -> list[jax.Array]:
    """adaLN vectors [B, 1, D] (or per-token [B, S, D] for token_replace's first-frame tokens)."""
    mods = modulation(p, ctx.temb, n, dtype)
    if ctx.tr_emb is None or ctx.n_first == 0:
        return mods
    tr = modulation(p, ctx.tr_emb, n, dtype)
    return [select_tokens(a, b, ctx.n_first, seq_len) for a, b in zip(tr, mods)]


def refiner_block(p: dict, x: jax.Array, temb: jax.Array, mask: jax.Array, cfg: MMDiTConfig) -> jax.Array:
    """`HunyuanVideoIndividualTokenRefinerBlock`: x [B, L, D], mask [B, 1, L, L] bool."""
    h = layer_norm(x, p["norm1"], EPS)
    q, k, v = _qkv(p["attn"], h, ("to_q", "to_k", "to_v"), None, cfg, None, 1.0)
    attn = linear(p["attn"]["to_out_0"], merge_heads(attention(q, k, v, mask=mask)))
    gate_msa, gate_mlp = modulation(p["norm_out"]["linear"], temb, 2, x.dtype)
    x = x + attn * gate_msa
    h = linear(p["ff"]["net_0"]["proj"], layer_norm(x, p["norm2"], EPS))
    return x + linear(p["ff"]["net_2"], jax.nn.silu(h)) * gate_mlp


def dual_block(p: dict, lora: dict | None, carry, ctx: BlockContext, cfg: MMDiTConfig):
    """One dual-stream block; carry = (video [B, Sv, D], text [B, St, D])."""
    img, txt = carry
    dtype, s = img.dtype, ctx.lora_scale
    sv = img.shape[1]
    shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = _modulations(p["norm1"]["linear"], ctx, 6, sv, dtype)
    c_shift_msa, c_scale_msa, c_gate_msa, c_shift_mlp, c_scale_mlp, c_gate_mlp = modulation(
        p["norm1_context"]["linear"], ctx.temb, 6, dtype
    )
    a, la = p["attn"], _sub(lora, "attn")
    qi, ki, vi = _qkv(a, modulate(layer_norm(img), shift_msa, scale_msa), ("to_q", "to_k", "to_v"), ("norm_q", "norm_k"), cfg, la, s)
    qt, kt, vt = _qkv(
        a,
        modulate(layer_norm(txt), c_shift_msa, c_scale_msa),
        ("add_q_proj", "add_k_proj", "add_v_proj"),
        ("norm_added_q", "norm_added_k"),
        cfg,
        la,
        s,
    )
    q = apply_rope(jnp.concatenate([qi, qt], axis=1), ctx.rope_cos, ctx.rope_sin)
    k = apply_rope(jnp.concatenate([ki, kt], axis=1), ctx.rope_cos, ctx.rope_sin)
    v = jnp.concatenate([vi, vt], axis=1)
    o = merge_heads(attention(q, k, v, kv_lengths=ctx.kv_lengths, impl=cfg.attention_impl))
    img = img + linear(a["to_out_0"], o[:, :sv], _sub(la, "to_out_0"), s) * gate_msa
    txt = txt + linear(a["to_add_out"], o[:, sv:], _sub(la, "to_add_out"), s) * c_gate_msa

    img = img + gate_mlp * _ffn(p["ff"], modulate(layer_norm(img), shift_mlp, scale_mlp), _sub(lora, "ff"), s)
    txt = txt + c_gate_mlp * _ffn(
        p["ff_context"], modulate(layer_norm(txt), c_shift_mlp, c_scale_mlp), _sub(lora, "ff_context"), s
    )
    img = constrain(img, ("batch", "seq", "act_embed"))
    txt = constrain(txt, ("batch", "seq", "act_embed"))
    return img, txt


def single_block(p: dict, lora: dict | None, x: jax.Array, ctx: BlockContext, cfg: MMDiTConfig) -> jax.Array:
    """One single-stream block over x = [video, text] tokens [B, S, D]."""
    dtype, s, d = x.dtype, ctx.lora_scale, cfg.hidden_size
    shift, scale, gate = _modulations(p["norm"]["linear"], ctx, 3, x.shape[1], dtype)
    h = modulate(layer_norm(x), shift, scale)
    mlp = gelu_tanh(linear(p["proj_mlp"], h, _sub(lora, "proj_mlp"), s))
    mlp = constrain(mlp, ("batch", "seq", "act_mlp"))
    q, k, v = _qkv(p["attn"], h, ("to_q", "to_k", "to_v"), ("norm_q", "norm_k"), cfg, _sub(lora, "attn"), s)
    q = apply_rope(q, ctx.rope_cos, ctx.rope_sin)
    k = apply_rope(k, ctx.rope_cos, ctx.rope_sin)
    o = merge_heads(attention(q, k, v, kv_lengths=ctx.kv_lengths, impl=cfg.attention_impl))
    # proj_out(concat[attn, mlp]) as two matmuls over the kernel's row blocks (no concat copy).
    po = p["proj_out"]
    if "kernel_fp8" in po:  # models.fp8: the two row blocks of the e4m3 kernel, one scale per output
        from dreamactor_jax.models import fp8

        out = (fp8.matmul(o, po["kernel_fp8"][:d], po["kernel_scale"])
               + fp8.matmul(mlp, po["kernel_fp8"][d:], po["kernel_scale"]))
    else:
        w = po["kernel"].astype(dtype)
        out = jnp.einsum("bsi,io->bso", o, w[:d]) + jnp.einsum("bsi,io->bso", mlp, w[d:])
    out = out + p["proj_out"]["bias"].astype(dtype)
    lp = _sub(lora, "proj_out")
    if _sub(lp, "attn") is not None:
        out = out + lora_delta(lp["attn"], o, s)
    if _sub(lp, "mlp") is not None:
        out = out + lora_delta(lp["mlp"], mlp, s)
    return constrain(x + gate * out, ("batch", "seq", "act_embed"))
