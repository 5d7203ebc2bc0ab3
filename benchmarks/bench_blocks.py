"""GPU benchmark: a stack of full-width MMDiT blocks, JAX (cuDNN flash) vs diffusers' PyTorch blocks.

Measures, on one GPU, in one run:
  1. correctness at a small shape: JAX GPU (bf16, cuDNN) vs JAX CPU (fp32, XLA), and JAX GPU vs
     diffusers' blocks on the same GPU with the same weights (mapped by `weights.diffusers_map`);
  2. JAX forward, and forward+backward with LoRA-only gradients (bf16 base, rank-256 FFN LoRA,
     remat by named policy), at >= 32k video tokens + 256 text tokens;
  3. diffusers' blocks (torch bf16, SDPA) at the same shapes: forward (no grad) and forward+backward
     to the activations with frozen weights.
Model FLOPs: 24 d^2 per token per block for the linears, 4 N^2 d per block for attention, LoRA
2 (in + out) r per token per adapted linear; backward = 1x linear (frozen base) + 2.5x attention +
2x LoRA. MFU against the measured 778 TFLOP/s bf16 matmul of an H100.

  python benchmarks/bench_blocks.py --frames 13 --height 30 --width 104   # 40,560 video tokens
  python benchmarks/bench_blocks.py --tiny                                # CPU smoke run (tiny sizes, no torch)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from dreamactor_jax.models import blocks, lora as lora_lib, mmdit  # noqa: E402
from dreamactor_jax.models.config import MMDiTConfig  # noqa: E402
from dreamactor_jax.models.layers import rope_cos_sin  # noqa: E402
from dreamactor_jax.weights import diffusers_map  # noqa: E402

PEAK = 778e12


def block_cfg(args, **kw) -> MMDiTConfig:
    return MMDiTConfig(
        num_attention_heads=args.heads,
        num_layers=args.dual,
        num_single_layers=args.single,
        num_refiner_layers=1,
        dtype="bfloat16",
        param_dtype="bfloat16",
        attention_impl=args.impl,
        **kw,
    )


def _dev() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def make_ctx(cfg, grid, n_text, n_valid, temb, lora_scale):
    cos, sin = rope_cos_sin(grid, cfg.rope_axes_dim, cfg.rope_theta)
    cos = jnp.concatenate([cos, jnp.ones((n_text, cos.shape[1]))])
    sin = jnp.concatenate([sin, jnp.zeros((n_text, sin.shape[1]))])
    b = temb.shape[0]
    kv = jnp.full((b,), math.prod(grid) + n_valid, jnp.int32)
    return blocks.BlockContext(temb, None, 0, cos, sin, kv, lora_scale)


def blocks_fn(cfg, grid, n_text, n_valid, lcfg):
    """(params, lora, img, txt, temb) -> video tokens after dual + single stacks."""

    def fn(params, lora, img, txt, temb):
        ctx = make_ctx(cfg, grid, n_text, n_valid, temb, 0.0 if lora is None else lcfg.scale)
        lora = lora or {}
        img, txt = mmdit.run_layers(blocks.dual_block, params["transformer_blocks"], lora.get("transformer_blocks"), (img, txt), ctx, cfg)
        seq = jnp.concatenate([img, txt], axis=1)
        seq = mmdit.run_layers(blocks.single_block, params["single_transformer_blocks"], lora.get("single_transformer_blocks"), seq, ctx, cfg)
        return seq[:, : img.shape[1]]

    return fn


def flops(cfg, sv, st, r, fwd_bwd: bool) -> float:
    d, n = cfg.hidden_size, sv + st
    nb = cfg.num_layers + cfg.num_single_layers
    lin = 24 * d * d * n * nb
    att = 4 * n * n * d * nb
    m = cfg.mlp_dim
    lo = 2 * r * ((d + m) * 2 * sv * cfg.num_layers + (d + m) * 2 * n * cfg.num_single_layers)
    return lin + att + lo if not fwd_bwd else 2 * lin + 3.5 * att + 3 * lo


def timeit(fn, steps, sync):
    for _ in range(2):
        sync(fn())
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        sync(fn())
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def torch_blocks(cfg, params):
    """diffusers' dual + single blocks with the JAX weights (via the conversion table), bf16 CUDA."""
    import torch
    from diffusers.models.transformers.transformer_hunyuan_video import (
        HunyuanVideoSingleTransformerBlock,
        HunyuanVideoTransformerBlock,
    )

    h, hd = cfg.num_attention_heads, cfg.attention_head_dim
    duals = [HunyuanVideoTransformerBlock(h, hd, mlp_ratio=cfg.mlp_ratio) for _ in range(cfg.num_layers)]
    singles = [HunyuanVideoSingleTransformerBlock(h, hd, mlp_ratio=cfg.mlp_ratio) for _ in range(cfg.num_single_layers)]
    for prefix, mods in (("transformer_blocks", duals), ("single_transformer_blocks", singles)):
        for i, mod in enumerate(mods):
            sd = {}
            for k, v in mod.state_dict().items():
                m = diffusers_map.torch_to_flax(f"{prefix}.{i}.{k}", np.zeros(tuple(v.shape), np.float32))
                node = params
                for name in m.path:
                    node = node[name]
                a = np.asarray(node[m.layer].astype(jnp.float32))
                _, t = diffusers_map.flax_to_torch(m.path, m.layer, a)
                sd[k] = torch.from_numpy(t)
            mod.load_state_dict(sd)
    return [m.to(_dev(), torch.bfloat16).eval().requires_grad_(False) for m in duals + singles]


