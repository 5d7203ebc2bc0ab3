"""The shipped toy model (`dreamactor_jax/toy/pretrained/`): load it, animate held-out characters, score.

The folder is an ordinary packed run (`dreamactor_jax.sampling.packed`): `launch/sample.py` samples
from it like from any checkpoint. Its `run.json` keeps the toy config it was trained with (under
`extra.toy_config`), so the world, the held-out cases and the evaluation are those of training;
`card.json` beside it records the command, config, commit, date, sha256 of each file and the scores.

    run_demo(out)                 # the default demo: still, prior and each adapter, scored
    check_scores(SHIPPED)         # the card's `check` cases, recomputed (tests/test_toy_shipped.py)
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from ml_collections import ConfigDict

SHIPPED = Path(__file__).resolve().parent / "pretrained"
CARD_FILE = "card.json"
CHECK_KEYS = ("psnr", "ssim", "kp_err", "found")
# The default demo on a CPU: 4 held-out cases at 12 Euler steps take ~1.5 minutes on 2 cores (the GPU
# study samples 256 cases at 30 steps; its card also scores the pose adapter at 16 steps).
DEMO_CASES, DEMO_STEPS = 4, 12


def toy_config(info: dict, *, dtype: str = "float32") -> ConfigDict:
    """The toy config a pack was trained with (`extra.toy_config`), set to compute in `dtype` with
    the XLA attention (the one every backend has)."""
    d = (info.get("extra") or {}).get("toy_config")
    if not d:
        raise ValueError("packed run: no extra.toy_config (not a toy model pack)")
    c = ConfigDict(d)
    c.model.dtype, c.model.attention_impl = dtype, "xla"
    return c


def adapter_section(name: str, entry: dict) -> ConfigDict:
    """The config section `toy.evaluate` reads (layout, pose_aug, motion, rank, alpha, targets) of a
    pack's adapter entry."""
    lora = entry.get("lora") or {}
    return ConfigDict(dict(name=name, layout=entry.get("layout", "spatial"), pose_aug=bool(entry.get("pose_aug", True)),
                           motion=entry.get("motion", "pose"), rank=int(lora["rank"]), alpha=float(lora["alpha"]),
                           targets=list(lora.get("targets") or [])))


def load(model_dir: str | Path = SHIPPED, *, dtype: str = "float32"):
    """(toy config, base params, {adapter name: (lora params, config section)}, run.json)."""
    from dreamactor_jax.sampling import packed

    model_dir = Path(model_dir)
    if not (model_dir / packed.RUN_FILE).is_file():
        raise FileNotFoundError(f"--model {model_dir}: no packed toy model there (no {packed.RUN_FILE})")
    _, base, adapters, info = packed.load_parts(model_dir, dtype)
    c = toy_config(info, dtype=dtype)
    return c, base, {n: (lora, adapter_section(n, e)) for n, (lora, _, e) in adapters.items()}, info


def read_card(model_dir: str | Path = SHIPPED) -> dict:
    f = Path(model_dir) / CARD_FILE
    if not f.is_file():
        raise FileNotFoundError(f"{f}: no model card")
    return json.loads(f.read_text())


def per_case(videos: np.ndarray, cases, wcfg) -> list[dict[str, float]]:
    """PSNR, SSIM, keypoint error and markers found of each case (frames 1..T-1)."""
    from dreamactor_jax.toy.evaluate import score

    return [{k: score(v[None], [case], wcfg)[k] for k in CHECK_KEYS} for v, case in zip(videos, cases)]


def check_scores(model_dir: str | Path = SHIPPED, cases: int | None = None, steps: int | None = None) -> dict:
    """Per-case scores of the prior and each adapter on the first held-out cases, sampled in float32 at
    full matmul precision (so any machine gets the same numbers up to rounding): what the card's
    `check` holds and the test recomputes. Defaults: the config's `ship.check_cases/check_steps`."""
    import jax

    from dreamactor_jax.toy.evaluate import evaluate_adapter, evaluate_baselines
    from dreamactor_jax.toy.world import WorldConfig, heldout_cases

    c, base, adapters, _ = load(model_dir, dtype="float32")
    n, s = int(cases or c.ship.check_cases), int(steps or c.ship.check_steps)
    c.eval.update(steps=s, batch=n)
    wcfg = WorldConfig(**dict(c.world))
    ks = heldout_cases(n, wcfg)
    out = {"cases": n, "steps": s, "scores": {}}
    with jax.default_matmul_precision("highest"):
        out["scores"]["prior"] = per_case(evaluate_baselines(c, ks, base, canvas=False)["prior"], ks, wcfg)
        for name, (lora, lc) in adapters.items():
            out["scores"][name] = per_case(evaluate_adapter(c, ks, base, lora, lc), ks, wcfg)
    return out


