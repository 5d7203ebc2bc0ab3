"""Seconds per denoising step of the sampler (full-width I2V-33ch, bf16) vs diffusers, and the VAE decode.

    XLA_PYTHON_CLIENT_PREALLOCATE=false python benchmarks/bench_sample.py            # H100 / H200
    python benchmarks/bench_sample.py --tiny                                          # CPU smoke run

One step = what `sampling.sampler.denoise_step` runs (clamp, in-context channel stack, MMDiT forward,
Euler update), batch 1, no CFG (true CFG doubles the batch), 256 text tokens (120 valid), at the
in-context canvas of a 480x832 panel (480x1664, 40,560 video tokens at 49 frames, 96,720 at 121).
The reference is diffusers' `HunyuanVideoTransformer3DModel` forward (bf16, torch SDPA) on the same
inputs in the same process. Both models have the full width (24 heads x 128) and 1/`--scale-down`
of the blocks (default 5: 4 dual + 8 single of 20 + 40, so both fit beside each other on one 80 GB
card); the full-model step is the measured time x `scale-down` (the embedders and final layer,
counted that many times, are well under 1% of a step). Before timing, a 1 dual + 1 single block
model with the same weights in both frameworks is compared (max relative error, bf16). The VAE
(full `hunyuan` config, bf16, diffusers' default framewise tiling) decodes one panel's latents.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PEAK = 778e12  # H100 bf16 dense matmul ceiling measured here (docs: gpu.md)


def block_flops(cfg, n_tokens: int) -> float:
    """gpu.md's count: 24 d^2 per token per block (linears) + 4 N^2 d per block (attention)."""
    d, blocks = cfg.hidden_size, cfg.num_layers + cfg.num_single_layers
    return blocks * (24 * d * d * n_tokens + 4 * n_tokens * n_tokens * d)


def timed(fn, sync, iters: int) -> list[float]:
    out = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        sync()
        out.append(time.perf_counter() - t0)
    return out


