"""The paper's training recipe as an `ml_collections.ConfigDict`, shared by `configs/pose.py` and
`configs/e2e.py`, plus the `tiny` shrink used by smoke runs and tests.

Paper (sec. 4.1): LoRA rank 256 in the feed-forward layers only, AdamW lr 5e-5 / weight decay 0.01,
batch 2, 50,000 steps, clips of 49-121 frames, pose augmentation and text guidance on.
"""

from __future__ import annotations

import dataclasses

from ml_collections import ConfigDict, config_dict

from dreamactor_jax.models.lora import DEFAULT_TARGETS
from dreamactor_jax.train.objective import FlowConfig
from dreamactor_jax.train.optim import OptimConfig


def _defaults(cls) -> dict:
    return {f.name: f.default for f in dataclasses.fields(cls)}


def base_config(variant: str = "pose") -> ConfigDict:
    """Full-size recipe on the I2V-33ch backbone (12.8B frozen bf16 base, fp32 adapter)."""
    c = ConfigDict()
    c.variant = variant                      # "pose" (skeleton video drives) or "e2e" (raw video drives)
    c.seed = 0                               # model init (random base) and noise RNG
    c.model = ConfigDict(dict(
        name="i2v-33ch",                     # MMDiTConfig.named(...)
        dtype="bfloat16",                    # activations / matmuls
        base_dtype="bfloat16",               # frozen base weights (the adapter is always fp32)
        attention_impl="auto",
        remat_policy="auto",                 # models.remat: picked from the device memory and clip size;
                                             # a name ("full", "save_attention", ...), a plan or auto:GIB
        scan_layers=True,
        guidance=1.0,                        # embedded guidance scale, only for guidance-distilled configs
    ))
    c.base_checkpoint = config_dict.placeholder(str)  # converted Orbax base params; None = random (tests)
    c.init_lora = config_dict.placeholder(str)        # warm start: a training workdir / its checkpoint dir
    c.lora = ConfigDict(dict(rank=256, alpha=256.0, targets=DEFAULT_TARGETS))  # FFN-only (video stream)
    c.objective = ConfigDict(_defaults(FlowConfig))
    c.optim = ConfigDict(_defaults(OptimConfig))
    c.optim.total_steps = 50_000
    c.data = ConfigDict(dict(
        shards=config_dict.placeholder(str),  # folder of *.array_record shards (tools/preprocess.py)
        global_batch=2,
        seed=0,
        num_threads=2,
        prefetch=4,
        worker_count=0,
        synthetic=False,                      # True: generate small synthetic shards in the workdir
        synthetic_clips=4,                    # per shape
        synthetic_shapes="2x4x8",             # canvas latent T'xH'x2W' (temporal: T'+1 x H' x W'), comma-separated
    ))
    c.resume = ConfigDict(dict(
        allow_data_change=False,              # resume even if shards / data seed / batch / augmentation changed
    ))
    c.mesh = ConfigDict(dict(data=1, fsdp=-1, sequence=1, tensor=1))
    c.train = ConfigDict(dict(
        steps=50_000,
        log_every=50,
        checkpoint_every=1_000,
        keep=3,                               # checkpoints kept (keep-N)
        tensorboard=True,
        fast_compile=False,                   # CPU only: XLA -O0 (smoke runs, tests)
        grad_accum=1,                         # micro-batches per step (memory of global_batch / grad_accum)
    ))
    c.preprocess = ConfigDict(dict(
        min_frames=49, max_frames=121, fps=24.0, height=480, width=832,   # one half of the canvas
        clips_per_video=1, clips_per_shard=64,
        pose_augmentation=True, text_guidance=True,
        vae="hunyuan", vae_checkpoint=config_dict.placeholder(str),
    ))
    return c


def make_tiny(c: ConfigDict) -> ConfigDict:
    """Shrinks a recipe to a CPU smoke run (~1 min): tiny MMDiT, random base, synthetic shards."""
    c.model.name = "tiny-i2v-33ch"
    c.model.dtype = "float32"
    c.model.attention_impl = "xla"
    c.model.remat_policy = "none"
    c.lora.rank, c.lora.alpha = 4, 4.0
    c.optim.lr = 1e-2
    c.optim.warmup_steps = 2
    c.optim.total_steps = 30
    c.objective.shift = 1.0
    c.data.synthetic = True
    c.data.num_threads = 1
    c.data.prefetch = 2
    c.train.steps = 30
    c.train.log_every = 5
    c.train.checkpoint_every = 10
    c.train.keep = 2
    c.train.fast_compile = True
    p = c.preprocess
    p.min_frames, p.max_frames, p.fps, p.height, p.width = 5, 9, 8.0, 32, 32
    p.clips_per_shard = 4
    p.vae = "tiny"
    return c


def parse_arg(arg: str | None) -> dict:
    """`"tiny"` or `"tiny,foo"` -> {"tiny": True, "foo": True}; empty -> {}."""
    out = {}
    for part in (arg or "").split(","):
        part = part.strip()
        if part:
            k, _, v = part.partition("=")
            out[k] = v if v else True
    unknown = sorted(set(out) - {"tiny"})
    if unknown:
        raise ValueError(f"config arg: unknown options {unknown} (known: tiny)")
    return out