def run_demo(out: Path, model_dir: str | Path = SHIPPED, *, cases: int | None = None, steps: int | None = None,
             write_video: bool = True, log=print) -> dict:
    """The default demo: animates held-out characters with the shipped model on this machine
    (`cases` and `steps` default to DEMO_CASES and DEMO_STEPS).

    Writes metrics.json (`scores` of `still`, `prior` and each adapter, the exact target's as
    `ceiling`, `times.total_s`), grid.png (per case: driving pose, target, still, prior, adapters)
    and demo.mp4 (reference | driving | each adapter | ground truth, 4x upscaled) into `out`.
    """
    import jax

    from dreamactor_jax.toy.evaluate import (evaluate_adapter, evaluate_baselines, frame_grid, motion_inputs,
                                             save_png, score)
    from dreamactor_jax.toy.world import WorldConfig, heldout_cases
    from dreamactor_jax.utils import write_text_atomic

    t_start = time.time()
    out.mkdir(parents=True, exist_ok=True)
    c, base, adapters, info = load(model_dir)
    n, s = int(cases or DEMO_CASES), int(steps or DEMO_STEPS)
    c.eval.update(steps=s, batch=n)
    wcfg = WorldConfig(**dict(c.world))
    times = {"load_s": time.time() - t_start}
    log(f"[model] {model_dir}: prior + adapters {sorted(adapters)}; {n} held-out cases, {s} sampling steps")
    ks = heldout_cases(n, wcfg)
    t0 = time.time()
    videos = evaluate_baselines(c, ks, base, canvas=False)
    times["prior_s"] = time.time() - t0
    for name, (lora, lc) in adapters.items():
        t0 = time.time()
        videos[name] = evaluate_adapter(c, ks, base, lora, lc)
        times[f"{name}_s"] = time.time() - t0
        log(f"[sample] {name}: {times[f'{name}_s']:.1f}s")
    result = {"model": str(model_dir), "cases": n, "steps": s, "device": str(jax.devices()[0].device_kind),
              "jax": jax.__version__, "scores": {}, "times": times,
              "ceiling": score(np.stack([k.target.video for k in ks]), ks, wcfg)}
    card = Path(model_dir) / CARD_FILE
    if card.is_file():
        result["card_scores"] = json.loads(card.read_text()).get("scores")
    for name, v in videos.items():
        result["scores"][name] = score(v, ks, wcfg)
        log(f"[eval] {name:>10}: " + " ".join(f"{k} {x:.4f}" for k, x in result["scores"][name].items()))
    motion = {name: motion_inputs(ks, c, lc) for name, (_, lc) in adapters.items()}
    rows = []
    for i in range(min(int(c.eval.grid_cases), n)):
        rows += [motion[next(iter(motion))][i], ks[i].target.video] + [videos[m][i] for m in videos]
    save_png(out / "grid.png", frame_grid(rows, scale=4))
    result["grid_rows"] = ["driving", "target"] + list(videos)
    if write_video:
        _write_demo_video(out / "demo.mp4", ks, motion, videos, list(adapters), wcfg, log)
    result["times"]["total_s"] = time.time() - t_start
    write_text_atomic(out / "metrics.json", json.dumps(result, indent=1))
    log(f"[done] {n} held-out characters in {result['times']['total_s']:.1f}s; wrote {out}/metrics.json, grid.png"
        + (", demo.mp4" if write_video else ""))
    return result


def _write_demo_video(path: Path, cases, motion: dict, videos: dict, names: list[str], wcfg, log) -> None:
    """reference | driving (first adapter's input) | each adapter | ground truth, cases one after another."""
    try:
        from dreamactor_jax.media import write_video
        clips = []
        for i, k in enumerate(cases):
            ref = np.repeat(k.reference[None], wcfg.num_frames, 0)
            clips.append(np.concatenate([ref, motion[names[0]][i]] + [videos[m][i] for m in names] + [k.target.video], 2))
        frames = np.kron(np.concatenate(clips, 0), np.ones((1, 4, 4, 1), np.uint8))
        write_video(path, frames, fps=wcfg.fps)
    except (ImportError, ValueError, RuntimeError, OSError) as e:  # the numbers matter more than the mp4
        log(f"[video] skipped: {e}")
