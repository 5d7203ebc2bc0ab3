"""Evaluates a model (or any folder of videos) on a bench, in the paper's way: `python tools/evaluate.py`.

    # generate every pair with launch/sample.py's sampler, score, report (sampler flags after --):
    python tools/evaluate.py --checkpoint runs/pose --bench benchmarks/awbench_example.jsonl \
        --root ../shared/assets --out runs/eval/pose -- --steps 30 --text-embeddings prompts.safetensors
    # score another system's outputs (<pair id>.mp4 in a folder) on the same bench, and compare:
    python tools/evaluate.py --score-only outputs/wan_animate --bench bench.jsonl --out runs/eval/wan \
        --compare runs/eval/pose --label Wan-Animate --compare-label ours
    # the MLLM judge (Video-Bench's six dimensions): --scorer gemini (GEMINI_API_KEY) or
    #   --scorer openai --base-url http://localhost:8000/v1 --model Qwen2.5-VL-72B-Instruct
    # several hosts / devices: --shard i/n on each (CUDA_VISIBLE_DEVICES=i), then --report-only

Every case is kept once finished (re-running resumes); a case that cannot be made or scored
(missing reference, unreadable video, nobody found, no valid answer from the judge) is a counted,
reported skip. The default scorer, `offline`, is a pixel-statistics proxy of the six dimensions
(no key, no network); the paper's numbers come from an MLLM judge. docs/evaluation.md has the
manifest format, the metrics, and how to build a full AWBench-like bench.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="Flags after `--` go to launch/sample.py for every pair (e.g. -- --steps 30).")
    p.add_argument("--bench", required=True, help="the bench manifest (.jsonl; docs/evaluation.md)")
    p.add_argument("--root", help="folder the manifest's relative paths start from (default: the manifest's folder)")
    p.add_argument("--out", required=True, help="output folder (cases, report); a re-run resumes in it")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="training run to generate every pair with (launch/sample.py's sampler)")
    src.add_argument("--score-only", metavar="VIDEOS", help="score a folder of videos named <pair id>.mp4 instead")
    src.add_argument("--report-only", action="store_true", help="only rebuild the report from --out")
    p.add_argument("--shard", help="i/n: run pairs i, i+n, i+2n, ... (hosts or devices)")
    p.add_argument("--scorer", default="offline", choices=("offline", "gemini", "openai"),
                   help="offline (proxy, no network), gemini (GEMINI_API_KEY) or openai (--base-url, OPENAI_API_KEY)")
    p.add_argument("--model", help="the judge model (default gemini-2.5-pro / gpt-4o-2024-08-06)")
    p.add_argument("--base-url", help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1")
    p.add_argument("--no-json-mode", action="store_true", help="openai: do not send response_format json_object")
    p.add_argument("--judge-cache", help="judge answer cache (default OUT/judge_cache)")
    p.add_argument("--judge-timeout", type=float, default=120.0, help="seconds per judge request")
    p.add_argument("--judge-workers", type=int, default=1, help="questions asked at once per video (up to 6)")
    p.add_argument("--pose-estimator", default="mediapipe", choices=("mediapipe", "dwpose", "none"),
                   help="re-estimates poses for motion fidelity and body shape")
    p.add_argument("--det-model", help="DWPose detector ONNX")
    p.add_argument("--pose-model", help="DWPose whole-body ONNX")
    p.add_argument("--segmenter", default="auto", choices=("auto", "mediapipe", "motion"), help="subject masks")
    p.add_argument("--analysis-side", type=int, default=512, help="frames shrunk to this longer side for metrics")
    p.add_argument("--dino", help="local DINO / DINOv2 transformers folder: subject consistency")
    p.add_argument("--clip", help="local CLIP transformers folder: similarity to the reference")
    p.add_argument("--i3d", help="I3D weights (.safetensors, pytorch-i3d layout): FVD of outputs vs drivings")
    p.add_argument("--device", default="cpu", help="torch device of the feature models")
    p.add_argument("--compare", help="another evaluate --out folder: an A/B section in the report")
    p.add_argument("--label", default="A", help="name of this run in the A/B section")
    p.add_argument("--compare-label", default="B", help="name of the --compare run")
    p.add_argument("--title", help="report title (default: the bench's name)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def _split(argv):
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1:]
    return argv, []


def _fvd(model, bench, out: Path) -> dict:
    from dreamactor_jax.eval.features import bench_fvd
    from dreamactor_jax.eval.report import load_records

    res = bench_fvd(model, bench, list(load_records(bench, out).values()))
    res["detector"] = "pytorch-i3d (1024-d pooled features); not comparable with TF-hub I3D FVDs"
    return res


def main(argv=None) -> int:
    own, sample_args = _split(argv)
    args = parse_args(own)
    from dreamactor_jax.eval.manifest import load_bench
    from dreamactor_jax.eval.report import write_report
    from dreamactor_jax.eval.runner import parse_shard, write_run_info
    from dreamactor_jax.utils import write_text_atomic

    bench = load_bench(args.bench, args.root)
    out = Path(args.out)
    shard = parse_shard(args.shard)
    if sample_args and not args.checkpoint:
        raise ValueError(f"sampler flags after -- ({' '.join(sample_args)}) need --checkpoint")
    if args.compare and not (Path(args.compare) / "cases").is_dir():
        raise ValueError(f"--compare {args.compare}: not an evaluate output folder (no cases/)")
    if args.score_only and not Path(args.score_only).is_dir():
        raise FileNotFoundError(f"--score-only {args.score_only}: no such folder")
    i3d = None
    if args.i3d:  # a bad weights file is an error now, not after the run
        from dreamactor_jax.eval.i3d import load_i3d

        i3d = load_i3d(args.i3d, device=args.device)
    for flag, folder in (("--dino", args.dino), ("--clip", args.clip)):
        if folder:
            from dreamactor_jax.eval.features import check_folder

            check_folder(folder, flag)
    missing = bench.missing_files()
    if missing:
        print(f"warning: {len(missing)} file(s) named by {args.bench} do not exist; their cases will be skipped: "
              + "; ".join(missing[:3]) + (" ..." if len(missing) > 3 else ""), file=sys.stderr)
    info = {"bench": str(bench.source), "root": args.root, "checkpoint": args.checkpoint,
            "score_only": args.score_only, "sampler_flags": " ".join(sample_args), "scorer": args.scorer}

    if args.report_only:  # the report names what made the cases, not this command
        from dreamactor_jax.eval.runner import read_record

        info = read_record(out / "run.json") or {"bench": str(bench.source)}
    else:
        from dreamactor_jax.eval.cases import Evaluator, MetricOptions
        from dreamactor_jax.eval.runner import run_cases
        from dreamactor_jax.eval.scorers import make_scorer

        generator = None
        seg = {}
        if args.checkpoint:
            from dreamactor_jax.eval.generate import Generator

            generator = Generator(args.checkpoint, sample_args)
            seg = generator.settings
            print(f"loading {args.checkpoint} ...", file=sys.stderr)
            generator.preload()
        opts = MetricOptions(estimator=args.pose_estimator, det_model=args.det_model, pose_model=args.pose_model,
                             segmenter=args.segmenter, analysis_side=args.analysis_side, fit=seg.get("fit"),
                             segment_frames=seg.get("segment_frames"), overlap=seg.get("overlap"),
                             dino=args.dino, clip=args.clip, device=args.device)
        if args.scorer == "offline":
            scorer = make_scorer("offline", segmenter=args.segmenter)
        else:
            scorer = make_scorer(args.scorer, model=args.model, base_url=args.base_url,
                                 cache_dir=args.judge_cache or out / "judge_cache", timeout_s=args.judge_timeout,
                                 workers=args.judge_workers,
                                 **({"json_mode": not args.no_json_mode} if args.scorer == "openai" else {}))
        info["scorer"] = scorer.name
        write_run_info(out, info)
        counts = run_cases(bench, out, Evaluator(bench, out, scorer, opts), generator=generator,
                           videos=args.score_only, shard=shard, progress=not args.quiet)
        print(f"shard {shard[0]}/{shard[1]}: {counts['cases']} case(s): {counts['generated']} generated, "
              f"{counts['scored']} scored, {counts['kept']} kept from before, {counts['skipped']} skipped",
              file=sys.stderr)
        if getattr(scorer, "stats", None):
            print("judge: " + ", ".join(f"{k} {v}" for k, v in sorted(scorer.stats.items())), file=sys.stderr)
    if args.i3d:
        try:
            res = _fvd(i3d, bench, out)
            write_text_atomic(out / "fvd.json", json.dumps(res, indent=1))
            info["FVD"] = f"{res['fvd']:.1f} ({res['videos'][0]} outputs vs {res['videos'][1]} drivings, {res['detector']})"
        except ValueError as e:  # the run's cases are kept and reported; only FVD is missing
            info["FVD"] = f"not computed: {e}"
            print(f"warning: FVD not computed: {e}", file=sys.stderr)
    summ = write_report(bench, out, title=args.title or "", compare=args.compare, label=args.label,
                        compare_label=args.compare_label, info=info)
    vb = summ["video_bench"]
    mean = f"{vb['mean']:.2f}" if vb["mean"] is not None else "–"
    print(f"{out}/report.md: {summ['scored']} scored, {summ['skipped']} skipped, {summ['pending']} pending; "
          f"mean of the six dimensions {mean} ({', '.join(summ['scorer']) or 'no scorer'})")
    return 0


if __name__ == "__main__":
    from dreamactor_jax.utils import cli_main

    cli_main(main)
