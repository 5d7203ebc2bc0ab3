"""Packing a trained toy run for shipping: the packed run (`sampling.packed`) and its card.

`demo.py --train ... --pack DIR` calls `write` once everything is trained and scored. The pack holds
the prior (the stand-in backbone) and the adapters in bfloat16, the Haar autoencoder as its kind, the
toy's fixed text condition, launch/sample.py's defaults for this model, and the whole toy config.
`card.json` beside the weights records the command, config, commit, date, device, the sha256 of every
weight file, the scores on the held-out cases (every seed, and their mean and spread), the bar, and
the `check` cases that tests/test_toy_shipped.py recomputes on any machine.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from dreamactor_jax.toy import model as tm

STORE_DTYPE = "bfloat16"
SEEDS = ("pose", "pose_seed1", "pose_seed2")


def rounded(tree, dtype: str = STORE_DTYPE):
    """The weights as they will be stored (rounded to `dtype`), kept in float32: evaluate these, so the
    card's scores are the shipped files' scores."""
    return jax.tree.map(lambda x: jnp.asarray(x, jnp.dtype(dtype)).astype(jnp.float32), tree)


def commit() -> str:
    """The code's commit: $TOY_COMMIT (set where the checkout has no .git, e.g. a copied tree), else git."""
    if os.environ.get("TOY_COMMIT"):
        return os.environ["TOY_COMMIT"]
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).resolve().parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def seed_summary(scores: dict[str, dict[str, float]], seeds=SEEDS) -> dict[str, dict[str, float]]:
    """Mean, spread (max - min) and worst of each metric over the pose model's seeds present."""
    names = [s for s in seeds if s in scores]
    if not names:
        return {}
    out = {}
    for k in scores[names[0]]:
        v = np.array([scores[n][k] for n in names], np.float64)
        out[k] = {"mean": float(v.mean()), "spread": float(v.max() - v.min()), "min": float(v.min()),
                  "max": float(v.max())}
    return {"seeds": names, "metrics": out}


def sampling_defaults(c) -> dict:
    """launch/sample.py's defaults for this model: its shift, steps, clip length, panel size and rate."""
    w = c.world
    fps = (int(w.num_frames) - 1) / float(w.duration) if int(w.num_frames) > 1 else 1.0
    return {"shift": float(c.eval.shift), "steps": int(c.eval.steps), "segment_frames": int(w.num_frames),
            "overlap": 1, "height": int(w.height), "width": int(w.width), "fps": fps}


