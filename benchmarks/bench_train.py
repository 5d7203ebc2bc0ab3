"""LoRA training step on one GPU: step time, tokens/s and MFU; does the full 12.8B I2V-33ch train on one card?

    XLA_PYTHON_CLIENT_MEM_FRACTION=0.95 python benchmarks/bench_train.py --part blocks   # H100 / H200
    XLA_PYTHON_CLIENT_MEM_FRACTION=0.95 python benchmarks/bench_train.py --part full
    XLA_PYTHON_CLIENT_MEM_FRACTION=0.95 python benchmarks/bench_train.py --part full --remat auto   # issue 22
    python benchmarks/bench_train.py --tiny                                              # CPU smoke run
    # the second backbone, HunyuanVideo-1.5 (8.3B, 54 dual blocks at 2048, 16x VAE, patch 1):
    XLA_PYTHON_CLIENT_MEM_FRACTION=0.95 python benchmarks/bench_train.py --model hv15 --part full
    XLA_PYTHON_CLIENT_MEM_FRACTION=0.95 python benchmarks/bench_train.py --model hv15 --part largest
    python benchmarks/bench_train.py --model hv15 --tiny                                 # CPU smoke run

`--model` is an `MMDiTConfig.named` backbone (`i2v-33ch`, `hv15`); everything else follows from its
config (latent channels, VAE factor 8 or 16, block kinds, the FFN-only LoRA targets `lora.ffn_targets`).
`largest` (full model, full remat) tries in-context clips from small to large (49..121 frames,
480p..720p panels) and reports which train and which run out of memory (not yet run on a GPU for hv15).

One step = `train.step.train_step` (noise the target, 33-channel in-context input, MMDiT forward with
the rank-256 FFN LoRA, loss on the target half, grad w.r.t. the adapter only, clipped AdamW), batch 1,
256 text tokens (120 valid), frozen base in bf16, adapter in fp32, bf16 activations, cuDNN attention.

- `blocks`: full width (24 heads x 128), 2 dual + 2 single blocks, no remat, at 49 frames with a
  480x416 and a 480x832 panel (in-context canvas 480x832 / 480x1664: 20,280 / 40,560 video tokens).
- `full`: the whole I2V-33ch (20 dual + 40 single blocks, 12.8B params, random weights made on the
  card), full remat, 49 frames of a 480x848 panel (canvas 480x1696: 41,340 video tokens); peak memory.
  (hv15: 54 dual blocks, 8.3B; the same clip is 49 frames of 480x848 -> 13 x 30 x 106 = 41,340 tokens.)

MFU counts model FLOPs (no remat recompute) against 778 TFLOP/s (gpu.md): per block 24 d^2 per token
(linears) + 4 N^2 d (attention) forward; training = forward + backward to the activations
(1x linears + 2.5x attention, gpu.md's convention) + the LoRA (6 FLOPs per adapter weight per token).
Each process prints one JSON line and a table row; run the two parts as separate processes so peak
memory is per part.
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

PEAK = 778e12
LARGEST = [(49, 480, 832), (81, 480, 832), (121, 480, 832), (49, 720, 1280), (81, 720, 1280), (121, 720, 1280)]


def _latent_grid(mcfg, frames: int, height: int, width: int) -> tuple[int, int, int]:
    """Latent (T', H', 2W') of an in-context canvas: 8x VAE for HunyuanVideo, 16x for HunyuanVideo-1.5."""
    f = 16 if mcfg.backbone == "hunyuan_video15" else 8
    return (frames - 1) // 4 + 1, height // f, 2 * width // f


def train_flops(mcfg, lcfg, n_video: int, n_text: int) -> float:
    d, blocks = mcfg.hidden_size, mcfg.num_layers + mcfg.num_single_layers
    n = n_video + n_text
    linear = blocks * 24 * d * d * n
    attn = blocks * 4 * n * n * d
    from dreamactor_jax.models import lora as lora_lib
    lora = 6 * lora_lib.count_lora_params(mcfg, lcfg) * n_video
    return 2 * linear + 3.5 * attn + lora


def run(args) -> dict:
    import jax

    from dreamactor_jax import sharding
    from dreamactor_jax.models import lora as lora_lib
    from dreamactor_jax.models.config import MMDiTConfig
    from dreamactor_jax.train import state as st
    from dreamactor_jax.train.objective import FlowConfig
    from dreamactor_jax.train.optim import OptimConfig
    from dreamactor_jax.train.step import make_train_step

    gpu = jax.default_backend() == "gpu"
    if args.tiny:
        mcfg = MMDiTConfig.named(f"tiny-{args.model}", param_dtype="bfloat16", attention_impl="xla",
                                 remat_policy=args.remat or "none")
        lcfg = lora_lib.LoRAConfig(rank=4, alpha=4.0, targets=lora_lib.ffn_targets(mcfg))
        shapes = [(9, 32, 32)]
    else:
        full = args.part in ("full", "largest")
        blocks = MMDiTConfig.named(args.model)
        over = {} if full else {"num_layers": 2, "num_single_layers": min(2, blocks.num_single_layers)}
        mcfg = MMDiTConfig.named(args.model, dtype="bfloat16", param_dtype="bfloat16",
                                 attention_impl="cudnn" if gpu else "xla",
                                 remat_policy=args.remat or ("full" if full else "none"), **over)
        lcfg = lora_lib.LoRAConfig(rank=256, alpha=256.0, targets=lora_lib.ffn_targets(mcfg))
        shapes = {"full": [(49, 480, 848)], "largest": LARGEST}.get(args.part, [(49, 480, 416), (49, 480, 832)])
        if getattr(args, "sizes", None):
            shapes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    spec = st.RunSpec(mcfg, lcfg, FlowConfig(), OptimConfig(warmup_steps=0), None)
    mesh = sharding.make_mesh({"fsdp": -1})
    t0 = time.perf_counter()
    base = st.init_base(mcfg, jax.random.PRNGKey(0), mesh, fast_compile=args.tiny)  # tiny: XLA -O0 on CPU
    state = st.init_state(spec, jax.random.PRNGKey(1), mesh)
    jax.block_until_ready((base, state))
    t_init = time.perf_counter() - t0
    step = make_train_step(spec, mesh, fast_compile=args.tiny)
    rows = []
    for frames, height, width in shapes:
        try:
            rows.append(_measure(args, mcfg, lcfg, spec, step, state, base, frames, height, width, t_init, gpu, mesh))
            state = rows[-1].pop("_state")
            if args.part == "largest":  # long runs: each size's row as soon as it is known
                print("row:", json.dumps(rows[-1]), flush=True)
        except Exception as e:  # largest: an out-of-memory size is a result, not a failure
            if args.part != "largest":
                raise
            rows.append({"part": "largest", "frames": frames, "panel": f"{height}x{width}",
                         "fits": False, "error": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"})
    return {"rows": rows}


def _measure(args, mcfg, lcfg, spec, step, state, base, frames, height, width, t_init, gpu, mesh) -> dict:
    import jax

    from dreamactor_jax.models import lora as lora_lib
    from dreamactor_jax.models import mmdit, remat
    from dreamactor_jax.train.step import batch_tokens

    n_text, valid = (8, 4) if args.tiny else (256, 120)
    rng = np.random.default_rng(0)
    t, h, w = _latent_grid(mcfg, frames, height, width)
    x0 = rng.standard_normal((1, t, h, w, mcfg.out_channels)).astype(np.float32)
    mask = np.zeros((1, t, h, w, 1), np.float32)
    mask[:, 0, :, : w // 2] = 1
    mask[:, :, :, w // 2:] = 1
    tm = np.zeros((1, n_text), np.int32)
    tm[:, :valid] = 1
    batch = {"target": x0, "canvas": x0 * mask, "mask": mask,
             "text": rng.standard_normal((1, n_text, mcfg.text_embed_dim)).astype(np.float32),
             "text_mask": tm, "pooled": rng.standard_normal((1, mcfg.pooled_projection_dim)).astype(np.float32)}
    batch = jax.device_put(batch)
    t0 = time.perf_counter()
    state, m = step(state, base, batch)
    jax.block_until_ready(m)
    t_first = time.perf_counter() - t0
    times, losses = [], [float(m["loss"])]
    for _ in range(args.steps):
        t0 = time.perf_counter()
        state, m = step(state, base, batch)
        jax.block_until_ready(m)
        times.append(time.perf_counter() - t0)
        losses.append(float(m["loss"]))
    dt = statistics.median(times) if times else t_first  # --steps 0: the first step (with its compilation)
    n_video = batch_tokens(x0.shape, spec)
    flops = train_flops(mcfg, lcfg, n_video, n_text)
    peak = None
    if gpu:
        stats = jax.devices()[0].memory_stats() or {}
        peak = stats.get("peak_bytes_in_use", 0) / 2**30
    return {
        "_state": state, "model": mcfg.backbone, "fits": True,
        "part": "tiny" if args.tiny else args.part, "device": jax.devices()[0].device_kind,
        "blocks": f"{mcfg.num_layers}+{mcfg.num_single_layers}", "params_base": mmdit.count_params(mcfg),
        "params_lora": lora_lib.count_lora_params(mcfg, lcfg), "remat": mcfg.remat_policy,
        "remat_plan": remat.plan_string(remat.resolve(mcfg.remat_policy, mcfg, tokens=n_video + n_text, batch=1,
                                                      params=base, lora=state["lora"], mesh=mesh)),
        "frames": frames, "panel": f"{height}x{width}", "video_tokens": n_video,
        "step_s": dt, "first_step_s": t_first, "init_s": t_init, "tokens_per_s": n_video / dt,
        "tflops": flops / dt / 1e12, "mfu": flops / dt / PEAK, "peak_gib": peak,
        "losses": losses, "finite": bool(np.isfinite(losses).all()),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=("i2v-33ch", "hv15"), default="i2v-33ch", help="the backbone (MMDiTConfig.named)")
    ap.add_argument("--part", choices=("blocks", "full", "largest"), default="blocks")
    ap.add_argument("--steps", type=int, default=3, help="timed steps after the first (compiling) one; 0: the "
                                                          "first step only (does it fit?), its time includes compiling")
    ap.add_argument("--sizes", default=None, help="comma list of FRAMESxHEIGHTxWIDTH panels instead of the part's own")
    ap.add_argument("--tiny", action="store_true", help="CPU smoke run with the tiny model")
    ap.add_argument("--remat", default=None, help="remat spec (models.remat: a name, a NAME*K plan, auto or auto:GIB); "
                                                  "default full for --part full, none for blocks")
    ap.add_argument("--json", default=None, help="append the result rows (JSON lines) to this file")
    args = ap.parse_args()
    try:
        res = run(args)
    except Exception as e:  # e.g. RESOURCE_EXHAUSTED: report, do not hide
        msg = f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
        res = {"rows": [{"part": args.part, "error": msg}]}
    for r in res["rows"]:
        line = json.dumps(r)
        print(line, flush=True)
        if args.json:
            with open(args.json, "a") as f:
                f.write(line + "\n")
    print("| part | blocks | panel x frames | video tokens | step s | tokens/s | TFLOP/s | MFU | peak GiB |")
    for r in res["rows"]:
        if "error" in r:
            print(f"| {r['part']} | error: {r['error']} |")
            continue
        peak = f"{r['peak_gib']:.1f}" if r["peak_gib"] is not None else "-"
        print(f"| {r['part']} | {r['blocks']} | {r['panel']} x {r['frames']} | {r['video_tokens']:,} | "
              f"{r['step_s']:.3f} | {r['tokens_per_s']:,.0f} | {r['tflops']:.0f} | {r['mfu']:.1%} | {peak} |")
    return 1 if any("error" in r for r in res["rows"]) and args.part != "largest" else 0


if __name__ == "__main__":
    sys.exit(main())
