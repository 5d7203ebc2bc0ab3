"""The 3D causal VAE of the backbone, the same function as diffusers' AutoencoderKLHunyuanVideo.

Channels-last throughout: pixels `[B, T, H, W, 3]` in [-1, 1], latents `[B, T', H', W', C]` with
`T' = (T - 1) // 4 + 1`, `H' = H // 8`, `W' = W // 8`. Parameters are a nested dict named after
diffusers' modules (`encoder/down_blocks_0/resnets_1/conv1/conv/kernel`, see
`dreamactor_jax.weights.vae_map`); conv kernels are `[kt, kh, kw, in, out]`, linear kernels
`[in, out]`, GroupNorm weights `scale`/`bias`.

Frame-count rule: `encode` takes `T = 4k + 1` frames and raises ValueError otherwise; use
`fit_num_frames` to trim (drop trailing frames) or pad (repeat the last frame) beforehand.

Compute dtype: `dtype="bfloat16"` runs convs and matmuls in bf16 with GroupNorm statistics and the
attention softmax in fp32; outputs are always fp32. Tiling (`Tiling`, defaults = diffusers') runs a
jitted per-tile function over tiles in a Python loop, so memory stays bounded at 121 frames.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from einops import rearrange, repeat

from dreamactor_jax.models.vae_tiling import Tiling, decode_tiled, encode_tiled

__all__ = [
    "VAEConfig", "Tiling", "param_shapes", "init_params", "abstract_params", "count_params", "encode", "decode",
    "encode_latents", "decode_latents", "posterior_mode", "posterior_mean", "posterior_sample",
    "fit_num_frames", "cast_params",
]

Params = dict


# diffusers' `get_activation` names (the resnets use `act_fn`; the output norms are always SiLU)
_ACTIVATIONS = {"silu": jax.nn.silu, "swish": jax.nn.silu, "mish": jax.nn.mish,
                "gelu": functools.partial(jax.nn.gelu, approximate=False), "relu": jax.nn.relu}


@dataclasses.dataclass(frozen=True)
class VAEConfig:
    """Architecture (diffusers config names) plus runtime switches: tiling, compute dtype, XLA options."""

    in_channels: int = 3
    out_channels: int = 3
    latent_channels: int = 16
    block_out_channels: tuple[int, ...] = (128, 256, 512, 512)
    layers_per_block: int = 2
    norm_num_groups: int = 32
    scaling_factor: float = 0.476986
    spatial_compression_ratio: int = 8
    temporal_compression_ratio: int = 4
    mid_block_add_attention: bool = True
    act_fn: str = "silu"  # the resnets' activation (diffusers' get_activation names)
    tiling: Tiling = Tiling()
    dtype: str = "float32"
    # Extra XLA compiler options for the per-tile programs, as ((name, value), ...); the CPU tests
    # pass (("xla_backend_optimization_level", 0),) to compile several times faster.
    xla_options: tuple[tuple[str, object], ...] = ()

    def __post_init__(self):
        """Refuses what diffusers refuses or would compute differently from what the config says."""
        if self.temporal_compression_ratio != 4:  # diffusers' decoder builds 4 only
            raise ValueError(f"VAEConfig.temporal_compression_ratio: only 4 is supported (as diffusers' "
                             f"decoder), got {self.temporal_compression_ratio}")
        n, r = len(self.block_out_channels), self.spatial_compression_ratio
        if n < 3:  # time is halved by blocks n-3 and n-2 only
            raise ValueError(f"VAEConfig.block_out_channels: {n} blocks compress time by less than 4 "
                             f"(diffusers halves it in blocks n-3 and n-2); need 3 or more")
        if r < 1 or r & (r - 1) or r > 2 ** n:  # diffusers halves space in blocks i < log2(r)
            raise ValueError(f"VAEConfig.spatial_compression_ratio: {r} is not a power of two up to 2^{n} "
                             f"({n} blocks); diffusers would compress space by another factor")
        if self.act_fn not in _ACTIVATIONS:
            raise ValueError(f"VAEConfig.act_fn: expected one of {sorted(_ACTIVATIONS)}, got {self.act_fn!r}")
        if self.layers_per_block < 0 or (self.layers_per_block == 0 and len(set(self.block_out_channels)) > 1):
            raise ValueError(f"VAEConfig.layers_per_block: {self.layers_per_block} with block_out_channels "
                             f"{self.block_out_channels}: without resnets a block cannot change its channels")
        for c in self.block_out_channels:
            if c % self.norm_num_groups:
                raise ValueError(f"VAEConfig.block_out_channels: {c} is not divisible by "
                                 f"norm_num_groups={self.norm_num_groups}")

    @classmethod
    def named(cls, name: str, **overrides) -> "VAEConfig":
        """'hunyuan' (the published config), or test sizes 'tiny', 'small'."""
        table = {
            "hunyuan": {},
            "tiny": dict(latent_channels=4, block_out_channels=(8, 8, 16, 16), layers_per_block=1,
                         norm_num_groups=4),
            "small": dict(latent_channels=16, block_out_channels=(16, 32, 32, 32),
                          layers_per_block=2, norm_num_groups=8),
        }
        if name not in table:
            raise ValueError(f"VAEConfig.named: unknown name {name!r}, expected one of {sorted(table)}")
        return cls(**{**table[name], **overrides})

    def down_strides(self) -> list[tuple[int, int, int] | None]:
        """(t, h, w) stride of each down block's downsampler (None: no downsampler), as diffusers."""
        n = len(self.block_out_channels)
        n_sp = int(np.log2(self.spatial_compression_ratio))
        n_t = int(np.log2(self.temporal_compression_ratio))
        out = []
        for i in range(n):
            sp = i < n_sp
            tm = i >= (n - 1 - n_t) and i != n - 1
            out.append((2 if tm else 1, 2 if sp else 1, 2 if sp else 1) if (sp or tm) else None)
        return out

    def up_factors(self) -> list[tuple[int, int, int] | None]:
        """(t, h, w) factor of each up block's upsampler (same rule as the encoder, mirrored)."""
        return self.down_strides()


