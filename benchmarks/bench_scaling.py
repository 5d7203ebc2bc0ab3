"""GPU benchmark: LoRA training-step throughput from 1 to N GPUs, and whether 720p x 121 frames fits.

Each case is one mesh (`sequence=8`, `fsdp=4,sequence=2`, ...) over the first devices of the host,
run in its own process (its own peak memory; an out-of-memory is reported, not fatal). The step is
the real one (`train.step.make_train_step`: flow-matching loss, LoRA-only grads, AdamW), on the
I2V-33ch backbone at full width (bf16, cuDNN attention, random weights), one in-context clip
(121 frames, width doubled by the canvas) per data/fsdp group, 256 text tokens.

    # 1 -> 8 GPUs, sequence parallel (strong scaling, one clip of ~100k tokens per step),
    # then the full 12.8B step at 720p x 121 frames in-context on 8 GPUs:
    python benchmarks/bench_scaling.py \
        --meshes "sequence=1;sequence=2;sequence=4;sequence=8" --fit-mesh "sequence=8" --out /tmp/scaling
    # 1 GPU only (baseline at reduced depth, and the sequence-parallel cuDNN compile check):
    python benchmarks/bench_scaling.py --meshes "sequence=1" --layers 1,1 --check-sp --out /tmp/scaling
    # both sequence-parallel methods over 2 GPUs against one-device attention (no timing):
    python benchmarks/bench_scaling.py --meshes "" --check-sp --check-sp-devices 2 --out /tmp/sp2

Figures: step time (median after a warm-up), tokens/s, efficiency = (tokens/s on n) / (n x tokens/s
on the first case, scaled by its device count), peak memory per device, model FLOP utilisation
against 778 TFLOP/s per H100 (FLOPs per block: 24 d^2 N linear + 4 N^2 d attention forward;
backward to activations 1x linear + 2.5x attention, through all blocks but the first; remat
recompute not counted). On CPU,
`--tiny` runs the same code on the tiny config (a smoke test with fake devices).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
# JAX's default cap is 75% of the card: the full 12.8B step at ~100k tokens on one H200 failed under
# it (a 55 GiB buffer refused) and ran at 0.95 (83.9 GiB peak), 2026-11-30. The children inherit it.
os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.95")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dreamactor_jax.utils import cli_main, write_text_atomic  # noqa: E402

GIB = 1024 ** 3
PEAK_TFLOPS = 778.0  # bf16 dense, one H100 (docs: shared/docs/gpu.md)
TEXT_TOKENS = 256


def _parse_mesh(text: str) -> dict[str, int]:
    out = {}
    for item in text.split(","):
        try:
            k, v = item.split("=")
            out[k.strip()] = int(v)
        except ValueError:
            raise ValueError(f"--meshes: expected items like 'sequence=8' or 'fsdp=4,sequence=2', got {text!r}") from None
    return {"fsdp": 1, **out}


def _parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"size: expected HxW, got {text!r}") from None
    if h % 16 or w % 16:
        raise ValueError(f"size: height and width must be multiples of 16, got {text!r}")
    return h, w


def tokens_per_clip(frames: int, h: int, w: int) -> int:
    """Video tokens of one in-context clip (canvas width 2w) plus the text tokens."""
    t = (frames - 1) // 4 + 1
    return t * (h // 16) * (2 * w // 16) + TEXT_TOKENS


def step_flops(n_tokens: int, d: int, blocks: int) -> float:
    """Model FLOPs of one LoRA train step on one clip: forward of every block, backward to
    activations through all but the first (the LoRA sits on feed-forward layers only, so nothing
    before the first block's feed-forward needs a gradient). Remat recompute is not counted."""
    linear, attn = 2 * 12 * d * d * n_tokens, 4 * n_tokens * n_tokens * d
    return blocks * (linear + attn) + (blocks - 1) * (linear + 2.5 * attn)


# ------------------------------------------------------------------------------ one case (child)


def run_case(case: dict) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from dreamactor_jax import sharding
    from dreamactor_jax.models import lora as lora_lib
    from dreamactor_jax.models.config import MMDiTConfig
    from dreamactor_jax.train import objective, optim, state, step

    mesh_cfg = case["mesh"]
    n_dev = 1
    for v in mesh_cfg.values():
        n_dev *= v
    devices = jax.devices()[:n_dev]
    if len(devices) < n_dev:
        return {**case, "error": f"needs {n_dev} devices, have {len(devices)}"}
    mesh = sharding.make_mesh(mesh_cfg, devices=devices)
    name = "tiny-i2v-33ch" if case["tiny"] else "i2v-33ch"
    over = dict(dtype="float32", param_dtype="float32", attention_impl="xla") if case["tiny"] else dict(
        dtype="bfloat16", param_dtype="bfloat16", attention_impl="auto")
    if case["layers"] != "full":
        dual, single = (int(v) for v in case["layers"].split(","))
        over.update(num_layers=dual, num_single_layers=single)
    mcfg = MMDiTConfig.named(name, remat_policy=case["remat"], **over)
    rank = 4 if case["tiny"] else case["rank"]
    spec = state.RunSpec(mcfg, lora_lib.LoRAConfig(rank=rank, alpha=float(rank)), objective.FlowConfig(),
                         optim.OptimConfig(warmup_steps=0))
    b = mesh.shape["data"] * mesh.shape["fsdp"]
    h, w = case["size"]
    t = (case["frames"] - 1) // 4 + 1
    lat = (b, t, h // 8, 2 * w // 8)
    text_len = 8 if case["tiny"] else TEXT_TOKENS
    rng = np.random.default_rng(0)
    host = {
        "target": rng.standard_normal((*lat, 16), np.float32),
        "canvas": rng.standard_normal((*lat, 16), np.float32),
        "mask": (rng.random((*lat, 1)) < 0.5).astype(np.float32),
        "text": rng.standard_normal((b, text_len, mcfg.text_embed_dim), np.float32),
        "text_mask": (np.arange(text_len)[None] < text_len // 2).astype(np.int32).repeat(b, 0),
        "pooled": rng.standard_normal((b, mcfg.pooled_projection_dim), np.float32),
    }
    n_tokens = t * (h // 16) * (2 * w // 16) + text_len
    out = {**case, "devices": n_dev, "device_kind": devices[0].device_kind, "batch": b,
           "tokens_per_step": b * n_tokens, "layers_run": (mcfg.num_layers, mcfg.num_single_layers)}
    try:
        base = state.init_base(mcfg, jax.random.key(0), mesh)
        st = state.init_state(spec, jax.random.key(1), mesh)
        batch = step.global_batch(host, mesh)
        train = step.make_train_step(spec, mesh)
        t0 = time.perf_counter()
        st, metrics = train(st, base, batch)
        jax.block_until_ready(metrics)
        out["first_step_s"] = time.perf_counter() - t0
        times = []
        for _ in range(case["steps"]):
            t0 = time.perf_counter()
            st, metrics = train(st, base, batch)
            jax.block_until_ready(metrics)
            times.append(time.perf_counter() - t0)
        out["fits"] = True
        out["finite"] = bool(metrics["finite"])
        out["loss"] = float(metrics["loss"])
        if times:
            out["step_s"] = statistics.median(times)
            out["tokens_per_s"] = out["tokens_per_step"] / out["step_s"]
            flops = b * step_flops(n_tokens, mcfg.hidden_size, mcfg.num_layers + mcfg.num_single_layers)
            out["mfu"] = flops / out["step_s"] / (n_dev * PEAK_TFLOPS * 1e12)
    except Exception as e:  # out of memory is a result here, not a failure
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "RESOURCE_EXHAUSTED" in str(e) or "out of memory" in str(e).lower():
            out.update(fits=False, error=msg[:300])
        else:
            raise
    stats = [d.memory_stats() or {} for d in devices]
    out["peak_gib"] = max(s.get("peak_bytes_in_use", 0) for s in stats) / GIB
    return out


def check_sequence_parallel(tiny: bool, n_seq: int = 1) -> dict:
    """Both sequence-parallel methods on a mesh of `n_seq` devices (sequence=n_seq) with the cuDNN
    kernel against plain one-device cuDNN attention (bf16 level) and fp32 XLA attention."""
    import jax
    import jax.numpy as jnp

    from dreamactor_jax import sharding
    from dreamactor_jax.models import sequence_parallel as sp
    from dreamactor_jax.models.attention import attention

    b, s, n, d = (1, 64, 4, 16) if tiny else (1, 8192, 24, 128)
    dtype, impl = (jnp.float32, "xla") if tiny else (jnp.bfloat16, "cudnn")
    ks = jax.random.split(jax.random.key(0), 3)
    q, k, v = (jax.random.normal(kk, (b, s, n, d), jnp.float32) for kk in ks)
    lens = jnp.array([s - 100 if s > 100 else s - 5])
    if len(jax.devices()) < n_seq:
        return {"check_sp": f"needs {n_seq} devices, have {len(jax.devices())}", "error": "devices"}
    mesh = sharding.make_mesh({"fsdp": 1, "sequence": n_seq}, devices=jax.devices()[:n_seq])
    out = {}
    for method in ("ulysses", "ring"):
        f = jax.jit(lambda q, k, v: sp.sequence_parallel_attention(q, k, v, mesh=mesh, kv_lengths=lens, impl=impl, method=method))
        got = f(*(t.astype(dtype) for t in (q, k, v))).astype(jnp.float32)
        plain = jax.jit(lambda q, k, v: attention(q, k, v, kv_lengths=lens, impl=impl))(*(t.astype(dtype) for t in (q, k, v)))
        ref = jax.jit(lambda q, k, v: attention(q, k, v, kv_lengths=lens, impl="xla"))(q, k, v)
        rel = lambda a, r: float(jnp.max(jnp.abs(a - r)) / jnp.max(jnp.abs(r)))
        out[method] = {"vs_plain_same_kernel": rel(got, plain.astype(jnp.float32)), "vs_fp32_xla": rel(got, ref)}
    return {"check_sp": out, "impl": impl, "shape": [b, s, n, d], "sequence_devices": n_seq}


# ------------------------------------------------------------------------------ driver


def _spawn(case: dict) -> dict:
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", json.dumps(case)],
                          capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {**case, "error": f"child exited {proc.returncode}: {tail[:300]}"}
    return json.loads(lines[-1][len("RESULT "):])


def _table(rows: list[dict]) -> str:
    head = "| case | devices | mesh | layers | tokens/step | step s | tokens/s | efficiency | MFU | peak GiB/dev | fits |"
    lines = [head, "|" + "|".join(["---"] * (head.count("|") - 1)) + "|"]
    base = next((r for r in rows if r.get("tokens_per_s")), None)
    for r in rows:
        eff = ""
        if base and r.get("tokens_per_s"):
            eff = f"{r['tokens_per_s'] / (base['tokens_per_s'] / base['devices'] * r['devices']):.1%}"
        mesh = ",".join(f"{k}={v}" for k, v in r["mesh"].items() if v > 1) or "1 device"
        fmt = lambda k, f: (f.format(r[k]) if r.get(k) is not None else "")
        lines.append(
            f"| {r['label']} | {r.get('devices', '')} | {mesh} | {r['layers']} | {r.get('tokens_per_step', '')} | "
            f"{fmt('step_s', '{:.3f}')} | {fmt('tokens_per_s', '{:,.0f}')} | {eff} | {fmt('mfu', '{:.1%}')} | "
            f"{fmt('peak_gib', '{:.1f}')} | {r.get('fits', '')}{' (' + r['error'] + ')' if r.get('error') else ''} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--meshes", default=None, help="';'-separated meshes (default: sequence=n for n = 1, 2, 4, 8 <= devices)")
    ap.add_argument("--frames", type=int, default=121)
    ap.add_argument("--size", default="480x864", help="HxW of one half of the in-context canvas (480x864: 100,696 tokens)")
    ap.add_argument("--layers", default="full", help="'full' or 'DUAL,SINGLE' blocks (full width either way)")
    ap.add_argument("--remat", default="full", help="remat policy (models.mmdit.remat_policy)")
    ap.add_argument("--rank", type=int, default=256, help="LoRA rank")
    ap.add_argument("--steps", type=int, default=3, help="timed steps after the first (compile) step")
    ap.add_argument("--fit-mesh", default=None, help="also run the full model at --fit-size x --frames on this mesh")
    ap.add_argument("--fit-size", default="720x1280")
    ap.add_argument("--fit-steps", type=int, default=1, help="timed steps of the fit case (0: only the first step)")
    ap.add_argument("--check-sp", action="store_true", help="check both sequence-parallel methods with cuDNN")
    ap.add_argument("--check-sp-devices", type=int, default=1, help="devices on the sequence axis of that check")
    ap.add_argument("--tiny", action="store_true", help="tiny config (CPU smoke test)")
    ap.add_argument("--out", default=None, help="folder for results.json and table.md")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child:
        case = json.loads(args.child)
        res = (check_sequence_parallel(case["tiny"], case.get("sp_devices", 1)) if case.get("check_sp")
               else run_case(case))
        print("RESULT " + json.dumps(res), flush=True)
        return 0

    if args.steps < 0 or args.fit_steps < 0:
        raise ValueError(f"--steps / --fit-steps: expected >= 0, got {args.steps} / {args.fit_steps}")
    if args.check_sp_devices < 1:
        raise ValueError(f"--check-sp-devices: expected >= 1, got {args.check_sp_devices}")
    if args.frames < 1 or (args.frames - 1) % 4:
        raise ValueError(f"--frames: expected 4k+1 frames, got {args.frames}")
    size, fit_size = _parse_size(args.size), _parse_size(args.fit_size)
    if args.meshes is None:
        import jax
        n = jax.device_count()
        meshes = [{"fsdp": 1, "sequence": k} for k in (1, 2, 4, 8) if k <= n]
    else:
        meshes = [_parse_mesh(m) for m in args.meshes.split(";") if m.strip()]
    common = dict(frames=args.frames, remat=args.remat, rank=args.rank, tiny=args.tiny)
    cases = [dict(label="scaling", mesh=m, size=size, layers=args.layers, steps=args.steps, **common) for m in meshes]
    if args.fit_mesh:
        cases.append(dict(label="fit", mesh=_parse_mesh(args.fit_mesh), size=fit_size, layers="full", steps=args.fit_steps,
                          **common))

    rows, extra = [], {}
    if args.check_sp:
        extra = _spawn({"check_sp": True, "tiny": args.tiny, "label": "check_sp", "sp_devices": args.check_sp_devices})
        print(json.dumps(extra), flush=True)
    for case in cases:
        r = _spawn(case)
        print(json.dumps(r), flush=True)
        rows.append(r)
    table = _table(rows) if rows else ""
    if rows:
        print(table)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        write_text_atomic(os.path.join(args.out, "results.json"), json.dumps({"cases": rows, "check_sp": extra}, indent=1))
        write_text_atomic(os.path.join(args.out, "table.md"), table + "\n")
    cases_ok = all("error" not in r or r.get("fits") is False for r in rows)
    return 0 if cases_ok and "error" not in extra else 1


if __name__ == "__main__":
    cli_main(main)
