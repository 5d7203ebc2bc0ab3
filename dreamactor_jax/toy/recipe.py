"""The toy world's recipe (issues 9, 18): I2V prior pretraining, then the pose-based in-context LoRA.

Same model code as the real recipe (`dreamactor_jax.train.recipe`, `configs/pose.py`) at small width:
the project's MMDiT (latent_concat I2V, 12 + 12 + 1 input channels), a fixed Haar pixel autoencoder
(`dreamactor_jax.toy.autoencoder`), the project's flow-matching objective and train step, LoRA AdamW,
in-context canvas and sampler. `configs/toy_pose.py` is this recipe as a config file.

    python -m dreamactor_jax.toy.demo --out runs/toy                       # the shipped model, CPU
    python -m dreamactor_jax.toy.demo --out runs/toy --train               # train from scratch (`cpu`)
    python -m dreamactor_jax.toy.demo --out runs/toy --train --config gpu  # the shipped recipe, one GPU

`ship.command` is the one command that made the shipped model (`dreamactor_jax/toy/pretrained/`,
its card says so). Variants (`--config NAME[,option=value...]`): `cpu` (default), `gpu`, `ci` (a few
steps, CI); options `layout=spatial|temporal`, `aug=on|off`, `seed=N` set the main adapter. Any other
value is an override as in launch/train.py: `--config.prior.steps=1500` (type-checked; a mistyped key
is an error).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ml_collections import ConfigDict

from dreamactor_jax.utils import load_config_file

VARIANTS = ("cpu", "gpu", "ci")
FF_AND_ATTENTION = (
    r"transformer_blocks\.ff\.net\.0\.proj", r"transformer_blocks\.ff\.net\.2",
    r"single_transformer_blocks\.proj_mlp", r"single_transformer_blocks\.proj_out:.*",
    r"transformer_blocks\.attn\.(to_q|to_k|to_v|to_out\.0)", r"single_transformer_blocks\.attn\.(to_q|to_k|to_v)",
)
# The command that trained the shipped model (run once on one H200; `{out}` is the pack folder).
SHIP_COMMAND = ("python -m dreamactor_jax.toy.demo --train --config gpu --adapters pose,pose_seed1,pose_seed2 "
                "--no-video --out {out}/run --pack {out}/pack")

# Part B (issue 16 part 4): the e2e LoRA trained on the shipped model's pseudo-pairs, added to the pack.
E2E_COMMAND = ("python -m dreamactor_jax.toy.e2e --config gpu --model dreamactor_jax/toy/pretrained "
               "--out {out}/e2e --pack {out}/pack")


def _lora(name, layout="spatial", pose_aug=True, seed=0, **kw):
    return ConfigDict(dict(name=name, layout=layout, pose_aug=pose_aug, seed=seed, **kw))


def get_config(arg=None):
    """The config of variant `arg` ("cpu", "gpu" or "ci", with options: "gpu,layout=temporal,seed=3")."""
    variant, opts = parse_arg(arg)

    c = ConfigDict()
    c.variant = variant
    c.seed = 0  # prior init and data
    c.log_every = 250
    c.time_budget_s = 1e9  # a study adapter that would end past this many seconds is skipped
    c.check_loss = False  # measure one fixed batch's loss before and after LoRA training (CI)
    c.fast_compile = False  # CPU: skip XLA backend optimisation (faster compiles, slower steps; CI)
    # The fourth round's world (issue 18): 5 frames (4k + 1, as the sampler's segments), joint markers
    # of radius 0.035 frame heights and limbs 1.35x as wide as the third round's (drawn and found at 32x32).
    c.world = ConfigDict(dict(height=32, width=32, num_frames=5, duration=1.0, quadruped_fraction=0.25, ground=0.92,
                              marker_radius=0.035, limb_width=1.35))
    # split_scenes: the share of two-person scenes that are split-screen duos (two panels, one motion);
    # sync_scenes: the share of the others that are duos in step in one scene (toy.data.prior_set);
    # pose_norm: box normalisation of skeletons, "reference" (anchored to the reference's markers) or
    # "median" (the third round's: into the world's median box).
    c.data = ConfigDict(dict(prior_clips=6000, prior_scenes=5000, split_scenes=0.6, sync_scenes=0.5,
                             pose_clips=6000, aug_copies=3, pose_norm="reference",
                             num_chars=2000, num_motions=4000, workers=14))
    # Single-stream blocks only and no text refiner: the toy's text is one fixed embedding, so the
    # dual blocks' text stream would be half of the weights for nothing (8.5M parameters, 16 MiB in bf16).
    c.model = ConfigDict(dict(heads=4, head_dim=64, layers=0, single_layers=8, refiner_layers=0, patch_size=2,
                              text_len=4, text_dim=32, pooled_dim=32, rope_axes_dim=(16, 24, 24),
                              dtype="bfloat16", attention_impl="xla"))
    # Shift 1 (no shift) in training and sampling: 32x32 frames need the low noise levels that a
    # high-resolution shift skips (shift 2 left the first run's samples speckled).
    c.objective = ConfigDict(dict(sampling="uniform", shift=1.0))
    # completion: the share of wide-scene samples pretrained as video completion (toy.pretrain);
    # restart: which continuation of a saved prior this is (--continue-prior; each draws other batches).
    # devices: data parallel over this many devices (batch split; toy.pretrain.data_parallel).
    # ema: the prior kept is the moving average of the weights with this decay (0: the last weights).
    c.prior = ConfigDict(dict(steps=7000, batch=128, lr=1e-3, weight_decay=0.01, warmup=300, completion=0.5,
                              restart=1, devices=1, ema=0.999))
    lora_common = dict(rank=64, alpha=64.0, steps=2000, batch=64, lr=1e-3, weight_decay=0.01, warmup=100, ema=0.995)
    c.lora = _lora("pose", **lora_common)
    # The study: three seeds of the paper's model G and the Table 2 ablations A and D.
    c.study = ConfigDict(dict(
        pose_seed1=_lora("pose_seed1", seed=1, **lora_common),
        pose_seed2=_lora("pose_seed2", seed=2, **lora_common),
        temporal=_lora("temporal", layout="temporal", **lora_common),
        no_aug=_lora("no_aug", pose_aug=False, **lora_common),
        # Diagnostic, not in the paper: LoRA on the attention projections too (is FF-only the limit?).
        pose_attn=_lora("pose_attn", targets=FF_AND_ATTENTION, **lora_common),
    ))
    # clamp_motion False: the motion half is generated like the rest, as launch/sample.py's sampler does.
    # variants: also score the main adapter with the motion half clamped and with the CPU demo's steps.
    c.eval = ConfigDict(dict(cases=256, steps=30, shift=1.0, seed=0, batch=128, clamp_motion=False, grid_cases=4,
                             variants=False))
    # demo_*: the fewer-steps variant the GPU run also scores (eval.variants; the CPU demo's own cases and
    # steps are toy.shipped.DEMO_*); check_*: what the card records for the test (the first cases,
    # sampled in float32 at full matmul precision, on any machine alike).
    c.ship = ConfigDict(dict(command=SHIP_COMMAND, demo_cases=6, demo_steps=16, check_cases=2, check_steps=6))
    # The end-to-end study (toy/e2e.py): `units` pseudo-pairs synthesised by the pose model at
    # `synth_steps`, the best `keep` share kept by a plausibility score that never sees the ground truth;
    # `seeds` e2e LoRAs warm-started from the pose LoRA, the ablations (no warm start, no filtering,
    # oracle pairs), and held-out humanoid and quadruped cases driven by RGB video.
    c.e2e = ConfigDict(dict(command=E2E_COMMAND, units=2000, keep=0.5, synth_steps=20, steps=800, batch=64, lr=1e-3,
                            warmup=50, ema=0.99, seeds=2, ablations=True, cases=128, quad_cases=64, grid_cases=2,
                            workers=14))

    if variant == "gpu":
        # The shipped model (issue 18): ~4 min of prior and ~2.5 min for three adapters on one H200, in
        # one call of at most 10 minutes (a seed that would end past time_budget_s is skipped and said so).
        c.data.workers = 14
        c.time_budget_s = 530.0
        c.eval.variants = True
        c.model.attention_impl = "auto"  # cuDNN flash attention: the xla path holds [B, heads, L, L] scores
    for section, values in SMALL.get(variant, {}).items():
        if section == "lora":  # every adapter: the main one and the study's
            for lc in [c.lora, *c.study.values()]:
                lc.update(values)
        elif section == "":
            c.update(values)
        else:
            c[section].update(values)

    if "layout" in opts:
        c.lora.layout = opts["layout"]
    if "aug" in opts:
        c.lora.pose_aug = opts["aug"] == "on"
    if "seed" in opts:
        c.lora.seed = int(opts["seed"])
    return c


# The smaller variants, as changes to the `gpu` recipe above ("" is the top level, "lora" every adapter).
SMALL = {
    # Training from scratch on 2 CPU cores (`--train`): ~10 minutes, a run of the pipeline rather than a
    # trained model (the shipped model came from the `gpu` variant).
    "cpu": {
        "": dict(log_every=25),
        "data": dict(prior_clips=600, prior_scenes=300, pose_clips=600, aug_copies=2, num_chars=150, num_motions=300,
                     workers=2),
        "model": dict(heads=2, head_dim=32, single_layers=4, rope_axes_dim=(8, 12, 12), dtype="float32"),
        "prior": dict(steps=200, batch=8, lr=1e-3, warmup=20, ema=0.0),
        "lora": dict(rank=16, alpha=16.0, steps=200, batch=8, lr=2e-3, warmup=20, ema=0.0),
        "eval": dict(cases=8, steps=12, batch=8, grid_cases=3),
        "e2e": dict(units=32, synth_steps=6, steps=20, batch=4, cases=4, quad_cases=4, workers=2),
    },
    # A few steps of everything (the CI tests).
    "ci": {
        "": dict(log_every=5, check_loss=True, fast_compile=True),
        "world": dict(height=16, width=16, num_frames=3),
        "data": dict(prior_clips=16, prior_scenes=0, pose_clips=16, aug_copies=1, num_chars=8, num_motions=8, workers=1),
        "model": dict(heads=2, head_dim=16, layers=1, single_layers=1, text_len=2, text_dim=8, pooled_dim=8,
                      rope_axes_dim=(4, 6, 6), dtype="float32", attention_impl="xla"),
        "prior": dict(steps=12, batch=4, lr=3e-3, warmup=2, ema=0.0),
        "lora": dict(rank=4, alpha=4.0, steps=12, batch=4, lr=3e-3, warmup=2, ema=0.0),
        "eval": dict(cases=2, steps=2, batch=2, grid_cases=2),
        "ship": dict(demo_cases=2, demo_steps=2, check_cases=1, check_steps=2),
        "e2e": dict(units=6, synth_steps=2, steps=3, batch=2, warmup=1, cases=2, quad_cases=2, grid_cases=1, workers=1),
    },
}
OPTIONS = {"layout": ("spatial", "temporal"), "aug": ("on", "off"), "seed": None}


def parse_arg(arg: str | None) -> tuple[str, dict]:
    """`"gpu,layout=temporal"` -> ("gpu", {"layout": "temporal"}); the variant defaults to `cpu`. Other
    values are set by `--config.section.key=value` overrides (`load`)."""
    parts = [p.strip() for p in (arg or "cpu").split(",") if p.strip()]
    variant = parts[0] if parts and "=" not in parts[0] else "cpu"
    if variant not in VARIANTS:
        raise ValueError(f"toy config: variant must be one of {VARIANTS}, got {variant!r}")
    opts = {}
    for p in parts[1 if parts and parts[0] == variant else 0:]:
        key, eq, value = p.partition("=")
        if not eq or key not in OPTIONS:
            raise ValueError(f"toy config: unknown option {p!r} (options: {', '.join(OPTIONS)}; set any other "
                             f"value with --config.section.key=value)")
        if OPTIONS[key] is not None and value not in OPTIONS[key]:
            raise ValueError(f"toy config: {key} must be one of {OPTIONS[key]}, got {value!r}")
        if OPTIONS[key] is None and not value.lstrip("-").isdigit():
            raise ValueError(f"toy config: {key} must be an integer, got {value!r}")
        opts[key] = value
    return variant, opts


def load(spec: str = "cpu", overrides: Sequence[str] = ()) -> ConfigDict:
    """The toy config as the demo reads `--config SPEC --config.section.key=value ...`: SPEC is a variant
    of this recipe (with options, `parse_arg`) or a config file `FILE[:ARG]` (`configs/toy_pose.py:gpu`).
    Read like launch/train.py's `--config` (ml_collections, locked: a mistyped key is an error)."""
    if not spec.split(":", 1)[0].endswith(".py"):
        spec = f"{Path(__file__).resolve()}:{spec}"
    return load_config_file(spec, overrides)
