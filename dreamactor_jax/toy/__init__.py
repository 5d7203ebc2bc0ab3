"""The toy world (issue 9): procedural characters and motions with exact ground truth, metrics,
and the small-scale training and evaluation that prove the method learns.

`world` renders any character performing any motion (`render_clip`, `cross_case`), `metrics`
scores generated videos against those exact targets.
"""
