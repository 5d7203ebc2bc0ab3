"""End-to-end DreamActor-M2: the same in-context LoRA recipe, driven by raw video frames (sec. 3.4).

The canvas' right half is the driving clip itself (a pseudo-pair's motion video V_o) instead of a
rendered skeleton, the target is the source video V_src and the reference its first frame (Eq. 4).
Training warm-starts from a pose LoRA checkpoint (`init_lora`: its adapter only; fresh optimizer,
step 0; an adapter of another backbone or LoRA shape is refused) as the paper does. Pose
augmentation does not apply; text guidance stays on. The pairs come from tools/synthesize_pairs.py
and tools/filter_pairs.py (docs/e2e.md):

    python tools/preprocess.py --config configs/e2e.py --input pairs.jsonl --output shards-e2e/ \
        --text_embeddings text-e2e.safetensors --config.preprocess.vae_checkpoint=ckpt/vae
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
