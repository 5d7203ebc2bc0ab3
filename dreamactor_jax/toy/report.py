"""Markdown tables and the issue-9 bar from a demo's `metrics.json`.

    python -m dreamactor_jax.toy.report runs/toy/metrics.json     # prints the tables

The bar: the pose model (seeds `pose` and `pose_seed1`) beats both baselines (`still`, `prior`) on
every metric by more than the seed-to-seed spread. With the run's `ceiling` (the exact ground truth
scored by the same metrics: the detector's own error), a metric on which the best baseline is
already within the seed spread of the ceiling is marked unattainable: not even the exact target
would pass it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from dreamactor_jax.utils import cli_main

# metric -> (label, higher is better)
METRICS = {
    "psnr": ("PSNR dB", True), "ssim": ("SSIM", True), "kp_err": ("keypoint err (frame h)", False),
    "pck": ("PCK@0.05", True), "shape_err": ("bone-length err", False), "leakage": ("leakage (0 ideal)", False),
}
ABS = {"leakage"}  # compared by magnitude: 0 keeps the reference's bones, 1 copies the driver's
LABELS = {"still": "still reference (baseline)", "prior": "I2V prior, no adapter (baseline)",
          "canvas_no_lora": "prior + in-context input, no adapter", "pose": "pose LoRA, spatial (G), seed 0",
          "pose_seed1": "pose LoRA, spatial (G), seed 1", "temporal": "temporal in-context (A)",
          "no_aug": "no pose augmentation (D)"}


CEILING = "exact ground truth (the metrics' own floor)"


def table(scores: dict[str, dict[str, float]], ceiling: dict[str, float] | None = None) -> str:
    head = "| method | " + " | ".join(f"{lab} {'↑' if up else '↓'}" for lab, up in METRICS.values()) + " |"
    lines = [head, "|" + "---|" * (len(METRICS) + 1)]
    rows = {**({CEILING: ceiling} if ceiling else {}), **scores}
    for name, s in rows.items():
        cells = [f"{s[k]:.4f}" if k != "psnr" else f"{s[k]:.2f}" for k in METRICS]
        lines.append(f"| {LABELS.get(name, name)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def bar(scores: dict[str, dict[str, float]], ceiling: dict[str, float] | None = None) -> tuple[bool, list[str]]:
    """Checks the bar metric by metric; returns (passed, one line per metric). `ceiling`: the exact
    target's scores; a failed metric whose best baseline is within the seed spread of it says so."""
    seeds = [n for n in ("pose", "pose_seed1") if n in scores]
    if not seeds or not all(b in scores for b in ("still", "prior")):
        return False, ["needs pose (two seeds) and both baselines"]
    ok_all, lines = True, []
    for k, (lab, up) in METRICS.items():
        f = abs if k in ABS else (lambda x: x)
        vals = [f(scores[n][k]) for n in seeds]
        spread = max(vals) - min(vals)
        worst = min(vals) if up else max(vals)
        bases = [f(scores[b][k]) for b in ("still", "prior")]
        base = max(bases) if up else min(bases)
        margin = (worst - base) if up else (base - worst)
        ok = margin > spread
        ok_all &= ok
        line = (f"{lab}: worst seed {worst:.4f} vs best baseline {base:.4f}, margin {margin:+.4f}, "
                f"seed spread {spread:.4f} -> {'pass' if ok else 'FAIL'}")
        if ceiling is not None and not ok:
            top = f(ceiling[k])
            room = (top - base) if up else (base - top)
            if room <= spread:
                line += (f" (unattainable: the exact target scores {top:.4f}, {room:+.4f} from the best baseline, "
                         f"within the seed spread)")
        lines.append(line)
    return ok_all, lines


def main(argv=None) -> int:
    if not argv:
        raise ValueError("usage: python -m dreamactor_jax.toy.report METRICS_JSON")
    path = Path(argv[0])
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such metrics file")
    m = json.loads(path.read_text())
    print(table(m["scores"], m.get("ceiling")))
    passed, lines = bar(m["scores"], m.get("ceiling"))
    print("\nbar: " + ("passed" if passed else "not passed"))
    print("\n".join("- " + x for x in lines))
    return 0


if __name__ == "__main__":
    cli_main(main, sys.argv[1:])