# ----------------------------------------------------------------------------- parameters

def _conv_shapes(cin: int, cout: int, k: int = 3) -> dict:
    return {"kernel": (k, k, k, cin, cout), "bias": (cout,)}


def _norm_shapes(c: int) -> dict:
    return {"scale": (c,), "bias": (c,)}


def _resnet_shapes(cin: int, cout: int) -> dict:
    p = {"norm1": _norm_shapes(cin), "conv1": {"conv": _conv_shapes(cin, cout)},
         "norm2": _norm_shapes(cout), "conv2": {"conv": _conv_shapes(cout, cout)}}
    if cin != cout:
        p["conv_shortcut"] = {"conv": _conv_shapes(cin, cout, 1)}
    return p


def _mid_shapes(cfg: VAEConfig) -> dict:
    c = cfg.block_out_channels[-1]
    p = {"resnets_0": _resnet_shapes(c, c), "resnets_1": _resnet_shapes(c, c)}
    if cfg.mid_block_add_attention:
        lin = {"kernel": (c, c), "bias": (c,)}
        p["attentions_0"] = {"group_norm": _norm_shapes(c), "to_q": lin, "to_k": lin, "to_v": lin,
                             "to_out_0": lin}
    return p


def param_shapes(cfg: VAEConfig) -> dict:
    """The parameter tree as nested dicts of shape tuples (no arrays)."""
    ch = cfg.block_out_channels
    enc = {"conv_in": {"conv": _conv_shapes(cfg.in_channels, ch[0])}}
    cout = ch[0]
    for i, stride in enumerate(cfg.down_strides()):
        cin, cout = cout, ch[i]
        blk = {f"resnets_{j}": _resnet_shapes(cin if j == 0 else cout, cout)
               for j in range(cfg.layers_per_block)}
        if stride is not None:
            blk["downsamplers_0"] = {"conv": {"conv": _conv_shapes(cout, cout)}}
        enc[f"down_blocks_{i}"] = blk
    enc["mid_block"] = _mid_shapes(cfg)
    enc["conv_norm_out"] = _norm_shapes(ch[-1])
    enc["conv_out"] = {"conv": _conv_shapes(ch[-1], 2 * cfg.latent_channels)}

    dec = {"conv_in": {"conv": _conv_shapes(cfg.latent_channels, ch[-1])},
           "mid_block": _mid_shapes(cfg)}
    rev = list(reversed(ch))
    cout = rev[0]
    for i, factor in enumerate(cfg.up_factors()):
        cin, cout = cout, rev[i]
        blk = {f"resnets_{j}": _resnet_shapes(cin if j == 0 else cout, cout)
               for j in range(cfg.layers_per_block + 1)}
        if factor is not None:
            blk["upsamplers_0"] = {"conv": {"conv": _conv_shapes(cout, cout)}}
        dec[f"up_blocks_{i}"] = blk
    dec["conv_norm_out"] = _norm_shapes(ch[0])
    dec["conv_out"] = {"conv": _conv_shapes(ch[0], cfg.out_channels)}
    lc = cfg.latent_channels
    return {"encoder": enc, "decoder": dec,
            "quant_conv": _conv_shapes(2 * lc, 2 * lc, 1),
            "post_quant_conv": _conv_shapes(lc, lc, 1)}


