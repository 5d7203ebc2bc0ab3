"""The VAE of HunyuanVideo-1.5, the same function as diffusers' `AutoencoderKLHunyuanVideo15`.

A different network from the first backbone's VAE (`models.vae`), so its own module: 16x spatial /
4x temporal compression to 32 latent channels, RMS norms (`F.normalize * sqrt(C) * gamma`) instead of
GroupNorm, space-to-channel ("DCAE") down/upsampling with averaged / repeated channel shortcuts, a
channel-group shortcut around the encoder's output and a repeated-channel one around the decoder's
input, no quant convs. Shared with `models.vae`: the causal conv (replicate padding, k-1 frames in
front), the tiling (`models.vae_tiling`: spatial tiles blended as diffusers' `tiled_encode` /
`tiled_decode`; diffusers has no framewise tiling for this VAE, so `encode` / `decode` ignore the
framewise switches of a `Tiling`) and the posterior helpers.

Channels-last: pixels `[B, T, H, W, 3]` in [-1, 1] (T = 4k+1, H and W multiples of 16), latents
`[B, T', H/16, W/16, 32]`. Parameters are a nested dict named after diffusers' modules
(`encoder/down_blocks_0/resnets_1/norm1/gamma`, gammas kept in diffusers' `[C, 1, 1, 1]` shape).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from einops import rearrange

from dreamactor_jax.models.vae import _conv, cast_params, frame_causal_attention, posterior_mode, posterior_sample
from dreamactor_jax.models.vae_tiling import Tiling, decode_tiled, encode_tiled

Params = dict


@dataclasses.dataclass(frozen=True)
class VAE15Config:
    """Architecture (diffusers `AutoencoderKLHunyuanVideo15` names) plus tiling and compute dtype."""

    in_channels: int = 3
    out_channels: int = 3
    latent_channels: int = 32
    block_out_channels: tuple[int, ...] = (128, 256, 512, 1024, 1024)
    layers_per_block: int = 2
    spatial_compression_ratio: int = 16
    temporal_compression_ratio: int = 4
    downsample_match_channel: bool = True
    upsample_match_channel: bool = True
    scaling_factor: float = 1.03682
    # diffusers: no framewise tiling; spatial tiles of 256 px every 192 (`enable_tiling()`), off by default
    tiling: Tiling = Tiling(framewise_encode=False, framewise_decode=False)
    dtype: str = "float32"
    xla_options: tuple[tuple[str, object], ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "block_out_channels", tuple(int(c) for c in self.block_out_channels))
        n, r, rt = len(self.block_out_channels), self.spatial_compression_ratio, self.temporal_compression_ratio
        if r & (r - 1) or not 2 <= r <= 2 ** (n - 1) or rt & (rt - 1) or not 1 <= rt <= r:
            raise ValueError(f"VAE15Config: spatial_compression_ratio {r} / temporal {rt} must be powers of two, "
                             f"temporal <= spatial <= 2^{n - 1} ({n} blocks)")
        if not (self.downsample_match_channel and self.upsample_match_channel):
            raise ValueError("VAE15Config: only downsample_match_channel = upsample_match_channel = True (as published)")
        if self.block_out_channels[-1] % (2 * self.latent_channels):
            raise ValueError(f"VAE15Config.block_out_channels: the last ({self.block_out_channels[-1]}) must divide "
                             f"by 2 * latent_channels ({2 * self.latent_channels}), as diffusers' encoder shortcut needs")

    @classmethod
    def named(cls, name: str, **overrides) -> "VAE15Config":
        """'hunyuan15' (the published config) or the test size 'tiny15'."""
        table = {"hunyuan15": {},
                 "tiny15": dict(latent_channels=4, block_out_channels=(8, 16, 32, 64, 64), layers_per_block=1)}
        if name not in table:
            raise ValueError(f"VAE15Config.named: unknown name {name!r}, expected one of {sorted(table)}")
        return cls(**{**table[name], **overrides})

    @property
    def n_spatial(self) -> int:
        return int(math.log2(self.spatial_compression_ratio))

    def down_blocks(self) -> list[tuple[int | None, bool]]:
        """(downsampler out channels or None, temporal too) of each encoder block, as diffusers."""
        ch, n_sp = self.block_out_channels, self.n_spatial
        n_t0 = int(math.log2(self.spatial_compression_ratio // self.temporal_compression_ratio))
        return [(ch[i + 1], i >= n_t0) if i < n_sp else (None, False) for i in range(len(ch))]

    def up_blocks(self) -> list[tuple[int | None, bool]]:
        """(upsampler out channels or None, temporal too) of each decoder block, as diffusers."""
        rev, n_t = self.block_out_channels[::-1], int(math.log2(self.temporal_compression_ratio))
        return [(rev[i + 1], i < n_t) if (i < self.n_spatial or i < n_t) else (None, False) for i in range(len(rev))]


# ----------------------------------------------------------------------------- parameters

def _conv_shapes(cin: int, cout: int, k: int = 3) -> dict:
    return {"kernel": (k, k, k, cin, cout), "bias": (cout,)}


def _norm_shapes(c: int) -> dict:
    return {"gamma": (c, 1, 1, 1)}


def _resnet_shapes(cin: int, cout: int) -> dict:
    p = {"norm1": _norm_shapes(cin), "conv1": {"conv": _conv_shapes(cin, cout)},
         "norm2": _norm_shapes(cout), "conv2": {"conv": _conv_shapes(cout, cout)}}
    if cin != cout:
        p["conv_shortcut"] = _conv_shapes(cin, cout, 1)
    return p


def _mid_shapes(c: int) -> dict:
    attn = {"norm": _norm_shapes(c), **{n: _conv_shapes(c, c, 1) for n in ("to_q", "to_k", "to_v", "proj_out")}}
    return {"resnets_0": _resnet_shapes(c, c), "attentions_0": attn, "resnets_1": _resnet_shapes(c, c)}


def param_shapes(cfg: VAE15Config) -> dict:
    """The parameter tree as nested dicts of shape tuples (no arrays)."""
    ch = cfg.block_out_channels
    enc = {"conv_in": {"conv": _conv_shapes(cfg.in_channels, ch[0])}}
    cin = ch[0]
    for i, (down, temporal) in enumerate(cfg.down_blocks()):
        blk = {f"resnets_{j}": _resnet_shapes(cin if j == 0 else ch[i], ch[i]) for j in range(cfg.layers_per_block)}
        if down is not None:
            blk["downsamplers_0"] = {"conv": {"conv": _conv_shapes(ch[i], down // (8 if temporal else 4))}}
        enc[f"down_blocks_{i}"] = blk
        cin = down or ch[i]
    enc["mid_block"] = _mid_shapes(ch[-1])
    enc["norm_out"] = _norm_shapes(ch[-1])
    enc["conv_out"] = {"conv": _conv_shapes(ch[-1], 2 * cfg.latent_channels)}

    rev = ch[::-1]
    dec = {"conv_in": {"conv": _conv_shapes(cfg.latent_channels, rev[0])}, "mid_block": _mid_shapes(rev[0])}
    cin = rev[0]
    for i, (up, temporal) in enumerate(cfg.up_blocks()):
        blk = {f"resnets_{j}": _resnet_shapes(cin if j == 0 else rev[i], rev[i]) for j in range(cfg.layers_per_block + 1)}
        if up is not None:
            blk["upsamplers_0"] = {"conv": {"conv": _conv_shapes(rev[i], up * (8 if temporal else 4))}}
        dec[f"up_blocks_{i}"] = blk
        cin = up or rev[i]
    dec["norm_out"] = _norm_shapes(rev[-1])
    dec["conv_out"] = {"conv": _conv_shapes(rev[-1], cfg.out_channels)}
    return {"encoder": enc, "decoder": dec}


def _leaves(tree: dict):
    for v in tree.values():
        if isinstance(v, dict):
            yield from _leaves(v)
        else:
            yield v


def count_params(cfg: VAE15Config) -> int:
    return int(sum(np.prod(s) for s in _leaves(param_shapes(cfg))))


def init_params(cfg: VAE15Config, key: jax.Array) -> Params:
    """Random parameters drawn on the host from `key` (kernels and biases uniform +-1/sqrt(fan_in), gammas 1)."""
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist()
                                if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else np.asarray(key).ravel().tolist())

    def build(node: dict, name: str = "") -> dict | jax.Array:
        if isinstance(node, tuple):
            if name == "gamma":
                return jnp.ones(node, jnp.float32)
            fan_in = np.prod(node[:-1]) if len(node) > 1 else node[0]
            return jnp.asarray(rng.uniform(-1, 1, node).astype(np.float32) / np.sqrt(fan_in))
        return {k: build(v, k) for k, v in node.items()}

    return build(param_shapes(cfg))


# ----------------------------------------------------------------------------- layers

def _rms_norm(p: dict, x: jax.Array) -> jax.Array:
    """`F.normalize(x, dim=channels) * sqrt(C) * gamma` (fp32 statistics for 16-bit inputs)."""
    x32 = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    norm = jnp.sqrt(jnp.sum(jnp.square(x32), axis=-1, keepdims=True))
    y = (x32 / jnp.maximum(norm, 1e-12)).astype(x.dtype)
    return y * jnp.asarray(math.sqrt(x.shape[-1]), x.dtype) * p["gamma"].reshape(-1).astype(x.dtype)


def _resnet(p: dict, x: jax.Array) -> jax.Array:
    h = _conv(p["conv1"]["conv"], jax.nn.silu(_rms_norm(p["norm1"], x)))
    h = _conv(p["conv2"]["conv"], jax.nn.silu(_rms_norm(p["norm2"], h)))
    return h + (_conv(p["conv_shortcut"], x) if "conv_shortcut" in p else x)


def _attention(p: dict, x: jax.Array, one_shot_bytes: int | None = None) -> jax.Array:
    """The mid block's attention (`vae.frame_causal_attention`) after an RMS norm, with its residual."""
    b, t, h, w, c = x.shape
    hs = _rms_norm(p["norm"], x)
    q, k, v = (rearrange(_conv(p[n], hs), "b t h w c -> b (t h w) c") for n in ("to_q", "to_k", "to_v"))
    o = frame_causal_attention(q, k, v, t, one_shot_bytes)
    return x + _conv(p["proj_out"], o.reshape(b, t, h, w, c))


