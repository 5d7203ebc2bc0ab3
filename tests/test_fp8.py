"""FP8 (e4m3) block matmuls (`models.fp8`), opt-in: the kernel quantisation's error is bounded, the
quantised tiny MMDiT really multiplies in float8, and its output error against the fp32 reference
stays within a few times bf16's (CPU: XLA computes the f8 dot by upcasting, the same numbers)."""

import numpy as np

import jax
import jax.numpy as jnp

from dreamactor_jax.models import fp8, mmdit
from dreamactor_jax.models.config import MMDiTConfig


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / np.abs(b).max())


def test_kernel_quantisation_error_is_within_e4m3_precision():
    w = jnp.asarray(np.random.default_rng(0).standard_normal((3, 64, 48)).astype(np.float32))
    q, s = fp8.quantize_kernel(w)
    assert q.dtype == fp8.E4M3 and s.shape == (3, 48)
    back = q.astype(jnp.float32) * s[:, None, :]
    err = np.abs(np.asarray(back - w)) / np.abs(np.asarray(w)).max(axis=1, keepdims=True)
    assert err.max() <= 2.0**-4 + 1e-6  # half an ulp of 3 mantissa bits, relative to each column's max


def test_fp8_mmdit_error_against_bf16():
    cfg = MMDiTConfig.named("tiny-i2v-33ch", attention_impl="xla", num_attention_heads=4, attention_head_dim=16)
    params = mmdit.init_params_numpy(cfg, seed=0, bias_std=0.05)
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((1, 2, 4, 8, 33)), jnp.float32)
    text = jnp.asarray(rng.standard_normal((1, 8, cfg.text_embed_dim)), jnp.float32)
    tmask = jnp.asarray([[1] * 6 + [0] * 2], jnp.int32)
    pooled = jnp.asarray(rng.standard_normal((1, cfg.pooled_projection_dim)), jnp.float32)
    run = lambda p, c: jax.jit(lambda p: mmdit.forward(p, c, x, jnp.array([400.0]), text, tmask, pooled))(p)
    with jax.default_matmul_precision("highest"):
        ref = run(params, cfg)
    bf = cfg.replace(dtype="bfloat16")
    p16 = jax.tree_util.tree_map(lambda a: a.astype(jnp.bfloat16), params)
    err_bf16 = rel(run(p16, bf), ref)
    q = fp8.quantize_blocks(p16)
    assert "kernel_fp8" in q["single_transformer_blocks"]["proj_out"] and "kernel" not in q["transformer_blocks"]["ff"]["net_2"]
    assert "kernel" in q["transformer_blocks"]["norm1"]["linear"]  # modulation stays
    jaxpr = str(jax.make_jaxpr(lambda p: mmdit.forward(p, bf, x, jnp.array([400.0]), text, tmask, pooled))(q))
    assert "f8_e4m3fn" in jaxpr
    err_fp8 = rel(run(q, bf), ref)
    print(f"max rel err vs fp32: bf16 {err_bf16:.3g}, fp8 e4m3 {err_fp8:.3g}")
    assert err_fp8 < 0.1 and err_fp8 < 8 * max(err_bf16, 1e-3), (err_fp8, err_bf16)
