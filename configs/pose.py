"""Pose-based DreamActor-M2: in-context LoRA on the I2V-33ch backbone, the paper's recipe (sec. 4.1).

Recipe: LoRA rank 256 in the feed-forward layers only (frozen bf16 base, fp32 adapter), AdamW
lr 5e-5 / weight decay 0.01 with warm-up and clipping, batch 2, 50,000 steps, clips of 49-121
frames, pose augmentation and text guidance on, rectified-flow velocity loss on the target half.

Data first (pose videos, canvas, latents, masks, text embeddings into shards):

    python tools/preprocess.py --config configs/pose.py --input videos/ --output shards/ \
        --config.preprocess.vae_checkpoint=ckpt/vae

Full run. Measured (docs/benchmarks.md): on one 80 GB H100 the 12.8B base in bf16 with full remat
trains at 480x848 per half, 49 frames, batch 1: 13.5 s/step, peak 52.5 GiB; the paper's 50k steps
x batch 2 is ~2 weeks of one H100 (the paper used 16 H20s). The loss (velocity MSE on the target
half) is noisy from step to step (random noise levels); watch its smoothed curve in
<workdir>/tensorboard. Not yet run with real weights and data here.

    python launch/train.py --config configs/pose.py --workdir runs/pose \
        --config.base_checkpoint=ckpt/hunyuan-i2v-33ch --config.data.shards=shards/

One GPU: add --config.train.grad_accum=2 (batch 2 as two micro-batches of one clip: the same
update at the memory of one clip; batch 2 in one piece at 49 frames 832x480 ran out of memory on an
H200 under JAX's default 75% cap).

Several hosts: add --coordinator_address=HOST:PORT --num_processes=N --process_id=I on each.

CPU smoke run (tiny MMDiT, random base, synthetic shards; ~1 min on a laptop, the loss falls):

    python launch/train.py --config configs/pose.py:tiny --workdir /tmp/pose-tiny
"""

from dreamactor_jax.train import recipe


def get_config(arg=None):
    opts = recipe.parse_arg(arg)
    c = recipe.base_config("pose")
    if opts.get("tiny"):
        c = recipe.make_tiny(c)
    return c
