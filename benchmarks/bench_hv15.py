"""HunyuanVideo-1.5 (8.3B) on one GPU against diffusers, in one run: forward and the full LoRA step.

    XLA_PYTHON_CLIENT_PREALLOCATE=false python benchmarks/bench_hv15.py            # H100 / H200
    python benchmarks/bench_hv15.py --tiny                                          # CPU smoke run

One process, one clip (default 49 frames of a 480x848 panel: in-context canvas 480x1696, 16x VAE,
patch 1 -> 13 x 30 x 106 = 41,340 video tokens) plus the conditioning tokens a 1.5 I2V run carries:
256 Qwen2.5-VL text tokens (120 valid), 256 ByT5 glyph tokens (16 valid), 729 SigLIP image tokens.

0. check: `tiny-hv15` in fp32 on the card, the same weights in both frameworks (converted by
   `weights.diffusers_map`): max relative error of the forward (the habit of gpu.md).
1. diffusers `HunyuanVideo15Transformer3DModel` (bf16, its own attention dispatch: SDPA with the
   boolean mask it builds), random weights made on the card:
   - forward, no grad;
   - LoRA step: rank-256 adapters on the same targets as ours (`lora.ffn_targets`: the dual blocks'
     `ff.net.0.proj` and `ff.net.2`), written by hand since peft is not on the GPU machine, base frozen,
     diffusers' gradient checkpointing on every block, velocity loss on the target half, AdamW.
   Then the torch model is freed (`torch.cuda.empty_cache`) before JAX allocates.
2. JAX (bf16, cuDNN attention), random base made on the card:
   - forward (`mmdit.forward`, jitted);
   - `train.step.train_step` (the project's step: noise, 65-channel stack, forward with the LoRA, loss
     on the target half, grads of the adapter only, clipped AdamW), remat `--remat` (default full).
Median of `--steps` timed calls after a warm-up; MFU by gpu.md's count (bench_train.train_flops /
bench_sample.block_flops) against 778 TFLOP/s; peak memory per framework (torch: max_memory_allocated;
JAX: the device's peak_bytes_in_use, which includes nothing of torch's).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PEAK = 778e12


def _bench(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _median(fn, sync, steps: int) -> float:
    """Median seconds of `steps` calls after one warm-up (compile / autotune)."""
    return statistics.median(_bench("bench_sample").timed(fn, sync, 1 + steps)[1:])


def clip_inputs(cfg, frames: int, height: int, width: int, ctx: tuple[int, int, int, int, int], seed: int = 0) -> dict:
    """Channels-last latents of one in-context clip and its conditioning tokens (numpy, batch 1).
    ctx = (text len, valid, glyph len, valid, image tokens)."""
    rng = np.random.default_rng(seed)
    t, h, w = (frames - 1) // 4 + 1, height // 16, 2 * width // 16
    n_text, v_text, n_glyph, v_glyph, n_image = ctx
    tm, gm = np.zeros((1, n_text), np.int32), np.zeros((1, n_glyph), np.int32)
    tm[:, :v_text], gm[:, :v_glyph] = 1, 1
    x0 = rng.standard_normal((1, t, h, w, cfg.out_channels)).astype(np.float32)
    mask = np.zeros((1, t, h, w, 1), np.float32)
    mask[:, 0, :, : w // 2] = 1  # the reference frame
    mask[:, :, :, w // 2:] = 1  # the generated half
    return dict(target=x0, canvas=x0 * mask, mask=mask,
                text=rng.standard_normal((1, n_text, cfg.text_embed_dim)).astype(np.float32), text_mask=tm,
                text_2=rng.standard_normal((1, n_glyph, cfg.text_embed_2_dim)).astype(np.float32), text_2_mask=gm,
                image_embeds=rng.standard_normal((1, n_image, cfg.image_embed_dim)).astype(np.float32),
                pooled=np.zeros((1, 0), np.float32))


def check_tiny(device: str) -> float:
    """Max relative error of `tiny-hv15` JAX vs diffusers, fp32, same weights, on `device`."""
    import diffusers
    import jax
    import torch

    from dreamactor_jax.models import mmdit
    from dreamactor_jax.models.config import MMDiTConfig
    from dreamactor_jax.weights.diffusers_map import state_dict_to_params

    cfg = MMDiTConfig.named("tiny-hv15", attention_impl="xla")
    torch.manual_seed(0)
    model = diffusers.HunyuanVideo15Transformer3DModel(**cfg.to_diffusers_config()).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) / np.sqrt(max(int(np.prod(p.shape[1:])), 1)))
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False  # fp32 means fp32 on both sides
    params = state_dict_to_params({k: v.numpy() for k, v in model.state_dict().items()}, cfg)
    inp = clip_inputs(cfg, 9, 64, 48, (7, 5, 5, 2, 4), seed=1)
    x = np.concatenate([inp["target"], inp["canvas"], inp["mask"]], -1)
    ts = np.array([437.5], np.float32)
    with jax.default_matmul_precision("highest"):
        out = jax.jit(lambda p, x: mmdit.forward(p, cfg, x, ts, inp["text"], inp["text_mask"], None,
                                             text_2=inp["text_2"], text_2_mask=inp["text_2_mask"],
                                                 image_embeds=inp["image_embeds"]))(params, x)
    t = lambda a: torch.from_numpy(np.asarray(a)).to(device)
    model = model.to(device)
    with torch.no_grad():
        ref = model(hidden_states=t(x).permute(0, 4, 1, 2, 3), timestep=t(ts), encoder_hidden_states=t(inp["text"]),
                    encoder_attention_mask=t(inp["text_mask"]), encoder_hidden_states_2=t(inp["text_2"]),
                    encoder_attention_mask_2=t(inp["text_2_mask"]), image_embeds=t(inp["image_embeds"]),
                    return_dict=False)[0].permute(0, 2, 3, 4, 1).double().cpu().numpy()
    return float(np.abs(np.asarray(out, np.float64) - ref).max() / np.abs(ref).max())


def check_odd_cudnn() -> float:
    """cuDNN attention at an odd length (padded to even by `kernels.pad_to_even`) against XLA, bf16:
    max relative error of the output and the q/k/v gradients (GPU only)."""
    import jax
    import jax.numpy as jnp

    from dreamactor_jax.models import kernels

    rng = np.random.default_rng(0)
    q, k, v = (jnp.asarray(rng.standard_normal((1, 333, 4, 128)), jnp.bfloat16) for _ in range(3))
    lens = jnp.array([301], jnp.int32)
    w = jnp.asarray(rng.standard_normal(q.shape), jnp.float32)

    def f(impl):
        def loss(q, k, v):
            out = kernels.local_attention(q, k, v, kv_lengths=lens, impl=impl).astype(jnp.float32)
            return jnp.sum(out * w), out
        (_, out), g = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True))(q, k, v)
        return [out, *g]

    rel = lambda a, b: float(jnp.max(jnp.abs(a.astype(jnp.float32) - b.astype(jnp.float32))) /
                             jnp.max(jnp.abs(b.astype(jnp.float32))))
    return max(rel(a, b) for a, b in zip(f("cudnn"), f("xla")))


def _attach_lora(linear, rank: int, device, torch) -> list:
    """A rank-`rank` adapter on a frozen nn.Linear as a forward hook (`out + B(A(x))`, B starting at
    zero, scale 1 as alpha = rank); returns its [A, B] parameters."""
    a = torch.nn.Parameter(torch.randn(rank, linear.in_features, device=device) / np.sqrt(linear.in_features))
    b = torch.nn.Parameter(torch.zeros(linear.out_features, rank, device=device))
    linear.register_forward_hook(lambda mod, args, out: out + ((args[0].to(a.dtype) @ a.t()) @ b.t()).to(out.dtype))
    return [a, b]


def torch_part(cfg, inp: dict, args, device: str) -> dict:
    import diffusers
    import torch

    dtype = torch.bfloat16  # also in the CPU smoke run, so that it catches dtype mismatches
    torch.manual_seed(0)
    t0 = time.perf_counter()
    with torch.device(device):
        model = diffusers.HunyuanVideo15Transformer3DModel(**cfg.to_diffusers_config())
    model = model.to(dtype).eval().requires_grad_(False)
    init_s = time.perf_counter() - t0
    t = lambda a, dt=None: torch.from_numpy(np.asarray(a)).to(device=device, dtype=dt)
    x0, canvas, mask = t(inp["target"], dtype), t(inp["canvas"], dtype), t(inp["mask"], dtype)
    cond = dict(encoder_hidden_states=t(inp["text"], dtype), encoder_attention_mask=t(inp["text_mask"]),
                encoder_hidden_states_2=t(inp["text_2"], dtype), encoder_attention_mask_2=t(inp["text_2_mask"]),
                image_embeds=t(inp["image_embeds"], dtype), return_dict=False)
    cl = lambda a: a.permute(0, 4, 1, 2, 3)  # channels-last -> diffusers' [B, C, T, H, W]
    ts = torch.tensor([500.0], device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with torch.no_grad():
        fwd_s = _median(lambda: model(hidden_states=cl(torch.cat([x0, canvas, mask], -1)), timestep=ts, **cond),
                        sync, args.steps)
    fwd_peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None

    lora = []
    for blk in model.transformer_blocks:
        for lin in (blk.ff.net[0].proj, blk.ff.net[2]):
            lora += _attach_lora(lin, args.rank, device, torch)
    opt = torch.optim.AdamW(lora, lr=5e-5, weight_decay=0.01)
    model.enable_gradient_checkpointing()
    model.train()
    gen_half = torch.zeros_like(mask)
    gen_half[..., gen_half.shape[3] // 2:, :] = 1
    losses = []

    def step():
        sigma = torch.rand((), device=device)
        noise = torch.randn_like(x0)
        x_t = (1 - sigma) * x0 + sigma * noise
        pred = model(hidden_states=cl(torch.cat([x_t, canvas, mask], -1)), timestep=(1000 * sigma[None]).to(dtype), **cond)[0]
        loss = (((cl(noise - x0) - pred.float()) ** 2) * cl(gen_half)).sum() / (cl(gen_half).sum() * x0.shape[-1])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(lora, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    step_s = _median(step, sync, args.steps)
    step_peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None
    model = opt = lora = None  # frees the card for JAX (the closures hold cells, not copies)
    if device == "cuda":
        torch.cuda.empty_cache()
    return {"init_s": init_s, "forward_s": fwd_s, "forward_peak_gib": fwd_peak, "step_s": step_s,
            "step_peak_gib": step_peak, "losses": losses}


def jax_part(cfg, inp: dict, args) -> dict:
    import jax

    from dreamactor_jax import sharding
    from dreamactor_jax.models import lora as lora_lib
    from dreamactor_jax.models import mmdit
    from dreamactor_jax.train import state as st
    from dreamactor_jax.train.objective import FlowConfig
    from dreamactor_jax.train.optim import OptimConfig
    from dreamactor_jax.train.step import make_train_step

    lcfg = lora_lib.LoRAConfig(rank=args.rank, alpha=float(args.rank), targets=lora_lib.ffn_targets(cfg))
    spec = st.RunSpec(cfg, lcfg, FlowConfig(), OptimConfig(warmup_steps=0), None)
    mesh = sharding.make_mesh({"fsdp": -1})
    t0 = time.perf_counter()
    base = st.init_base(cfg, jax.random.PRNGKey(0), mesh, fast_compile=args.tiny)
    state = st.init_state(spec, jax.random.PRNGKey(1), mesh)
    jax.block_until_ready((base, state))
    init_s = time.perf_counter() - t0
    batch = jax.device_put(inp)
    x = jax.numpy.concatenate([batch["target"], batch["canvas"], batch["mask"]], -1)
    ts = jax.numpy.array([500.0])
    fwd = jax.jit(lambda p, x: mmdit.forward(p, cfg, x, ts, batch["text"], batch["text_mask"], None,
                                             text_2=batch["text_2"], text_2_mask=batch["text_2_mask"],
                                             image_embeds=batch["image_embeds"]))
    fwd_s = _median(lambda: jax.block_until_ready(fwd(base, x)), lambda: None, args.steps)
    gpu = jax.default_backend() == "gpu"
    peak = lambda: (jax.devices()[0].memory_stats() or {}).get("peak_bytes_in_use", 0) / 2**30 if gpu else None
    fwd_peak = peak()
    print(f"jax forward: {fwd_s:.3f} s, peak {fwd_peak} GiB", flush=True)
    step = make_train_step(spec, mesh, fast_compile=args.tiny)
    box, losses = {"state": state}, []

    def one():
        box["state"], m = step(box["state"], base, batch)
        losses.append(float(m["loss"]))

    t0 = time.perf_counter()
    one()
    first_s = time.perf_counter() - t0
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        one()
        times.append(time.perf_counter() - t0)
    return {"init_s": init_s, "forward_s": fwd_s, "forward_peak_gib": fwd_peak, "first_step_s": first_s,
            "step_s": statistics.median(times), "step_peak_gib": peak(), "losses": losses,
            "lora_params": lora_lib.count_lora_params(cfg, lcfg)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="CPU smoke run: tiny-hv15, fp32, a few tokens")
    ap.add_argument("--frames", type=int, default=49)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--width", type=int, default=848, help="panel width (the canvas is twice as wide)")
    ap.add_argument("--steps", type=int, default=3, help="timed calls after the warm-up")
    ap.add_argument("--rank", type=int, default=256)
    ap.add_argument("--remat", default="full", help="JAX remat spec (models.remat)")
    ap.add_argument("--skip", default="", help="comma list of parts to skip: check,torch,jax")
    ap.add_argument("--json", default=None, help="append the result (one JSON line) to this file")
    args = ap.parse_args(argv)
    import jax

    from dreamactor_jax.models.config import MMDiTConfig

    gpu = jax.default_backend() == "gpu"
    device = "cuda" if gpu else "cpu"
    if args.tiny:
        cfg = MMDiTConfig.named("tiny-hv15", attention_impl="xla", remat_policy="none")
        args.frames, args.height, args.width, args.rank = 5, 32, 32, 4
        ctx = (8, 4, 4, 2, 3)
    else:
        cfg = MMDiTConfig.named("hv15", dtype="bfloat16", param_dtype="bfloat16",
                                attention_impl="cudnn" if gpu else "xla", remat_policy=args.remat)
        ctx = (256, 120, 256, 16, 729)
    inp = clip_inputs(cfg, args.frames, args.height, args.width, ctx)
    n_video = int(np.prod(inp["target"].shape[1:4]))
    n_ctx = ctx[0] + ctx[2] + ctx[4]
    skip = set(filter(None, args.skip.split(",")))
    res = {"device": jax.devices()[0].device_kind, "jax": jax.__version__, "frames": args.frames,
           "panel": f"{args.height}x{args.width}", "video_tokens": n_video, "context_tokens": n_ctx}
    if "check" not in skip:
        res["check_max_rel_err"] = check_tiny(device)
        print(f"check: tiny-hv15 fp32 JAX vs diffusers on {device}: max rel err {res['check_max_rel_err']:.2e}", flush=True)
    if gpu and "check" not in skip:
        res["odd_cudnn_max_rel_err"] = check_odd_cudnn()
        print(f"check: cuDNN at 333 tokens (odd) vs XLA, bf16, output and grads: {res['odd_cudnn_max_rel_err']:.2e}",
              flush=True)
    if "torch" not in skip:
        res["diffusers"] = torch_part(cfg, inp, args, device)
        print("diffusers:", json.dumps(res["diffusers"]), flush=True)
    if "jax" not in skip:
        res["jax"] = jax_part(cfg, inp, args)
        print("jax:", json.dumps(res["jax"]), flush=True)
    train_flops = _bench("bench_train").train_flops
    from dreamactor_jax.models import lora as lora_lib

    lcfg = lora_lib.LoRAConfig(rank=args.rank, alpha=float(args.rank), targets=lora_lib.ffn_targets(cfg))
    f_fwd = _bench("bench_sample").block_flops(cfg, n_video + n_ctx)
    f_step = train_flops(cfg, lcfg, n_video, n_ctx)
    print(json.dumps(res))
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps(res) + "\n")
    print(f"\n{res['device']}: hv15 {cfg.num_layers} dual blocks, {args.frames} frames, panel {res['panel']}, "
          f"{n_video:,} video + {n_ctx} context tokens")
    print("| framework | forward s | forward MFU | forward peak GiB | LoRA step s | step MFU | step peak GiB |")
    for name in ("diffusers", "jax"):
        if name in res:
            r = res[name]
            gib = lambda v: "-" if v is None else f"{v:.1f}"
            print(f"| {name} | {r['forward_s']:.3f} | {f_fwd / r['forward_s'] / PEAK:.1%} | {gib(r['forward_peak_gib'])} | "
                  f"{r['step_s']:.3f} | {f_step / r['step_s'] / PEAK:.1%} | {gib(r['step_peak_gib'])} |")
    ok = all(np.isfinite(res[n]["losses"]).all() for n in ("diffusers", "jax") if n in res)
    return 0 if ok and res.get("check_max_rel_err", 0) <= 1e-4 and res.get("odd_cudnn_max_rel_err", 0) <= 2e-2 else 1


if __name__ == "__main__":
    sys.exit(main())