def write(folder: Path, c, *, prior: dict, adapters: dict, result: dict, command: str, config_arg: str,
          log=print) -> dict:
    """Writes the pack (weights + run.json) and card.json into the new `folder`; returns the card.

    adapters: {name: (lora params, config section)} to ship (the first is the default). `result` is
    the demo's metrics dict (scores on the held-out cases, ceiling, times, device).
    """
    from dreamactor_jax.sampling import packed
    from dreamactor_jax.toy import shipped
    from dreamactor_jax.utils import write_text_atomic

    mcfg = tm.mmdit_config(c.model)
    text, mask, pooled = tm.text_context(c.model, 1)
    entries = {}
    for name, (lora, lc) in adapters.items():
        entries[name] = (lora, tm.lora_config(lc), {
            "variant": "e2e" if lc.get("motion", "pose") == "video" else "pose", "layout": str(lc.layout),
            "pose_aug": bool(lc.pose_aug), "motion": str(lc.get("motion", "pose")), "steps": int(lc.steps),
            "seed": int(lc.seed)})
    files = packed.save(folder, mcfg=mcfg, base=prior, adapters=entries, default_adapter=next(iter(adapters)),
                        autoencoder={"kind": "haar"}, sampling=sampling_defaults(c),
                        text={"text": text, "text_mask": mask, "pooled": pooled},
                        extra={"toy_config": c.to_dict(), "made_by": "dreamactor_jax.toy.pack"}, dtype=STORE_DTYPE)
    log(f"[pack] wrote {folder}: " + ", ".join(f"{f} {(folder / f).stat().st_size / 2**20:.2f} MiB" for f in files))
    check = shipped.check_scores(folder)  # from the files just written, as the test will read them
    card = {
        "model": f"toy model (dreamactor-jax, issue 18): I2V prior + in-context LoRA {sorted(adapters)}, toy world "
                 f"{c.world.height}x{c.world.width}x{c.world.num_frames}",
        "command": command, "config": config_arg, "config_resolved": c.to_dict(), "commit": commit(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "device": result.get("device"), "backend": result.get("backend"), "jax": result.get("jax"),
        "files": files, "bytes": {f: (folder / f).stat().st_size for f in files},
        "cases": int(c.eval.cases), "sampling_steps": int(c.eval.steps),
        "scores": result.get("scores", {}), "ceiling": result.get("ceiling"), "leak_render": result.get("leak_render"),
        "seeds": seed_summary(result.get("scores", {})), "times": result.get("times", {}),
        "losses": {"prior": result.get("prior_loss"), **result.get("lora", {})}, "check": check,
        "check_tolerance": CHECK_TOLERANCE,
    }
    if result.get("ceiling") and result.get("leak_render"):
        from dreamactor_jax.toy.report import strong_bar

        passed, lines = strong_bar(card["scores"], result["ceiling"], result["leak_render"])
        card["bar"] = {"passed": passed, "lines": lines}
        log("[bar] issue 18: " + ("passed" if passed else "not passed") + "".join("\n  " + x for x in lines))
    write_text_atomic(folder / shipped.CARD_FILE, json.dumps(card, indent=1))
    return card


# How far the test lets a recomputed check score be from the card's (float32 on another machine: the
# sampler's ODE carries rounding differences, and a marker found or lost moves kp_err by 0.25/36).
CHECK_TOLERANCE = {"psnr": 0.05, "ssim": 0.002, "kp_err": 0.008, "found": 0.03}


def card_markdown(card: dict) -> str:
    """The card as a page for people (CARD.md beside card.json; card.json is the record)."""
    from dreamactor_jax.toy.report import table

    lines = [f"# {card['model']}", "",
             f"Made by one command on {card.get('device')} (jax {card.get('jax')}), {card['date']}, commit "
             f"`{card['commit']}`, config `{card['config']}` of `configs/toy_pose.py`:", "",
             f"    {card['command']}", "",
             "Files (sha256):", ""]
    lines += [f"- `{f}` ({card['bytes'][f] / 2**20:.2f} MiB): `{h}`" for f, h in card["files"].items()]
    lines += ["", f"Scores on {card['cases']} held-out cross-identity cases ({card['sampling_steps']} sampling steps; "
              "frames 1-4; `docs/results.md` explains every column):", "",
              table(card["scores"], card.get("ceiling")), ""]
    if card.get("bar"):
        lines += ["The issue-18 bar: " + ("passed" if card["bar"]["passed"] else "**not passed**"), ""]
        lines += [f"- {x}" for x in card["bar"]["lines"]]
        lines.append("")
    e = card.get("e2e")
    if e:
        lines += [f"The e2e adapter (`adapter-e2e.safetensors`, RGB driving video) was added by a second command on "
                  f"{e.get('device')}, {e['date']}, commit `{e['commit']}` (issue 16 part 4, `toy/e2e.py`):", "",
                  f"    {e['command']}", "",
                  f"Its held-out humanoid cases ({len(e['humanoid']['scores'])} methods; the e2e rows are driven by "
                  "the driver's RGB video):", "", table(e["humanoid"]["scores"], e["humanoid"].get("ceiling")), "",
                  "Quadruped references driven by quadrupeds (`pose`: the pose model forced onto the quadruped's "
                  "skeleton):", "", table(e["quadruped"]["scores"], e["quadruped"].get("ceiling")), ""]
    chk = card["check"]
    lines += [f"`check`: the first {chk['cases']} cases at {chk['steps']} steps in float32, which "
              "tests/test_toy_shipped.py recomputes within `check_tolerance`.", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    """python -m dreamactor_jax.toy.pack DIR: writes DIR/CARD.md from DIR/card.json."""
    import sys

    from dreamactor_jax.utils import write_text_atomic

    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0] in ("-h", "--help"):
        print("usage: python -m dreamactor_jax.toy.pack PACK_DIR   (writes PACK_DIR/CARD.md from its card.json)")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    f = Path(argv[0]) / "card.json"
    if not f.is_file():
        raise FileNotFoundError(f"{f}: no card")
    write_text_atomic(Path(argv[0]) / "CARD.md", card_markdown(json.loads(f.read_text())))
    return 0


if __name__ == "__main__":
    from dreamactor_jax.utils import cli_main

    cli_main(main)
