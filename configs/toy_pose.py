"""The toy world study (issue 9): I2V prior pretraining, then the pose-based in-context LoRA.

Same model code as the real recipe (`configs/pose.py`) at small width: the project's MMDiT
(latent_concat I2V, 12 + 12 + 1 input channels), a fixed Haar pixel autoencoder
(`dreamactor_jax.toy.autoencoder`), the project's flow-matching objective, LoRA AdamW, in-context
canvas and sampler.

    python -m dreamactor_jax.toy.demo --out runs/toy                  # CPU demo (variant `cpu`)
    python -m dreamactor_jax.toy.demo --out runs/toy --config gpu     # larger, on one GPU
    python -m dreamactor_jax.toy.demo --out runs/toy --config gpu --study   # + seeds and ablations

Variants (`--config NAME[,key=value...]`): `cpu` (default), `gpu`, `ci` (a few steps, CI);
options `layout=spatial|temporal`, `aug=on|off`, `seed=N` set the main adapter; any other
`section.key=value` (e.g. `prior.steps=1500`) overrides that value, keeping its type.
"""

from ml_collections import ConfigDict

VARIANTS = ("cpu", "gpu", "ci")
FF_AND_ATTENTION = (
    r"transformer_blocks\.ff\.net\.0\.proj", r"transformer_blocks\.ff\.net\.2",
    r"single_transformer_blocks\.proj_mlp", r"single_transformer_blocks\.proj_out:.*",
    r"transformer_blocks\.attn\.(to_q|to_k|to_v|to_out\.0)", r"single_transformer_blocks\.attn\.(to_q|to_k|to_v)",
)


def _lora(name, layout="spatial", pose_aug=True, seed=0, **kw):
    return ConfigDict(dict(name=name, layout=layout, pose_aug=pose_aug, seed=seed, **kw))


