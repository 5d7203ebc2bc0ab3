"""LoRA placement (feed-forward only by default), fresh adapter = no-op, merged = unmerged, counts."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dreamactor_jax.models import lora as lora_lib
from dreamactor_jax.models import mmdit
from dreamactor_jax.models.config import MMDiTConfig

jax.config.update("jax_enable_x64", False)

CFG = MMDiTConfig.named("tiny-i2v-16ch")  # token_replace: exercises the per-token modulation too
_fwd = jax.jit(mmdit.forward, static_argnums=(1, 9))
_init_lora = jax.jit(lora_lib.init_lora, static_argnums=(0, 1))
# The defaults plus the text-stream ff and the attention rows of proj_out: one adapter structure
# (one compile) that covers every kind of target the forward supports.
LCFG = lora_lib.LoRAConfig(
    rank=4,
    alpha=8.0,
    targets=lora_lib.DEFAULT_TARGETS + (r"transformer_blocks\.ff_context\..*", r"single_transformer_blocks\.proj_out:attn"),
)


def rel_err(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@functools.lru_cache(maxsize=None)
def setup():
    params = mmdit.init_params_numpy(CFG, seed=0, bias_std=0.05)  # random biases and norm scales too
    rng = np.random.default_rng(0)
    b, L = 2, 5
    inp = dict(
        x=rng.standard_normal((b, 3, 4, 6, CFG.in_channels)).astype(np.float32),
        timestep=np.array([500.0, 20.0], np.float32),
        text=rng.standard_normal((b, L, CFG.text_embed_dim)).astype(np.float32),
        text_mask=np.array([[1] * 5, [1, 1, 0, 0, 0]]),
        pooled=rng.standard_normal((b, CFG.pooled_projection_dim)).astype(np.float32),
        guidance=np.array([4000.0, 1000.0], np.float32),
    )
    return params, inp


def run(params, inp, lora=None, lora_cfg=None):
    return _fwd(params, CFG, inp["x"], inp["timestep"], inp["text"], inp["text_mask"], inp["pooled"], inp["guidance"], lora, lora_cfg)


def randomize_b(lora, seed, std=0.05):
    rng = np.random.default_rng(seed)
    leaves = jax.tree_util.tree_flatten_with_path(lora)[0]
    new = [x + std * rng.standard_normal(x.shape).astype(np.float32) if p[-1].key == "b" else x for p, x in leaves]
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(lora), new)


def test_default_targets_are_the_video_feed_forward_layers():
    chosen = sorted(lora_lib.targets(CFG, lora_lib.LoRAConfig(rank=4)))
    assert chosen == [
        "single_transformer_blocks.proj_mlp",
        "single_transformer_blocks.proj_out:mlp",
        "transformer_blocks.ff.net.0.proj",
        "transformer_blocks.ff.net.2",
    ]
    lcfg = lora_lib.LoRAConfig(rank=4, targets=lora_lib.DEFAULT_TARGETS + (r"transformer_blocks\.ff_context\..*",))
    assert {"transformer_blocks.ff_context.net.0.proj", "transformer_blocks.ff_context.net.2"} <= set(lora_lib.targets(CFG, lcfg))
    with pytest.raises(ValueError, match="matches none"):
        lora_lib.targets(CFG, lora_lib.LoRAConfig(rank=4, targets=("transformer_blocks.nope",)))


def test_fresh_adapter_changes_nothing():
    params, inp = setup()
    lcfg = LCFG
    lora = _init_lora(CFG, lcfg, jax.random.key(1))
    assert all(float(jnp.abs(x).max()) == 0 for p, x in jax.tree_util.tree_flatten_with_path(lora)[0] if p[-1].key == "b")
    base = run(params, inp)
    np.testing.assert_array_equal(np.asarray(run(params, inp, lora, lcfg)), np.asarray(base))


def test_merged_equals_unmerged():
    params, inp = setup()
    lcfg = LCFG
    lora = randomize_b(_init_lora(CFG, lcfg, jax.random.key(1)), 2)
    base = run(params, inp)
    unmerged = run(params, inp, lora, lcfg)
    merged = run(lora_lib.merge_lora(params, lora, CFG, lcfg), inp)
    assert rel_err(unmerged, base) > 1e-3  # the adapter really acts
    assert rel_err(merged, unmerged) <= 1e-5


def test_proj_out_adapter_touches_only_mlp_rows():
    params, _ = setup()
    lcfg = lora_lib.LoRAConfig(rank=4, targets=(r"single_transformer_blocks\.proj_out:mlp",))
    lora = randomize_b(_init_lora(CFG, lcfg, jax.random.key(1)), 2)
    merged = lora_lib.merge_lora(params, lora, CFG, lcfg)
    d = CFG.hidden_size
    before = np.asarray(params["single_transformer_blocks"]["proj_out"]["kernel"])
    after = np.asarray(merged["single_transformer_blocks"]["proj_out"]["kernel"])
    np.testing.assert_array_equal(after[:, :d], before[:, :d])  # attention-output rows untouched
    assert np.abs(after[:, d:] - before[:, d:]).max() > 0
    # every other parameter is the same object
    same = jax.tree_util.tree_map(lambda a, b: a is b, params["transformer_blocks"], merged["transformer_blocks"])
    assert all(jax.tree_util.tree_leaves(same))


def test_gradients_reach_only_the_adapter_and_are_nonzero():
    params, inp = setup()
    lcfg = LCFG
    lora = _init_lora(CFG, lcfg, jax.random.key(1))
    loss = lambda lo: jnp.mean(jnp.square(run(params, inp, lo, lcfg)))
    grads = jax.grad(loss)(lora)
    for path, g in jax.tree_util.tree_flatten_with_path(grads)[0]:
        if path[-1].key == "b":  # with B = 0 only dL/dB is nonzero
            assert float(jnp.abs(g).max()) > 0, path


def test_trainable_count_rank_256_full_size():
    """Rank 256 on the default targets of the full I2V-33ch model (shapes only, nothing allocated)."""
    cfg = MMDiTConfig.named("i2v-33ch")
    n = lora_lib.count_lora_params(cfg, lora_lib.LoRAConfig(rank=256, alpha=256))
    d, m, r = cfg.hidden_size, cfg.mlp_dim, 256
    per_linear = d * r + r * m  # (in, r) + (r, out), same for d->m and m->d
    assert n == (2 * cfg.num_layers + 2 * cfg.num_single_layers) * per_linear == 471_859_200
    print(f"\nLoRA rank 256 trainable parameters (default FFN targets, full size): {n:,} "
          f"({100 * n / mmdit.count_params(cfg):.2f}% of the base)")
