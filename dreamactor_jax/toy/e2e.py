"""The end-to-end variant in the toy world (paper section 3.4, Eq. 4; issue 16 part 4).

    python -m dreamactor_jax.toy.e2e --config gpu --model dreamactor_jax/toy/pretrained --out runs/e2e --pack runs/pack

1. Source videos V_src: training-split humanoids (A) performing training motions (m).
2. Pseudo-pairs: another training humanoid B (identity I_o: B in m's first pose) animated by the toy
   pose model with V_src's skeleton: V_o = M_pose(P_src, I_o), through the same sampler as the study.
3. Filtering without the ground truth (`plausibility`): the share of joint markers found in V_o and
   how constant its bone lengths stay over time (a body does not stretch); the best `e2e.keep` share
   of the units is kept. (How good the kept units really are, against B's exact render, is reported
   but never used to choose.)
4. The e2e LoRA: Eq. 4, the canvas's driving half is the RGB video V_o, the reference V_src[0], the
   target V_src; warm-started from the pose LoRA (fresh optimiser).
5. Evaluation on held-out cross-identity cases driven by the driver's RGB video: humanoids (against
   the pose model, the still reference and the prior) and quadrupeds (a quadruped reference driven
   by another quadruped; the pose model forced onto the quadruped's skeleton), with the ablations:
   no warm start, no filtering, and an oracle trained on exact cross-identity pairs (B's true render).

`--pack DIR` writes the model folder again with the e2e adapter added (`--checkpoint DIR/e2e` in
launch/sample.py takes an RGB `--driving` video) and the card's `e2e` section.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from dreamactor_jax.utils import cli_main, write_text_atomic

ABLATIONS = ("e2e_cold", "e2e_nofilter", "e2e_oracle")


def _unit(args):
    """Unit i: (V_src, P_src anchored on I_o, B's exact render of m) as uint8 videos."""
    from dreamactor_jax.toy.data import normalized_pose_video
    from dreamactor_jax.toy.world import WorldConfig, character, motion, render_clip

    cfgd, i, seed, num_chars, num_motions, norm = args
    cfg = WorldConfig(**cfgd)
    rng = np.random.default_rng([seed, i, 31])
    a, b = rng.choice(num_chars, 2, replace=False)
    mo = motion("train", int(rng.integers(num_motions)), cfg)
    src = render_clip(character("train", int(a), cfg, kind="humanoid"), mo, cfg)
    oracle = render_clip(character("train", int(b), cfg, kind="humanoid"), mo, cfg).video
    return src.video, normalized_pose_video(src, cfg, norm, oracle[0]), oracle


def source_units(c, n: int, *, seed: int = 0, workers: int = 1) -> dict[str, np.ndarray]:
    """{"src", "pose", "oracle"}: uint8 [n, T, H, W, 3] each (module docstring, step 1)."""
    from dreamactor_jax.toy.data import _map
    from dreamactor_jax.toy.world import WorldConfig

    d = c.data
    items = [(asdict(WorldConfig(**dict(c.world))), i, seed, int(d.num_chars), int(d.num_motions),
              str(d.get("pose_norm", "median"))) for i in range(n)]
    out = _map(_unit, items, workers)
    return {k: np.stack([o[j] for o in out]) for j, k in enumerate(("src", "pose", "oracle"))}


def plausibility(videos: np.ndarray) -> np.ndarray:
    """A score per video [N, T, H, W, 3] that looks at the video alone: the share of joint markers
    found minus the spread over time of its bone lengths (std of log length, over the bones measured)."""
    from dreamactor_jax.toy import metrics as M

    out = np.zeros(len(videos))
    for i, v in enumerate(videos):
        det = M.detect_markers(v)
        lengths = M.bone_lengths(det)
        with np.errstate(all="ignore"):
            spread = np.nanstd(np.log(np.maximum(lengths, 1e-3)), axis=0)
        spread = np.nanmean(spread) if np.isfinite(spread).any() else 1.0
        out[i] = float((det[..., 2] >= 0.3).mean()) - float(spread)
    return out


def e2e_section(c, name: str, seed: int, steps: int | None = None):
    """The adapter's config section: the pose LoRA's shape, RGB motion, the e2e training settings."""
    from ml_collections import ConfigDict

    e = c.e2e
    lc = ConfigDict(dict(c.lora))
    lc.update(name=name, seed=seed, motion="video", pose_aug=False, steps=int(steps or e.steps), batch=int(e.batch),
              lr=float(e.lr), warmup=int(e.warmup), ema=float(e.ema))
    return lc


def run(c, model_dir: Path, out: Path, *, pack: Path | None = None, command: str = "", log=print) -> dict:
    """The whole study (module docstring); returns the metrics dict, written to out/metrics.json."""
    import jax

    from dreamactor_jax.toy import pack as toy_pack
    from dreamactor_jax.toy import shipped
    from dreamactor_jax.toy.adapter import train_lora
    from dreamactor_jax.toy.evaluate import evaluate_adapter, evaluate_baselines, frame_grid, generate, motion_inputs
    from dreamactor_jax.toy.evaluate import save_png, score
    from dreamactor_jax.toy.metrics import psnr
    from dreamactor_jax.toy.world import WorldConfig, heldout_cases

    t_start = time.time()
    out.mkdir(parents=True, exist_ok=True)
    cp, base, adapters, info = shipped.load(model_dir, dtype="float32")
    # The pack's world, data and model; this code's e2e section and compute settings.
    cp.e2e = c.e2e
    cp.model.update(dtype=c.model.dtype, attention_impl=c.model.attention_impl)
    cp.eval.update(batch=int(c.eval.batch), steps=int(c.eval.steps))
    cp.log_every = int(c.log_every)
    c, e = cp, cp.e2e
    pose_lora, pose_lc = adapters["pose"]
    wcfg = WorldConfig(**dict(c.world))
    times, result = {}, {"model": str(model_dir), "device": str(jax.devices()[0].device_kind), "jax": jax.__version__,
                         "config": c.to_dict()}
    t0 = time.time()
    units = source_units(c, int(e.units), seed=int(c.seed), workers=int(e.workers))
    times["data_s"] = time.time() - t0
    t0 = time.time()
    cs = c.copy_and_resolve_references()
    cs.eval.steps = int(e.synth_steps)
    synth = generate(cs, base, pose_lora, pose_lc, "spatial", units["oracle"][:, 0], units["pose"], seed=1)
    times["synthesis_s"] = time.time() - t0
    plaus = plausibility(synth)
    order = np.argsort(-plaus, kind="stable")
    kept = np.sort(order[:max(1, int(round(float(e.keep) * len(order))))])
    dropped = np.setdiff1d(np.arange(len(order)), kept)
    truth = np.array([psnr(v[1:], o[1:]) for v, o in zip(synth, units["oracle"])])  # reported, never used to choose
    result["filter"] = {"units": len(order), "kept": len(kept), "plausibility_kept": float(plaus[kept].mean()),
                        "plausibility_dropped": float(plaus[dropped].mean()) if len(dropped) else None,
                        "psnr_vs_exact_kept": float(truth[kept].mean()),
                        "psnr_vs_exact_dropped": float(truth[dropped].mean()) if len(dropped) else None,
                        "corr_plausibility_psnr": float(np.corrcoef(plaus, truth)[0, 1]) if len(order) > 2 else None}
    log(f"[synth] {len(order)} pseudo-pairs in {times['synthesis_s']:.1f}s; kept {len(kept)}: " +
        json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in result["filter"].items()}))

    runs = [(f"e2e{'' if s == 0 else f'_seed{s}'}", s, kept, "synth", True) for s in range(int(e.seeds))]
    if bool(e.ablations):
        runs += [("e2e_cold", 0, kept, "synth", False), ("e2e_nofilter", 0, np.arange(len(order)), "synth", True),
                 ("e2e_oracle", 0, np.arange(len(order)), "oracle", True)]
    trained, result["lora"] = {}, {}
    for name, seed, idx, drive, warm in runs:
        data = {"video": units["src"][idx], "drive": (synth if drive == "synth" else units["oracle"])[idx]}
        cc = c.copy_and_resolve_references()
        cc.lora = e2e_section(c, name, seed)
        lora, losses, times[f"lora_{name}_s"], _ = train_lora(cc, base, data, log=log,
                                                              init=pose_lora if warm else None)
        trained[name] = (toy_pack.rounded(lora), cc.lora)
        k = max(1, len(losses) // 10)
        result["lora"][name] = {"first": float(np.mean(losses[:k])), "last": float(np.mean(losses[-k:])),
                                "units": int(len(idx)), "drive": drive, "warm_start": warm}

    result["humanoid"], result["quadruped"], rows = {}, {}, []
    for kind, n, part in (("humanoid", int(e.cases), result["humanoid"]), ("quadruped", int(e.quad_cases), result["quadruped"])):
        t0 = time.time()
        ks = heldout_cases(n, wcfg, kind=kind)
        videos = evaluate_baselines(c, ks, base, canvas=False)
        videos["pose"] = evaluate_adapter(c, ks, base, pose_lora, pose_lc)  # forced onto a quadruped's skeleton
        for name, (lora, lc) in trained.items():
            videos[name] = evaluate_adapter(c, ks, base, lora, lc)
        part["ceiling"] = score(np.stack([k.target.video for k in ks]), ks, wcfg)
        part["scores"] = {m: score(v, ks, wcfg) for m, v in videos.items()}
        for m, s in part["scores"].items():
            log(f"[eval:{kind}] {m:>13}: " + " ".join(f"{x} {y:.4f}" for x, y in s.items()))
        drive = motion_inputs(ks[:int(e.grid_cases)], c, trained["e2e"][1])
        for i in range(min(int(e.grid_cases), n)):
            rows += [drive[i], ks[i].target.video] + [videos[m][i] for m in ("still", "prior", "pose", "e2e", "e2e_oracle")
                                                      if m in videos]
        times[f"eval_{kind}_s"] = time.time() - t0
    result["grid_rows"] = ["driving (RGB)", "target", "still", "prior", "pose (forced on quadrupeds)", "e2e", "e2e_oracle"]
    save_png(out / "grid.png", frame_grid(rows, scale=2))
    result["times"] = times
    times["total_s"] = time.time() - t_start
    write_text_atomic(out / "metrics.json", json.dumps(result, indent=1))
    if pack is not None:
        _repack(model_dir, pack, c, base, adapters, trained["e2e"], result, command, log)
    log(f"[done] {time.time() - t_start:.1f}s")
    return result


def _repack(model_dir: Path, pack: Path, c, base, adapters, e2e, result: dict, command: str, log) -> None:
    """The model folder again, with the e2e adapter added and the card's `e2e` section and checks."""
    from dreamactor_jax.sampling import packed
    from dreamactor_jax.toy import shipped
    from dreamactor_jax.toy import model as tm
    from dreamactor_jax.toy.pack import commit

    info = packed.read_info(model_dir)
    entries = {n: (lora, tm.lora_config(lc), {k: v for k, v in info["adapters"][n].items() if k not in ("file", "lora")})
               for n, (lora, lc) in adapters.items()}
    lora, lc = e2e
    entries["e2e"] = (lora, tm.lora_config(lc), {"variant": "e2e", "layout": "spatial", "pose_aug": False,
                                                "motion": "video", "steps": int(lc.steps), "seed": int(lc.seed)})
    files = packed.save(pack, mcfg=packed.model_config(info), base=base, adapters=entries,
                        default_adapter=info["default_adapter"], autoencoder=info["autoencoder"],
                        sampling=info.get("sampling"), text=info.get("text"), extra=info.get("extra"),
                        dtype=info.get("dtype", "bfloat16"))
    card = shipped.read_card(model_dir)
    card["files"] = files
    card["bytes"] = {f: (pack / f).stat().st_size for f in files}
    card["check"] = shipped.check_scores(pack)
    card["e2e"] = {"command": command, "commit": commit(), "device": result["device"], "jax": result["jax"],
                   "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "e2e_config": c.e2e.to_dict(),
                   "filter": result["filter"], "humanoid": result["humanoid"], "quadruped": result["quadruped"],
                   "lora": result["lora"], "times": result["times"]}
    write_text_atomic(pack / shipped.CARD_FILE, json.dumps(card, indent=1))
    log(f"[pack] wrote {pack} with adapters {sorted(entries)}")


def command_line(argv: list[str], pack: str | None) -> str:
    import shlex

    line = "python -m dreamactor_jax.toy.e2e " + " ".join(shlex.quote(a) for a in argv)
    return line.replace(str(Path(pack).parent), "{out}") if pack else line


def main(argv=None) -> int:
    from dreamactor_jax.toy import recipe
    from dreamactor_jax.toy.demo import Log
    from dreamactor_jax.toy.shipped import SHIPPED

    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="output folder (metrics.json, grid.png, log.txt)")
    ap.add_argument("--config", default="cpu", help="the toy recipe's variant cpu | gpu | ci, or FILE[:ARG] "
                    "(its e2e section and compute settings); --config.section.key=value overrides a value")
    ap.add_argument("--model", default=str(SHIPPED), help="the packed toy model with the pose adapter")
    ap.add_argument("--pack", help="write the model folder again, with the e2e adapter, into this new folder")
    a, overrides = ap.parse_known_args(argv)
    c = recipe.load(a.config, overrides)
    if a.pack and Path(a.pack).exists():
        raise FileExistsError(f"--pack {a.pack}: exists already (choose a new folder)")
    if not (Path(a.model) / "run.json").is_file():
        raise FileNotFoundError(f"--model {a.model}: not a packed toy model (no run.json)")
    log, out = Log(), Path(a.out)
    try:
        run(c, Path(a.model), out, pack=Path(a.pack) if a.pack else None, command=command_line(argv, a.pack), log=log)
    finally:
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out / "log.txt", "\n".join(log.lines) + "\n")
    return 0


if __name__ == "__main__":
    cli_main(main, sys.argv[1:])