def init_params(cfg: VAEConfig, key: jax.Array) -> Params:
    """Random parameters (PyTorch's default init: uniform +-1/sqrt(fan_in); norms scale 1, bias 0).

    One random draw for all weights, cut into leaves on the host: a jitted per-leaf init makes XLA
    compile hundreds of outputs (minutes on CPU). Use `abstract_params` for shapes without memory.
    """
    shapes = param_shapes(cfg)
    sizes = []

    def collect(node: dict) -> None:
        if "kernel" in node:
            sizes.extend([int(np.prod(node["kernel"])), int(np.prod(node["bias"]))])
        elif "scale" not in node:
            for child in node.values():
                collect(child)

    collect(shapes)
    flat = np.asarray(jax.random.uniform(key, (sum(sizes),), jnp.float32, -1.0, 1.0))
    offset = 0

    def take(shape, bound):
        nonlocal offset
        n = int(np.prod(shape))
        out = jnp.asarray(flat[offset:offset + n].reshape(shape) * np.float32(bound))
        offset += n
        return out

    def build(node: dict) -> dict:
        if "scale" in node:  # a norm
            return {"scale": jnp.ones(node["scale"], jnp.float32),
                    "bias": jnp.zeros(node["bias"], jnp.float32)}
        if "kernel" in node:  # a conv or linear
            bound = 1.0 / np.sqrt(np.prod(node["kernel"][:-1]))
            return {"kernel": take(node["kernel"], bound), "bias": take(node["bias"], bound)}
        return {name: build(child) for name, child in node.items()}

    return build(shapes)


def abstract_params(cfg: VAEConfig, dtype=jnp.float32) -> Params:
    """The parameter tree as `jax.ShapeDtypeStruct`s (what `jax.eval_shape` gives; no memory)."""
    def walk(node):
        if isinstance(node, dict):
            return {k: walk(v) for k, v in node.items()}
        return jax.ShapeDtypeStruct(node, jnp.dtype(dtype))
    return walk(param_shapes(cfg))


def count_params(cfg: VAEConfig) -> int:
    """Number of parameters, from the abstract tree (allocates nothing)."""
    return int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(abstract_params(cfg))))


def cast_params(params: Params, dtype) -> Params:
    """Casts floating leaves to the compute dtype (once, outside the per-tile functions)."""
    dtype = jnp.dtype(dtype)
    return jax.tree_util.tree_map(lambda x: x.astype(dtype) if x.dtype != dtype else x, params)


# ----------------------------------------------------------------------------- layers

def _conv(p: dict, x: jax.Array, stride=(1, 1, 1)) -> jax.Array:
    """Causal Conv3d: replicate padding, k//2 on each spatial side and k-1 frames in front."""
    kt, kh, kw = p["kernel"].shape[:3]
    if kt > 1 or kh > 1 or kw > 1:
        x = jnp.pad(x, ((0, 0), (kt - 1, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)),
                    mode="edge")
    precision = jax.lax.Precision.HIGHEST if x.dtype == jnp.float32 else None
    y = jax.lax.conv_general_dilated(
        x, p["kernel"].astype(x.dtype), window_strides=stride, padding="VALID",
        dimension_numbers=("NDHWC", "DHWIO", "NDHWC"), precision=precision)
    return y + p["bias"].astype(y.dtype)


