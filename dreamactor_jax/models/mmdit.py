"""The HunyuanVideo MMDiT as pure functions: `param_specs`, `init_params`, `forward`.

Computes what diffusers' `HunyuanVideoTransformer3DModel` computes (T2V, I2V token_replace,
I2V latent_concat), channels-last. Parameters are a nested dict named after diffusers modules
(`transformer_blocks/attn/to_q/kernel`, kernels [in, out]); the three block lists are stacked
with a leading layer axis and run under `lax.scan` (or a Python loop when `cfg.scan_layers` is
False), each layer optionally rematerialised by `cfg.remat_policy`.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from dreamactor_jax.models import blocks, remat
from dreamactor_jax.models.attention import attention  # noqa: F401  (re-exported for users)
from dreamactor_jax.models.config import QK_NORM_LEAVES, MMDiTConfig
from dreamactor_jax.models.layers import (
    ParamSpec,
    init_from_specs,
    init_from_specs_numpy,
    is_spec,
    layer_norm,
    linear,
    linear_spec,
    mlp2,
    modulation,
    norm_spec,
    patchify,
    rope_cos_sin,
    timestep_sinusoid,
    unpatchify,
)
from dreamactor_jax import sharding
from dreamactor_jax.sharding import constrain

# Paths (in the params tree) of the stacked layer lists, and their diffusers prefixes.
STACKS = {
    ("transformer_blocks",): "transformer_blocks",
    ("single_transformer_blocks",): "single_transformer_blocks",
    ("context_embedder", "token_refiner", "refiner_blocks"): "context_embedder.token_refiner.refiner_blocks",
}

# ----------------------------------------------------------------------------------------------
# Parameter table
# ----------------------------------------------------------------------------------------------


def _attn_spec(cfg: MMDiTConfig, names: tuple[str, ...], out: tuple[str, ...], norms: tuple[str, ...]) -> dict:
    d = cfg.hidden_size
    spec = {n: linear_spec(d, d, ("embed", "heads")) for n in names}
    spec.update({n: linear_spec(d, d, ("heads", "embed")) for n in out})
    for n in norms:  # per-head q/k norms: parameters only for the kinds that have them
        leaves = QK_NORM_LEAVES[cfg.qk_norm]
        if leaves:
            spec[n] = norm_spec(cfg.attention_head_dim, "head_dim", bias="bias" in leaves)
    return spec


def _ff_spec(d: int, m: int) -> dict:
    return {"net_0": {"proj": linear_spec(d, m, ("embed", "mlp"))}, "net_2": linear_spec(m, d, ("mlp", "embed"))}


def _stack(tree: dict, n: int) -> dict:
    return jax.tree_util.tree_map(lambda s: s.stacked(n), tree, is_leaf=is_spec)


def param_specs(cfg: MMDiTConfig) -> dict:
    """Every parameter's `ParamSpec` (shape, logical axes, init), as a nested dict."""
    d, m = cfg.hidden_size, cfg.mlp_dim
    pt, p = cfg.patch_size_t, cfg.patch_size
    emb = lambda din: {"linear_1": linear_spec(din, d, (None, "embed")), "linear_2": linear_spec(d, d, ("embed", None))}
    refiner = {
        "norm1": norm_spec(d),
        "attn": _attn_spec(cfg, ("to_q", "to_k", "to_v"), ("to_out_0",), ()),
        "norm2": norm_spec(d),
        "ff": _ff_spec(d, cfg.refiner_mlp_dim),  # 4x whatever mlp_ratio says (as diffusers)
        "norm_out": {"linear": linear_spec(d, 2 * d, ("embed", "mod"))},
    }
    dual = {
        "norm1": {"linear": linear_spec(d, 6 * d, ("embed", "mod"))},
        "norm1_context": {"linear": linear_spec(d, 6 * d, ("embed", "mod"))},
        "attn": _attn_spec(
            cfg,
            ("to_q", "to_k", "to_v", "add_q_proj", "add_k_proj", "add_v_proj"),
            ("to_out_0", "to_add_out"),
            ("norm_q", "norm_k", "norm_added_q", "norm_added_k"),
        ),
        "ff": _ff_spec(d, m),
        "ff_context": _ff_spec(d, m),
    }
    single = {
        "norm": {"linear": linear_spec(d, 3 * d, ("embed", "mod"))},
        "attn": _attn_spec(cfg, ("to_q", "to_k", "to_v"), (), ("norm_q", "norm_k")),
        "proj_mlp": linear_spec(d, m, ("embed", "mlp")),
        "proj_out": linear_spec(d + m, d, ("mlp_in", "embed")),
    }
    time_text = {"timestep_embedder": emb(256), "text_embedder": emb(cfg.pooled_projection_dim)}
    if cfg.guidance_embeds:
        time_text["guidance_embedder"] = emb(256)
    return {
        "x_embedder": {
            "proj": {
                "kernel": ParamSpec((pt, p, p, cfg.in_channels, d), (None, None, None, "patch", "embed")),
                "bias": ParamSpec((d,), ("embed",), "zeros"),
            }
        },
        "context_embedder": {
            "time_text_embed": {"timestep_embedder": emb(256), "text_embedder": emb(cfg.text_embed_dim)},
            "proj_in": linear_spec(cfg.text_embed_dim, d, ("text_embed", "embed")),
            "token_refiner": {"refiner_blocks": _stack(refiner, cfg.num_refiner_layers)},
        },
        "time_text_embed": time_text,
        "transformer_blocks": _stack(dual, cfg.num_layers),
        "single_transformer_blocks": _stack(single, cfg.num_single_layers),
        "norm_out": {"linear": linear_spec(d, 2 * d, ("embed", "mod"))},
        "proj_out": linear_spec(d, pt * p * p * cfg.out_channels, ("embed", "out")),
    }


