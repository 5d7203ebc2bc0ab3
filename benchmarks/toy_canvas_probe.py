"""Upper-bound probe for the toy study (issue 9): train *all* parameters on an in-context layout.

    python benchmarks/toy_canvas_probe.py --config cpu --layout spatial --steps 300 [--prior DIR]
    python benchmarks/toy_canvas_probe.py --tiny   # CPU smoke run (the `ci` config, 2 steps)

Starts from a saved prior (`--prior`, from the demo's --save-prior) or from scratch, trains every
parameter (not a LoRA) on the pose clips in the given layout, and prints the loss and
`toy.evaluate.motion_influence` on held-out cases before and after. If even full training does
not make the model read its skeleton input, the toy canvas is the limit, not the low-rank adapter.
"""

import argparse
import functools
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

from dreamactor_jax.models import mmdit  # noqa: E402
from dreamactor_jax.toy import data as toy_data  # noqa: E402
from dreamactor_jax.toy import model as tm  # noqa: E402
from dreamactor_jax.toy.adapter import batch_from  # noqa: E402
from dreamactor_jax.toy.recipe import load as load_config  # noqa: E402
from dreamactor_jax.toy.evaluate import motion_influence  # noqa: E402
from dreamactor_jax.toy.pretrain import flow_config, load_prior, optim_config, prior_loss  # noqa: E402
from dreamactor_jax.toy.world import WorldConfig, heldout_cases  # noqa: E402
from dreamactor_jax.train.optim import make_optimizer  # noqa: E402
from dreamactor_jax.utils import cli_main  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="cpu")
    ap.add_argument("--layout", default="spatial", choices=("spatial", "temporal"))
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--prior", default=None, help="start from this saved prior (default: from scratch)")
    ap.add_argument("--tiny", action="store_true", help="CPU smoke run: the `ci` toy config, 2 steps")
    a = ap.parse_args(argv)
    if a.tiny:
        a.config, a.steps = "ci", 2
    c = load_config(a.config)
    cfg, wcfg, s = tm.mmdit_config(c.model), WorldConfig(**dict(c.world)), c.lora
    params = load_prior(a.prior, cfg) if a.prior else mmdit.init_params(cfg, jax.random.PRNGKey(0))
    d = c.data
    data = toy_data.pose_set(wcfg, int(d.pose_clips), num_chars=int(d.num_chars), num_motions=int(d.num_motions),
                             aug_copies=int(d.aug_copies), seed=int(c.seed), workers=int(d.workers))
    dev = {k: jnp.asarray(data[k]) for k in ("video", "pose_aug")}
    cases = heldout_cases(int(c.eval.cases), wcfg)
    s = s.copy_and_resolve_references()
    s.steps = a.steps  # the warm-up and cosine span this run
    ocfg = optim_config(s)
    opt, flow, spec = make_optimizer(ocfg), flow_config(c), tm.text_spec(c.model)

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def step(params, opt_state, key):
        ki, kb, kl = jax.random.split(key, 3)
        idx = jax.random.randint(ki, (int(s.batch),), 0, dev["video"].shape[0])
        video, pose, ref = batch_from(dev, idx, kb, "pose_aug")
        tgt, cond, mask = tm.build(a.layout, video, pose, ref)
        loss, g = jax.value_and_grad(
            lambda p: prior_loss(p, cfg, spec, tgt, cond, mask, kl, flow, layout=a.layout))(params)
        up, opt_state = opt.update(g, opt_state, params)
        return optax.apply_updates(params, up), opt_state, loss

    before = motion_influence(c, cases, params, None, None, layout=a.layout)
    opt_state, key, losses, t0 = opt.init(params), jax.random.PRNGKey(7), [], time.time()
    for i in range(a.steps):
        params, opt_state, loss = step(params, opt_state, jax.random.fold_in(key, i))
        losses.append(loss)
    losses = [float(x) for x in jax.device_get(losses)]
    k = max(1, len(losses) // 10)
    after = motion_influence(c, cases, params, None, None, layout=a.layout)
    print(json.dumps({"config": a.config, "layout": a.layout, "steps": a.steps, "prior": a.prior,
                      "seconds": round(time.time() - t0, 1), "loss_first": sum(losses[:k]) / k,
                      "loss_last": sum(losses[-k:]) / k, "influence_before": before, "influence_after": after},
                     indent=1))
    return 0


if __name__ == "__main__":
    cli_main(main, sys.argv[1:])