def _mid_block(p: dict, x: jax.Array) -> jax.Array:
    return _resnet(p["resnets_1"], _attention(p["attentions_0"], _resnet(p["resnets_0"], x)))


def _space_to_channels(x: jax.Array, rt: int) -> jax.Array:
    """diffusers `_dcae_downsample_rearrange`: (f rt, h 2, w 2, c) -> (f, h, w, (rt 2 2 c))."""
    return rearrange(x, "b (f r1) (h r2) (w r3) c -> b f h w (r1 r2 r3 c)", r1=rt, r2=2, r3=2)


def _channels_to_space(x: jax.Array, rt: int) -> jax.Array:
    """diffusers `_dcae_upsample_rearrange`: (f, h, w, (rt 2 2 c)) -> (f rt, h 2, w 2, c)."""
    return rearrange(x, "b f h w (r1 r2 r3 c) -> b (f r1) (h r2) (w r3) c", r1=rt, r2=2, r3=2)


def _group_mean(x: jax.Array, cout: int) -> jax.Array:
    """Mean over consecutive channel groups: [.., cout * g] -> [.., cout]."""
    return x.reshape(*x.shape[:-1], cout, -1).mean(-1)


def _by_first_frame(fn_first, fn_rest, x: jax.Array) -> jax.Array:
    """Frame 0 through `fn_first`, frames 1.. through `fn_rest`, concatenated in time."""
    first = fn_first(x[:, :1])
    return first if x.shape[1] == 1 else jnp.concatenate([first, fn_rest(x[:, 1:])], axis=1)


