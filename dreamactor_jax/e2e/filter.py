"""Quality filtering of pseudo-pairs (paper app. D): Video-Bench scores, keep mean > threshold.

Every unit's synthesized video `V_o` is scored, with its reference `I_o`, on the six Video-Bench
dimensions (1-5 each) by a scorer of `dreamactor_jax.eval.videobench` (an MLLM through
google-genai or an OpenAI-compatible endpoint, or the offline scorer; the kind is always chosen
explicitly). Units whose mean is greater than the threshold (paper: 4) are kept.

Scores are saved per unit and per scorer (`<unit>/scores.json`, keyed by the scorer's name, which
carries its model and prompt version), so filtering again at another threshold makes no scorer
call (`rescore=True` forces one). The manifest (`manifest.jsonl`, every unit with its scores, mean
and verdict) and the pair list for `tools/preprocess.py` (kept units only, Eq. 4: the source segment
`V_src` is the training video, its first frame the reference `I_ref`, and `V_o` the driving video)
are built from those files. A video the scorer cannot score is counted and not kept.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from dreamactor_jax.e2e import units as units_lib
from dreamactor_jax.utils import write_text_atomic

# Video-Bench's six dimensions (paper app. D); eval.videobench.DIMENSIONS names the same six.
DIMENSIONS = ("imaging_quality", "aesthetic_quality", "temporal_consistency",
              "motion_smoothness", "background_consistency", "subject_consistency")
PAPER_THRESHOLD = 4.0
SCORER_KINDS = ("offline", "gemini", "openai")


def make_scorer(kind: str, **options) -> Any:
    """The Video-Bench scorer of `kind` (`dreamactor_jax.eval.scorers.make_scorer`)."""
    if kind not in SCORER_KINDS:
        raise ValueError(f"--scorer {kind!r}: one of {', '.join(SCORER_KINDS)}")
    try:
        from dreamactor_jax.eval.scorers import make_scorer as make
    except ImportError as e:
        raise ValueError(f"--scorer {kind}: the Video-Bench scorer (dreamactor_jax.eval.scorers) cannot be "
                         f"imported ({e})") from None
    return make(kind, **options)


def checked_scores(score: Any) -> dict:
    """{dimension: value} of a scorer's answer (a `VideoScore`), or ValueError if it lacks a
    dimension or a value is not a number in [1, 5]."""
    scores = getattr(score, "scores", None)
    if not isinstance(scores, Mapping):
        raise ValueError(f"scorer answer {type(score).__name__}: has no scores mapping")
    out = {}
    for d in DIMENSIONS:
        v = scores.get(d)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not 1 <= v <= 5:
            raise ValueError(f"scorer answer: {d} = {v!r}, expected a number in [1, 5]")
        out[d] = float(v)
    return out


def mean_score(scores: Mapping[str, float]) -> float:
    """The mean of the six dimensions."""
    return sum(float(scores[d]) for d in DIMENSIONS) / len(DIMENSIONS)


def is_kept(mean: float | None, threshold: float = PAPER_THRESHOLD) -> bool:
    """The paper's rule: kept when the mean is greater than the threshold (an unscored unit is not)."""
    return mean is not None and mean > threshold


def filter_by_threshold(means: Mapping[str, float | None], threshold: float = PAPER_THRESHOLD
                        ) -> tuple[list[str], list[str]]:
    """(kept ids, dropped ids), each sorted, of {unit id: mean score or None (unscored)}."""
    kept = sorted(k for k, m in means.items() if is_kept(m, threshold))
    return kept, sorted(set(means) - set(kept))


def kept_at(means: Iterable[float | None], thresholds: Sequence[float]) -> dict[float, int]:
    """How many units each threshold would keep (to choose one without re-scoring)."""
    means = list(means)
    return {t: sum(is_kept(m, t) for m in means) for t in thresholds}


# ----------------------------------------------------------------------------------------------
# scoring, cached per unit
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass
class ScoreReport:
    scored: int = 0                                                     # scorer calls made now
    cached: int = 0                                                     # scores read from scores.json
    failed: dict[str, str] = dataclasses.field(default_factory=dict)   # unit id -> reason


