"""Scores synthesized pseudo-pairs on Video-Bench's six dimensions and keeps those above a
threshold (paper app. D: mean > 4), writing the pair list that tools/preprocess.py takes.

    python tools/filter_pairs.py --units units/ --scorer gemini --threshold 4 -o pairs.jsonl
    python tools/filter_pairs.py --units units/ --scorer offline --threshold 3.5 -o pairs.jsonl

The scorer is always explicit: `offline` (no network, no weights), `gemini` (key from
GEMINI_API_KEY / GOOGLE_API_KEY) or `openai` (any OpenAI-compatible endpoint: --base-url, --model,
key from OPENAI_API_KEY); see dreamactor_jax/eval/scorers.py. Each unit's V_o is scored with its
reference I_o; scores are saved in the unit (scores.json, per scorer), so a second run, e.g. at
another --threshold, asks the scorer nothing (--rescore to ask again). Outputs (atomic):
`--manifest` (default UNITS/manifest.jsonl: every unit, its scores, mean and verdict) and `-o`
(default UNITS/pairs.jsonl: kept units as {"id", "video": source.mp4, "driving": generated.mp4},
Eq. 4's (V_o, I_ref = V_src[0], V_src)). Videos the scorer cannot score are counted and dropped.
Exit code 1 when no unit is kept. Next:

    python tools/preprocess.py --config configs/e2e.py --input pairs.jsonl --output shards-e2e/ ...
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--units", required=True, help="the folder tools/synthesize_pairs.py wrote")
    p.add_argument("--scorer", required=True, choices=("offline", "gemini", "openai"), help="who scores")
    p.add_argument("--threshold", type=float, default=4.0, help="keep units whose mean is greater (paper: 4)")
    p.add_argument("-o", "--output", help="kept pairs for tools/preprocess.py (default UNITS/pairs.jsonl)")
    p.add_argument("--manifest", help="every unit with its scores (default UNITS/manifest.jsonl)")
    p.add_argument("--rescore", action="store_true", help="score again even where scores are saved")
    p.add_argument("--workers", type=int, default=1, help="scorer calls at once (remote MLLMs)")
    p.add_argument("--model", help="scorer model name (gemini / openai)")
    p.add_argument("--base-url", help="openai: the endpoint")
    p.add_argument("--cache-dir", help="scorer answer cache folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if not 1.0 <= args.threshold <= 5.0:
        raise ValueError(f"--threshold {args.threshold}: scores are in [1, 5]")
    from dreamactor_jax.e2e import filter as flt
    from dreamactor_jax.e2e import units as units_lib

    root = Path(args.units)
    units = units_lib.list_units(root)
    if not units:
        raise ValueError(f"--units {root}: holds no complete unit (run tools/synthesize_pairs.py first)")
    options = {k: v for k, v in (("model", args.model), ("base_url", args.base_url),
                                 ("cache_dir", args.cache_dir)) if v is not None}
    scorer = flt.make_scorer(args.scorer, **options)
    results, rep = flt.score_units(units, scorer, rescore=args.rescore, workers=args.workers,
                                   progress=not args.quiet)
    rows = flt.manifest_rows(units, results, scorer.name, args.threshold, rep.failed)
    out = Path(args.output) if args.output else root / "pairs.jsonl"
    manifest = Path(args.manifest) if args.manifest else root / "manifest.jsonl"
    pairs = flt.pair_rows(rows, out.parent)
    flt.write_jsonl(manifest, rows)
    flt.write_jsonl(out, pairs)

    means = [r["mean"] for r in rows]
    table = ", ".join(f"> {t:g}: {n}" for t, n in flt.kept_at(means, (3.0, 3.5, 4.0, 4.5)).items())
    print(f"{len(units)} units; scorer {scorer.name}: {rep.scored} scored now, {rep.cached} from saved scores, "
          f"{len(rep.failed)} could not be scored")
    for uid, why in list(rep.failed.items())[:5]:
        print(f"  not scored: {uid}: {why}")
    print(f"kept {len(pairs)}/{len(units)} with mean > {args.threshold:g} (other thresholds would keep {table})")
    print(f"wrote {out} and {manifest}")
    if not pairs:
        print(f"error: no unit has a mean above {args.threshold:g}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    from dreamactor_jax.utils import cli_main

    cli_main(main)
