"""The in-context input of DreamActor-M2 (paper section 3.2, Eq. 2): canvas, target, mask, channels.

Spatial layout (the paper's method, Table 2 model G), width-wise concatenation `(+)`:

    canvas  C[0] = I_ref (+) D[0],  C[t] = 0 (+) D[t] for t > 0           [T, H, 2W, 3]
    target      = V (+) D       (V[0] is the reference in self-supervised training)
    mask    M   = M_r (+) M_m   at latent resolution                        [T', H', 2W', 1]
            M_r = 1 on latent frame 0 (the reference panel), 0 after; M_m = 1 on every frame.

Temporal layout (Table 2 model A, "temporal-level in-context"): the reference is an extra leading
frame instead of a left panel, and the motion signal takes the full width, one frame per target
frame: canvas `[I_ref; D[0]; ...; D[T-1]]` and target `[I_ref; V[0]; ...; V[T-1]]`, both
`[T+1, H, W, 3]`. The VAE encodes the reference alone (one latent frame) and the clip alone
(`T'` latent frames), so `T'_total = T' + 1` (see `encode_canvas`); the token count is
`(T'+1) H' W' / 4` instead of `T' H' 2W' / 4`. The mask is `M_r (+)_t M_m` = 1 on the reference
frame and 1 on every motion frame, i.e. all ones: in this layout only position and content tell
the reference frame from the motion frames.

One meaning of the mask for both layouts (and for the I2V-33ch backbone, whose pipeline puts the
image latent with mask 1 on frame 0 and zeros with mask 0 after): **M is 1 exactly where the
condition latent carries a signal, and the condition latent is zero where M is 0** (`mask_condition`).

Time follows the VAE's causal compression by 4: latent frame 0 is pixel frame 0 alone (the paper's
t = 1), latent frame k >= 1 covers pixel frames 4k-3 .. 4k; so `T' = (T - 1) // 4 + 1` and clips
should have `T = 4k + 1` frames. Space is compressed by 8, then patched 2x2, so `H` and `W` must be
multiples of 16 (and each panel's latent width even).

Channel order for the backbone (diffusers' HunyuanVideo I2V pipeline, `latent_concat`):
`cat([noisy latent (16), condition latent (16), mask (1)])` -> 33 channels (`stack_channels`).

Arrays are channels-last with optional leading batch axes: pixels `[..., T, H, W, C]`, latents
`[..., T', H', W', C]`. numpy in -> numpy out, jax in -> jax out; mask and stacking are jit-able.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

LAYOUTS = ("spatial", "temporal")
REGIONS = ("canvas", "target")
TIME_FACTOR = 4  # VAE temporal compression (causal: frame 0 alone)
SPACE_FACTOR = 8  # VAE spatial compression
MULTIPLE = 16  # pixel sizes: 8x VAE, then 2x2 patches


def _xp(*arrays):
    return jnp if any(isinstance(a, jax.Array) for a in arrays) else np


def _check_layout(layout: str) -> None:
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")


# ------------------------------------------------------------------------------ frame counts
def num_latent_frames(num_frames: int, *, strict: bool = True) -> int:
    """`T' = (T - 1) // 4 + 1`; with `strict`, T must be 4k + 1 so no pixel frame is dropped."""
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if strict and (num_frames - 1) % TIME_FACTOR:
        raise ValueError(f"num_frames must be 4k + 1 (causal VAE), got {num_frames}")
    return (num_frames - 1) // TIME_FACTOR + 1


def latent_frame_of(pixel_frame: int) -> int:
    """The latent frame that holds a pixel frame (0 -> 0, 1..4 -> 1, 5..8 -> 2, ...)."""
    if pixel_frame < 0:
        raise ValueError(f"pixel_frame must be >= 0, got {pixel_frame}")
    return 0 if pixel_frame == 0 else (pixel_frame - 1) // TIME_FACTOR + 1


def pixel_frames_of(latent_frame: int) -> range:
    """The pixel frames a latent frame covers (inverse of `latent_frame_of`)."""
    if latent_frame < 0:
        raise ValueError(f"latent_frame must be >= 0, got {latent_frame}")
    if latent_frame == 0:
        return range(0, 1)
    return range(TIME_FACTOR * latent_frame - 3, TIME_FACTOR * latent_frame + 1)


def latent_shape(num_frames: int, height: int, width: int, layout: str = "spatial") -> tuple[int, int, int]:
    """`(T'_total, H', W'_total)` of the canvas latent for a `T x H x W` driving clip."""
    _check_layout(layout)
    for name, v in (("height", height), ("width", width)):
        if v <= 0 or v % MULTIPLE:
            raise ValueError(f"{name} must be a positive multiple of {MULTIPLE}, got {v}")
    t = num_latent_frames(num_frames)
    h, w = height // SPACE_FACTOR, width // SPACE_FACTOR
    return (t, h, 2 * w) if layout == "spatial" else (t + 1, h, w)


# ------------------------------------------------------------------------------ pixel space
def _check_pair(ref, driving, ref_name: str = "ref", drv_name: str = "driving") -> None:
    if driving.ndim < 4:
        raise ValueError(f"{drv_name} must be [..., T, H, W, C], got shape {tuple(driving.shape)}")
    if ref.ndim != driving.ndim - 1 or tuple(ref.shape) != tuple(driving.shape[:-4]) + tuple(driving.shape[-3:]):
        raise ValueError(
            f"{ref_name} must be [..., H, W, C] matching {drv_name} {tuple(driving.shape)} "
            f"(batch, height, width, channels), got {tuple(ref.shape)}"
        )
    if driving.shape[-4] < 1:
        raise ValueError(f"{drv_name} has no frames: shape {tuple(driving.shape)}")


def make_canvas(ref, driving, layout: str = "spatial", *, fill=0):
    """Eq. 2: the composite input. `ref [..., H, W, C]`, `driving [..., T, H, W, C]`.

    spatial -> `[..., T, H, 2W, C]` with `ref (+) D[0]` then `fill (+) D[t]`;
    temporal -> `[..., T + 1, H, W, C]` = `[ref; D[0]; ...]`. `fill` is the "zero image" value in the
    arrays' own scale (0 is black for uint8; use -1 for black in [-1, 1]).
    """
    _check_layout(layout)
    xp = _xp(ref, driving)
    _check_pair(ref, driving)
    ref = ref.astype(driving.dtype)
    if layout == "temporal":
        return xp.concatenate([ref[..., None, :, :, :], driving], axis=-4)
    left = xp.full(driving.shape, fill, dtype=driving.dtype)
    if xp is jnp:
        left = left.at[..., 0, :, :, :].set(ref)
    else:
        left[..., 0, :, :, :] = ref
    return xp.concatenate([left, driving], axis=-2)


def make_target(video, driving, layout: str = "spatial", *, ref=None):
    """The clip the model learns to produce. `video, driving [..., T, H, W, C]`.

    spatial -> `V (+) D` `[..., T, H, 2W, C]`; temporal -> `[ref; V]` `[..., T + 1, H, W, C]` with
    `ref = V[0]` unless given (the motion signal is then only in the condition).
    """
    _check_layout(layout)
    xp = _xp(video, driving, ref)
    if video.ndim < 4 or tuple(video.shape) != tuple(driving.shape):
        raise ValueError(
            f"video and driving must have the same shape [..., T, H, W, C], got {tuple(video.shape)} "
            f"and {tuple(driving.shape)}"
        )
    if layout == "spatial":
        if ref is not None:
            raise ValueError("ref is only used by layout='temporal' (spatial: V[0] is the reference)")
        return xp.concatenate([video, driving.astype(video.dtype)], axis=-2)
    if ref is None:
        ref = video[..., 0, :, :, :]
    _check_pair(ref, video, drv_name="video")
    return xp.concatenate([ref[..., None, :, :, :].astype(video.dtype), video], axis=-4)


def encode_canvas(encode: Callable, pixels, layout: str = "spatial", *, zero_unmasked: bool = True):
    """Latents of a canvas or target, respecting the layout's segments, then `mask_condition`.

    `encode` maps pixels `[..., T, H, W, C]` to latents `[..., T', H', W', C']` (e.g. the VAE with
    scaling). spatial: one call. temporal: the reference frame and the clip are encoded separately
    and concatenated in time (a causal VAE gives a lone frame its own latent frame).
    With `zero_unmasked` the result is zeroed where the mask is 0 (use it for the condition, not
    for the target).
    """
    _check_layout(layout)
    if layout == "spatial":
        z = encode(pixels)
    else:
        if pixels.shape[-4] < 2:
            raise ValueError(f"temporal canvas needs the reference frame and >= 1 clip frame, got {pixels.shape}")
        z0, z1 = encode(pixels[..., :1, :, :, :]), encode(pixels[..., 1:, :, :, :])
        if z0.shape[-4] != 1:
            raise ValueError(f"encode of one frame must give one latent frame, got {z0.shape}")
        z = _xp(z0, z1).concatenate([z0, z1], axis=-4)
    if not zero_unmasked:
        return z
    return mask_condition(z, canvas_mask(z.shape[-4:-1], layout, dtype=z.dtype))


# ----------------------------------------------------------------------------- latent space
def make_mask(num_latent_frames: int, latent_h: int, latent_w: int, layout: str = "spatial", *, dtype=jnp.float32):
    """`M = M_r (+) M_m` for a driving clip of `num_latent_frames x latent_h x latent_w` latents.

    spatial -> `[T', H', 2W', 1]`: left half 1 on latent frame 0 only (M_r), right half 1 everywhere (M_m).
    temporal -> `[T' + 1, H', W', 1]`: 1 on the reference frame (M_r) and on every motion frame (M_m).
    Sizes are Python ints (static under jit).
    """
    _check_layout(layout)
    for name, v in (("num_latent_frames", num_latent_frames), ("latent_h", latent_h), ("latent_w", latent_w)):
        if int(v) != v or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if layout == "temporal":
        return jnp.ones((num_latent_frames + 1, latent_h, latent_w, 1), dtype)
    m_r = (jnp.arange(num_latent_frames) == 0).astype(dtype)[:, None, None, None]
    m_r = jnp.broadcast_to(m_r, (num_latent_frames, latent_h, latent_w, 1))
    m_m = jnp.ones((num_latent_frames, latent_h, latent_w, 1), dtype)
    return jnp.concatenate([m_r, m_m], axis=2)


def clip_dims(canvas_dims, layout: str = "spatial") -> tuple[int, int, int]:
    """`(T', H', W')` of the driving clip's latents from the canvas latent's `(T'_total, H', W'_total)`
    (the inverse of `latent_shape`'s rule: spatial halves the width, temporal drops the reference frame)."""
    _check_layout(layout)
    t, h, w = (int(v) for v in canvas_dims)
    if layout == "spatial":
        if w % 2:
            raise ValueError(f"spatial canvas latent width must be even (2W'), got {w}")
        return t, h, w // 2
    if t < 2:
        raise ValueError(f"temporal canvas latent needs the reference frame and >= 1 clip frame, got {t} frames")
    return t - 1, h, w


def canvas_mask(canvas_dims, layout: str = "spatial", *, dtype=jnp.float32):
    """`make_mask` for a canvas latent of `(T'_total, H', W'_total)`: `[T'_total, H', W'_total, 1]`."""
    return make_mask(*clip_dims(canvas_dims, layout), layout, dtype=dtype)


def mask_condition(condition, mask):
    """Zeroes the condition latent where the mask is 0 (the I2V backbone's convention)."""
    if tuple(mask.shape[-4:-1]) != tuple(condition.shape[-4:-1]) or mask.shape[-1] != 1:
        raise ValueError(
            f"mask {tuple(mask.shape)} must be [..., T', H', W', 1] matching condition {tuple(condition.shape)}"
        )
    return condition * mask.astype(condition.dtype)


def stack_channels(noise, canvas_latent, mask):
    """`[noise, canvas latent, mask]` on the channel axis: 16 + 16 + 1 = 33 for I2V-33ch.

    `noise, canvas_latent [..., T', H', W', C]`; `mask [T', H', W', 1]` or with the same leading axes
    (broadcast over the batch). Jit-able; the result has the noise's dtype.
    """
    if tuple(noise.shape) != tuple(canvas_latent.shape) or noise.ndim < 4:
        raise ValueError(
            f"noise and canvas_latent must have the same shape [..., T', H', W', C], got "
            f"{tuple(noise.shape)} and {tuple(canvas_latent.shape)}"
        )
    if mask.shape[-1] != 1 or tuple(mask.shape[-4:-1]) != tuple(noise.shape[-4:-1]) or mask.ndim > noise.ndim:
        raise ValueError(
            f"mask must be [..., T', H', W', 1] matching the latents {tuple(noise.shape)}, got {tuple(mask.shape)}"
        )
    xp = _xp(noise, canvas_latent, mask)
    mask = xp.broadcast_to(mask.astype(noise.dtype), tuple(noise.shape[:-1]) + (1,))
    return xp.concatenate([noise, canvas_latent.astype(noise.dtype), mask], axis=-1)


def region_mask(num_latent_frames: int, latent_h: int, latent_w: int, layout: str = "spatial",
                region: str = "target", *, dtype=jnp.float32):
    """Loss weights (0/1) in the canvas latent's shape, `[T'_total, H', W'_total, 1]`.

    `canvas`: all ones. `target`: the character video only, i.e. the left half (spatial) or the
    frames after the reference frame (temporal).
    """
    _check_layout(layout)
    if region not in REGIONS:
        raise ValueError(f"region must be one of {REGIONS}, got {region!r}")
    shape = make_mask(num_latent_frames, latent_h, latent_w, layout).shape
    if region == "canvas":
        return jnp.ones(shape, dtype)
    if layout == "spatial":
        return (jnp.arange(shape[2]) < latent_w).astype(dtype)[None, None, :, None] * jnp.ones(shape, dtype)
    return (jnp.arange(shape[0]) > 0).astype(dtype)[:, None, None, None] * jnp.ones(shape, dtype)


def target_half(x, layout: str = "spatial"):
    """The character-video part of a canvas-shaped array `[..., T', H', W'_total, C]` (pixels or latents).

    spatial: the left half; temporal: the frames after the reference frame.
    """
    _check_layout(layout)
    if x.ndim < 4:
        raise ValueError(f"x must be [..., T, H, W, C], got shape {tuple(x.shape)}")
    if layout == "temporal":
        if x.shape[-4] < 2:
            raise ValueError(f"temporal canvas needs >= 2 frames, got shape {tuple(x.shape)}")
        return x[..., 1:, :, :, :]
    if x.shape[-2] % 2:
        raise ValueError(f"spatial canvas width must be even (2W), got shape {tuple(x.shape)}")
    return x[..., : x.shape[-2] // 2, :]


def motion_half(x):
    """The motion-signal part (right half) of a spatial canvas-shaped array."""
    if x.ndim < 4 or x.shape[-2] % 2:
        raise ValueError(f"x must be [..., T, H, 2W, C] with an even width, got shape {tuple(x.shape)}")
    return x[..., x.shape[-2] // 2 :, :]