def score_unit(unit: units_lib.Unit, scorer: Any, rescore: bool = False) -> tuple[dict | None, str]:
    """(entry {"scores", "mean"} or None, how: "cached" / "scored" / the failure reason)."""
    saved = units_lib.read_scores(unit)
    entry = saved.get(scorer.name)
    if entry is not None and not rescore:
        try:
            return {"scores": checked_scores(_Answer(entry.get("scores"))), "mean": float(entry["mean"])}, "cached"
        except (ValueError, KeyError, TypeError, AttributeError):
            pass  # a damaged entry is scored again
    try:
        scores = checked_scores(scorer.score(unit.generated, reference=unit.reference))
    except ValueError as e:  # eval.videobench.ScoreError is a ValueError
        return None, str(e).splitlines()[0][:200] or type(e).__name__
    entry = {"scores": scores, "mean": mean_score(scores)}
    saved[scorer.name] = entry
    units_lib.write_scores(unit, saved)
    return entry, "scored"


@dataclasses.dataclass(frozen=True)
class _Answer:
    scores: Any


def score_units(units: Sequence[units_lib.Unit], scorer: Any, *, rescore: bool = False, workers: int = 1,
                progress: bool = True) -> tuple[dict[str, dict | None], ScoreReport]:
    """Scores every unit (cached scores reused unless `rescore`); ({unit id: entry or None}, report).

    `workers` > 1 runs that many scorer calls at once (a remote MLLM answers slowly).
    """
    from tqdm.auto import tqdm

    if workers < 1:
        raise ValueError(f"--workers {workers}: must be >= 1")
    results: dict[str, dict | None] = {}
    report = ScoreReport()
    bar = tqdm(total=len(units), desc=f"score ({scorer.name})", unit="unit", disable=not progress)

    def one(u):
        return u.id, score_unit(u, scorer, rescore)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for uid, (entry, how) in pool.map(one, units):
            results[uid] = entry
            if how == "cached":
                report.cached += 1
            elif how == "scored":
                report.scored += 1
            else:
                report.failed[uid] = how
            bar.update(1)
    bar.close()
    return results, report


# ----------------------------------------------------------------------------------------------
# manifest and pair list
# ----------------------------------------------------------------------------------------------


def manifest_rows(units: Sequence[units_lib.Unit], results: Mapping[str, dict | None], scorer_name: str,
                  threshold: float, failed: Mapping[str, str] | None = None) -> list[dict]:
    """One row per unit: paths, source and reference, its scores and mean, and whether it is kept."""
    rows = []
    for u in units:
        entry = results.get(u.id)
        src, ref = u.meta.get("source") or {}, u.meta.get("reference") or {}
        row = {"id": u.id, "source": str(u.source), "generated": str(u.generated), "reference": str(u.reference),
               "source_id": src.get("id"), "reference_id": ref.get("id"), "reference_tags": ref.get("tags", []),
               "scorer": scorer_name, "scores": entry and entry["scores"],
               "mean": entry and round(entry["mean"], 6), "threshold": threshold,
               "kept": is_kept(entry and entry["mean"], threshold)}
        if failed and u.id in failed:
            row["error"] = failed[u.id]
        rows.append(row)
    return rows


def pair_rows(rows: Sequence[Mapping], relative_to: str | os.PathLike) -> list[dict]:
    """Kept rows as `tools/preprocess.py` manifest rows (paths relative to the manifest's folder):
    `video` = V_src (target, first frame = I_ref), `driving` = V_o. No `reference`: I_o is not I_ref."""
    base = Path(relative_to)
    rel = lambda p: os.path.relpath(Path(p).absolute(), base.absolute())  # noqa: E731
    return [{"id": r["id"], "video": rel(r["source"]), "driving": rel(r["generated"]), "mean": r["mean"]}
            for r in rows if r["kept"]]


def write_jsonl(path: str | os.PathLike, rows: Iterable[Mapping]) -> None:
    write_text_atomic(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
