"""How much a saved toy prior reads the motion half of the in-context input (issue 9 diagnostic).

    python benchmarks/toy_influence.py --prior DIR [--config gpu] [--cases 16]
    python benchmarks/toy_influence.py --tiny      # CPU smoke run on the shipped toy model, 2 cases

Prints `toy.evaluate.motion_influence` (relative change of the predicted velocity of the character
video when the driving pose videos of the held-out cases are swapped) for the spatial and the
temporal layout, without an adapter. Runs on CPU (xla attention) or GPU.
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from dreamactor_jax.toy import model as tm
from dreamactor_jax.toy.recipe import load as load_config
from dreamactor_jax.toy.evaluate import motion_influence
from dreamactor_jax.toy.pretrain import load_prior
from dreamactor_jax.toy.world import WorldConfig, heldout_cases
from dreamactor_jax.utils import cli_main


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prior", default=None, help="a folder written by the demo's --save-prior (or a packed toy model)")
    ap.add_argument("--config", default="gpu", help="the toy config the prior was trained with")
    ap.add_argument("--cases", type=int, default=16)
    ap.add_argument("--tiny", action="store_true", help="CPU smoke run: the shipped toy model as the prior, 2 cases")
    a = ap.parse_args(argv)
    if a.tiny:
        a.prior, a.config, a.cases = str(Path(__file__).resolve().parents[1] / "dreamactor_jax/toy/pretrained"), "gpu", 2
    if not a.prior:
        raise ValueError("--prior: required (a saved prior or a packed toy model), unless --tiny")
    c = load_config(a.config)
    base = load_prior(a.prior, tm.mmdit_config(c.model))
    cases = heldout_cases(a.cases, WorldConfig(**dict(c.world)))
    out = {layout: motion_influence(c, cases, base, None, None, layout=layout, max_cases=a.cases)
           for layout in ("spatial", "temporal")}
    print(json.dumps({"prior": a.prior, "config": a.config, "cases": a.cases, "influence": out}, indent=1))
    return 0


if __name__ == "__main__":
    cli_main(main, sys.argv[1:])
