"""Evaluation in the paper's way: a benchmark manifest (AWBench-like), generation of every pair,
Video-Bench's six dimensions (an MLLM judge, or an offline proxy), offline metrics, a report.

- manifest.py: the bench (drivings, references, tags, pairs), validated.
- videobench.py: the scorer interface (DIMENSIONS, VideoScore, ScoreError, Scorer);
  scorers.py: make_scorer(kind), which builds one.
- prompts.py, frames.py, judge.py, transports.py: the MLLM judge (Gemini / OpenAI-compatible).
- proxy.py: the offline scorer (pixel statistics mapped to the six dimensions).
- pixels.py, temporal.py, masks.py, motion.py, fidelity.py, features.py: offline metrics.
- generate.py: the one place that calls the sampler of launch/sample.py.
- cases.py, runner.py: per-case work (metrics, scores, contact sheets), resumable and sharded.
- report.py: Markdown and HTML reports, per-tag tables, A/B comparison.
`tools/evaluate.py` is the command; docs/evaluation.md the guide.
"""
