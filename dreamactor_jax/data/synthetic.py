"""Synthetic pre-encoded shards: random but structured clips for smoke runs and tests (no videos needed)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from dreamactor_jax.data.shards import write_shard
from dreamactor_jax.utils import as_path


def synthetic_example(rng: np.random.Generator, shape: tuple[int, int, int], channels: int = 16,
                      text_len: int = 8, text_dim: int = 32, pooled_dim: int = 16, image_dim: int = 0,
                      glyph_dim: int = 0, image_len: int = 4, glyph_len: int = 6) -> dict[str, np.ndarray]:
    """One example of latent shape (T', H', 2W'): smooth random latents, the in-context mask, random text;
    with `image_dim` / `glyph_dim` > 0 (HunyuanVideo-1.5) also random image / glyph tokens."""
    t, h, w2 = shape
    # Low-frequency content (a learnable signal, not white noise): random coefficients on a few cosines.
    grid = np.stack(np.meshgrid(np.linspace(0, 1, t), np.linspace(0, 1, h), np.linspace(0, 1, w2),
                                indexing="ij"), -1)
    freqs = rng.normal(size=(3, channels)) * 2.0
    phase = rng.uniform(0, 2 * np.pi, size=channels)
    target = np.cos(grid @ freqs + phase).astype(np.float32)
    mask = np.zeros((t, h, w2, 1), np.float32)
    mask[0, :, : w2 // 2] = 1.0   # M_r: reference on latent frame 0 (left half)
    mask[:, :, w2 // 2:] = 1.0    # M_m: motion on every frame (right half)
    canvas = (target * mask).astype(np.float32)
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
                           clips_per_shape: int, shards: int = 2, seed: int = 0, **dims) -> list[Path]:
    """Writes `clips_per_shape` clips for each latent shape, spread round-robin over `shards` files."""
    rng = np.random.default_rng(seed)
    items = []
    for s in shapes:
        for k in range(clips_per_shape):
            cid = f"synth-{'x'.join(map(str, s))}-{k:04d}"
            items.append((synthetic_example(rng, tuple(s), **dims), {"clip_id": cid, "source": "synthetic"}))
    folder = as_path(folder)  # local or gs://
    paths = []
    for i in range(shards):
        p = folder / f"synthetic-{i:05d}-of-{shards:05d}.array_record"
        write_shard(p, items[i::shards])
        paths.append(p)
    return paths
