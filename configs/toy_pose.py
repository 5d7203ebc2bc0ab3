"""The toy world study (issues 9, 18): I2V prior pretraining, then the pose-based in-context LoRA.

The recipe lives in the package, `dreamactor_jax/toy/recipe.py` (so an installed package has it too);
this file is it as a config file, as `configs/pose.py` is `dreamactor_jax.train.recipe`'s:

    python -m dreamactor_jax.toy.demo --out runs/toy --train --config gpu                # the same as
    python -m dreamactor_jax.toy.demo --out runs/toy --train --config configs/toy_pose.py:gpu \
        --config.prior.steps=1500                                                        # + an override

Variants `cpu` (default), `gpu` (the shipped model's), `ci`; options `layout=spatial|temporal`,
`aug=on|off`, `seed=N` (`gpu,layout=temporal`).
"""

from dreamactor_jax.toy.recipe import E2E_COMMAND, SHIP_COMMAND, get_config  # noqa: F401
