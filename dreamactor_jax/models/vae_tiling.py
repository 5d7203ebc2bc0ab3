"""Temporal (framewise) and spatial tiling for the 3D causal VAE, blended as diffusers does.

This reproduces `AutoencoderKLHunyuanVideo._temporal_tiled_encode/_decode` and
`tiled_encode/tiled_decode` (diffusers 0.42.1) step for step, including one detail that
matters for exactness: diffusers blends tiles *in place*, so a tile that was blended with
its upper/left (or previous) neighbour is the one the next tile blends with. Tiles are run
by a jitted per-tile function (one compile per distinct tile shape) in a Python loop, so
device memory is bounded by one tile's activations plus the (small) blended outputs.

Layouts are channels-last: pixels `[B, T, H, W, 3]`, latents `[B, T', H', W', C]`.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Iterable

import jax
import jax.numpy as jnp
import numpy as np

TileFn = Callable[[jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class Tiling:
    """Tiling switches and sizes, in *sample* (pixel) units, named and defaulted as in diffusers.

    framewise_encode/decode: temporal tiling (diffusers `use_framewise_encoding/decoding`, on by
    default). spatial: spatial tiling (diffusers `use_tiling`, off unless `enable_tiling()`).
    A temporal encode tile covers `min_num_frames + 1` frames and tiles start every
    `stride_num_frames` frames; spatial tiles are `min_height x min_width` every `stride_*` pixels.
    """

    framewise_encode: bool = True
    framewise_decode: bool = True
    spatial: bool = False
    min_height: int = 256
    min_width: int = 256
    min_num_frames: int = 16
    stride_height: int = 192
    stride_width: int = 192
    stride_num_frames: int = 12

    def __post_init__(self):
        for name in ("min_height", "min_width", "min_num_frames",
                     "stride_height", "stride_width", "stride_num_frames"):
            if getattr(self, name) <= 0:
                raise ValueError(f"Tiling.{name}: expected a positive int, got {getattr(self, name)}")
        for axis in ("height", "width", "num_frames"):
            if getattr(self, f"stride_{axis}") > getattr(self, f"min_{axis}"):
                raise ValueError(f"Tiling.stride_{axis}: must be <= min_{axis} (tiles must overlap or touch)")

    @classmethod
    def off(cls) -> "Tiling":
        """No tiling at all: one pass over the whole video (memory grows with its size)."""
        return cls(framewise_encode=False, framewise_decode=False, spatial=False)

    @classmethod
    def pipeline(cls) -> "Tiling":
        """What the reference pipeline runs: framewise on plus `vae.enable_tiling()` (spatial on)."""
        return cls(spatial=True)


def blend(a: jax.Array, b: jax.Array, extent: int, axis: int) -> jax.Array:
    """Returns `b` with its first `extent` slices along `axis` cross-faded from `a`'s last ones.

    Same formula as diffusers' blend_v/blend_h/blend_t: `a[-e+y]*(1-y/e) + b[y]*(y/e)`, the
    weights computed in float64 and rounded once to the tensors' dtype, as PyTorch does.
    """
    extent = min(a.shape[axis], b.shape[axis], extent)
    if extent <= 0:
        return b
    y = np.arange(extent, dtype=np.float64) / extent
    shape = [1] * b.ndim
    shape[axis] = extent
    w_b = jnp.asarray(y.reshape(shape), dtype=b.dtype)
    w_a = jnp.asarray((1.0 - y).reshape(shape), dtype=b.dtype)
    a_tail = jax.lax.slice_in_dim(a, a.shape[axis] - extent, a.shape[axis], axis=axis)
    b_head = jax.lax.slice_in_dim(b, 0, extent, axis=axis)
    b_rest = jax.lax.slice_in_dim(b, extent, b.shape[axis], axis=axis)
    return jnp.concatenate([a_tail * w_a + b_head * w_b, b_rest], axis=axis)


def _blend_grid(rows: list[list[jax.Array]], blend_h: int, blend_w: int,
                keep_h: int, keep_w: int) -> jax.Array:
    """Blends a grid of spatial tiles (upper and left neighbours, in place) and stitches it."""
    out_rows = []
    for i, row in enumerate(rows):
        kept = []
        for j in range(len(row)):
            tile = row[j]
            if i > 0:
                tile = blend(rows[i - 1][j], tile, blend_h, axis=2)
            if j > 0:
                tile = blend(row[j - 1], tile, blend_w, axis=3)
            row[j] = tile  # in place, as diffusers: later neighbours see the blended tile
            kept.append(tile[:, :, :keep_h, :keep_w])
        out_rows.append(jnp.concatenate(kept, axis=3))
    return jnp.concatenate(out_rows, axis=2)


def spatial_tiled_encode(tile_fn: TileFn, x: jax.Array, t: Tiling, ratio: int) -> jax.Array:
    """diffusers `tiled_encode`: pixel tiles -> latent tiles, blended in latent space."""
    _, _, height, width, _ = x.shape
    lat_min_h, lat_min_w = t.min_height // ratio, t.min_width // ratio
    lat_stride_h, lat_stride_w = t.stride_height // ratio, t.stride_width // ratio
    rows = [[tile_fn(x[:, :, i:i + t.min_height, j:j + t.min_width])
             for j in range(0, width, t.stride_width)]
            for i in range(0, height, t.stride_height)]
    out = _blend_grid(rows, lat_min_h - lat_stride_h, lat_min_w - lat_stride_w,
                      lat_stride_h, lat_stride_w)
    return out[:, :, :height // ratio, :width // ratio]


def spatial_tiled_decode(tile_fn: TileFn, z: jax.Array, t: Tiling, ratio: int) -> jax.Array:
    """diffusers `tiled_decode`: latent tiles -> pixel tiles, blended in pixel space."""
    _, _, height, width, _ = z.shape
    lat_min_h, lat_min_w = t.min_height // ratio, t.min_width // ratio
    lat_stride_h, lat_stride_w = t.stride_height // ratio, t.stride_width // ratio
    rows = [[tile_fn(z[:, :, i:i + lat_min_h, j:j + lat_min_w])
             for j in range(0, width, lat_stride_w)]
            for i in range(0, height, lat_stride_h)]
    out = _blend_grid(rows, t.min_height - t.stride_height, t.min_width - t.stride_width,
                      t.stride_height, t.stride_width)
    return out[:, :, :height * ratio, :width * ratio]


def _needs_spatial(t: Tiling, height: int, width: int, min_h: int, min_w: int) -> bool:
    return t.spatial and (height > min_h or width > min_w)


def encode_tiled(tile_fn: TileFn, x: jax.Array, t: Tiling, spatial_ratio: int,
                 temporal_ratio: int) -> jax.Array:
    """diffusers `_encode`: framewise tiling first, spatial tiling inside (or alone), else one pass.

    `tile_fn` maps pixels `[B, t, h, w, 3]` to the raw posterior parameters `[B, t', h', w', 2C]`.
    """
    _, num_frames, height, width, _ = x.shape
    spatial = _needs_spatial(t, height, width, t.min_height, t.min_width)

    def one(tile):
        return spatial_tiled_encode(tile_fn, tile, t, spatial_ratio) if spatial else tile_fn(tile)

    if not (t.framewise_encode and num_frames > t.min_num_frames):
        return one(x)
    lat_frames = (num_frames - 1) // temporal_ratio + 1
    lat_min = t.min_num_frames // temporal_ratio
    lat_stride = t.stride_num_frames // temporal_ratio
    tiles = []
    for i in range(0, num_frames, t.stride_num_frames):
        tile = x[:, i:i + t.min_num_frames + 1]
        if i > 0 and tile.shape[1] == 1:
            continue  # encodes to one latent frame that diffusers drops: skip the work
        enc = one(tile)
        tiles.append(enc[:, 1:] if i > 0 else enc)
    kept = [tiles[0][:, :lat_stride + 1]]
    for i in range(1, len(tiles)):
        tiles[i] = blend(tiles[i - 1], tiles[i], lat_min - lat_stride, axis=1)
        kept.append(tiles[i][:, :lat_stride])
    return jnp.concatenate(kept, axis=1)[:, :lat_frames]


def decode_tiled(tile_fn: TileFn, z: jax.Array, t: Tiling, spatial_ratio: int,
                 temporal_ratio: int) -> jax.Array:
    """diffusers `_decode`: framewise tiling first, spatial tiling inside (or alone), else one pass.

    `tile_fn` maps latents `[B, t', h', w', C]` to pixels `[B, 4(t'-1)+1, 8h', 8w', 3]`.
    """
    _, num_frames, height, width, _ = z.shape
    lat_min_h, lat_min_w = t.min_height // spatial_ratio, t.min_width // spatial_ratio
    spatial = _needs_spatial(t, height, width, lat_min_h, lat_min_w)

    def one(tile):
        return spatial_tiled_decode(tile_fn, tile, t, spatial_ratio) if spatial else tile_fn(tile)

    lat_min = t.min_num_frames // temporal_ratio
    if not (t.framewise_decode and num_frames > lat_min):
        return one(z)
    sample_frames = (num_frames - 1) * temporal_ratio + 1
    lat_stride = t.stride_num_frames // temporal_ratio
    if lat_stride <= 0:
        raise ValueError(f"Tiling.stride_num_frames: must be >= {temporal_ratio} for framewise decoding")
    tiles = []
    for i in range(0, num_frames, lat_stride):
        tile = z[:, i:i + lat_min + 1]
        if i > 0 and tile.shape[1] == 1:
            continue  # decodes to one frame that diffusers drops: skip the work
        dec = one(tile)
        tiles.append(dec[:, 1:] if i > 0 else dec)
    kept = [tiles[0][:, :t.stride_num_frames + 1]]
    for i in range(1, len(tiles)):
        tiles[i] = blend(tiles[i - 1], tiles[i], t.min_num_frames - t.stride_num_frames, axis=1)
        kept.append(tiles[i][:, :t.stride_num_frames])
    return jnp.concatenate(kept, axis=1)[:, :sample_frames]


# ----------------------------------------------------------------------------------------------
# Choosing the tiling from the memory at hand (what tools/preprocess.py and launch/sample.py do)
# ----------------------------------------------------------------------------------------------

# Peak bytes per pixel-frame of one tile for the published VAE (block_out_channels[0] = 128) in
# bf16, from the H100 measurements in docs/benchmarks.md ("VAE (issue 4)"): a framewise tile of
# 17 x 480 x 832 peaked at 11.4 GiB (encode) and 17.6 GiB (decode); 256-px tiles of 720x1280 at
# 3.5 / 5.1 GiB with the whole video's input and output resident. float32 counts double; other
# widths scale with block_out_channels[0]. An estimate with margin, not an exact count.
_PEAK_BYTES_PER_PIXEL_FRAME = {"encode": 1800, "decode": 2800}
SPATIAL_TILES = (512, 384, 256, 192, 128)   # tile sides tried, largest first (stride 3/4 of the side)
TILING_CHOICES = ("auto", "framewise", "pipeline", "off")


def tile_peak_bytes(op: str, frames: int, height: int, width: int, *, base_channels: int = 128,
                    dtype: str = "bfloat16") -> float:
    """Estimated peak bytes of encoding (`op="encode"`) or decoding one `frames x height x width` tile."""
    per = _PEAK_BYTES_PER_PIXEL_FRAME[op] * base_channels / 128 * (1 if "16" in str(dtype) else 2)
    return per * frames * height * width


def memory_budget(fraction: float = 0.5, device=None) -> tuple[int, str]:
    """(bytes the VAE may use, where that figure comes from): `fraction` of the device's free memory
    (accelerators: `memory_stats`), or of the host's available memory on CPU."""
    import jax

    device = device or jax.local_devices()[0]
    if device.platform != "cpu":
        stats = device.memory_stats() or {}
        limit = stats.get("bytes_limit") or stats.get("bytes_reservable_limit")
        if limit:
            free = int(limit) - int(stats.get("bytes_in_use", 0))
            return int(fraction * free), f"{device.platform} free memory"
    try:
        with open("/proc/meminfo") as f:
            info = {ln.split(":")[0]: int(ln.split()[1]) * 1024 for ln in f if ":" in ln}
        return int(fraction * info["MemAvailable"]), "host available memory"
    except (OSError, KeyError, ValueError, IndexError):
        pass
    try:
        import psutil

        return int(fraction * psutil.virtual_memory().available), "host available memory"
    except ImportError:
        return 8 << 30, "a default of 8 GiB (memory unknown)"