def param_axes(cfg: MMDiTConfig) -> dict:
    """Logical axis names of every parameter (same tree as the params), for `sharding.tree_shardings`."""
    return jax.tree_util.tree_map(lambda s: s.axes, param_specs(cfg), is_leaf=is_spec)


def init_params(cfg: MMDiTConfig, key: jax.Array) -> dict:
    """Random base parameters in `cfg.param_dtype` (use `jax.eval_shape` for shapes only)."""
    return init_from_specs(param_specs(cfg), key, jnp.dtype(cfg.param_dtype))


def init_params_numpy(cfg: MMDiTConfig, seed: int = 0, bias_std: float = 0.0) -> dict:
    """Random parameters drawn on the host (no compilation: fast for tiny test configs)."""
    return init_from_specs_numpy(param_specs(cfg), seed, jnp.dtype(cfg.param_dtype), bias_std)


def count_params(cfg: MMDiTConfig) -> int:
    leaves = jax.tree_util.tree_leaves(param_specs(cfg), is_leaf=is_spec)
    return sum(math.prod(s.shape) for s in leaves)


# ----------------------------------------------------------------------------------------------
# Remat and the layer loop
# ----------------------------------------------------------------------------------------------

remat_policy = remat.policy  # the named policies (kept here for older callers)


def run_layers(block_fn, stacked: dict, lora: dict | None, carry, ctx, cfg: MMDiTConfig, policies: list[str] | None = None,
               layers: tuple[int, int] | None = None):
    """Applies `block_fn(p, lora, carry, ctx, cfg)` for each layer of the stacked params (or only the
    layers `range(*layers)`, indexed in place: a slice of the stacked weights is never copied).

    `policies`: the remat policy of each layer (`models.remat`); None: `cfg.remat_policy` when it is one
    name, else (a plan or `auto`, resolved by `forward`) `full`. One `lax.scan` per run of equal
    policies; a run after the first indexes the stacked weights inside its body (no copy of a slice).
    """
    lora = {} if lora is None else lora
    n = jax.tree_util.tree_leaves(stacked)[0].shape[0]
    if policies is None:
        items = remat.parse(cfg.remat_policy)
        policies = [items[0][0] if items and len(items) == 1 and items[0][1] is None else "full"] * n
    if len(policies) != n:
        raise ValueError(f"remat plan: {len(policies)} policies for {n} layers")
    runs = []
    for i, name in enumerate(policies):
        if layers is not None and not layers[0] <= i < layers[1]:
            continue
        if runs and runs[-1][0] == name:
            runs[-1][2] = i + 1
        else:
            runs.append([name, i, i + 1])

    def wrap(body, name):
        if name == "none":
            return body
        return jax.checkpoint(body, policy=remat.policy(name), prevent_cse=not cfg.scan_layers)

    if not runs:
        return carry
    if layers is None and (len(runs) <= 1 or not cfg.scan_layers):
        def body(c, xs):
            p, lp = xs
            return block_fn(p, lp or None, c, ctx, cfg), None

        if not cfg.scan_layers:
            for i in range(n):
                carry, _ = wrap(body, policies[i])(carry, jax.tree_util.tree_map(lambda a: a[i], (stacked, lora)))
            return carry
        carry, _ = jax.lax.scan(wrap(body, policies[0] if policies else "none"), carry, (stacked, lora))
        return carry

    def indexed(c, xs):
        i, lp = xs
        p = jax.tree_util.tree_map(lambda a: jax.lax.dynamic_index_in_dim(a, i, keepdims=False), stacked)
        return block_fn(p, lp or None, c, ctx, cfg), None

    for name, start, stop in runs:
        lp = jax.tree_util.tree_map(lambda a: a[start:stop], lora)
        carry, _ = jax.lax.scan(wrap(indexed, name), carry, (jnp.arange(start, stop), lp))
    return carry