def get_config(arg=None):
    parts = [p.strip() for p in (arg or "cpu").split(",") if p.strip()]
    variant = parts[0] if parts and "=" not in parts[0] else "cpu"
    opts = dict(p.split("=", 1) for p in parts if "=" in p)
    if variant not in VARIANTS:
        raise ValueError(f"toy config: variant must be one of {VARIANTS}, got {variant!r}")

    c = ConfigDict()
    c.variant = variant
    c.seed = 0  # prior init and data
    c.log_every = 100
    c.time_budget_s = 1e9  # a study adapter that would end past this many seconds is skipped
    c.check_loss = False  # measure one fixed batch's loss before and after LoRA training (CI)
    c.fast_compile = False  # CPU: skip XLA backend optimisation (faster compiles, slower steps; CI)
    c.world = ConfigDict(dict(height=32, width=32, num_frames=8, duration=1.0, quadruped_fraction=0.25, ground=0.92))
    # split_scenes: the share of two-person scenes that are split-screen duos (two panels, one motion);
    # sync_scenes: the share of the others that are duos in step in one scene (toy.data.prior_set).
    c.data = ConfigDict(dict(prior_clips=8000, prior_scenes=6000, split_scenes=0.5, sync_scenes=0.5,
                             pose_clips=8000, aug_copies=4,
                             num_chars=2000, num_motions=4000, workers=14))
    c.model = ConfigDict(dict(heads=4, head_dim=64, layers=4, single_layers=4, refiner_layers=1, patch_size=2,
                              text_len=4, text_dim=32, pooled_dim=32, rope_axes_dim=(16, 24, 24),
                              dtype="bfloat16", attention_impl="xla"))
    # Shift 1 (no shift) in training and sampling: 32x32 frames need the low noise levels that a
    # high-resolution shift skips (shift 2 left the first run's samples speckled).
    c.objective = ConfigDict(dict(sampling="uniform", shift=1.0))
    # completion: the share of wide-scene samples pretrained as video completion (toy.pretrain);
    # restart: which continuation of a saved prior this is (--continue-prior; each draws other batches).
    # devices: data parallel over this many devices (batch split; toy.pretrain.data_parallel).
    c.prior = ConfigDict(dict(steps=4000, batch=128, lr=5e-4, weight_decay=0.01, warmup=200, completion=0.5,
                              restart=1, devices=1))
    lora_common = dict(rank=64, alpha=64.0, steps=2000, batch=64, lr=1e-3, weight_decay=0.01, warmup=100)
    c.lora = _lora("pose", **lora_common)
    # The study (--study): two seeds of the paper's model G and the Table 2 ablations A and D.
    c.study = ConfigDict(dict(
        pose_seed1=_lora("pose_seed1", seed=1, **lora_common),
        temporal=_lora("temporal", layout="temporal", **lora_common),
        no_aug=_lora("no_aug", pose_aug=False, **lora_common),
        # Diagnostic, not in the paper: LoRA on the attention projections too (is FF-only the limit?).
        pose_attn=_lora("pose_attn", targets=FF_AND_ATTENTION, **lora_common),
    ))
    c.eval = ConfigDict(dict(cases=64, steps=30, shift=1.0, seed=0, batch=64, clamp_motion=True, grid_cases=4))

    if variant == "gpu":
        # 18,000 prior steps (~18 min on one H100, ~59 ms/step) + 2,000 LoRA steps (~1.5 min): the
        # prior of docs/results.md was trained as this many steps in four warm-restarted parts
        # (the device's 10-minute calls: --prior DIR --continue-prior); one run does it in one go.
        # On two GPUs add prior.devices=2 (data parallel: ~8.5 min on two H200s, docs/benchmarks.md).
        c.prior.steps = 18000
        c.data.workers = 16
        c.model.attention_impl = "auto"  # cuDNN flash attention: the xla path holds [B, heads, L, L] scores
    if variant == "cpu":
        c.log_every = 25
        c.world.num_frames = 6
        c.data.update(prior_clips=600, prior_scenes=200, pose_clips=600, aug_copies=2, num_chars=150,
                      num_motions=300, workers=2)
        c.model.update(heads=2, head_dim=32, layers=2, single_layers=2, rope_axes_dim=(8, 12, 12),
                       dtype="float32", attention_impl="xla")
        # ~10 minutes on 2 CPU cores (about 1.5 s per step of either stage): a run of the pipeline, not a
        # trained model (the GPU config is the study).
        c.prior.update(steps=160, batch=8, lr=1e-3, warmup=16)
        cpu_lora = dict(rank=16, alpha=16.0, steps=160, batch=8, lr=2e-3, warmup=16)
        c.lora.update(cpu_lora)
        for k in c.study:
            c.study[k].update(cpu_lora)
        c.eval.update(cases=8, steps=12, batch=8, grid_cases=3)
    elif variant == "ci":
        c.log_every = 5
        c.check_loss = True
        c.fast_compile = True
        c.world.update(height=16, width=16, num_frames=3)
        c.data.update(prior_clips=16, prior_scenes=0, pose_clips=16, aug_copies=1, num_chars=8, num_motions=8,
                      workers=1)
        c.model.update(heads=2, head_dim=16, layers=1, single_layers=1, text_len=2, text_dim=8, pooled_dim=8,
                       rope_axes_dim=(4, 6, 6), dtype="float32", attention_impl="xla")
        c.prior.update(steps=12, batch=4, lr=3e-3, warmup=2)
        ci_lora = dict(rank=4, alpha=4.0, steps=12, batch=4, lr=3e-3, warmup=2)
        c.lora.update(ci_lora)
        for k in c.study:
            c.study[k].update(ci_lora)
        c.eval.update(cases=2, steps=2, batch=2, grid_cases=2)

    if "layout" in opts:
        c.lora.layout = opts["layout"]
    if "aug" in opts:
        if opts["aug"] not in ("on", "off"):
            raise ValueError(f"toy config: aug must be on or off, got {opts['aug']!r}")
        c.lora.pose_aug = opts["aug"] == "on"
    if "seed" in opts:
        c.lora.seed = int(opts["seed"])
    for key, value in opts.items():
        if key in ("layout", "aug", "seed"):
            continue
        *path, leaf = key.split(".")
        node = c
        for name in path:
            node = node[name] if name in node else None
            if node is None:
                break
        if node is None or leaf not in node or isinstance(node[leaf], ConfigDict):
            raise ValueError(f"toy config: unknown option {key!r} (layout, aug, seed, or section.key of a value)")
        old = node[leaf]
        node[leaf] = (value in ("1", "true", "True", "on")) if isinstance(old, bool) else type(old)(value)
    return c
