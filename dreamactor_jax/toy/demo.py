"""The one-command demo: toy data -> I2V prior -> pose in-context LoRA -> animate held-out characters.

    python -m dreamactor_jax.toy.demo --out runs/toy                 # CPU laptop (config `cpu`)
    python -m dreamactor_jax.toy.demo --out runs/toy --config gpu    # the larger config on one GPU
    python -m dreamactor_jax.toy.demo --out runs/toy --config gpu --study   # + seed 1, ablations A, D

A prior can be saved and reused or trained further across runs (a GPU call has a time limit):

    python -m dreamactor_jax.toy.demo --out runs/a --config gpu --adapters pose --save-prior runs/prior1
    python -m dreamactor_jax.toy.demo --out runs/b --config gpu,prior.restart=1 --prior runs/prior1 \
        --continue-prior --save-prior runs/prior2 --adapters pose
    python -m dreamactor_jax.toy.demo --out runs/c --config gpu --study --prior runs/prior2

Writes into --out: `metrics.json` (scores of every method on held-out cross-identity cases, the exact
target's own scores as `ceiling`, losses, timings, device, config), `grid.png` (rows per case:
driving pose, target, still, prior, adapters),
`demo.mp4` (reference | driving pose | generated | ground truth) and `log.txt`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np

from dreamactor_jax.utils import atomic_path, cli_main, write_text_atomic

STUDY_ORDER = ("pose_seed1", "no_aug", "temporal")  # most needed first, in case the time budget runs out
CONFIG_FILE = Path(__file__).resolve().parents[2] / "configs" / "toy_pose.py"


def load_config(arg: str, path: Path = CONFIG_FILE):
    if not path.is_file():
        raise FileNotFoundError(f"{path}: toy config file not found (pass --config-file)")
    spec = importlib.util.spec_from_file_location("toy_pose_config", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.get_config(arg)


class Log:
    def __init__(self):
        self.lines: list[str] = []

    def __call__(self, msg: str) -> None:
        print(msg, flush=True)
        self.lines.append(msg)


def _summary(losses: list[float]) -> dict:
    k = max(1, len(losses) // 10)
    return {"first": float(np.mean(losses[:k])), "last": float(np.mean(losses[-k:])), "steps": len(losses)}


def run(c, out: Path, *, study: bool = False, write_video: bool = True, log=None,
        adapters: list[str] | None = None, prior_in: Path | None = None, prior_out: Path | None = None,
        continue_prior: bool = False) -> dict:
    """Runs the whole pipeline of config `c`, writing results into `out`; returns the metrics dict.

    `prior_in`: a prior saved by an earlier run (`save_prior`) to use instead of pretraining one, or,
    with `continue_prior`, to pretrain further (`prior.steps` more, `toy.pretrain.pretrain_prior`);
    `prior_out`: where to save the prior this run pretrains (a new folder).
    """
    import jax

    from dreamactor_jax.toy import data as toy_data
    from dreamactor_jax.toy.adapter import train_lora
    from dreamactor_jax.toy.evaluate import (evaluate_adapter, evaluate_baselines, frame_grid, motion_influence,
                                             save_png, score)
    from dreamactor_jax.toy import model as tm
    from dreamactor_jax.toy.pretrain import load_prior, pretrain_prior, save_prior
    from dreamactor_jax.toy.world import WorldConfig, heldout_cases

    t_start = time.time()
    log = log or Log()
    out.mkdir(parents=True, exist_ok=True)
    times, result = {}, {"config": c.to_dict(), "device": str(jax.devices()[0].device_kind),
                         "backend": jax.default_backend(), "jax": jax.__version__}
    wcfg, mcfg = WorldConfig(**dict(c.world)), tm.mmdit_config(c.model)
    d = c.data
    t0 = time.time()
    pretrain = prior_in is None or continue_prior
    if prior_in is not None:
        result["prior_from"] = str(prior_in)
    if pretrain:
        prior_data = toy_data.prior_set(wcfg, int(d.prior_clips), int(d.prior_scenes), num_chars=int(d.num_chars),
                                        num_motions=int(d.num_motions), seed=int(c.seed), workers=int(d.workers),
                                        sync=float(d.sync_scenes), split=float(d.split_scenes))
    pose_data = toy_data.pose_set(wcfg, int(d.pose_clips), num_chars=int(d.num_chars),
                                  num_motions=int(d.num_motions), aug_copies=int(d.aug_copies),
                                  seed=int(c.seed), workers=int(d.workers))
    cases = heldout_cases(int(c.eval.cases), wcfg)
    times["data_s"] = time.time() - t0
    if pretrain:
        log(f"[data] {len(prior_data['video'])} prior clips + {len(prior_data['wide'])} wide scenes, "
            f"{len(pose_data['video'])} pose clips, {len(cases)} held-out cases ({times['data_s']:.1f}s)")
        init = load_prior(prior_in, mcfg) if continue_prior else None
        prior, losses, times["prior_s"] = pretrain_prior(c, prior_data, log=log, init=init)
        result["prior_loss"] = _summary(losses)
        del prior_data
        if prior_out is not None:
            meta = {"config": c.to_dict(), "loss": result["prior_loss"],
                    "continued_from": result.get("prior_from")}
            save_prior(prior_out, prior, mcfg, meta)
            log(f"[prior] saved to {prior_out}")
    else:
        log(f"[data] {len(pose_data['video'])} pose clips, {len(cases)} held-out cases ({times['data_s']:.1f}s)")
        prior = load_prior(prior_in, mcfg)
        log(f"[prior] loaded from {prior_in}")
    t0 = time.time()
    videos = evaluate_baselines(c, cases, prior)
    times["eval_baselines_s"] = time.time() - t0
    result.update(scores={}, lora={}, times=times)
    # The exact target scored like every method: what a perfect model would get (the detector's error).
    result["ceiling"] = score(np.stack([k.target.video for k in cases]), cases, wcfg)
    log("[eval] exact target (ceiling): " + " ".join(f"{k} {x:.4f}" for k, x in result["ceiling"].items()))
    # Does each model read its motion input? (toy.evaluate.motion_influence; ~0 = ignores it)
    result["motion_influence"] = {"canvas_no_lora": motion_influence(c, cases, prior, None, None)}

    def publish(names):
        for name in names:
            result["scores"][name] = score(videos[name], cases, wcfg)
            log(f"[eval] {name:>16}: " + " ".join(f"{k} {x:.4f}" for k, x in result["scores"][name].items()))
        write_text_atomic(out / "metrics.json", json.dumps(result, indent=1))
        rows = []
        for i in range(min(int(c.eval.grid_cases), len(cases))):
            rows += [cases[i].driving.pose_video, cases[i].target.video] + [videos[m][i] for m in videos]
        save_png(out / "grid.png", frame_grid(rows, scale=2))
        result["grid_rows"] = ["driving pose", "target"] + list(videos)

    publish(list(videos))
    order = [k for k in STUDY_ORDER if k in c.study] + sorted(k for k in c.study if k not in STUDY_ORDER)
    sections = [c.lora] + ([c.study[k] for k in order] if study else [])
    if adapters:  # an explicit list of adapters (names of c.lora / c.study), in that order
        known = {str(c.lora.name): c.lora, **{k: c.study[k] for k in c.study}}
        bad = [a for a in adapters if a not in known]
        if bad:
            raise ValueError(f"--adapters: unknown {bad} (known: {sorted(known)})")
        sections = [known[a] for a in adapters]
    last_s = 0.0  # how long the previous adapter took (train + sample): the next one's estimate
    for lc in sections:
        if lc is not sections[0] and time.time() - t_start + last_s > float(c.time_budget_s):
            log(f"[study] {lc.name} skipped: it would end past the time budget of {c.time_budget_s}s")
            continue
        t_adapter = time.time()
        cc = c.copy_and_resolve_references()
        cc.lora = lc
        lora, losses, secs, (before, after) = train_lora(cc, prior, pose_data, log=log)
        times[f"lora_{lc.name}_s"] = secs
        result["lora"][str(lc.name)] = {**_summary(losses), "fixed_batch_before": before,
                                       "fixed_batch_after": after}
        t0 = time.time()
        videos[str(lc.name)] = evaluate_adapter(c, cases, prior, lora, lc)
        result["motion_influence"][str(lc.name)] = motion_influence(
            c, cases, prior, lora, lc, layout=str(lc.layout), pose_aug=bool(lc.pose_aug))
        log(f"[eval] {lc.name:>16}: motion influence {result['motion_influence'][str(lc.name)]['mean']:.4f} "
            f"(without adapter {result['motion_influence']['canvas_no_lora']['mean']:.4f})")
        times[f"eval_{lc.name}_s"] = time.time() - t0
        publish([str(lc.name)])
        last_s = time.time() - t_adapter

    main = str(sections[0].name)
    if write_video:
        try:
            from dreamactor_jax.media import write_video as write_mp4
            clips = []
            for i in range(min(int(c.eval.grid_cases), len(cases))):
                ref = np.repeat(cases[i].reference[None], wcfg.num_frames, 0)
                clips.append(np.concatenate([ref, cases[i].driving.pose_video, videos[main][i],
                                             cases[i].target.video], 2))
            frames = np.kron(np.concatenate(clips, 0), np.ones((1, 4, 4, 1), np.uint8))
            write_mp4(out / "demo.mp4", frames, fps=4.0)
        except (ImportError, ValueError, RuntimeError, OSError) as e:  # the numbers matter more than the mp4
            log(f"[video] skipped: {e}")
    times["total_s"] = time.time() - t_start
    write_text_atomic(out / "metrics.json", json.dumps(result, indent=1))
    log(f"[done] {main}: " + " ".join(f"{k} {v:.4f}" for k, v in result["scores"][main].items()))
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--config", default="cpu", help="cpu | gpu | ci, plus ,layout=...,aug=...,seed=...")
    ap.add_argument("--config-file", default=str(CONFIG_FILE))
    ap.add_argument("--study", action="store_true", help="also train seed 1 and the ablations (temporal, no aug)")
    ap.add_argument("--no-video", action="store_true", help="skip the mp4")
    ap.add_argument("--adapters", default="", help="comma list of adapters to train instead (e.g. temporal,pose_attn)")
    ap.add_argument("--prior", default=None, help="use the prior saved in this folder (by --save-prior) instead of pretraining")
    ap.add_argument("--save-prior", default=None, help="save the pretrained prior into this new folder")
    ap.add_argument("--continue-prior", action="store_true",
                    help="pretrain the --prior further (prior.steps more; set prior.restart=K for the K-th time)")
    a = ap.parse_args(argv)
    if a.continue_prior and not a.prior:
        raise ValueError("--continue-prior: needs --prior (the saved prior to train further)")
    if a.prior and a.save_prior and not a.continue_prior:
        raise ValueError("--prior and --save-prior: give one (a loaded prior is not pretrained again), "
                         "or add --continue-prior")
    if a.prior and not (Path(a.prior) / "prior.json").is_file():
        raise FileNotFoundError(f"--prior {a.prior}: not a saved toy prior (no prior.json)")
    if a.save_prior and Path(a.save_prior).exists():
        raise FileExistsError(f"--save-prior {a.save_prior}: exists already (choose a new folder)")
    c = load_config(a.config, Path(a.config_file))
    out = Path(a.out)
    log = Log()
    t0 = time.time()
    try:
        run(c, out, study=a.study, write_video=not a.no_video, log=log,
            adapters=[x for x in a.adapters.split(",") if x] or None,
            prior_in=Path(a.prior) if a.prior else None, prior_out=Path(a.save_prior) if a.save_prior else None,
            continue_prior=a.continue_prior)
    finally:
        log(f"[total] {time.time() - t0:.1f}s")
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out / "log.txt", "\n".join(log.lines) + "\n")
    return 0


if __name__ == "__main__":
    cli_main(main, sys.argv[1:])
