"""The first-block step cache (`sampling.step_cache`) on the shipped trained toy model: quality and speed.

    python benchmarks/bench_step_cache.py --cases 16 --steps 30 --thresholds 0.02,0.05,0.1,0.2
    python benchmarks/bench_step_cache.py --tiny      # CPU smoke run: 2 cases, 4 steps

Animates held-out toy cases (`toy.world.heldout_cases`) with the pack's pose adapter (unmerged, float32,
the sampler of the GPU study: Euler at the config's shift, motion half generated, not clamped), once
without the cache (threshold 0: every block at every step) and once per threshold. For each:
PSNR of the decoded video against the uncached one, the markers' keypoint error against the
uncached video's markers and against the ground truth (frame heights; `toy.metrics`), PSNR against
the ground truth, the share of steps skipped, and the sampling wall time (median of `--repeats`
after a compiling call). Frames 1.. only (frame 0 is the reference). Prints one JSON line per row
and a markdown table.
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

from dreamactor_jax.utils import cli_main, write_text_atomic  # noqa: E402


def marker_change(a: np.ndarray, b: np.ndarray, aspect: float, min_conf: float = 0.3) -> float:
    """Mean distance (frame heights) between the markers detected in two videos [T, 9, 3]: markers found
    in both by their distance, found in one only charged `toy.metrics.MISS_CAP`, found in neither 0."""
    from dreamactor_jax.toy.metrics import MISS_CAP

    fa, fb = a[..., 2] >= min_conf, b[..., 2] >= min_conf
    d = np.hypot((a[..., 0] - b[..., 0]) * aspect, a[..., 1] - b[..., 1])
    d = np.where(fa & fb, np.minimum(d, MISS_CAP), np.where(fa ^ fb, MISS_CAP, 0.0))
    return float(d.mean())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="a packed toy model (default: the shipped one)")
    ap.add_argument("--adapter", default="pose")
    ap.add_argument("--cases", type=int, default=16)
    ap.add_argument("--steps", type=int, default=None, help="Euler steps (default: the config's eval.steps)")
    ap.add_argument("--thresholds", default="0.02,0.05,0.1,0.2")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--json", default=None, help="write the rows here")
    ap.add_argument("--tiny", action="store_true", help="CPU smoke run: 2 cases, 4 steps, thresholds 0.1,1e9")
    a = ap.parse_args(argv)
    if a.tiny:
        a.cases, a.steps, a.thresholds, a.repeats = 2, 4, "0.1,1e9", 1
    thresholds = [float(t) for t in a.thresholds.split(",") if t.strip()]
    if a.cases < 1 or any(t < 0 for t in thresholds):
        raise ValueError("--cases: at least 1; --thresholds: >= 0")

    import jax
    import jax.numpy as jnp

    from dreamactor_jax.sampling import step_cache
    from dreamactor_jax.sampling.scheduler import flow_sigmas
    from dreamactor_jax.toy import autoencoder as ae
    from dreamactor_jax.toy import metrics as M
    from dreamactor_jax.toy import model as tm
    from dreamactor_jax.toy import shipped
    from dreamactor_jax.toy.evaluate import motion_inputs
    from dreamactor_jax.toy.world import WorldConfig, heldout_cases

    c, base, adapters, _ = shipped.load(a.model or shipped.SHIPPED, dtype="float32")
    if a.adapter not in adapters:
        raise ValueError(f"--adapter: {a.adapter!r} not in the pack ({sorted(adapters)})")
    lora, lc = adapters[a.adapter]
    wcfg = WorldConfig(**dict(c.world))
    cases = heldout_cases(a.cases, wcfg)
    layout = str(lc.layout)
    cfg = tm.mmdit_config(c.model)
    steps = int(a.steps or c.eval.steps)
    sigmas = jnp.asarray(flow_sigmas(steps, float(c.eval.shift)))

    refs = ae.to_pixels(jnp.asarray(np.stack([k.reference for k in cases])))
    poses = ae.to_pixels(jnp.asarray(motion_inputs(cases, c, lc)))
    video = jnp.zeros((len(cases), int(c.world.num_frames)) + refs.shape[1:], jnp.float32)
    tgt, canvas, mask = tm.build(layout, video, poses, refs)
    text, text_mask, pooled = tm.text_context(tm.text_spec(c.model), len(cases))
    cond = {"canvas": canvas, "mask": mask, "text": text, "text_mask": text_mask, "pooled": pooled}
    noise = jax.random.normal(jax.random.PRNGKey(int(c.eval.seed)), tgt.shape, jnp.float32)
    model = step_cache.CachedInContext(cfg, lora_cfg=tm.lora_config(lc))

    def run(th):
        lat, skipped = step_cache.sample_cached(model, (base, lora), cond, noise, sigmas, threshold=th)
        return jax.block_until_ready(lat), int(skipped)

    def videos(lat):
        return np.asarray(ae.to_uint8(ae.decode(tm.video_part(layout, lat))))

    truth = [k.target for k in cases]
    rows, ref_video, ref_markers = [], None, None
    print(f"{jax.devices()[0].device_kind}: toy {a.adapter} adapter, {len(cases)} cases x {steps} steps, "
          f"{cfg.num_layers} + {cfg.num_single_layers} blocks", flush=True)
    for th in [0.0] + thresholds:
        lat, skipped = run(th)  # compiles once (the threshold is an argument)
        times = []
        for _ in range(max(1, a.repeats)):
            t0 = time.perf_counter()
            run(th)
            times.append(time.perf_counter() - t0)
        v = videos(lat)
        markers = [M.detect_markers(x[1:]) for x in v]
        if ref_video is None:
            ref_video, ref_markers = v, markers
        row = {"threshold": th, "steps": steps, "skipped": skipped, "skipped_share": skipped / steps,
               "seconds": statistics.median(times),
               "psnr_vs_uncached": float(np.mean([M.psnr(x[1:], r[1:]) for x, r in zip(v, ref_video)])),
               "kp_err_vs_uncached": float(np.mean([marker_change(m, r, wcfg.aspect)
                                                    for m, r in zip(markers, ref_markers)])),
               "kp_err_vs_truth": float(np.mean([M.keypoint_scores(m, M.marker_truth(k.joints[1:]), wcfg.aspect)["kp_err"]
                                                 for m, k in zip(markers, truth)])),
               "psnr_vs_truth": float(np.mean([M.psnr(x[1:], k.video[1:]) for x, k in zip(v, truth)]))}
        rows.append(row)
        print(json.dumps(row), flush=True)
    lines = ["| threshold | steps skipped | s (CPU) | speed-up | PSNR vs uncached | kp err vs uncached | "
             "kp err vs truth | PSNR vs truth |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['threshold']:g} | {r['skipped']}/{r['steps']} | {r['seconds']:.2f} | "
                     f"{rows[0]['seconds'] / r['seconds']:.2f}x | {r['psnr_vs_uncached']:.1f} dB | "
                     f"{r['kp_err_vs_uncached']:.4f} | {r['kp_err_vs_truth']:.4f} | {r['psnr_vs_truth']:.2f} dB |")
    print("\n".join(lines))
    if a.json:
        write_text_atomic(a.json, json.dumps({"device": jax.devices()[0].device_kind, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    cli_main(main)
