"""`make_scorer(kind)`: a Video-Bench scorer by name (the interface is `eval.videobench`).

Kept apart from `videobench.py` so that the interface the scorers implement imports none of them
(`proxy` and `judge` import `videobench`, and this module imports them).
"""

from __future__ import annotations

from dreamactor_jax.eval.videobench import Scorer

KINDS = ("offline", "gemini", "openai")


def make_scorer(kind: str, **options) -> Scorer:
    """A scorer of `kind` ("offline", "gemini" or "openai"); options in `eval.videobench`'s docstring."""
    if kind == "offline":
        from dreamactor_jax.eval.proxy import OfflineScorer

        return OfflineScorer(**options)
    if kind in ("gemini", "openai"):
        from dreamactor_jax.eval.judge import make_judge

        return make_judge(kind, **options)
    raise ValueError(f"scorer kind must be one of {'/'.join(KINDS)}, got {kind!r}")