def inputs(cfg, frames: int, height: int, width: int, text_len: int, valid: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    t, h, w = (frames - 1) // 4 + 1, height // 8, 2 * width // 8
    mask = np.zeros((1, text_len), np.int32)
    mask[:, :valid] = 1
    return dict(
        noise=rng.standard_normal((1, t, h, w, 16)).astype(np.float32),
        canvas=rng.standard_normal((1, t, h, w, 16)).astype(np.float32),
        mask=np.ones((1, t, h, w, 1), np.float32),
        text=rng.standard_normal((1, text_len, cfg.text_embed_dim)).astype(np.float32),
        text_mask=mask,
        pooled=rng.standard_normal((1, cfg.pooled_projection_dim)).astype(np.float32),
    )


def torch_model(cfg, device, dtype):
    import diffusers
    import torch

    torch.manual_seed(0)
    with torch.device(device):
        prev = torch.get_default_dtype()
        torch.set_default_dtype(dtype)
        try:
            model = diffusers.HunyuanVideoTransformer3DModel(**cfg.to_diffusers_config()).eval()
        finally:
            torch.set_default_dtype(prev)
    return model


def torch_step(model, inp, device, dtype):
    import torch

    t = lambda a: torch.from_numpy(a).to(device)
    x = t(inp["noise"]).to(dtype)
    hidden = torch.cat([x, t(inp["canvas"]).to(dtype), t(inp["mask"]).to(dtype)], dim=-1).permute(0, 4, 1, 2, 3)
    args = dict(hidden_states=hidden.contiguous(), timestep=torch.tensor([900.0], device=device),
                encoder_hidden_states=t(inp["text"]).to(dtype), encoder_attention_mask=t(inp["text_mask"]),
                pooled_projections=t(inp["pooled"]).to(dtype), return_dict=False)

    def step():
        with torch.no_grad():
            v = model(**args)[0]
            return x.float() + (-0.05) * v.permute(0, 2, 3, 4, 1).float()
    return step


def jax_step(cfg, params, inp):
    import jax
    import jax.numpy as jnp

    from dreamactor_jax.sampling.sampler import denoise_step
    from dreamactor_jax.sampling.velocity import InContextVelocity

    fn = InContextVelocity(cfg)
    cond = {k: jnp.asarray(inp[k]) for k in ("canvas", "mask", "text", "text_mask", "pooled")}
    noise = jnp.asarray(inp["noise"])
    known = jnp.zeros_like(noise)
    kmask = jnp.zeros((1, noise.shape[1], 1, 1, 1), jnp.float32)

    def step():
        return denoise_step(fn, params, cond, noise, noise, np.float32(0.9), np.float32(0.85), known, kmask)
    return lambda: jax.block_until_ready(step())


def check(args, dev, dtype, report):
    """Same weights in both frameworks (1 dual + 1 single full-width block): max relative error."""
    import jax
    import jax.numpy as jnp
    import torch

    from dreamactor_jax.models import mmdit
    from dreamactor_jax.models.config import MMDiTConfig
    from dreamactor_jax.weights.diffusers_map import state_dict_to_params

    over = dict(num_layers=1, num_single_layers=1)
    cfg = MMDiTConfig.named("tiny-i2v-33ch" if args.tiny else "i2v-33ch", dtype=args.dtype, param_dtype=args.dtype, **over)
    model = torch_model(cfg, dev, dtype)
    sd = {k: v.detach().float().cpu().numpy() for k, v in model.state_dict().items()}
    params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, cfg.param_dtype), state_dict_to_params(sd, cfg))
    inp = inputs(cfg, 9, 64, 64, 32, 20, seed=1)
    x = np.concatenate([inp["noise"], inp["canvas"], inp["mask"]], -1)
    got = np.asarray(mmdit.forward(params, cfg, jnp.asarray(x), np.array([900.0], np.float32), inp["text"],
                                   inp["text_mask"], inp["pooled"]), np.float32)
    t = lambda a: torch.from_numpy(a).to(dev)
    with torch.no_grad():
        want = model(hidden_states=t(x).to(dtype).permute(0, 4, 1, 2, 3), timestep=torch.tensor([900.0], device=dev),
                     encoder_hidden_states=t(inp["text"]).to(dtype), encoder_attention_mask=t(inp["text_mask"]),
                     pooled_projections=t(inp["pooled"]).to(dtype), return_dict=False)[0]
    want = want.permute(0, 2, 3, 4, 1).float().cpu().numpy()
    err = float(np.abs(got - want).max() / np.abs(want).max())
    report["check_max_rel_err"] = err
    print(f"check (1+1 blocks, same weights, {args.dtype}): max rel err {err:.3g}", flush=True)
    del model


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tiny", action="store_true", help="tiny config and shapes (CPU smoke run)")
    p.add_argument("--frames", default="49,121")
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--width", type=int, default=832, help="one panel; the canvas is twice as wide")
    p.add_argument("--scale-down", type=int, default=5, help="time 1/N of the blocks and scale by N")
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--no-vae", action="store_true")
    p.add_argument("--torch-vae", action="store_true", help="also time diffusers' VAE decode (49 frames)")
    p.add_argument("--fp8", action="store_true", help="block linears in float8 e4m3 (models.fp8); diffusers stays bf16")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)

    import jax
    import jax.numpy as jnp

    from dreamactor_jax.models import mmdit
    from dreamactor_jax.models.config import MMDiTConfig

    args.dtype = "float32" if args.tiny else "bfloat16"
    if args.tiny:
        args.height, args.width, args.scale_down = 32, 32, 1
    gpu = jax.default_backend() == "gpu"
    report = {"device": str(jax.devices()[0].device_kind), "jax": jax.__version__, "rows": []}
    torch = None
    if not args.no_torch:
        import torch

        dev = "cuda" if torch.cuda.is_available() else "cpu"
        tdtype = torch.bfloat16 if args.dtype == "bfloat16" else torch.float32
        report["torch"] = torch.__version__
        check(args, dev, tdtype, report)

    k = args.scale_down
    name = "tiny-i2v-33ch" if args.tiny else "i2v-33ch"
    full = MMDiTConfig.named(name)
    cfg = MMDiTConfig.named(name, dtype=args.dtype, param_dtype=args.dtype,
                            num_layers=full.num_layers // k, num_single_layers=full.num_single_layers // k)
    print(f"{report['device']}: {cfg.num_layers} dual + {cfg.num_single_layers} single blocks (1/{k} of the model), "
          f"{args.dtype}", flush=True)
    params = jax.jit(lambda key: mmdit.init_params(cfg, key))(jax.random.key(0))
    if args.fp8:  # models.fp8: the block linears in e4m3 (opt-in; error vs bf16 in tests/test_fp8.py)
        from dreamactor_jax.models import fp8

        params = jax.jit(fp8.quantize_blocks)(params)
        report["fp8"] = True
    tmodel = None if args.no_torch else torch_model(cfg, dev, tdtype)
    tsync = (lambda: torch.cuda.synchronize()) if (torch is not None and dev == "cuda") else (lambda: None)
    text_len, valid = (32, 20) if args.tiny else (256, 120)
    for frames in [int(f) for f in args.frames.split(",")]:
        inp = inputs(cfg, frames, args.height, args.width, text_len, valid)
        n_tok = inp["noise"].shape[1] * inp["noise"].shape[2] * inp["noise"].shape[3] // 4 + text_len
        row = {"frames": frames, "tokens": n_tok}
        step = jax_step(cfg, params, inp)
        t0 = time.perf_counter()
        step()
        row["jax_first_call_s"] = time.perf_counter() - t0
        row["jax_step_s"] = statistics.median(timed(step, lambda: None, args.iters)) * k
        if tmodel is not None:
            tstep = torch_step(tmodel, inp, dev, tdtype)
            tstep()
            tsync()
            row["torch_step_s"] = statistics.median(timed(tstep, tsync, args.iters)) * k
            if gpu:
                row["torch_peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
        flops = block_flops(full, n_tok)
        row["jax_mfu"] = flops / row["jax_step_s"] / PEAK
        if "torch_step_s" in row:
            row["torch_mfu"] = flops / row["torch_step_s"] / PEAK
            row["speedup"] = row["torch_step_s"] / row["jax_step_s"]
        report["rows"].append(row)
        print(json.dumps(row), flush=True)
    del params, tmodel

    if not args.no_vae:
        from dreamactor_jax.data.vae_encoder import random_vae_params
        from dreamactor_jax.models import vae

        vcfg = vae.VAEConfig.named("tiny" if args.tiny else "hunyuan", dtype=args.dtype)
        vparams = jax.tree_util.tree_map(jnp.asarray, random_vae_params(vcfg))
        for frames in [int(f) for f in args.frames.split(",")]:
            z = jnp.asarray(np.random.default_rng(0).standard_normal(
                (1, (frames - 1) // 4 + 1, args.height // 8, args.width // 8, vcfg.latent_channels)).astype(np.float32))
            dec = lambda: jax.block_until_ready(vae.decode_latents(vparams, vcfg, z))
            t0 = time.perf_counter()
            dec()
            first = time.perf_counter() - t0
            row = {"vae_decode_frames": frames, "panel": f"{args.height}x{args.width}", "first_call_s": first,
                   "jax_s": statistics.median(timed(dec, lambda: None, max(1, args.iters - 1)))}
            if args.torch_vae and torch is not None and frames == 49:
                import diffusers

                small = dict(latent_channels=4, block_out_channels=(8, 8, 16, 16), layers_per_block=1,
                             norm_num_groups=4, down_block_types=("HunyuanVideoDownBlock3D",) * 4,
                             up_block_types=("HunyuanVideoUpBlock3D",) * 4)
                with torch.device(dev):
                    tv = diffusers.AutoencoderKLHunyuanVideo(**(small if args.tiny else {})).to(tdtype).eval()
                zt = torch.from_numpy(np.asarray(z)).to(dev, tdtype).permute(0, 4, 1, 2, 3) / vcfg.scaling_factor
                tdec = lambda: tv.decode(zt, return_dict=False)
                with torch.no_grad():
                    tdec()
                    tsync()
                    row["torch_s"] = statistics.median(timed(tdec, tsync, max(1, args.iters - 1)))
                del tv
            report["rows"].append(row)
            print(json.dumps(row), flush=True)

    print("\n| frames | tokens | JAX s/step | diffusers s/step | speedup | JAX MFU | diffusers MFU |")
    print("|---|---|---|---|---|---|---|")
    for r in report["rows"]:
        if "tokens" in r:
            print(f"| {r['frames']} | {r['tokens']:,} | {r['jax_step_s']:.3f} | {r.get('torch_step_s', float('nan')):.3f} "
                  f"| {r.get('speedup', float('nan')):.2f}x | {r['jax_mfu']:.1%} | {r.get('torch_mfu', float('nan')):.1%} |")
    for r in report["rows"]:
        if "vae_decode_frames" in r:
            print(f"VAE decode {r['vae_decode_frames']} frames {r['panel']}: JAX {r['jax_s']:.2f} s "
                  f"(first call {r['first_call_s']:.1f} s)" + (f", diffusers {r['torch_s']:.2f} s" if "torch_s" in r else ""))
    if args.json:
        from dreamactor_jax.utils import write_text_atomic

        write_text_atomic(args.json, json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    from dreamactor_jax.utils import cli_main

    cli_main(main)
