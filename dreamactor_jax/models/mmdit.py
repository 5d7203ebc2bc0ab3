"""The HunyuanVideo MMDiT as pure functions: `param_specs`, `init_params`, `forward`.

Computes what diffusers' `HunyuanVideoTransformer3DModel` (T2V, I2V token_replace, I2V
latent_concat) and `HunyuanVideo15Transformer3DModel` (glyph and image tokens, MeanFlow) compute,
channels-last; which one is `cfg.backbone` and the switches of `MMDiTConfig`. Parameters are a nested dict named after diffusers modules
(`transformer_blocks/attn/to_q/kernel`, kernels [in, out]); the three block lists are stacked
with a leading layer axis and run under `lax.scan` (or a Python loop when `cfg.scan_layers` is
False), each layer optionally rematerialised by `cfg.remat_policy`.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from dreamactor_jax.models import blocks, remat
from dreamactor_jax.models.attention import attention  # noqa: F401  (re-exported for users)
from dreamactor_jax.models.config import BACKBONES, NUM_TOKEN_TYPES, QK_NORM_LEAVES, MMDiTConfig
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

GLYPH_HIDDEN = 2048  # width of the glyph (ByT5) projection's hidden layers (fixed in diffusers)
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
    time_text = {"timestep_embedder": emb(256)}
    if cfg.pooled_projection_dim:
        time_text["text_embedder"] = emb(cfg.pooled_projection_dim)
    if cfg.guidance_embeds:
        time_text["guidance_embedder"] = emb(256)
    if cfg.use_meanflow:
        time_text["timestep_embedder_r"] = emb(256)
    extra = {}
    if cfg.text_embed_2_dim:  # glyph tokens: LayerNorm -> 2048 -> GELU -> 2048 -> GELU -> D
        t2 = cfg.text_embed_2_dim
        extra["context_embedder_2"] = {
            "norm": norm_spec(t2),
            "linear_1": linear_spec(t2, GLYPH_HIDDEN, (None, None)),
            "linear_2": linear_spec(GLYPH_HIDDEN, GLYPH_HIDDEN, (None, None)),
            "linear_3": linear_spec(GLYPH_HIDDEN, d, (None, "embed")),
        }
    if cfg.image_embed_dim:  # image tokens: LayerNorm -> Linear -> GELU -> Linear -> LayerNorm
        di = cfg.image_embed_dim
        extra["image_embedder"] = {
            "norm_in": norm_spec(di),
            "linear_1": linear_spec(di, di, (None, None)),
            "linear_2": linear_spec(di, d, (None, "embed")),
            "norm_out": norm_spec(d),
        }
    if cfg.token_types:
        extra["cond_type_embed"] = {"embedding": ParamSpec((NUM_TOKEN_TYPES, d), (None, "embed"))}
    return {
        **extra,
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
        BACKBONES[cfg.backbone].time_embed: time_text,
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
        carry, _ = jax.lax.scan(wrap(body, policies[0]), carry, (stacked, lora))
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


def _check_inputs(cfg: MMDiTConfig, x, timestep, text, text_mask, pooled, guidance, extra: dict) -> None:
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
    if not (pooled is None and cfg.pooled_projection_dim == 0) and (pooled is None or pooled.shape != (b, cfg.pooled_projection_dim)):
        raise ValueError(f"pooled: expected [{b}, {cfg.pooled_projection_dim}], got {None if pooled is None else pooled.shape}")
    if cfg.guidance_embeds and (guidance is None or guidance.shape != (b,)):
        got = None if guidance is None else guidance.shape
        raise ValueError(f"guidance: this config has guidance_embeds=True, expected shape ({b},), got {got}")
    if not cfg.guidance_embeds and guidance is not None:
        raise ValueError("guidance: this config has guidance_embeds=False; pass guidance=None")
    widths = {"text_2": cfg.text_embed_2_dim, "image_embeds": cfg.image_embed_dim}
    for name, width in widths.items():
        a = extra[name]
        if a is not None and (width == 0 or a.ndim != 3 or a.shape[0] != b or a.shape[2] != width):
            want = f"[{b}, N, {width}]" if width else f"None (this config has {name.replace('text_2', 'text_embed_2')}_dim=0)"
            raise ValueError(f"{name}: expected {want}, got shape {a.shape}")
    if (extra["text_2"] is None) != (extra["text_2_mask"] is None) or (
            extra["text_2"] is not None and extra["text_2_mask"].shape != extra["text_2"].shape[:2]):
        got = None if extra["text_2_mask"] is None else extra["text_2_mask"].shape
        raise ValueError(f"text_2_mask: expected shape [B, N] of text_2 (given iff text_2 is), got {got}")
    if extra["timestep_r"] is not None and (not cfg.use_meanflow or extra["timestep_r"].shape != (b,)):
        want = f"shape ({b},)" if cfg.use_meanflow else "None (this config has use_meanflow=False)"
        raise ValueError(f"timestep_r: expected {want}, got shape {extra['timestep_r'].shape}")


def condition_embedding(p: dict, cfg: MMDiTConfig, timestep, pooled, guidance, timestep_r=None):
    """temb = t_emb [+ pooled-text emb] [+ guidance emb] [+ t_r emb (MeanFlow)]; plus the token-replace
    emb (t = 0) when needed."""
    dtype = cfg.compute_dtype
    t_emb = lambda t, name="timestep_embedder": mlp2(p[name], timestep_sinusoid(t, dtype=dtype).astype(dtype), jax.nn.silu)
    pooled_emb = mlp2(p["text_embedder"], pooled.astype(dtype), jax.nn.silu) if cfg.pooled_projection_dim else 0.0
    temb = t_emb(timestep) + pooled_emb
    if cfg.guidance_embeds:
        temb = temb + t_emb(guidance, "guidance_embedder")
    if timestep_r is not None:
        temb = temb + t_emb(timestep_r, "timestep_embedder_r")
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
    mask = m[:, None, :, None] & m[:, None, None, :]  # [B, 1, L, L]
    if cfg.legacy_text_mask:  # HunyuanVideo 1.0: column 0 always attendable
        mask = mask | (jnp.arange(m.shape[1]) == 0)[None, None, None, :]
    blk = lambda bp, lp, c, ctx, cfg_: blocks.refiner_block(bp, c, temb, mask, cfg_)
    return run_layers(blk, p["token_refiner"]["refiner_blocks"], None, x, None, cfg.replace(remat_policy="none"))


def _gelu(x):
    return jax.nn.gelu(x, approximate=False)


def glyph_tokens(p: dict, x: jax.Array, dtype) -> jax.Array:
    """`HunyuanVideo15ByT5TextProjection`: LayerNorm (eps 1e-5) -> linear_1 -> GELU -> linear_2 -> GELU -> linear_3."""
    h = _gelu(linear(p["linear_1"], layer_norm(x.astype(dtype), p["norm"], 1e-5)))
    return linear(p["linear_3"], _gelu(linear(p["linear_2"], h)))


def image_tokens(p: dict, x: jax.Array, dtype) -> jax.Array:
    """`HunyuanVideo15ImageProjection`: LayerNorm -> linear_1 -> GELU -> linear_2 -> LayerNorm (eps 1e-5)."""
    h = linear(p["linear_2"], _gelu(linear(p["linear_1"], layer_norm(x.astype(dtype), p["norm_in"], 1e-5))))
    return layer_norm(h, p["norm_out"], 1e-5)


def context_tokens(params: dict, cfg: MMDiTConfig, text, text_mask, timestep, text_2=None, text_2_mask=None,
                   image_embeds=None) -> tuple[jax.Array, jax.Array]:
    """The non-video tokens of the joint attention [B, L', D] and how many lead as valid [B] int32.

    HunyuanVideo (`legacy_text_mask`): the refined text, the first `sum(text_mask)` valid. With glyph /
    image streams (HunyuanVideo-1.5): [image, glyph, text] tokens, each plus its `cond_type_embed` row,
    valid ones gathered first in that order (padding zeroed), as diffusers does; image tokens are all
    masked when `image_embeds` is all zeros over the batch (diffusers' text-to-video rule) or absent.
    """
    txt = refine_text(params["context_embedder"], cfg, text, text_mask, timestep)
    if cfg.legacy_text_mask:
        return txt, text_mask.astype(jnp.int32).sum(1)
    dtype = cfg.compute_dtype
    kind = (lambda i: params["cond_type_embed"]["embedding"][i].astype(dtype)) if cfg.token_types else (lambda i: 0.0)
    parts, valid = [], []
    if image_embeds is not None:
        img = image_tokens(params["image_embedder"], image_embeds, dtype)
        parts.append(img + kind(2))
        valid.append(jnp.broadcast_to(jnp.any(image_embeds != 0), img.shape[:2]))
    if text_2 is not None:
        parts.append(glyph_tokens(params["context_embedder_2"], text_2, dtype) + kind(1))
        valid.append(text_2_mask.astype(bool))
    parts.append(txt + kind(0))
    valid.append(text_mask.astype(bool))
    tokens, valid = jnp.concatenate(parts, axis=1), jnp.concatenate(valid, axis=1)
    order = jnp.argsort((~valid).astype(jnp.int32), axis=1, stable=True)  # valid first, order kept
    tokens = jnp.take_along_axis(tokens, order[..., None], axis=1)
    valid = jnp.take_along_axis(valid, order, axis=1)
    return jnp.where(valid[..., None], tokens, 0).astype(dtype), valid.astype(jnp.int32).sum(1)


class Embedded(NamedTuple):
    """What `embed` hands the block stacks: the token streams, the shared block context, and what
    `final` needs to turn the video tokens back into a velocity."""

    img: jax.Array            # [B, S_video, D]
    txt: jax.Array            # [B, S_text, D]
    ctx: blocks.BlockContext
    temb: jax.Array           # [B, D]
    grid: tuple[int, int, int]
    lora: dict                # the adapter ({} without)


def embed(params, cfg, x, timestep, text, text_mask, pooled, guidance=None, lora=None, lora_cfg=None, *,
          text_2=None, text_2_mask=None, image_embeds=None, timestep_r=None) -> Embedded:
    """Everything before the first block: patch and context tokens, timestep modulation, RoPE tables
    (arguments as `forward`'s)."""
    timestep, text_mask = jnp.asarray(timestep), jnp.asarray(text_mask)
    as_arr = lambda a: None if a is None else jnp.asarray(a)
    guidance = as_arr(guidance)
    extra = {k: as_arr(v) for k, v in dict(text_2=text_2, text_2_mask=text_2_mask, image_embeds=image_embeds,
                                           timestep_r=timestep_r).items()}
    _check_inputs(cfg, x, timestep, text, text_mask, pooled, guidance, extra)
    if lora is not None and lora_cfg is None:
        raise ValueError("lora_cfg: required when lora is given (it holds rank and alpha)")
    dtype = cfg.compute_dtype
    b, t, h, w, _ = x.shape
    pt, p = cfg.patch_size_t, cfg.patch_size
    grid = (t // pt, h // p, w // p)
    n_video = math.prod(grid)

    temb, tr_emb = condition_embedding(params[BACKBONES[cfg.backbone].time_embed], cfg, timestep, pooled, guidance,
                                       extra["timestep_r"])
    kernel = params["x_embedder"]["proj"]["kernel"].reshape(cfg.patch_dim, -1)
    img = linear({"kernel": kernel, "bias": params["x_embedder"]["proj"]["bias"]}, patchify(x.astype(dtype), pt, p))
    img = constrain(img, ("batch", "seq", "act_embed"))
    txt, n_valid = context_tokens(params, cfg, text, text_mask, timestep, extra["text_2"], extra["text_2_mask"],
                                  extra["image_embeds"])

    cos, sin = rope_cos_sin(grid, cfg.rope_axes_dim, cfg.rope_theta, dtype)
    n_text = txt.shape[1]
    cos = jnp.concatenate([cos, jnp.ones((n_text, cos.shape[1]), cos.dtype)])  # text: no rotation
    sin = jnp.concatenate([sin, jnp.zeros((n_text, sin.shape[1]), sin.dtype)])
    kv_lengths = n_video + n_valid  # keys past the valid text masked
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
    pooled: jax.Array | None,
    guidance: jax.Array | None = None,
    lora: dict | None = None,
    lora_cfg: Any = None,
    *,
    text_2: jax.Array | None = None,
    text_2_mask: jax.Array | None = None,
    image_embeds: jax.Array | None = None,
    timestep_r: jax.Array | None = None,
) -> jax.Array:
    """Velocity prediction [B, T', H', W', out_channels] (float32) for latents x [B, T', H', W', C].

    timestep [B] in [0, 1000]; text [B, L, text_embed_dim] with text_mask [B, L] (right padded);
    pooled [B, pooled_projection_dim] (None when that is 0); guidance [B] (scale * 1000) iff
    cfg.guidance_embeds. HunyuanVideo-1.5 only: glyph tokens text_2 [B, N, text_embed_2_dim] with
    text_2_mask [B, N], image tokens image_embeds [B, M, image_embed_dim] (both optional: absent =
    no such tokens), timestep_r [B] (MeanFlow, optional). `lora` (from `models.lora.init_lora`) is
    applied unmerged with scale alpha / rank of `lora_cfg`.
    """
    e = embed(params, cfg, x, timestep, text, text_mask, pooled, guidance, lora, lora_cfg, text_2=text_2,
              text_2_mask=text_2_mask, image_embeds=image_embeds, timestep_r=timestep_r)
    active = sharding.active_mesh()
    plan = remat.resolve(cfg.remat_policy, cfg, tokens=e.img.shape[1] + e.txt.shape[1], batch=x.shape[0],
                         params=params, lora=lora, mesh=active[0] if active else None)
    img, txt = run_layers(blocks.dual_block, params["transformer_blocks"], e.lora.get("transformer_blocks"),
                          (e.img, e.txt), e.ctx, cfg, plan[:cfg.num_layers])
    seq = jnp.concatenate([img, txt], axis=1)
    seq = run_layers(blocks.single_block, params["single_transformer_blocks"], e.lora.get("single_transformer_blocks"),
                     seq, e.ctx, cfg, plan[cfg.num_layers:])
    return final(params, cfg, e, seq)
