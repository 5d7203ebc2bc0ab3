"""GPU benchmark: the JAX VAE against diffusers' AutoencoderKLHunyuanVideo on the same card.

Encode and decode of a 121-frame video (480x832, 720x1280), full published width, random weights.
JAX runs bf16 (fp32 GroupNorm statistics and softmax); diffusers runs fp16 as the reference
pipeline does (`torch_dtype=torch.float16`). Each variant runs in its own process so that the peak
memory is its own (jax: `peak_bytes_in_use`; torch: `max_memory_allocated`). Before timing, a
small-shape check compares JAX with diffusers in fp32 on the GPU (same weights).

    XLA_PYTHON_CLIENT_PREALLOCATE=false python benchmarks/bench_vae.py \
        --variants 480x832:framewise,720x1280:pipeline --out /tmp/bench
    python benchmarks/bench_vae.py --tiny     # CPU smoke run: tiny VAE, 5 frames of 32x32, JAX only

The check and the diffusers timings need torch with CUDA (`--skip check,torch` without one).

Tiling: 'framewise' = diffusers' default (temporal tiles of 17 frames / 5 latent frames, spatial
off); 'pipeline' = framewise plus `vae.enable_tiling()` (256-px tiles, stride 192), what the
HunyuanVideo pipeline examples run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dreamactor_jax.utils import cli_main, write_text_atomic  # noqa: E402

GIB = 1024 ** 3


def _parse_variants(text: str) -> list[tuple[int, int, str]]:
    out = []
    for item in text.split(","):
        try:
            size, tiling = item.split(":")
            h, w = (int(v) for v in size.lower().split("x"))
        except ValueError:
            raise ValueError(f"--variants: expected HxW:tiling items, got {item!r}") from None
        if tiling not in ("framewise", "pipeline", "off"):
            raise ValueError(f"--variants: tiling must be framewise, pipeline or off, got {tiling!r}")
        if h % 8 or w % 8:
            raise ValueError(f"--variants: size must be multiples of 8, got {h}x{w}")
        out.append((h, w, tiling))
    return out


def _jax_tiling(name: str):
    from dreamactor_jax.models import vae
    return {"framewise": vae.Tiling(), "pipeline": vae.Tiling.pipeline(), "off": vae.Tiling.off()}[name]


def _torch_tiling(model, name: str) -> None:
    model.use_framewise_encoding = model.use_framewise_decoding = name != "off"
    model.use_tiling = name == "pipeline"


# ------------------------------------------------------------------------------ check (fp32)

def run_check() -> dict:
    """JAX (fp32 and bf16) vs diffusers fp32 on the GPU, full width, a small video, same weights."""
    import jax
    import numpy as np
    import torch
    from diffusers import AutoencoderKLHunyuanVideo

    from dreamactor_jax.models import vae
    from dreamactor_jax.weights import vae_map

    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.manual_seed(0)
    model = AutoencoderKLHunyuanVideo().eval().cuda()
    cfg = vae.VAEConfig.named("hunyuan")
    params = vae_map.params_from_state_dict(
        cfg, {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()})
    rng = np.random.default_rng(0)
    out = {}
    # Tiling itself is checked on CPU (tests/test_vae_tiling.py); each tile shape costs a compile here.
    for name, frames, tiling in (("off_9f_64x96", 9, vae.Tiling.off()),):
        model.use_framewise_encoding = model.use_framewise_decoding = tiling.framewise_encode
        model.use_tiling = tiling.spatial
        for attr in ("min_height", "min_width", "min_num_frames", "stride_height", "stride_width",
                     "stride_num_frames"):
            setattr(model, f"tile_sample_{attr}", getattr(tiling, attr))
        video = rng.uniform(-1, 1, (1, frames, 64, 96, 3)).astype(np.float32)
        with torch.no_grad():
            ref = model.encode(torch.from_numpy(np.moveaxis(video, -1, 1).copy()).cuda()).latent_dist.mean
        ref = np.moveaxis(ref.cpu().numpy(), 1, -1)
        z = rng.standard_normal(ref.shape).astype(np.float32)
        with torch.no_grad():
            dref = model.decode(torch.from_numpy(np.moveaxis(z, -1, 1).copy()).cuda()).sample
        dref = np.moveaxis(dref.cpu().numpy(), 1, -1)
        with torch.no_grad():  # the reference's own low-precision error, for scale
            half = model.to(torch.float16)
            h16 = half.encode(torch.from_numpy(np.moveaxis(video, -1, 1).copy()).cuda().half())
            d16 = half.decode(torch.from_numpy(np.moveaxis(z, -1, 1).copy()).cuda().half()).sample
            model.float()
        err = lambda a, b: float(np.max(np.abs(np.asarray(a) - b)) / np.max(np.abs(b)))  # noqa: E731
        out[f"{name}_torch_float16"] = {
            "encode_rel_err": err(np.moveaxis(h16.latent_dist.mean.float().cpu().numpy(), 1, -1), ref),
            "decode_rel_err": err(np.moveaxis(d16.float().cpu().numpy(), 1, -1), dref)}
        for dtype in ("float32", "bfloat16"):
            mean, _ = vae.encode(params, cfg, video, tiling=tiling, dtype=dtype)
            dec = vae.decode(params, cfg, z, tiling=tiling, dtype=dtype)
            out[f"{name}_{dtype}"] = {"encode_rel_err": err(mean, ref), "decode_rel_err": err(dec, dref)}
    out["device"] = str(jax.devices()[0].device_kind)
    return out


# ------------------------------------------------------------------------------ timing

def run_torch(variants, frames: int, repeats: int) -> list[dict]:
    import torch
    from diffusers import AutoencoderKLHunyuanVideo

    model = AutoencoderKLHunyuanVideo().eval().to("cuda", torch.float16)
    rows = []
    for h, w, tiling in variants:
        _torch_tiling(model, tiling)
        x = torch.rand(1, 3, frames, h, w, device="cuda", dtype=torch.float16) * 2 - 1
        z = torch.randn(1, 16, (frames - 1) // 4 + 1, h // 8, w // 8, device="cuda", dtype=torch.float16)
        for op, fn in (("encode", lambda: model.encode(x).latent_dist.mode()),
                       ("decode", lambda: model.decode(z).sample)):
            times = []
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            with torch.no_grad():
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    fn()
                    torch.cuda.synchronize()
                    times.append(time.perf_counter() - t0)
            rows.append({"impl": "diffusers fp16", "size": f"{h}x{w}", "tiling": tiling, "op": op,
                         "seconds": sorted(times)[len(times) // 2], "all_seconds": times,
                         "peak_gib": torch.cuda.max_memory_allocated() / GIB,
                         "device": torch.cuda.get_device_name()})
            print(json.dumps(rows[-1]), flush=True)
        del x, z
        torch.cuda.empty_cache()
    return rows


def run_jax(h: int, w: int, tiling_name: str, op: str, frames: int, repeats: int, tiny: bool = False) -> dict:
    import functools

    import jax
    import jax.numpy as jnp

    from dreamactor_jax.models import vae, vae_tiling

    cfg = vae.VAEConfig.named("tiny" if tiny else "hunyuan", dtype="bfloat16")
    tiling = _jax_tiling(tiling_name)
    params = vae.cast_params(vae.init_params(cfg, jax.random.key(0)), jnp.bfloat16)
    key = jax.random.key(1)
    if op == "encode":
        data = jax.random.uniform(key, (1, frames, h, w, 3), jnp.float32, -1, 1)
        tile_fn, driver = vae._jitted(vae._encode_tile, ()), vae_tiling.encode_tiled
        run = lambda: vae.encode(params, cfg, data, tiling=tiling)  # noqa: E731
    else:
        data = jax.random.normal(key, (1, (frames - 1) // 4 + 1, h // 8, w // 8, cfg.latent_channels), jnp.float32)
        tile_fn, driver = vae._jitted(vae._decode_tile, ()), vae_tiling.decode_tiled
        run = lambda: vae.decode(params, cfg, data, tiling=tiling)  # noqa: E731
    # Warm-up: compile and run every distinct tile shape once (a dry pass records the shapes).
    shapes = {}

    def record(tile):
        out = jax.eval_shape(functools.partial(tile_fn, params, cfg), tile)
        shapes[tile.shape] = True
        return jnp.zeros(out.shape, out.dtype)

    driver(record, data, tiling, 8, 4)
    t0 = time.perf_counter()
    for shape in shapes:
        jax.block_until_ready(tile_fn(params, cfg, jnp.zeros(shape, jnp.float32)))
    warm = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(run())
        times.append(time.perf_counter() - t0)
    stats = jax.devices()[0].memory_stats() or {}
    return {"impl": "jax bf16", "size": f"{h}x{w}", "tiling": tiling_name, "op": op,
            "seconds": sorted(times)[len(times) // 2], "all_seconds": times,
            "peak_gib": stats.get("peak_bytes_in_use", float("nan")) / GIB,
            "warmup_compile_seconds": warm, "tile_shapes": len(shapes),
            "device": str(jax.devices()[0].device_kind)}


def _child(args: list[str], timeout: float) -> list[dict]:
    """Runs this script in a child process, echoing its JSON rows as they come; returns them."""
    cmd = [sys.executable, os.path.abspath(__file__), *args]
    rows: list[dict] = []
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        for line in proc.stdout:
            if line.startswith("{"):
                rows.append(json.loads(line))
                print(line.rstrip(), flush=True)
        proc.wait()
    finally:
        timer.cancel()
    if proc.returncode:
        killed = proc.returncode < 0
        rows.append({"error": f"timeout after {timeout:.0f}s" if killed else f"exit {proc.returncode}",
                     "args": args})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def _table(rows: list[dict]) -> str:
    lines = ["| impl | size | tiling | op | time (s) | peak (GiB) | note |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {' '.join(r.get('args', []))} | | | | | | error: {r['error']} |")
            continue
        note = (f"warm-up (compile {r['tile_shapes']} tile shapes) {r['warmup_compile_seconds']:.1f} s"
                if "tile_shapes" in r else "")
        lines.append(f"| {r['impl']} | {r['size']} | {r['tiling']} | {r['op']} | {r['seconds']:.2f} | "
                     f"{r['peak_gib']:.1f} | {note} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", default="480x832:framewise,720x1280:pipeline")
    ap.add_argument("--frames", type=int, default=121)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--out", default=None, help="folder for bench_vae.json and bench_vae.md")
    ap.add_argument("--skip", default="", help="comma list of parts to skip: check,torch,jax")
    ap.add_argument("--timeout", type=float, default=240.0, help="seconds per child process")
    ap.add_argument("--tiny", action="store_true", help="CPU smoke run: tiny VAE, 5 frames of 32x32, no torch")
    ap.add_argument("--role", default="main", help=argparse.SUPPRESS)
    ap.add_argument("--job", default="", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.tiny and args.role == "main":
        args.variants, args.frames, args.repeats = "32x32:off", 5, 1
        args.skip = ",".join(sorted(set(filter(None, args.skip.split(","))) | {"check", "torch"}))
    if (args.frames - 1) % 4:
        raise ValueError(f"--frames: expected 4k+1, got {args.frames}")
    variants = _parse_variants(args.variants)

    if args.role == "check":
        print(json.dumps({"check": run_check()}), flush=True)
        return 0
    if args.role == "torch":
        run_torch(variants, args.frames, args.repeats)
        return 0
    if args.role == "jax":
        h, w, tiling = variants[0]
        print(json.dumps(run_jax(h, w, tiling, args.job, args.frames, args.repeats, args.tiny)), flush=True)
        return 0

    skip = set(filter(None, args.skip.split(",")))
    common = ["--frames", str(args.frames), "--repeats", str(args.repeats)] + (["--tiny"] if args.tiny else [])
    rows, check = [], None
    if "check" not in skip:
        got = _child(["--role", "check", *common], args.timeout)
        check = next((r["check"] for r in got if "check" in r), got)
        print("check:", json.dumps(check), flush=True)
    for h, w, tiling in variants:  # smallest first; each size: diffusers, then JAX
        variant = f"{h}x{w}:{tiling}"
        if "torch" not in skip:
            rows += _child(["--role", "torch", "--variants", variant, *common], args.timeout)
        if "jax" not in skip:
            for op in ("encode", "decode"):
                rows += _child(["--role", "jax", "--variants", variant, "--job", op, *common],
                               args.timeout)
    table = _table(rows)
    print(table)
    if args.out:
        write_text_atomic(os.path.join(args.out, "bench_vae.json"),
                          json.dumps({"check": check, "rows": rows}, indent=1))
        write_text_atomic(os.path.join(args.out, "bench_vae.md"), table + "\n")
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    cli_main(main)