def _downsample(p: dict, x: jax.Array, cout: int, temporal: bool) -> jax.Array:
    h = _conv(p["conv"]["conv"], x)
    if not temporal:
        return _space_to_channels(h, 1) + _group_mean(_space_to_channels(x, 1), cout)
    h = _by_first_frame(lambda a: jnp.tile(_space_to_channels(a, 1), 2), lambda a: _space_to_channels(a, 2), h)
    short = _by_first_frame(lambda a: _group_mean(_space_to_channels(a, 1), cout),
                            lambda a: _group_mean(_space_to_channels(a, 2), cout), x)
    return h + short


def _upsample(p: dict, x: jax.Array, cout: int, temporal: bool) -> jax.Array:
    h = _conv(p["conv"]["conv"], x)
    repeats = (8 if temporal else 4) * cout // x.shape[-1]
    if not temporal:
        return _channels_to_space(h, 1) + _channels_to_space(jnp.repeat(x, repeats, axis=-1), 1)
    h = _by_first_frame(lambda a: _channels_to_space(a, 1)[..., :cout],  # the first half of 2 * cout
                        lambda a: _channels_to_space(a, 2), h)
    short = _by_first_frame(lambda a: jnp.repeat(_channels_to_space(a, 1), repeats // 2, axis=-1),
                            lambda a: jnp.repeat(_channels_to_space(a, 2), repeats, axis=-1), x)
    return h + short


def _encoder(p: dict, cfg: VAE15Config, x: jax.Array) -> jax.Array:
    x = _conv(p["conv_in"]["conv"], x)
    for i, (down, temporal) in enumerate(cfg.down_blocks()):
        blk = p[f"down_blocks_{i}"]
        for j in range(cfg.layers_per_block):
            x = _resnet(blk[f"resnets_{j}"], x)
        if down is not None:
            x = _downsample(blk["downsamplers_0"], x, down, temporal)
    x = _mid_block(p["mid_block"], x)
    short = _group_mean(x, 2 * cfg.latent_channels)
    return _conv(p["conv_out"]["conv"], jax.nn.silu(_rms_norm(p["norm_out"], x))) + short


def _decoder(p: dict, cfg: VAE15Config, z: jax.Array) -> jax.Array:
    c0 = cfg.block_out_channels[-1]
    x = _conv(p["conv_in"]["conv"], z) + jnp.repeat(z, c0 // cfg.latent_channels, axis=-1)
    x = _mid_block(p["mid_block"], x)
    for i, (up, temporal) in enumerate(cfg.up_blocks()):
        blk = p[f"up_blocks_{i}"]
        for j in range(cfg.layers_per_block + 1):
            x = _resnet(blk[f"resnets_{j}"], x)
        if up is not None:
            x = _upsample(blk["upsamplers_0"], x, up, temporal)
    return _conv(p["conv_out"]["conv"], jax.nn.silu(_rms_norm(p["norm_out"], x)))


def _encode_tile(params: Params, cfg: VAE15Config, x: jax.Array) -> jax.Array:
    dtype = params["encoder"]["conv_in"]["conv"]["kernel"].dtype
    return _encoder(params["encoder"], cfg, x.astype(dtype)).astype(jnp.float32)


def _decode_tile(params: Params, cfg: VAE15Config, z: jax.Array) -> jax.Array:
    dtype = params["decoder"]["conv_in"]["conv"]["kernel"].dtype
    return _decoder(params["decoder"], cfg, z.astype(dtype)).astype(jnp.float32)


@functools.lru_cache(maxsize=None)
def _jitted(fn, xla_options: tuple):
    return jax.jit(fn, static_argnums=(1,), compiler_options=dict(xla_options) or None)


# ----------------------------------------------------------------------------- public API

def _spatial_only(cfg: VAE15Config, tiling: Tiling | None) -> Tiling:
    """The tiling to run: spatial tiles only (diffusers tiles this VAE in space, never in time)."""
    t = cfg.tiling if tiling is None else tiling
    return dataclasses.replace(t, framewise_encode=False, framewise_decode=False)


def encode(params: Params, cfg: VAE15Config, video: jax.Array, *, tiling: Tiling | None = None,
           dtype=None) -> tuple[jax.Array, jax.Array]:
    """Pixels [B, T=4k+1, H, W, 3] in [-1, 1] -> posterior (mean, logvar), each [B, T', H/16, W/16, C]."""
    if video.ndim != 5 or video.shape[-1] != cfg.in_channels:
        raise ValueError(f"video: expected [B, T, H, W, {cfg.in_channels}], got shape {tuple(video.shape)}")
    t, h, w = video.shape[1:4]
    r, rt = cfg.spatial_compression_ratio, cfg.temporal_compression_ratio
    if (t - 1) % rt or h % r or w % r:
        raise ValueError(f"video: expected {rt}k+1 frames and height/width multiples of {r}, got {t} x {h} x {w}")
    params = cast_params(params, dtype or cfg.dtype)
    fn = functools.partial(_jitted(_encode_tile, cfg.xla_options), params, cfg)
    out = encode_tiled(fn, jnp.asarray(video, jnp.float32), _spatial_only(cfg, tiling), r, rt)
    mean, logvar = jnp.split(out, 2, axis=-1)
    return mean, jnp.clip(logvar, -30.0, 20.0)


def decode(params: Params, cfg: VAE15Config, z: jax.Array, *, tiling: Tiling | None = None, dtype=None) -> jax.Array:
    """Unscaled latents [B, T', H', W', C] -> pixels [B, 4(T'-1)+1, 16H', 16W', 3] (not clipped)."""
    if z.ndim != 5 or z.shape[-1] != cfg.latent_channels:
        raise ValueError(f"latents: expected [B, T', H', W', {cfg.latent_channels}], got shape {tuple(z.shape)}")
    params = cast_params(params, dtype or cfg.dtype)
    fn = functools.partial(_jitted(_decode_tile, cfg.xla_options), params, cfg)
    return decode_tiled(fn, jnp.asarray(z, jnp.float32), _spatial_only(cfg, tiling),
                        cfg.spatial_compression_ratio, cfg.temporal_compression_ratio)


def encode_latents(params: Params, cfg: VAE15Config, video: jax.Array, *, key: jax.Array | None = None,
                   tiling: Tiling | None = None, dtype=None) -> jax.Array:
    """Scaled latents for the backbone: posterior mode (or a sample if `key`) times scaling_factor."""
    mean, logvar = encode(params, cfg, video, tiling=tiling, dtype=dtype)
    z = posterior_mode(mean, logvar) if key is None else posterior_sample(mean, logvar, key)
    return z * cfg.scaling_factor


def decode_latents(params: Params, cfg: VAE15Config, latents: jax.Array, *, tiling: Tiling | None = None,
                   dtype=None) -> jax.Array:
    """Scaled latents from the backbone -> pixels: divides by scaling_factor, then decodes."""
    return decode(params, cfg, latents / cfg.scaling_factor, tiling=tiling, dtype=dtype)
