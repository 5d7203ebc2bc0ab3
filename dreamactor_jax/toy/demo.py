"""The one-command demo: the shipped toy model animates held-out characters; or train one from scratch.

    python -m dreamactor_jax.toy.demo --out runs/toy                        # shipped model, CPU, ~2 minutes
    python -m dreamactor_jax.toy.demo --out runs/toy --train                # toy data -> prior -> pose LoRA (`cpu`)
    python -m dreamactor_jax.toy.demo --out runs/toy --train --config gpu   # the shipped model's recipe, one GPU
    python -m dreamactor_jax.toy.demo --out runs/toy --train --config gpu --study   # + seeds, ablations A and D

Without --train the packed model in `dreamactor_jax/toy/pretrained/` (or --model DIR) animates
held-out characters with held-out drivers: `toy.shipped.run_demo`. With --train everything is made
here: toy data, the I2V prior, the pose in-context LoRA(s), the evaluation; `--pack DIR` then writes
the trained model as a packed run with its card (`toy.pack`; the config's `ship.command` is the
command that made the shipped one). A prior can be saved and reused or trained further across runs
(a GPU call has a time limit):

    python -m dreamactor_jax.toy.demo --out runs/a --train --config gpu --adapters pose --save-prior runs/prior1
    python -m dreamactor_jax.toy.demo --out runs/b --train --config gpu --config.prior.restart=1 \
        --prior runs/prior1 --continue-prior --save-prior runs/prior2 --adapters pose

Writes into --out: `metrics.json` (scores of every method on held-out cross-identity cases, the exact
target's own scores as `ceiling`, timings, device, config), `grid.png` (rows per case: driving,
target, still, prior, adapters), `demo.mp4` (reference | driving | generated | ground truth) and `log.txt`.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from dreamactor_jax.toy import recipe
from dreamactor_jax.utils import cli_main, write_text_atomic

STUDY_ORDER = ("pose_seed1", "pose_seed2", "no_aug", "temporal")  # most needed first (time budget)
CONFIG_HELP = ("--train: the toy recipe's variant cpu | gpu | ci (options ,layout=...,aug=...,seed=...) or a config "
               "file FILE[:ARG]; --config.section.key=value overrides a value")


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
        continue_prior: bool = False, pack: Path | None = None, command: str = "", config_arg: str = "") -> dict:
    """Runs the whole pipeline of config `c`, writing results into `out`; returns the metrics dict.

    `prior_in`: a prior saved by an earlier run (`save_prior`) to use instead of pretraining one, or,
    with `continue_prior`, to pretrain further (`prior.steps` more, `toy.pretrain.pretrain_prior`);
    `prior_out`: where to save the prior this run pretrains (a new folder). `pack`: write the trained
    prior and the first adapter as a packed run with its card there (`toy.pack.write`); the weights
    are then rounded to their stored precision before anything is scored.
    """
    import jax

    from dreamactor_jax.toy import data as toy_data
    from dreamactor_jax.toy import model as tm
    from dreamactor_jax.toy import pack as toy_pack
    from dreamactor_jax.toy.adapter import train_lora
    from dreamactor_jax.toy.evaluate import (evaluate_adapter, evaluate_baselines, frame_grid, motion_influence,
                                             motion_inputs, save_png, score)
    from dreamactor_jax.toy.pretrain import load_prior, pretrain_prior, save_prior
    from dreamactor_jax.toy.world import WorldConfig

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
    # Pose clips and test cases render in worker processes while the prior trains.
    get_pose = toy_data.pose_set(wcfg, int(d.pose_clips), num_chars=int(d.num_chars), num_motions=int(d.num_motions),
                                 aug_copies=int(d.aug_copies), seed=int(c.seed), workers=int(d.workers),
                                 norm=str(d.get("pose_norm", "median")), later=True)
    get_cases = toy_data.heldout_cases_later(int(c.eval.cases), wcfg, workers=max(1, int(d.workers) // 2))
    times["data_s"] = time.time() - t0
    if pretrain:
        log(f"[data] {len(prior_data['video'])} prior clips + {len(prior_data['wide'])} wide scenes "
            f"({times['data_s']:.1f}s); pose clips and {c.eval.cases} held-out cases rendering meanwhile")
        init = load_prior(prior_in, mcfg) if continue_prior else None
        prior, losses, times["prior_s"] = pretrain_prior(c, prior_data, log=log, init=init)
        result["prior_loss"] = _summary(losses)
        del prior_data
        if prior_out is not None:
            meta = {"config": c.to_dict(), "loss": result["prior_loss"], "continued_from": result.get("prior_from")}
            save_prior(prior_out, prior, mcfg, meta)
            log(f"[prior] saved to {prior_out}")
    else:
        prior = load_prior(prior_in, mcfg)
        log(f"[prior] loaded from {prior_in}")
    t0 = time.time()
    pose_data, cases = get_pose(), get_cases()
    times["data_wait_s"] = time.time() - t0
    log(f"[data] {len(pose_data['video'])} pose clips, {len(cases)} held-out cases (waited {times['data_wait_s']:.1f}s)")
    if pack is not None:
        prior = toy_pack.rounded(prior)
    t0 = time.time()
    videos = evaluate_baselines(c, cases, prior)
    times["eval_baselines_s"] = time.time() - t0
    result.update(scores={}, lora={}, times=times)
    # The exact target scored like every method: what a perfect model would get (the detector's error);
    # and X's look on the driver's body: what full identity leakage would score.
    result["ceiling"] = score(np.stack([k.target.video for k in cases]), cases, wcfg)
    result["leak_render"] = score(np.stack([k.leak.video for k in cases]), cases, wcfg)
    log("[eval] exact target (ceiling): " + " ".join(f"{k} {x:.4f}" for k, x in result["ceiling"].items()))
    # Does each model read its motion input? (toy.evaluate.motion_influence; ~0 = ignores it)
    result["motion_influence"] = {"canvas_no_lora": motion_influence(c, cases, prior, None, None)}

    def publish(names):
        for name in names:
            result["scores"][name] = score(videos[name], cases, wcfg)
            log(f"[eval] {name:>16}: " + " ".join(f"{k} {x:.4f}" for k, x in result["scores"][name].items()))
        write_text_atomic(out / "metrics.json", json.dumps(result, indent=1))
        rows = []
        drive = motion_inputs(cases[:int(c.eval.grid_cases)], c)
        for i in range(min(int(c.eval.grid_cases), len(cases))):
            rows += [drive[i], cases[i].target.video] + [videos[m][i] for m in videos]
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
    last_s, trained = 0.0, {}  # how long the previous adapter took (train + sample): the next one's estimate
    for lc in sections:
        if lc is not sections[0] and time.time() - t_start + last_s > float(c.time_budget_s):
            log(f"[study] {lc.name} skipped: it would end past the time budget of {c.time_budget_s}s")
            continue
        t_adapter = time.time()
        cc = c.copy_and_resolve_references()
        cc.lora = lc
        lora, losses, secs, (before, after) = train_lora(cc, prior, pose_data, log=log)
        if pack is not None:
            lora = toy_pack.rounded(lora)
        trained[str(lc.name)] = (lora, lc)
        times[f"lora_{lc.name}_s"] = secs
        result["lora"][str(lc.name)] = {**_summary(losses), "fixed_batch_before": before, "fixed_batch_after": after}
        t0 = time.time()
        videos[str(lc.name)] = evaluate_adapter(c, cases, prior, lora, lc)
        result["motion_influence"][str(lc.name)] = motion_influence(c, cases, prior, lora, lc, layout=str(lc.layout))
        log(f"[eval] {lc.name:>16}: motion influence {result['motion_influence'][str(lc.name)]['mean']:.4f} "
            f"(without adapter {result['motion_influence']['canvas_no_lora']['mean']:.4f})")
        if lc is sections[0] and bool(c.eval.get("variants", False)):
            _variants(c, cases, prior, lora, lc, result, log)
        times[f"eval_{lc.name}_s"] = time.time() - t0
        publish([str(lc.name)])
        last_s = time.time() - t_adapter

    main = str(sections[0].name)
    if write_video:
        _write_video(out / "demo.mp4", cases, motion_inputs(cases[:int(c.eval.grid_cases)], c, sections[0]),
                     videos[main], wcfg, log)
    times["total_s"] = time.time() - t_start
    write_text_atomic(out / "metrics.json", json.dumps(result, indent=1))
    if pack is not None:
        card = toy_pack.write(pack, c, prior=prior, adapters={main: trained[main]}, result=result, command=command,
                              config_arg=config_arg, log=log)
        log(f"[pack] card: {pack}/card.json (check cases: {card['check']['cases']})")
    log(f"[done] {main}: " + " ".join(f"{k} {v:.4f}" for k, v in result["scores"][main].items()))
    return result


def _variants(c, cases, prior, lora, lc, result: dict, log) -> None:
    """The main adapter scored with the motion half clamped to the given pose (the third round's
    sampling) and with the CPU demo's fewer sampling steps: what those choices cost (`variants`)."""
    from dreamactor_jax.toy.evaluate import evaluate_adapter, score
    from dreamactor_jax.toy.world import WorldConfig

    wcfg = WorldConfig(**dict(c.world))
    for tag, upd in (("clamped", {"clamp_motion": True}), (f"{int(c.ship.demo_steps)}steps", {"steps": int(c.ship.demo_steps)})):
        cv = c.copy_and_resolve_references()
        cv.eval.update(upd)
        key = f"{lc.name}_{tag}"
        result.setdefault("variants", {})[key] = score(evaluate_adapter(cv, cases, prior, lora, lc), cases, wcfg)
        log(f"[eval] {key:>16}: " + " ".join(f"{k} {x:.4f}" for k, x in result["variants"][key].items()))