def torch_run(mods, cfg, grid, img, txt, temb, n_valid):
    import torch
    from diffusers.models.transformers.transformer_hunyuan_video import HunyuanVideoRotaryPosEmbed

    rope = HunyuanVideoRotaryPosEmbed(cfg.patch_size, cfg.patch_size_t, list(cfg.rope_axes_dim), cfg.rope_theta)
    dummy = torch.empty(1, 1, grid[0], grid[1] * 2, grid[2] * 2, device=_dev())
    freqs = rope(dummy)
    b, sv, st = img.shape[0], img.shape[1], txt.shape[1]
    mask = torch.zeros(b, 1, 1, sv + st, dtype=torch.bool, device=_dev())
    mask[..., : sv + n_valid] = True

    def fwd(img, txt):
        for m in mods:
            img, txt = m(img, txt, temb, mask, freqs)
        return img

    return fwd


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=13)
    ap.add_argument("--height", type=int, default=30, help="token rows (latent height / 2)")
    ap.add_argument("--width", type=int, default=104, help="token columns (latent width / 2)")
    ap.add_argument("--text", type=int, default=256)
    ap.add_argument("--valid-text", type=int, default=200)
    ap.add_argument("--dual", type=int, default=2)
    ap.add_argument("--single", type=int, default=2)
    ap.add_argument("--rank", type=int, default=256)
    ap.add_argument("--heads", type=int, default=24, help="24 x 128 = 3072 wide (fewer for a CPU smoke run)")
    ap.add_argument("--impl", default="cudnn", help="attention kernel (xla for a CPU smoke run)")
    ap.add_argument("--remat", default="save_attention,full")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--json", default=None, help="write the results here too")
    ap.add_argument("--tiny", action="store_true", help="CPU smoke run: 1+1 blocks of 2 heads, a few tokens, xla, no torch")
    args = ap.parse_args(argv)
    if args.tiny:
        args.frames, args.height, args.width, args.text, args.valid_text = 1, 2, 4, 8, 4
        args.dual = args.single = 1
        args.rank, args.heads, args.impl, args.remat, args.steps, args.no_torch = 4, 2, "xla", "full", 1, True

    print("devices:", jax.devices(), "jax", jax.__version__, flush=True)
    cfg = block_cfg(args)
    lcfg = lora_lib.LoRAConfig(rank=args.rank, alpha=args.rank)
    d = cfg.hidden_size
    params = jax.jit(mmdit.init_params, static_argnums=0)(cfg, jax.random.key(0))
    params = {k: params[k] for k in ("transformer_blocks", "single_transformer_blocks")}
    lora = jax.jit(lora_lib.init_lora, static_argnums=(0, 1))(cfg, lcfg, jax.random.key(1))
    # a non-trivial adapter (B != 0) so the LoRA path computes real numbers
    lora = jax.tree_util.tree_map(lambda x: x + 0.01 * jax.random.normal(jax.random.key(2), x.shape, x.dtype), lora)
    results = {"device": str(jax.devices()[0].device_kind), "args": vars(args)}

    # ---------------- 1. correctness at a small shape ----------------
    sgrid, st = (3, 8, 12), 32
    rng = np.random.default_rng(0)
    s_img = rng.standard_normal((1, math.prod(sgrid), d)).astype(np.float32)
    s_txt = rng.standard_normal((1, st, d)).astype(np.float32)
    s_temb = rng.standard_normal((1, d)).astype(np.float32)
    gpu_out = jax.jit(blocks_fn(cfg, sgrid, st, 20, lcfg))(params, None, s_img.astype(jnp.bfloat16), s_txt.astype(jnp.bfloat16), s_temb.astype(jnp.bfloat16))
    cpu = jax.devices("cpu")[0]
    cfg32 = cfg.replace(dtype="float32", attention_impl="xla")
    p_cpu = jax.device_put(jax.tree_util.tree_map(lambda a: a.astype(jnp.float32), params), cpu)
    with jax.default_device(cpu):
        cpu_out = jax.jit(blocks_fn(cfg32, sgrid, st, 20, lcfg))(p_cpu, None, s_img, s_txt, s_temb)
    gpu_out = np.asarray(gpu_out.astype(jnp.float32))
    rel = lambda a, b: float(np.max(np.abs(a - b)) / np.max(np.abs(b)))
    results["small_jax_gpu_bf16_vs_cpu_fp32"] = rel(gpu_out, np.asarray(cpu_out))
    print("small shape: JAX GPU bf16 vs JAX CPU fp32 max rel err", results["small_jax_gpu_bf16_vs_cpu_fp32"], flush=True)

    mods = None
    if not args.no_torch:
        import torch

        mods = torch_blocks(cfg, params)
        tb = lambda a: torch.from_numpy(a).to(_dev(), torch.bfloat16)
        with torch.no_grad():
            t_out = torch_run(mods, cfg, sgrid, tb(s_img), tb(s_txt), tb(s_temb), 20)(tb(s_img), tb(s_txt)).float().cpu().numpy()
        results["small_torch_gpu_bf16_vs_cpu_fp32"] = rel(t_out, np.asarray(cpu_out))
        results["small_jax_vs_torch_gpu_bf16"] = rel(gpu_out, t_out)
        print("small shape: torch GPU bf16 vs JAX CPU fp32", results["small_torch_gpu_bf16_vs_cpu_fp32"],
              "| JAX vs torch (both GPU bf16)", results["small_jax_vs_torch_gpu_bf16"], flush=True)

    # ---------------- 2. JAX timings at full shape ----------------
    grid = (args.frames, args.height, args.width)
    sv, st = math.prod(grid), args.text
    results["tokens"] = {"video": sv, "text": st}
    key = jax.random.key(3)
    img = jax.random.normal(key, (1, sv, d), jnp.bfloat16)
    txt = jax.random.normal(jax.random.key(4), (1, st, d), jnp.bfloat16)
    temb = jax.random.normal(jax.random.key(5), (1, d), jnp.bfloat16)
    sync = jax.block_until_ready

    fwd = jax.jit(blocks_fn(cfg, grid, st, args.valid_text, lcfg))
    t = timeit(lambda: fwd(params, lora, img, txt, temb), args.steps, sync)
    f = flops(cfg, sv, st, args.rank, False)
    results["jax_fwd"] = {"ms": 1e3 * t, "tflops": f / t / 1e12, "mfu": f / t / PEAK}
    print(f"JAX forward (LoRA r{args.rank}): {1e3 * t:.1f} ms  {f / t / 1e12:.0f} TFLOP/s  MFU {100 * f / t / PEAK:.1f}%", flush=True)

    for policy in args.remat.split(","):
        c = cfg.replace(remat_policy=policy)
        body = blocks_fn(c, grid, st, args.valid_text, lcfg)
        loss = lambda lo, p, i, tx, te: jnp.mean(jnp.square(body(p, lo, i, tx, te).astype(jnp.float32)))
        step = jax.jit(jax.grad(loss))
        try:
            t = timeit(lambda: step(lora, params, img, txt, temb), args.steps, sync)
        except Exception as e:  # e.g. out of memory with remat "none"
            print(f"JAX fwd+bwd remat={policy}: failed: {type(e).__name__}: {str(e)[:300]}", flush=True)
            results[f"jax_fwd_bwd_{policy}"] = {"error": str(e)[:300]}
            continue
        f = flops(cfg, sv, st, args.rank, True)
        mem = jax.devices()[0].memory_stats() or {}
        results[f"jax_fwd_bwd_{policy}"] = {"ms": 1e3 * t, "tflops": f / t / 1e12, "mfu": f / t / PEAK,
                                            "peak_gib": mem.get("peak_bytes_in_use", 0) / 2**30}
        print(f"JAX fwd+bwd LoRA-only grads, remat={policy}: {1e3 * t:.1f} ms  {f / t / 1e12:.0f} TFLOP/s  "
              f"MFU {100 * f / t / PEAK:.1f}%  peak {mem.get('peak_bytes_in_use', 0) / 2**30:.1f} GiB", flush=True)
        del step

    # ---------------- 3. diffusers' blocks, same shapes, same card ----------------
    if mods is not None:
        import torch

        ti = torch.randn(1, sv, d, device=_dev(), dtype=torch.bfloat16)
        tt = torch.randn(1, st, d, device=_dev(), dtype=torch.bfloat16)
        te = torch.randn(1, d, device=_dev(), dtype=torch.bfloat16)
        run = torch_run(mods, cfg, grid, ti, tt, te, args.valid_text)
        tsync = lambda _: torch.cuda.synchronize() if torch.cuda.is_available() else None
        with torch.no_grad():
            t = timeit(lambda: run(ti, tt), args.steps, tsync)
        f = flops(cfg, sv, st, 0, False)
        results["torch_fwd"] = {"ms": 1e3 * t, "tflops": f / t / 1e12}
        print(f"torch forward (no LoRA): {1e3 * t:.1f} ms  {f / t / 1e12:.0f} TFLOP/s", flush=True)

        def fb():
            a, b_ = ti.detach().requires_grad_(True), tt.detach().requires_grad_(True)
            run(a, b_).float().square().mean().backward()

        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        t = timeit(fb, args.steps, tsync)
        f = flops(cfg, sv, st, 0, True)
        results["torch_fwd_bwd"] = {"ms": 1e3 * t, "tflops": f / t / 1e12, "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else 0}
        print(f"torch fwd+bwd to activations (frozen weights, no LoRA, no remat): {1e3 * t:.1f} ms  {f / t / 1e12:.0f} TFLOP/s", flush=True)
        results["fwd_speedup_jax_over_torch"] = results["torch_fwd"]["ms"] / results["jax_fwd"]["ms"]
        print(f"forward: JAX is {results['fwd_speedup_jax_over_torch']:.2f}x the speed of torch", flush=True)

    print(json.dumps(results, indent=1))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