def choose_tiling(sizes: Iterable[tuple[str, int, int, int]], budget: float, *, base_channels: int = 128,
                  dtype: str = "bfloat16", temporal: Tiling = Tiling()) -> Tiling:
    """The least tiling whose estimated peak fits `budget` bytes for every `(op, frames, H, W)` of
    `sizes` (op "encode" / "decode", pixel sizes of the videos): framewise alone (diffusers'
    default, fastest) if it fits, else framewise plus the largest spatial tile of `SPATIAL_TILES`
    that fits, else the smallest tile. A `temporal` with framewise tiling off (a VAE without it)
    counts every frame in one tile."""
    t_frames = temporal.min_num_frames + 1 if temporal.framewise_encode else None  # None: all frames at once
    sizes = list(sizes)

    def fits(side: int | None) -> bool:
        for op, frames, h, w in sizes:
            th, tw = (h, w) if side is None else (min(side, h), min(side, w))
            resident = 2 * frames * h * w * 3 * 4  # the whole input and output, fp32
            tile_frames = frames if t_frames is None else min(frames, t_frames)
            if tile_peak_bytes(op, tile_frames, th, tw, base_channels=base_channels,
                               dtype=dtype) + resident > budget:
                return False
        return True

    if fits(None):
        return dataclasses.replace(temporal, spatial=False)
    side = next((s for s in SPATIAL_TILES if fits(s)), SPATIAL_TILES[-1])
    return dataclasses.replace(temporal, spatial=True, min_height=side, min_width=side,
                               stride_height=side * 3 // 4, stride_width=side * 3 // 4)


def resolve_tiling(choice: str, sizes: Iterable[tuple[str, int, int, int]], *, base_channels: int = 128,
                   dtype: str = "bfloat16", fraction: float = 0.5, framewise: bool = True) -> tuple[Tiling, str]:
    """A `--vae-tiling` value (auto, framewise, pipeline, off, or a spatial tile side in pixels) ->
    (Tiling, one line saying what was chosen and why). `framewise=False`: the VAE has no temporal
    tiles (HunyuanVideo-1.5's, whose config's default `tiling` has framewise off): the line says so,
    and auto sizes the spatial tiles for all frames at once."""
    choice = str(choice).strip().lower()
    fw = "framewise + " if framewise else ""
    if choice == "off":
        return Tiling.off(), "VAE tiling off (one pass over the whole video)"
    if choice == "framewise":
        return Tiling(), ("VAE tiling: framewise (17-frame tiles, no spatial tiles)" if framewise else
                          "VAE tiling: none (this VAE has no framewise tiling; one pass over the whole video)")
    if choice == "pipeline":
        return Tiling.pipeline(), f"VAE tiling: {fw}256-px spatial tiles"
    if choice.isdigit():
        side = int(choice)
        if side < 64 or side % 64:
            raise ValueError(f"--vae-tiling {choice}: a spatial tile side must be a multiple of 64 (>= 64)")
        t = Tiling(spatial=True, min_height=side, min_width=side, stride_height=side * 3 // 4,
                   stride_width=side * 3 // 4)
        return t, f"VAE tiling: {fw}{side}-px spatial tiles"
    if choice != "auto":
        raise ValueError(f"--vae-tiling {choice}: expected one of {TILING_CHOICES} or a tile side in pixels")
    budget, where = memory_budget(fraction)
    t = choose_tiling(sizes, budget, base_channels=base_channels, dtype=dtype,
                      temporal=Tiling(framewise_encode=framewise, framewise_decode=framewise))
    what = (f"{fw}{t.min_height}-px spatial tiles" if t.spatial else
            "framewise only" if framewise else "none (whole video at once)")
    return t, (f"VAE tiling: auto -> {what} (budget {budget / 2**30:.1f} GiB, "
               f"{fraction:.0%} of {where}; --vae-tiling off/framewise/pipeline/N to choose)")
