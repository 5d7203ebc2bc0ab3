"""The attention kernels (models.kernels): TPU splash attention at any length equals the XLA path.

The Pallas splash kernel runs in interpret mode on CPU, so these tests execute the very kernel a TPU
runs (same block tiling, segment-id masking and custom VJP), only slowly: shapes stay small.
Forward and q/k/v gradients against `jax.nn.dot_product_attention` (XLA, fp32) at odd lengths, with
text key padding down to one valid text token; the tiny MMDiT forward and LoRA gradients with
`attention_impl="tpu"`; block planning; the import path. The sequence-parallel paths with the
splash kernel run on 8 fake devices in tests/test_sequence_parallel.py.
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dreamactor_jax.models import kernels
from dreamactor_jax.models.attention import attention

TOL = 2e-6  # fp32; the kernel sums in another order than XLA


def _rel(a, b) -> float:
    return float(jnp.max(jnp.abs(a - b)) / (jnp.max(jnp.abs(b)) + 1e-30))


def _qkv(rng, b, s, n, d, dtype=jnp.float32):
    return [jnp.asarray(rng.standard_normal((b, s, n, d)), dtype) for _ in range(3)]


def _fwd_and_grads(impl, q, k, v, lens):
    w = jnp.asarray(np.random.default_rng(9).standard_normal(q.shape), jnp.float32)  # a loss that weighs every output

    def loss(q, k, v):
        out = attention(q, k, v, kv_lengths=lens, impl=impl)
        return jnp.sum(jnp.sin(out.astype(jnp.float32)) * w), out

    grad_fn = jax.value_and_grad(loss, (0, 1, 2), has_aux=True)
    if impl == "tpu":  # the splash kernel really runs: forward, dq and dkv Pallas calls
        assert str(jax.make_jaxpr(grad_fn)(q, k, v)).count("pallas_call") == 3
    (_, out), grads = jax.jit(grad_fn)(q, k, v)
    return out, grads


# (batch, sequence, heads, head_dim, valid keys per item). Sequence lengths are not multiples of
# 128; "video + 1" is the MMDiT with one valid text token; a length of 1 leaves a single key.
CASES = {
    "s37_d16_one_key": (2, 37, 2, 16, [37, 1]),
    "s201_d64_one_text_token": (2, 201, 2, 64, [201 - 7, 201 - 8 + 1]),  # 193 video + 8 text slots
    "s300_d24_blocks_of_256": (1, 300, 3, 24, [257]),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_splash_equals_xla_forward_and_grads(case):
    b, s, n, d, lens = CASES[case]
    q, k, v = _qkv(np.random.default_rng(len(case)), b, s, n, d)
    lens = jnp.array(lens)
    out, grads = _fwd_and_grads("tpu", q, k, v, lens)
    ref, ref_grads = _fwd_and_grads("xla", q, k, v, lens)
    assert out.shape == ref.shape == (b, s, n, d)
    assert _rel(out, ref) <= TOL, _rel(out, ref)
    for name, g, r in zip("qkv", grads, ref_grads):
        assert _rel(g, r) <= TOL, (name, _rel(g, r))
    # keys past kv_lengths are really ignored: changing them changes nothing
    k2 = k.at[0, int(lens[0]):].set(100.0)
    v2 = v.at[0, int(lens[0]):].set(-100.0)
    out2 = jax.jit(lambda q, k, v: attention(q, k, v, kv_lengths=lens, impl="tpu"))(q, k2, v2)
    assert _rel(out2, out) <= TOL


def test_splash_without_mask_and_in_bfloat16():
    q, k, v = _qkv(np.random.default_rng(3), 1, 150, 2, 32)
    out = jax.jit(lambda q, k, v: attention(q, k, v, impl="tpu"))(q, k, v)
    assert _rel(out, attention(q, k, v, impl="xla")) <= TOL
    lens = jnp.array([120])
    qb, kb, vb = (t.astype(jnp.bfloat16) for t in (q, k, v))
    out = jax.jit(lambda q, k, v: attention(q, k, v, kv_lengths=lens, impl="tpu"))(qb, kb, vb)
    assert out.dtype == jnp.bfloat16
    assert _rel(out.astype(jnp.float32), attention(q, k, v, kv_lengths=lens, impl="xla")) <= 2e-2  # bf16 level


def test_splash_plan_blocks_and_padding():
    full = kernels.splash_plan(40_816, 128)  # 49 frames 480x832 in-context + 256 text tokens
    assert (full.block, full.seq_padded, full.head_dim_padded) == (512, 40_960, 128)
    assert kernels.splash_plan(40_816, 256).block == 256  # wider heads: smaller tiles
    assert kernels.splash_plan(40_816, 64).head_dim_padded == 128
    assert kernels.splash_plan(384, 128).block == 128  # 512 would pad 384 -> 512
    for s in range(1, 5000, 37):
        for d in (16, 128, 256):
            p = kernels.splash_plan(s, d)
            s128 = -(-s // 128) * 128
            assert p.seq_padded % p.block == 0 and p.block % 128 == 0 and p.seq_padded >= s
            assert p.seq_padded - s128 <= s128 / 32, (s, d, p)
    with pytest.raises(ValueError, match="sequence length and head dim"):
        kernels.splash_plan(0, 128)


def test_impl_names_and_checks():
    assert kernels.resolve_impl("auto", jnp.float32) == "xla"  # CPU
    assert kernels.resolve_impl("tpu", jnp.float32) == "tpu"
    with pytest.raises(ValueError, match="impl expected one of auto, xla, cudnn, tpu"):
        kernels.resolve_impl("flash", jnp.float32)
    with pytest.raises(ValueError, match="cudnn kernel needs bfloat16"):
        kernels.check_impl("cudnn", jnp.float32)
    kernels.check_impl("cudnn", jnp.bfloat16)


def test_splash_import_path(monkeypatch):
    sa = kernels._splash_module()
    for name in ("make_splash_mha", "MultiHeadMask", "FullMask", "SegmentIds", "BlockSizes"):
        assert hasattr(sa, name), name
    monkeypatch.setitem(sys.modules, "jax.experimental.pallas.ops.tpu.splash_attention", None)
    with pytest.raises(ImportError, match="impl='tpu' needs jax's Pallas splash kernel"):
        kernels._splash_module()


def test_tiny_mmdit_with_splash_equals_xla():
    """Forward and LoRA gradients of the tiny I2V-33ch MMDiT, remat `save_attention` (the policy that
    keeps the splash residuals), attention_impl "tpu" vs "xla"."""
    from dreamactor_jax.models import lora as lora_lib
    from dreamactor_jax.models import mmdit
    from dreamactor_jax.models.config import MMDiTConfig

    lcfg = lora_lib.LoRAConfig(rank=4, alpha=4.0)
    rng = np.random.default_rng(1)
    b, L = 2, 5
    base = MMDiTConfig.named("tiny-i2v-33ch", num_layers=1, num_single_layers=1)
    params = mmdit.init_params_numpy(base, seed=0, bias_std=0.05)
    shapes = jax.eval_shape(lambda: lora_lib.init_lora(base, lcfg, jax.random.key(1)))
    lora = jax.tree_util.tree_map(lambda a: 0.2 * rng.standard_normal(a.shape).astype(np.float32), shapes)
    inp = (
        rng.standard_normal((b, 3, 4, 6, base.in_channels)).astype(np.float32),  # 18 video tokens
        np.array([700.0, 30.0], np.float32),
        rng.standard_normal((b, L, base.text_embed_dim)).astype(np.float32),
        (np.arange(L)[None] < np.array([[5], [1]])).astype(np.int32),  # down to one valid text token
        rng.standard_normal((b, base.pooled_projection_dim)).astype(np.float32),
    )
    results = {}
    for impl in ("tpu", "xla"):
        cfg = MMDiTConfig.named("tiny-i2v-33ch", num_layers=1, num_single_layers=1, attention_impl=impl,
                                remat_policy="save_attention")

        def loss(lora, cfg=cfg):
            out = mmdit.forward(params, cfg, *inp, lora=lora, lora_cfg=lcfg)
            return jnp.mean(jnp.square(out) * jnp.arange(out.size).reshape(out.shape) / out.size), out

        grad_fn = jax.value_and_grad(loss, has_aux=True)
        kernels_run = str(jax.make_jaxpr(grad_fn)(lora)).count("pallas_call")
        assert (kernels_run > 0) == (impl == "tpu"), (impl, kernels_run)  # the splash kernel is in the program
        results[impl] = jax.jit(grad_fn)(lora)
    (_, out), grads = results["tpu"]
    (_, ref), ref_grads = results["xla"]
    assert _rel(out, ref) <= 1e-5, _rel(out, ref)
    gerr = max(_rel(g, r) for g, r in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(ref_grads)))
    assert gerr <= 1e-5, gerr


@pytest.mark.parametrize("lens", [None, (7, 3)])
def test_pad_to_even_leaves_output_and_grads_unchanged(lens):
    """cuDNN trains at even lengths only: `pad_to_even` appends one masked key / dropped query row at odd S.
    The same padding through the XLA kernel (what runs on CPU) must change neither the output nor the
    q/k/v gradients, with and without text key padding."""
    rng = np.random.default_rng(3)
    q, k, v = _qkv(rng, 2, 7, 2, 8)
    kv = None if lens is None else jnp.asarray(lens, jnp.int32)
    w = jnp.asarray(rng.standard_normal(q.shape), jnp.float32)

    def plain(q, k, v):
        out = jax.nn.dot_product_attention(q, k, v, key_value_seq_lengths=kv, implementation="xla")
        return jnp.sum(jnp.sin(out) * w), out

    def padded(q, k, v):
        qp, kp, vp, kvp = kernels.pad_to_even(q, k, v, kv)
        assert qp.shape[1] == 8 and kvp is not None and int(jnp.max(kvp)) <= 7
        out = jax.nn.dot_product_attention(qp, kp, vp, key_value_seq_lengths=kvp, implementation="xla")[:, :7]
        return jnp.sum(jnp.sin(out) * w), out

    (_, ref), g_ref = jax.value_and_grad(plain, argnums=(0, 1, 2), has_aux=True)(q, k, v)
    (_, got), g_got = jax.value_and_grad(padded, argnums=(0, 1, 2), has_aux=True)(q, k, v)
    assert _rel(got, ref) < TOL
    for a, b in zip(g_got, g_ref):
        assert _rel(a, b) < TOL
    even = _qkv(rng, 1, 6, 1, 8)
    assert kernels.pad_to_even(*even)[0] is even[0]  # even lengths pass through untouched
