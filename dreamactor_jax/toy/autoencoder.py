"""The toy autoencoder: a fixed, exactly invertible pixel transform (one level of the 2D Haar wavelet).

Choice (issue 9): training a VAE here would spend the CPU budget and add a second thing that can
fail; the toy world's question is whether the *diffusion* recipe learns. So the latent is the
orthonormal Haar transform of each 2x2 pixel block, per colour:

    LL = (a + b + c + d) / 2, LH = (a - b + c - d) / 2, HL = (a + b - c - d) / 2, HH = (a - b - c + d) / 2

`[..., T, H, W, 3]` in [-1, 1] -> `[..., T, H/2, W/2, 12]` (channels: LL rgb, LH rgb, HL rgb, HH rgb).
It is linear, orthonormal (so noise keeps unit variance and distances are preserved) and exact:
`decode(encode(x)) == x`. There is no temporal compression, so latent frames equal video frames
(T' = T) and the in-context mask follows T. Being linear and blockwise, it commutes with the
width-wise concatenation of the in-context canvas (for even widths).
"""

from __future__ import annotations

import numpy as np
from einops import rearrange

FACTOR = 2
LATENT_CHANNELS = 12

# Rows: LL, LH, HL, HH; columns: the 2x2 block's pixels a (top-left), b (top-right), c, d.
_HAAR = 0.5 * np.array([[1, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]], np.float32)


def _xp(x):
    """numpy for numpy inputs, jax.numpy for jax arrays (the transform is used in and out of jit)."""
    if isinstance(x, np.ndarray):
        return np
    import jax.numpy as jnp
    return jnp


def encode(video):
    """Pixels `[..., H, W, 3]` (H, W even) -> latents `[..., H/2, W/2, 12]`."""
    if video.shape[-1] != 3 or video.shape[-2] % 2 or video.shape[-3] % 2:
        raise ValueError(f"encode: expected [..., H, W, 3] with even H and W, got {tuple(video.shape)}")
    xp = _xp(video)
    blocks = rearrange(video, "... (h i) (w j) c -> ... h w c (i j)", i=2, j=2)
    coef = xp.einsum("...ck,bk->...bc", blocks, xp.asarray(_HAAR, blocks.dtype))
    return rearrange(coef, "... b c -> ... (b c)")


def decode(latents):
    """Latents `[..., h, w, 12]` -> pixels `[..., 2h, 2w, 3]` (the exact inverse of `encode`)."""
    if latents.shape[-1] != LATENT_CHANNELS:
        raise ValueError(f"decode: expected [..., h, w, {LATENT_CHANNELS}], got {tuple(latents.shape)}")
    xp = _xp(latents)
    coef = rearrange(latents, "... (b c) -> ... b c", b=4)
    blocks = xp.einsum("...bc,bk->...ck", coef, xp.asarray(_HAAR, coef.dtype))
    return rearrange(blocks, "... h w c (i j) -> ... (h i) (w j) c", i=2, j=2)


def to_pixels(video_uint8):
    """uint8 [0, 255] -> float32 [-1, 1] (the models' convention)."""
    xp = _xp(video_uint8)
    return video_uint8.astype(xp.float32) / 127.5 - 1.0


def to_uint8(video):
    """float [-1, 1] -> uint8 (clipped, rounded)."""
    v = np.asarray(video, np.float32)
    return np.clip(np.round((v + 1.0) * 127.5), 0, 255).astype(np.uint8)
