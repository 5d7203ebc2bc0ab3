"""The Video-Bench scorer interface: six dimensions, 1 to 5, one `VideoScore` per video.

The paper reports (sec. 4.1, tables 1-2) and filters pseudo pairs (appendix D: keep a pair when
the mean of the six is above 4) by Video-Bench's six human-aligned dimensions, each graded
1 very poor, 2 poor, 3 moderate, 4 good, 5 excellent. Every scorer answers the same way
(`eval.scorers.make_scorer` builds one; this module imports none of them):

    scorer = make_scorer("offline")                       # no network, no weights: a proxy
    scorer = make_scorer("gemini", model="gemini-2.5-pro", cache_dir="runs/judge_cache")
    scorer = make_scorer("openai", base_url="http://localhost:8000/v1", model="qwen2.5-vl")
    s = scorer.score("video.mp4", reference="ref.png")    # VideoScore; ScoreError if it cannot
    s.scores["imaging_quality"], s.mean, s.scorer

- "offline" (`proxy.OfflineScorer`): maps pixel statistics to the six dimensions; honest about
  being a proxy (its name says so, `docs/evaluation.md` gives the mapping). No key, no network.
- "gemini" (google-genai; key from GEMINI_API_KEY / GOOGLE_API_KEY) and "openai" (any
  OpenAI-compatible chat endpoint by `base_url`; key from OPENAI_API_KEY, optional for a local
  server): the MLLM judge (`judge.MLLMScorer`), with versioned prompts, Video-Bench's frame
  sampling, validated JSON answers, retries and an on-disk cache.
Options common to the judges: `model=`, `cache_dir=`, `transport=` (a callable standing in for the
network in tests), `timeout_s=`, `max_attempts=`, `workers=` (questions asked at once).
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Protocol, runtime_checkable

DIMENSIONS = ("imaging_quality", "aesthetic_quality", "temporal_consistency",
              "motion_smoothness", "background_consistency", "subject_consistency")
LABELS = {"imaging_quality": "Imaging Quality", "aesthetic_quality": "Aesthetic Quality",
          "temporal_consistency": "Temporal Consistency", "motion_smoothness": "Motion Smoothness",
          "background_consistency": "Background Consistency", "subject_consistency": "Subject Consistency"}


class ScoreError(ValueError):
    """This video cannot be scored (unreadable, the answer is not valid JSON after retries, ...).

    `reason` is a short word for the report's skip table (input, malformed, rate_limited, timeout,
    server, refused, auth, request, ...)."""

    def __init__(self, message: str, reason: str = "input"):
        super().__init__(message)
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class VideoScore:
    scores: dict[str, float]   # every name of DIMENSIONS -> a value in [1, 5]
    scorer: str                # what scored it, with version, e.g. "gemini:gemini-2.5-flash:prompts-v1"
    reasons: dict[str, str] = dataclasses.field(default_factory=dict, compare=False)

    def __post_init__(self):
        missing = [d for d in DIMENSIONS if d not in self.scores]
        extra = [k for k in self.scores if k not in DIMENSIONS]
        if missing or extra:
            raise ValueError(f"VideoScore: needs exactly the six dimensions (missing {missing}, unknown {extra})")
        for d in DIMENSIONS:
            v = self.scores[d]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not 1 <= v <= 5:
                raise ValueError(f"VideoScore: {d} must be a number in [1, 5], got {v!r}")
        object.__setattr__(self, "scores", {d: float(self.scores[d]) for d in DIMENSIONS})

    @property
    def mean(self) -> float:
        """The mean of the six dimensions (the paper's filter keeps pairs with mean > 4)."""
        return sum(self.scores.values()) / len(DIMENSIONS)

    def to_json(self) -> dict:
        return {"scorer": self.scorer, "scores": dict(self.scores), "mean": self.mean, "reasons": dict(self.reasons)}

    @classmethod
    def from_json(cls, d: dict) -> "VideoScore":
        return cls(dict(d["scores"]), str(d["scorer"]), dict(d.get("reasons") or {}))


@runtime_checkable
class Scorer(Protocol):
    name: str

    def score(self, video: str | os.PathLike, *, reference: str | os.PathLike | None = None) -> VideoScore:
        ...
