"""The bench run: generate (or find) every case's video, score it, keep what is finished.

Output folder layout (everything written atomically, so an interrupted run leaves no half file):

    OUT/run.json                 what was run (checkpoint, sampler flags, scorer, bench)
    OUT/cases/<pair>/video.mp4   the generated video (generation only)
    OUT/cases/<pair>/generate.log
    OUT/cases/<pair>/result.json the case's record (`cases.Evaluator.evaluate`)
    OUT/cases/<pair>/contact.png
    OUT/poses/                   cached driving / reference poses
    OUT/report.md, report.html, results.jsonl, summary.json   (report.py)

Resuming: a case whose `result.json` is `ok` with the same signature (video hash, scorer,
metric settings) is kept; an existing video is never generated again; skipped cases are tried
again. `shard=(i, n)` takes pairs i, i + n, i + 2n, ... of the manifest, so n hosts or n
processes (one per device: `CUDA_VISIBLE_DEVICES=i ... --shard i/n`) split a bench; each writes
its own cases, and the report covers every case finished so far.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path

from dreamactor_jax.eval.cases import Evaluator, sha256_file
from dreamactor_jax.eval.manifest import Bench, Pair
from dreamactor_jax.utils import write_text_atomic

VIDEO_EXTS = (".mp4", ".mov", ".webm", ".mkv", ".avi", ".gif")


def parse_shard(text: str | None) -> tuple[int, int]:
    if not text:
        return 0, 1
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard {text!r}: expected i/n, e.g. 0/4") from None
    if not (n >= 1 and 0 <= i < n):
        raise ValueError(f"--shard {text}: need n >= 1 and 0 <= i < n")
    return i, n


def shard_pairs(bench: Bench, shard: tuple[int, int]) -> list[Pair]:
    i, n = shard
    return list(bench.pairs[i::n])


def find_video(folder: Path, pair_id: str) -> Path | None:
    """A video for `pair_id` in a folder of another system's outputs: `<id>.<ext>`, `<id>/video.<ext>`,
    or this tool's own layout `cases/<id>/video.mp4`."""
    for cand in ([folder / f"{pair_id}{e}" for e in VIDEO_EXTS] + [folder / pair_id / f"video{e}" for e in VIDEO_EXTS]
                 + [folder / "cases" / pair_id / "video.mp4"]):
        if cand.is_file():
            return cand
    return None


def read_record(path: Path) -> dict | None:
    try:
        rec = json.loads(path.read_text("utf-8"))
        return rec if isinstance(rec, dict) else None
    except (OSError, ValueError):
        return None


def write_record(path: Path, rec: dict) -> None:
    write_text_atomic(path, json.dumps(rec, indent=1, ensure_ascii=False, default=_json_default))


def _json_default(o):
    import numpy as np

    if isinstance(o, (np.floating, np.integer, np.bool_)):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def run_cases(bench: Bench, out: str | os.PathLike, evaluator: Evaluator, *, generator=None,
              videos: str | os.PathLike | None = None, shard: tuple[int, int] = (0, 1),
              progress: bool = True) -> dict:
    """Generates (with `generator`) or finds (in `videos`) each case of the shard and scores it.

    Returns counts: {"cases", "kept", "generated", "scored", "skipped"}."""
    from tqdm import tqdm

    out = Path(out)
    pairs = shard_pairs(bench, shard)
    counts = {"cases": len(pairs), "kept": 0, "generated": 0, "scored": 0, "skipped": 0}
    bar = tqdm(pairs, unit="case", disable=not progress, file=sys.stderr,
               desc=f"shard {shard[0]}/{shard[1]}" if shard[1] > 1 else "cases")
    for pair in bar:
        case = out / "cases" / pair.id
        result = case / "result.json"
        d, r = bench.case(pair)
        bar.set_postfix_str(pair.id[:40])
        problem = input_problem(bench, pair)
        if problem:
            write_record(result, _skip(bench, pair, "input", problem))
            counts["skipped"] += 1
            continue
        if generator is not None:
            video = case / "video.mp4"
            if not video.is_file():
                try:
                    generator(pair, d, r, video, case / "generate.log")
                    counts["generated"] += 1
                except KeyboardInterrupt:
                    raise
                except Exception as e:  # noqa: BLE001 - one case's failure is its skip, never the run's end
                    write_record(result, _skip(bench, pair, "generate", _one_line(e), case / "generate.log"))
                    counts["skipped"] += 1
                    continue
        else:
            video = find_video(Path(videos), pair.id)
            if video is None:
                write_record(result, _skip(bench, pair, "input", f"no video for this pair in {videos}"))
                counts["skipped"] += 1
                continue
        old = read_record(result)
        if old and old.get("status") == "ok" and old.get("signature") == evaluator.signature(sha256_file(video)):
            counts["kept"] += 1
            continue
        try:
            rec = evaluator.evaluate(pair, video)
        except KeyboardInterrupt:
            raise
        except Exception as e:  # noqa: BLE001 - counted and reported with its traceback in the log
            traceback.print_exc(file=sys.stderr)
            rec = _skip(bench, pair, "evaluate", _one_line(e))
        write_record(result, rec)
        counts["skipped" if rec["status"] != "ok" else "scored"] += 1
    bar.close()
    return counts


def input_problem(bench: Bench, pair: Pair) -> str | None:
    """Why a pair cannot be run at all (a missing reference or driving file), or None."""
    d, r = bench.case(pair)
    if not r.path.is_file():
        return f"reference {r.id}: missing file {r.path}"
    files = [p for p in (d.path, d.pose) if p is not None]
    if not any(p.is_file() for p in files):
        return f"driving {d.id}: missing file {files[0]}"
    return None


def _one_line(e: BaseException) -> str:
    msg = str(e).splitlines()[0] if str(e) else ""
    return f"{type(e).__name__}: {msg}"[:400] if not isinstance(e, (ValueError, FileNotFoundError)) else msg[:400]


def _skip(bench: Bench, pair: Pair, stage: str, reason: str, log: Path | None = None) -> dict:
    rec = {"pair": pair.id, "driving": pair.driving, "reference": pair.reference, "tags": bench.tags(pair),
           "status": "skipped", "skip": {"stage": stage, "reason": reason}, "score": None, "metrics": {},
           "metric_skips": {}, "flags": []}
    if log is not None and log.is_file():
        rec["skip"]["log"] = str(log)
    return rec


def write_run_info(out: Path, info: dict) -> None:
    """run.json: what produced this folder (merged with an earlier one's keys)."""
    old = read_record(out / "run.json") or {}
    write_text_atomic(out / "run.json", json.dumps({**old, **info}, indent=1, default=_json_default))
