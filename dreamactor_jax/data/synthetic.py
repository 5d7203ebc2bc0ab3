"""Synthetic pre-encoded shards: random but structured clips for smoke runs and tests (no videos needed)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from dreamactor_jax import incontext
from dreamactor_jax.data.shards import write_shard
from dreamactor_jax.utils import as_path


def _smooth(rng: np.random.Generator, t: int, h: int, w: int, channels: int) -> np.ndarray:
    """Low-frequency content (a learnable signal, not white noise): random coefficients on a few cosines."""
    grid = np.stack(np.meshgrid(np.linspace(0, 1, t), np.linspace(0, 1, h), np.linspace(0, 1, w),
                                indexing="ij"), -1)
    freqs = rng.normal(size=(3, channels)) * 2.0
    phase = rng.uniform(0, 2 * np.pi, size=channels)
    return np.cos(grid @ freqs + phase).astype(np.float32)


def synthetic_example(rng: np.random.Generator, shape: tuple[int, int, int], channels: int = 16,
                      text_len: int = 8, text_dim: int = 32, pooled_dim: int = 16, image_dim: int = 0,
                      glyph_dim: int = 0, image_len: int = 4, glyph_len: int = 6,
                      layout: str = "spatial") -> dict[str, np.ndarray]:
    """One example of canvas latent shape `shape` (spatial `(T', H', 2W')`, temporal `(T' + 1, H', W')`):
    smooth random latents, the in-context mask of `layout`, random text; with `image_dim` / `glyph_dim`
    > 0 (HunyuanVideo-1.5) also random image / glyph tokens.

    A smooth field over `T' x H' x 2W'` is the video V (left) beside the motion D (right). spatial: the
    target is that field, the canvas it where the mask is 1 (M_r: the reference on latent frame 0,
    left; M_m: the motion, right). temporal: target `[V[0]; V]` and canvas `[V[0]; D]`, the order
    preprocessing gives them (the reference, V's first frame, encoded alone ahead of the clip)."""
    t, h, w = (int(v) for v in shape)
    mask = np.asarray(incontext.canvas_mask((t, h, w), layout))
    if layout == "spatial":
        target = _smooth(rng, t, h, w, channels)
        canvas = (target * mask).astype(np.float32)
    else:
        field = _smooth(rng, t - 1, h, 2 * w, channels)
        video, motion = field[:, :, :w], field[:, :, w:]
        target = np.concatenate([video[:1], video], axis=0)
        canvas = (np.concatenate([video[:1], motion], axis=0) * mask).astype(np.float32)
    n_valid = int(rng.integers(1, text_len + 1))
    ex = {
        "target": target, "canvas": canvas, "mask": mask,
        "text": rng.normal(size=(text_len, text_dim)).astype(np.float32),
        "text_mask": (np.arange(text_len) < n_valid).astype(np.int32),
        "pooled": rng.normal(size=(pooled_dim,)).astype(np.float32),
    }
    if image_dim:
        ex["image_embeds"] = rng.normal(size=(image_len, image_dim)).astype(np.float32)
    if glyph_dim:
        ex["text_2"] = rng.normal(size=(glyph_len, glyph_dim)).astype(np.float32)
        ex["text_2_mask"] = (np.arange(glyph_len) < int(rng.integers(1, glyph_len + 1))).astype(np.int32)
    return ex


def write_synthetic_shards(folder: str | os.PathLike, shapes: Sequence[tuple[int, int, int]],
                           clips_per_shape: int, shards: int = 2, seed: int = 0, layout: str = "spatial",
                           **dims) -> list[Path]:
    """Writes `clips_per_shape` clips of `layout` for each canvas latent shape, spread round-robin over
    `shards` files (the layout recorded in each record and shard index)."""
    rng = np.random.default_rng(seed)
    items = []
    for s in shapes:
        for k in range(clips_per_shape):
            cid = f"synth-{'x'.join(map(str, s))}-{k:04d}"
            items.append((synthetic_example(rng, tuple(s), layout=layout, **dims),
                          {"clip_id": cid, "source": "synthetic", "layout": layout}))
    folder = as_path(folder)  # local or gs://
    paths = []
    for i in range(shards):
        p = folder / f"synthetic-{i:05d}-of-{shards:05d}.array_record"
        write_shard(p, items[i::shards])
        paths.append(p)
    return paths