def _group_norm(p: dict, x: jax.Array, groups: int, eps: float = 1e-6) -> jax.Array:
    """GroupNorm over (T, H, W, C/groups) with fp32 statistics; returns x's dtype."""
    shape = x.shape
    xf = x.astype(jnp.float32).reshape(shape[0], -1, groups, shape[-1] // groups)
    mean = jnp.mean(xf, axis=(1, 3), keepdims=True)
    var = jnp.mean(jnp.square(xf - mean), axis=(1, 3), keepdims=True)
    y = ((xf - mean) * jax.lax.rsqrt(var + eps)).reshape(shape)
    y = y * p["scale"].astype(jnp.float32) + p["bias"].astype(jnp.float32)
    return y.astype(x.dtype)


def _resnet(p: dict, x: jax.Array, groups: int, act=jax.nn.silu) -> jax.Array:
    h = _conv(p["conv1"]["conv"], act(_group_norm(p["norm1"], x, groups)))
    h = _conv(p["conv2"]["conv"], act(_group_norm(p["norm2"], h, groups)))
    if "conv_shortcut" in p:
        x = _conv(p["conv_shortcut"]["conv"], x)
    return h + x


def _linear(p: dict, x: jax.Array) -> jax.Array:
    precision = jax.lax.Precision.HIGHEST if x.dtype == jnp.float32 else None
    return jnp.dot(x, p["kernel"].astype(x.dtype), precision=precision) + p["bias"].astype(x.dtype)


# Above this many score bytes, the mid-block attention runs one query frame at a time.
_ATTN_ONE_SHOT_BYTES = 1 << 28


def frame_causal_attention(q: jax.Array, k: jax.Array, v: jax.Array, frames: int,
                           one_shot_bytes: int | None = None) -> jax.Array:
    """Single-head attention of q, k, v [B, T*S, C] (S tokens a frame), a token seeing the frames up to
    its own: the mid-block attention of both VAEs (diffusers' causal frame mask).

    Small inputs take one masked matmul; above `one_shot_bytes` of fp32 scores it runs one query frame
    at a time (`lax.map`), so memory is [S, T*S] scores, not [(T*S)^2]. The softmax is fp32 (diffusers:
    upcast_softmax); fp32 inputs multiply at HIGHEST precision.
    """
    b, n, c = q.shape
    per_frame = n // frames
    key_frame = jnp.repeat(jnp.arange(frames), per_frame)
    scale = 1.0 / np.sqrt(c)
    precision = jax.lax.Precision.HIGHEST if q.dtype == jnp.float32 else None

    def attend(qi, query_frame):
        s = jnp.einsum("bqc,bkc->bqk", qi, k, precision=precision, preferred_element_type=jnp.float32) * scale
        s = jnp.where(key_frame[None, None, :] <= query_frame[None, :, None], s, -jnp.inf)
        return jnp.einsum("bqk,bkc->bqc", jax.nn.softmax(s, axis=-1).astype(v.dtype), v, precision=precision)

    limit = _ATTN_ONE_SHOT_BYTES if one_shot_bytes is None else one_shot_bytes
    if b * n ** 2 * 4 <= limit:
        return attend(q, key_frame)
    qs = rearrange(q, "b (t s) c -> t b s c", t=frames)
    o = jax.lax.map(lambda a: attend(a[0], jnp.full((per_frame,), a[1])), (qs, jnp.arange(frames)))
    return rearrange(o, "t b s c -> b (t s) c")


def _mid_attention(p: dict, x: jax.Array, groups: int) -> jax.Array:
    """The mid block's attention (`frame_causal_attention`) after a group norm, with its residual."""
    b, t, h, w, c = x.shape
    hs = rearrange(_group_norm(p["group_norm"], x, groups), "b t h w c -> b (t h w) c")
    o = frame_causal_attention(_linear(p["to_q"], hs), _linear(p["to_k"], hs), _linear(p["to_v"], hs), t)
    o = _linear(p["to_out_0"], o)
    return x + o.reshape(b, t, h, w, c)


def _mid_block(p: dict, x: jax.Array, groups: int, act=jax.nn.silu) -> jax.Array:
    x = _resnet(p["resnets_0"], x, groups, act)
    if "attentions_0" in p:
        x = _mid_attention(p["attentions_0"], x, groups)
    return _resnet(p["resnets_1"], x, groups, act)


def _upsample(p: dict, x: jax.Array, factor: tuple[int, int, int]) -> jax.Array:
    """Nearest upsampling; frame 0 only spatially (the causal first frame), then a causal conv."""
    ft, fh, fw = factor
    first = repeat(x[:, :1], "b t h w c -> b t (h fh) (w fw) c", fh=fh, fw=fw)
    if x.shape[1] > 1:
        rest = repeat(x[:, 1:], "b t h w c -> b (t ft) (h fh) (w fw) c", ft=ft, fh=fh, fw=fw)
        first = jnp.concatenate([first, rest], axis=1)
    return _conv(p["conv"]["conv"], first)


def _encoder(p: dict, cfg: VAEConfig, x: jax.Array) -> jax.Array:
    g, act = cfg.norm_num_groups, _ACTIVATIONS[cfg.act_fn]
    x = _conv(p["conv_in"]["conv"], x)
    for i, stride in enumerate(cfg.down_strides()):
        blk = p.get(f"down_blocks_{i}", {})  # no parameters at all: no resnets, no downsampler
        for j in range(cfg.layers_per_block):
            x = _resnet(blk[f"resnets_{j}"], x, g, act)
        if stride is not None:
            x = _conv(blk["downsamplers_0"]["conv"]["conv"], x, stride)
    x = _mid_block(p["mid_block"], x, g, act)
    x = jax.nn.silu(_group_norm(p["conv_norm_out"], x, g))
    return _conv(p["conv_out"]["conv"], x)


def _decoder(p: dict, cfg: VAEConfig, z: jax.Array) -> jax.Array:
    g, act = cfg.norm_num_groups, _ACTIVATIONS[cfg.act_fn]
    x = _conv(p["conv_in"]["conv"], z)
    x = _mid_block(p["mid_block"], x, g, act)
    for i, factor in enumerate(cfg.up_factors()):
        blk = p[f"up_blocks_{i}"]
        for j in range(cfg.layers_per_block + 1):
            x = _resnet(blk[f"resnets_{j}"], x, g, act)
        if factor is not None:
            x = _upsample(blk["upsamplers_0"], x, factor)
    x = jax.nn.silu(_group_norm(p["conv_norm_out"], x, g))
    return _conv(p["conv_out"]["conv"], x)


def _encode_tile(params: Params, cfg: VAEConfig, x: jax.Array) -> jax.Array:
    """One tile: pixels -> raw posterior parameters [.., 2C] (mean, logvar), fp32."""
    dtype = params["quant_conv"]["kernel"].dtype
    h = _encoder(params["encoder"], cfg, x.astype(dtype))
    return _conv(params["quant_conv"], h).astype(jnp.float32)


def _decode_tile(params: Params, cfg: VAEConfig, z: jax.Array) -> jax.Array:
    """One tile: latents -> pixels, fp32."""
    dtype = params["post_quant_conv"]["kernel"].dtype
    z = _conv(params["post_quant_conv"], z.astype(dtype))
    return _decoder(params["decoder"], cfg, z).astype(jnp.float32)


@functools.lru_cache(maxsize=None)
def _jitted(fn, xla_options: tuple) -> callable:
    """The per-tile function, jitted once per (function, XLA options); XLA caches per tile shape."""
    return jax.jit(fn, static_argnums=(1,), compiler_options=dict(xla_options) or None)


# ----------------------------------------------------------------------------- public API

def _check_video(video, cfg: VAEConfig) -> None:
    if video.ndim != 5 or video.shape[-1] != cfg.in_channels:
        raise ValueError(f"video: expected [B, T, H, W, {cfg.in_channels}], got shape {tuple(video.shape)}")
    t, h, w = video.shape[1:4]
    if (t - 1) % cfg.temporal_compression_ratio:
        raise ValueError(f"video: expected 4k+1 frames (1, 5, 9, ...), got {t}; "
                         f"use vae.fit_num_frames to trim or pad")
    r = cfg.spatial_compression_ratio
    if h % r or w % r:
        raise ValueError(f"video: height and width must be multiples of {r}, got {h}x{w}")


def fit_num_frames(video, mode: str = "trim"):
    """Makes the frame count (axis 1 of [B, T, ...]) of the form 4k+1.

    'trim' drops trailing frames down to 4*((T-1)//4)+1; 'pad' repeats the last frame up to the
    next 4k+1. Works on numpy and JAX arrays.
    """
    t = video.shape[1]
    if t < 1:
        raise ValueError("video: expected at least one frame")
    if mode == "trim":
        return video[:, :4 * ((t - 1) // 4) + 1]
    if mode == "pad":
        extra = (-(t - 1)) % 4
        if extra == 0:
            return video
        xp = jnp if isinstance(video, jax.Array) else np
        return xp.concatenate([video, xp.repeat(video[:, -1:], extra, axis=1)], axis=1)
    raise ValueError(f"mode: expected 'trim' or 'pad', got {mode!r}")


def encode(params: Params, cfg: VAEConfig, video: jax.Array, *, tiling: Tiling | None = None,
           dtype=None) -> tuple[jax.Array, jax.Array]:
    """Pixels [B, T=4k+1, H, W, 3] in [-1, 1] -> posterior (mean, logvar), each [B, T', H', W', C].

    logvar is clamped to [-30, 20] as diffusers' DiagonalGaussianDistribution does.
    """
    _check_video(video, cfg)
    tiling = cfg.tiling if tiling is None else tiling
    params = cast_params(params, dtype or cfg.dtype)
    fn = functools.partial(_jitted(_encode_tile, cfg.xla_options), params, cfg)
    h = encode_tiled(fn, jnp.asarray(video, jnp.float32), tiling, cfg.spatial_compression_ratio,
                     cfg.temporal_compression_ratio)
    mean, logvar = jnp.split(h, 2, axis=-1)
    return mean, jnp.clip(logvar, -30.0, 20.0)


def decode(params: Params, cfg: VAEConfig, z: jax.Array, *, tiling: Tiling | None = None,
           dtype=None) -> jax.Array:
    """Unscaled latents [B, T', H', W', C] -> pixels [B, 4(T'-1)+1, 8H', 8W', 3] (not clipped)."""
    if z.ndim != 5 or z.shape[-1] != cfg.latent_channels:
        raise ValueError(f"latents: expected [B, T', H', W', {cfg.latent_channels}], got shape "
                         f"{tuple(z.shape)}")
    tiling = cfg.tiling if tiling is None else tiling
    params = cast_params(params, dtype or cfg.dtype)
    fn = functools.partial(_jitted(_decode_tile, cfg.xla_options), params, cfg)
    return decode_tiled(fn, jnp.asarray(z, jnp.float32), tiling, cfg.spatial_compression_ratio,
                        cfg.temporal_compression_ratio)


def posterior_mode(mean: jax.Array, logvar: jax.Array) -> jax.Array:
    """The posterior's mode (= its mean, a diagonal Gaussian)."""
    del logvar
    return mean


def posterior_mean(mean: jax.Array, logvar: jax.Array) -> jax.Array:
    del logvar
    return mean


def posterior_sample(mean: jax.Array, logvar: jax.Array, key: jax.Array) -> jax.Array:
    """mean + exp(logvar / 2) * N(0, 1), noise drawn from `key`."""
    return mean + jnp.exp(0.5 * logvar) * jax.random.normal(key, mean.shape, mean.dtype)


def encode_latents(params: Params, cfg: VAEConfig, video: jax.Array, *, key: jax.Array | None = None,
                   tiling: Tiling | None = None, dtype=None) -> jax.Array:
    """Scaled latents for the backbone: posterior mode (or a sample if `key`) times scaling_factor."""
    mean, logvar = encode(params, cfg, video, tiling=tiling, dtype=dtype)
    z = posterior_mode(mean, logvar) if key is None else posterior_sample(mean, logvar, key)
    return z * cfg.scaling_factor


def decode_latents(params: Params, cfg: VAEConfig, latents: jax.Array, *,
                   tiling: Tiling | None = None, dtype=None) -> jax.Array:
    """Scaled latents from the backbone -> pixels: divides by scaling_factor, then decodes."""
    return decode(params, cfg, latents / cfg.scaling_factor, tiling=tiling, dtype=dtype)