# ----------------------------------------------------------------------------------------------
# Forward
# ----------------------------------------------------------------------------------------------


def _check_inputs(cfg: MMDiTConfig, x, timestep, text, text_mask, pooled, guidance) -> None:
    if x.ndim != 5 or x.shape[-1] != cfg.in_channels:
        raise ValueError(f"x: expected [B, T', H', W', {cfg.in_channels}] latents, got shape {x.shape}")
    b, t, h, w, _ = x.shape
    pt, p = cfg.patch_size_t, cfg.patch_size
    if t % pt or h % p or w % p:
        raise ValueError(f"x: frames {t} must divide by {pt} and height/width {h}x{w} by {p}")
    if timestep.shape != (b,):
        raise ValueError(f"timestep: expected shape ({b},) (one per batch item), got {timestep.shape}")
    if text.ndim != 3 or text.shape[0] != b or text.shape[2] != cfg.text_embed_dim:
        raise ValueError(f"text: expected [{b}, L, {cfg.text_embed_dim}], got {text.shape}")
    if text_mask.shape != text.shape[:2]:
        raise ValueError(f"text_mask: expected shape {text.shape[:2]} to match text [B, L], got {text_mask.shape}")
    if pooled.shape != (b, cfg.pooled_projection_dim):
        raise ValueError(f"pooled: expected [{b}, {cfg.pooled_projection_dim}], got {pooled.shape}")
    if cfg.guidance_embeds and (guidance is None or guidance.shape != (b,)):
        got = None if guidance is None else guidance.shape
        raise ValueError(f"guidance: this config has guidance_embeds=True, expected shape ({b},), got {got}")
    if not cfg.guidance_embeds and guidance is not None:
        raise ValueError("guidance: this config has guidance_embeds=False; pass guidance=None")


def condition_embedding(p: dict, cfg: MMDiTConfig, timestep, pooled, guidance):
    """temb = t_emb + [guidance_emb] + pooled-text emb; plus token-replace emb (t = 0) when needed."""
    dtype = cfg.compute_dtype
    t_emb = lambda t: mlp2(p["timestep_embedder"], timestep_sinusoid(t, dtype=dtype).astype(dtype), jax.nn.silu)
    pooled_emb = mlp2(p["text_embedder"], pooled.astype(dtype), jax.nn.silu)
    temb = t_emb(timestep) + pooled_emb
    if cfg.guidance_embeds:
        temb = temb + mlp2(p["guidance_embedder"], timestep_sinusoid(guidance, dtype=dtype).astype(dtype), jax.nn.silu)
    tr_emb = t_emb(jnp.zeros_like(timestep)) + pooled_emb if cfg.image_condition_type == "token_replace" else None
    return temb, tr_emb


def refine_text(p: dict, cfg: MMDiTConfig, text, text_mask, timestep) -> jax.Array:
    """`HunyuanVideoTokenRefiner`: masked-mean text + t embedding gates 2 self-attention blocks."""
    dtype = cfg.compute_dtype
    m = text_mask.astype(bool)
    sd = jnp.promote_types(dtype, jnp.float32)
    mf = m.astype(sd)[..., None]
    pooled = ((text.astype(sd) * mf).sum(1) / mf.sum(1)).astype(dtype)
    tt = p["time_text_embed"]
    temb = mlp2(tt["timestep_embedder"], timestep_sinusoid(timestep, dtype=dtype).astype(dtype), jax.nn.silu)
    temb = temb + mlp2(tt["text_embedder"], pooled, jax.nn.silu)
    x = linear(p["proj_in"], text.astype(dtype))
    first_key = (jnp.arange(m.shape[1]) == 0)[None, None, None, :]  # column 0 always attendable
    mask = (m[:, None, :, None] & m[:, None, None, :]) | first_key  # [B, 1, L, L]
    blk = lambda bp, lp, c, ctx, cfg_: blocks.refiner_block(bp, c, temb, mask, cfg_)
    return run_layers(blk, p["token_refiner"]["refiner_blocks"], None, x, None, cfg.replace(remat_policy="none"))


class Embedded(NamedTuple):
    """What `embed` hands the block stacks: the token streams, the shared block context, and what
    `final` needs to turn the video tokens back into a velocity."""

    img: jax.Array            # [B, S_video, D]
    txt: jax.Array            # [B, S_text, D]
    ctx: blocks.BlockContext
    temb: jax.Array           # [B, D]
    grid: tuple[int, int, int]
    lora: dict                # the adapter ({} without)


