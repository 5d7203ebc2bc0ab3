"""GPU benchmark: the toy prior's training step (issue 9) on one device and data parallel on N.

The toy study's cost is its prior pretraining (~59 ms/step on one H100 at batch 128); this times
`toy.pretrain.pretrain_prior` with `prior.devices` = 1, 2, ... on the same data and prints ms/step
(from step 100 on: the first steps hold the compiles) and the speed-up:

    python benchmarks/bench_toy_prior.py --devices 1,2 --steps 1000 --out /tmp/toy_prior
    python benchmarks/bench_toy_prior.py --tiny     # CPU smoke run: the `ci` toy config, 12 steps, 1 device
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dreamactor_jax.utils import cli_main, write_text_atomic  # noqa: E402


def time_prior(variant: str, overrides: list[str], data: dict, log_every: int, skip: int = 100) -> dict:
    """Trains the prior of the toy config `variant` with `overrides` (--config.x=y); ms/step from the step-100 log line to the last (the first steps
    compile one program per clip width)."""
    from dreamactor_jax.toy.recipe import load as load_config
    from dreamactor_jax.toy.pretrain import pretrain_prior

    c = load_config(variant, overrides)
    c.log_every = log_every
    marks = []

    def log(msg):
        m = re.search(r"step (\d+)/\d+ loss ([\d.]+) \(([\d.]+)s\)", msg)
        if m:
            marks.append((int(m.group(1)), float(m.group(2)), float(m.group(3))))

    _, losses, total = pretrain_prior(c, data, log=log)
    (s0, _, t0), (s1, _, t1) = next(m for m in marks if m[0] >= skip), marks[-1]
    # the log's times have 0.1 s resolution: a tiny run's span can read 0, then the whole run's mean
    ms = 1000 * (t1 - t0) / (s1 - s0) if t1 > t0 and s1 > s0 else 1000 * total / max(1, len(losses))
    return {"config": " ".join([variant, *overrides]), "ms_per_step": ms, "total_s": total,
            "first_loss": losses[0], "last_loss": losses[-1]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", default="1,2", help="comma-separated device counts")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--variant", default="gpu", help="toy config variant (its data, model and batch)")
    ap.add_argument("--clips", type=int, default=2000, help="narrow clips and wide scenes to draw batches from")
    ap.add_argument("--out", default=None)
    ap.add_argument("--tiny", action="store_true", help="CPU smoke run: the `ci` config, 12 steps, 16 clips, 1 device")
    args = ap.parse_args(argv)
    log_every, skip = 100, 100  # ms/step from the step-100 log line on (the first steps compile)
    if args.tiny:
        args.variant, args.steps, args.clips, args.devices = "ci", 12, 16, "1"
        log_every, skip = 2, 4
    counts = [int(x) for x in args.devices.split(",") if x.strip()]
    if (args.steps < 200 and not args.tiny) or not counts:
        raise ValueError("--steps: at least 200 (ms/step is taken after step 100); --devices: at least one count")

    import jax

    from dreamactor_jax.toy import data as toy_data
    from dreamactor_jax.toy.recipe import load as load_config
    from dreamactor_jax.toy.world import WorldConfig

    c = load_config(args.variant)
    d = c.data
    t0 = time.time()
    data = toy_data.prior_set(WorldConfig(**dict(c.world)), args.clips, args.clips, num_chars=int(d.num_chars),
                              num_motions=int(d.num_motions), workers=int(d.workers), sync=float(d.sync_scenes),
                              split=float(d.split_scenes))
    print(f"data {time.time() - t0:.1f}s; devices {jax.devices()}", flush=True)
    rows = []
    for n in counts:
        r = time_prior(args.variant, [f"--config.prior.steps={args.steps}", f"--config.prior.devices={n}"], data,
                       log_every, skip)
        r["devices"] = n
        rows.append(r)
        print(json.dumps(r), flush=True)
    base = rows[0]["ms_per_step"] * rows[0]["devices"]
    lines = ["| devices | ms/step | speed-up | efficiency | loss first -> last |", "|---|---|---|---|---|"]
    for r in rows:
        up = rows[0]["ms_per_step"] / r["ms_per_step"]
        lines.append(f"| {r['devices']} | {r['ms_per_step']:.1f} | {up:.2f}x | {base / (r['ms_per_step'] * r['devices']):.0%} | "
                     f"{r['first_loss']:.4f} -> {r['last_loss']:.4f} |")
    table = "\n".join(lines)
    print(f"{jax.devices()[0].device_kind}, jax {jax.__version__}\n{table}")
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        write_text_atomic(os.path.join(args.out, "results.json"), json.dumps({"rows": rows, "device": jax.devices()[0].device_kind}, indent=1))
    return 0


if __name__ == "__main__":
    cli_main(main)