def _write_video(path: Path, cases, drive: np.ndarray, generated: np.ndarray, wcfg, log) -> None:
    try:
        from dreamactor_jax.media import write_video as write_mp4
        clips = []
        for i in range(len(drive)):
            ref = np.repeat(cases[i].reference[None], wcfg.num_frames, 0)
            clips.append(np.concatenate([ref, drive[i], generated[i], cases[i].target.video], 2))
        frames = np.kron(np.concatenate(clips, 0), np.ones((1, 4, 4, 1), np.uint8))
        write_mp4(path, frames, fps=wcfg.fps)
    except (ImportError, ValueError, RuntimeError, OSError) as e:  # the numbers matter more than the mp4
        log(f"[video] skipped: {e}")


def ship_command(argv: list[str], pack: str | None) -> str:
    """This invocation as one command line, the pack's parent folder written `{out}` (the card's form)."""
    line = "python -m dreamactor_jax.toy.demo " + " ".join(shlex.quote(a) for a in argv)
    if pack:
        line = line.replace(str(Path(pack).parent), "{out}")
    return line


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--train", action="store_true", help="train a model from scratch (default: use the shipped one)")
    ap.add_argument("--model", default=None, help="a packed toy model folder (default: the shipped one)")
    ap.add_argument("--cases", type=int, default=None, help="shipped model: held-out cases (default: the config's)")
    ap.add_argument("--steps", type=int, default=None, help="shipped model: sampling steps (default: the config's)")
    ap.add_argument("--config", default="cpu", help=CONFIG_HELP)
    ap.add_argument("--study", action="store_true", help="--train: also train seeds 1, 2 and the ablations")
    ap.add_argument("--no-video", action="store_true", help="skip the mp4")
    ap.add_argument("--adapters", default="", help="--train: comma list of adapters to train (e.g. pose,pose_seed1)")
    ap.add_argument("--prior", default=None, help="--train: use the prior saved in this folder instead of pretraining")
    ap.add_argument("--save-prior", default=None, help="--train: save the pretrained prior into this new folder")
    ap.add_argument("--continue-prior", action="store_true",
                    help="--train: pretrain the --prior further (prior.steps more; add --config.prior.restart=K for the K-th time)")
    ap.add_argument("--pack", default=None, help="--train: write the trained model and its card into this new folder")
    a, overrides = ap.parse_known_args(argv)
    c = recipe.load(a.config, overrides)
    train_only = [f for f, v in (("--prior", a.prior), ("--save-prior", a.save_prior), ("--pack", a.pack),
                                 ("--study", a.study), ("--adapters", a.adapters),
                                 ("--continue-prior", a.continue_prior), ("--config", a.config != "cpu" or overrides))
                  if v]
    if not a.train:
        if train_only:
            raise ValueError(f"{', '.join(train_only)}: only with --train (the shipped model is already trained)")
        for flag, v in (("--cases", a.cases), ("--steps", a.steps)):
            if v is not None and v < 1:
                raise ValueError(f"{flag}: expected >= 1, got {v}")
        from dreamactor_jax.toy import shipped

        log = Log()
        out = Path(a.out)
        try:
            shipped.run_demo(out, Path(a.model) if a.model else shipped.SHIPPED, cases=a.cases, steps=a.steps,
                             write_video=not a.no_video, log=log)
        finally:
            out.mkdir(parents=True, exist_ok=True)
            write_text_atomic(out / "log.txt", "\n".join(log.lines) + "\n")
        return 0
    if a.model or a.cases or a.steps:
        raise ValueError("--model, --cases, --steps: for the shipped model only (drop --train)")
    if a.continue_prior and not a.prior:
        raise ValueError("--continue-prior: needs --prior (the saved prior to train further)")
    if a.prior and a.save_prior and not a.continue_prior:
        raise ValueError("--prior and --save-prior: give one (a loaded prior is not pretrained again), "
                         "or add --continue-prior")
    if a.prior and not any((Path(a.prior) / f).is_file() for f in ("prior.json", "run.json")):
        raise FileNotFoundError(f"--prior {a.prior}: not a saved toy prior or packed toy model")
    for flag, path in (("--save-prior", a.save_prior), ("--pack", a.pack)):
        if path and Path(path).exists():
            raise FileExistsError(f"{flag} {path}: exists already (choose a new folder)")
    out = Path(a.out)
    log = Log()
    t0 = time.time()
    try:
        run(c, out, study=a.study, write_video=not a.no_video, log=log,
            adapters=[x for x in a.adapters.split(",") if x] or None,
            prior_in=Path(a.prior) if a.prior else None, prior_out=Path(a.save_prior) if a.save_prior else None,
            continue_prior=a.continue_prior, pack=Path(a.pack) if a.pack else None,
            command=ship_command(argv, a.pack), config_arg=a.config)
    finally:
        log(f"[total] {time.time() - t0:.1f}s")
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out / "log.txt", "\n".join(log.lines) + "\n")
    return 0


if __name__ == "__main__":
    cli_main(main, sys.argv[1:])
