"""End-to-end DreamActor-M2: the same in-context LoRA recipe, driven by raw video frames (sec. 3.4).

The canvas' right half is the driving clip itself (a pseudo-pair's motion video) instead of a
rendered skeleton; training warm-starts from a pose LoRA checkpoint (`init_lora`) as the paper does.
Pose augmentation does not apply; text guidance stays on.

    python tools/preprocess.py --config configs/e2e.py --input pairs.jsonl --output shards-e2e/
    python launch/train.py --config configs/e2e.py --workdir runs/e2e \
        --config.base_checkpoint=ckpt/hunyuan-i2v-33ch --config.data.shards=shards-e2e/ \
        --config.init_lora=runs/pose

Hardware and speed as configs/pose.py. CPU smoke run (starts from scratch unless init_lora is set):

    python launch/train.py --config configs/e2e.py:tiny --workdir /tmp/e2e-tiny
"""

from dreamactor_jax.train import recipe


def get_config(arg=None):
    opts = recipe.parse_arg(arg)
    c = recipe.base_config("e2e")
    c.preprocess.pose_augmentation = False
    if opts.get("tiny"):
        c = recipe.make_tiny(c)
    return c