def embed(params, cfg, x, timestep, text, text_mask, pooled, guidance=None, lora=None, lora_cfg=None) -> Embedded:
    """Everything before the first block: patch and text embedding, timestep modulation, RoPE tables."""
    timestep, text_mask = jnp.asarray(timestep), jnp.asarray(text_mask)
    guidance = None if guidance is None else jnp.asarray(guidance)
    _check_inputs(cfg, x, timestep, text, text_mask, pooled, guidance)
    if lora is not None and lora_cfg is None:
        raise ValueError("lora_cfg: required when lora is given (it holds rank and alpha)")
    dtype = cfg.compute_dtype
    b, t, h, w, _ = x.shape
    pt, p = cfg.patch_size_t, cfg.patch_size
    grid = (t // pt, h // p, w // p)
    n_video = math.prod(grid)

    temb, tr_emb = condition_embedding(params["time_text_embed"], cfg, timestep, pooled, guidance)
    kernel = params["x_embedder"]["proj"]["kernel"].reshape(cfg.patch_dim, -1)
    img = linear({"kernel": kernel, "bias": params["x_embedder"]["proj"]["bias"]}, patchify(x.astype(dtype), pt, p))
    img = constrain(img, ("batch", "seq", "act_embed"))
    txt = refine_text(params["context_embedder"], cfg, text, text_mask, timestep)

    cos, sin = rope_cos_sin(grid, cfg.rope_axes_dim, cfg.rope_theta, dtype)
    n_text = text.shape[1]
    cos = jnp.concatenate([cos, jnp.ones((n_text, cos.shape[1]), cos.dtype)])  # text: no rotation
    sin = jnp.concatenate([sin, jnp.zeros((n_text, sin.shape[1]), sin.dtype)])
    kv_lengths = n_video + text_mask.astype(jnp.int32).sum(1)  # diffusers: keys past the valid text masked
    ctx = blocks.BlockContext(
        temb=temb,
        tr_emb=tr_emb,
        n_first=grid[1] * grid[2] if tr_emb is not None else 0,
        rope_cos=cos,
        rope_sin=sin,
        kv_lengths=kv_lengths,
        lora_scale=0.0 if lora is None else lora_cfg.scale,
    )
    return Embedded(img, txt, ctx, temb, grid, lora or {})


def final(params, cfg, e: Embedded, seq: jax.Array) -> jax.Array:
    """The output layer on the video tokens of the final sequence [B, S_video + S_text, D]."""
    dtype = cfg.compute_dtype
    img = seq[:, :math.prod(e.grid)]
    scale, shift = modulation(params["norm_out"]["linear"], e.temb, 2, dtype)  # note: (scale, shift)
    img = layer_norm(img) * (1 + scale) + shift
    out = linear(params["proj_out"], img).astype(jnp.promote_types(dtype, jnp.float32))
    return unpatchify(out, e.grid, cfg.patch_size_t, cfg.patch_size)


def forward(
    params: dict,
    cfg: MMDiTConfig,
    x: jax.Array,
    timestep: jax.Array,
    text: jax.Array,
    text_mask: jax.Array,
    pooled: jax.Array,
    guidance: jax.Array | None = None,
    lora: dict | None = None,
    lora_cfg: Any = None,
) -> jax.Array:
    """Velocity prediction [B, T', H', W', out_channels] (float32) for latents x [B, T', H', W', C].

    timestep [B] in [0, 1000]; text [B, L, text_embed_dim] with text_mask [B, L] (right padded);
    pooled [B, pooled_projection_dim]; guidance [B] (scale * 1000) iff cfg.guidance_embeds.
    `lora` (from `models.lora.init_lora`) is applied unmerged with scale alpha / rank of `lora_cfg`.
    """
    e = embed(params, cfg, x, timestep, text, text_mask, pooled, guidance, lora, lora_cfg)
    active = sharding.active_mesh()
    plan = remat.resolve(cfg.remat_policy, cfg, tokens=e.img.shape[1] + e.txt.shape[1], batch=x.shape[0],
                         params=params, lora=lora, mesh=active[0] if active else None)
    img, txt = run_layers(blocks.dual_block, params["transformer_blocks"], e.lora.get("transformer_blocks"),
                          (e.img, e.txt), e.ctx, cfg, plan[:cfg.num_layers])
    seq = jnp.concatenate([img, txt], axis=1)
    seq = run_layers(blocks.single_block, params["single_transformer_blocks"], e.lora.get("single_transformer_blocks"),
                     seq, e.ctx, cfg, plan[cfg.num_layers:])
    return final(params, cfg, e, seq)
