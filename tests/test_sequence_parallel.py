"""Sequence parallelism (Ulysses / ring) and FSDP on fake CPU devices equal the single-device result.

The multi-device part runs in one subprocess with 8 fake CPU devices (XLA_FLAGS must be set before
jax starts, and pytest runs every file in one process). It checks, on the tiny I2V-33ch MMDiT,
forward output and LoRA gradients (fp32, <= 1e-5 relative) for meshes sequence=8 (Ulysses) and
fsdp=4 x sequence=2, that the sequence-parallel path really ran (all-to-all in the program) and
that fsdp=N (4 and 8) keeps ~1/N of the base per device; and the attention function alone
(forward and backward) with the ring fallback (2 heads over sequence=8) and Ulysses over
data=4 x sequence=2, then both again with the TPU splash kernel (Pallas interpret mode) at an odd
length with one valid text token. (Few meshes, fast compiles: each MMDiT compile costs ~10 s of CPU.)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dreamactor_jax import sharding
from dreamactor_jax.models import sequence_parallel as sp
from dreamactor_jax.models.attention import attention
from fake_devices import run_on_fake_devices

TOL = 1e-5


def _rel(a, b) -> float:
    return float(jnp.max(jnp.abs(a - b)) / (jnp.max(jnp.abs(b)) + 1e-30))


def _qkv(rng, b=2, s=23, n=4, d=8):
    return [jnp.asarray(rng.standard_normal((b, s, n, d)), jnp.float32) for _ in range(3)]


def test_axis_of_size_one_equals_plain_attention():
    """A one-device mesh (sequence=1) through the sequence-parallel code equals plain attention."""
    q, k, v = _qkv(np.random.default_rng(0))
    lens = jnp.array([23, 9])
    mesh = sharding.make_mesh({"fsdp": -1}, devices=jax.devices()[:1])
    assert sp.sequence_axis_size(mesh) == 1 and sp.sequence_axis_size(None) == 1
    ref = attention(q, k, v, kv_lengths=lens, impl="xla")
    for method in ("ulysses", "ring"):
        out = jax.jit(lambda q, k, v: sp.sequence_parallel_attention(
            q, k, v, mesh=mesh, kv_lengths=lens, impl="xla", method=method))(q, k, v)
        assert _rel(out, ref) <= TOL, method
    # a mesh is active but its sequence axis is 1: the plain kernel runs (no shard_map)
    with sharding.use_mesh(mesh):
        text = jax.jit(lambda q, k, v: attention(q, k, v, kv_lengths=lens, impl="xla")).lower(q, k, v).as_text()
    assert "shard_map" not in text and "all_to_all" not in text


def test_bad_arguments_raise():
    q, k, v = _qkv(np.random.default_rng(1))
    mesh = sharding.make_mesh({"fsdp": -1}, devices=jax.devices()[:1])
    with pytest.raises(ValueError, match="method expected one of"):
        sp.sequence_parallel_attention(q, k, v, mesh=mesh, method="zigzag")
    with pytest.raises(ValueError, match="cudnn kernel needs bfloat16"):
        sp.sequence_parallel_attention(q, k, v, mesh=mesh, impl="cudnn")
    other = jax.sharding.Mesh(np.asarray(jax.devices()[:1]), ("x",))
    with pytest.raises(ValueError, match="has no 'sequence' axis"):
        sp.sequence_parallel_attention(q, k, v, mesh=other)


def test_sequence_parallel_and_fsdp_on_8_fake_devices():
    stdout = run_on_fake_devices(__file__)
    assert stdout.strip().endswith("OK"), stdout[-3000:]


# ----------------------------------------------------------------------------------------------
# the 8-device child
# ----------------------------------------------------------------------------------------------

FAST = {"xla_backend_optimization_level": 0}


def _child_attention() -> None:
    """attention() alone: ring fallback (2 heads over sequence=8), Ulysses over data=4 x sequence=2,
    no key mask, and the forced-Ulysses error."""
    rng = np.random.default_rng(2)
    lens = jnp.array([21, 11, 5, 17])
    loss = lambda f: (lambda q, k, v: jnp.sum(jnp.sin(f(q, k, v))))
    plain = lambda q, k, v: attention(q, k, v, kv_lengths=lens, impl="xla")
    both = lambda *a: (loss(plain)(*a), plain(*a))
    for mesh_cfg, heads, collective in (({"sequence": 8, "fsdp": 1}, 2, "collective_permute"),
                                        ({"data": 4, "fsdp": 1, "sequence": 2}, 4, "all_to_all")):
        q, k, v = _qkv(rng, b=4, s=21, n=heads, d=8)
        (_, ref), ref_g = jax.jit(jax.value_and_grad(both, (0, 1, 2), has_aux=True), compiler_options=FAST)(q, k, v)
        mesh = sharding.make_mesh(mesh_cfg)
        with sharding.use_mesh(mesh):
            lowered = jax.jit(jax.value_and_grad(both, (0, 1, 2), has_aux=True), compiler_options=FAST).lower(q, k, v)
            (_, out), grads = lowered.compile()(q, k, v)
        assert collective in lowered.as_text(), (mesh_cfg, collective)
        err, gerr = _rel(out, ref), max(_rel(g, r) for g, r in zip(grads, ref_g))
        print(f"attention {mesh_cfg} heads={heads} ({collective}): fwd {err:.2e} grad {gerr:.2e}")
        assert err <= TOL and gerr <= TOL, (mesh_cfg, err, gerr)

    mesh = sharding.make_mesh({"sequence": 8, "fsdp": 1})
    q, k, v = _qkv(rng, b=2, s=21, n=2, d=8)
    nomask = jax.jit(lambda q, k, v: sp.sequence_parallel_attention(q, k, v, mesh=mesh, impl="xla"),
                     compiler_options=FAST)
    err = _rel(nomask(q, k, v), jax.jit(lambda *a: attention(*a, impl="xla"))(q, k, v))
    print("ring attention, no key mask: fwd", err)
    assert err <= TOL
    try:
        sp.sequence_parallel_attention(q, k, v, mesh=mesh, method="ulysses")
    except ValueError as e:
        assert "heads per device (2) to divide by the sequence axis size 8" in str(e), e
    else:
        raise AssertionError("ulysses with 2 heads over 8 devices did not raise")


def _child_splash() -> None:
    """The TPU splash kernel (Pallas interpret mode) inside both sequence-parallel paths: Ulysses over
    data=2 x sequence=4 (4 heads: one per device after the all-to-all) and the ring over sequence=8
    (2 heads; the ring's own online softmax, whatever the kernel), at an odd length with text key
    padding down to one valid text token; forward and q/k/v gradients vs one-device XLA."""
    rng = np.random.default_rng(5)
    lens = jnp.array([37 - 5 + 1, 37])  # 32 "video" tokens + 1 of 5 text tokens valid; all valid
    loss = lambda f: (lambda q, k, v: jnp.sum(jnp.sin(f(q, k, v))))
    for mesh_cfg, heads, collective in (({"data": 2, "fsdp": 1, "sequence": 4}, 4, "all_to_all"),
                                        ({"sequence": 8, "fsdp": 1}, 2, "collective_permute")):
        q, k, v = _qkv(rng, b=2, s=37, n=heads, d=16)
        results = {}
        for impl in ("xla", "tpu"):
            f = lambda q, k, v, impl=impl: attention(q, k, v, kv_lengths=lens, impl=impl)
            both = lambda *a, f=f: (loss(f)(*a), f(*a))
            grad_fn = jax.jit(jax.value_and_grad(both, (0, 1, 2), has_aux=True), compiler_options=FAST)
            if impl == "xla":
                results[impl] = grad_fn(q, k, v)  # one device, no mesh
                continue
            with sharding.use_mesh(sharding.make_mesh(mesh_cfg)):
                lowered = grad_fn.lower(q, k, v)
                results[impl] = lowered.compile()(q, k, v)
            assert collective in lowered.as_text(), (mesh_cfg, collective)
        (_, out), grads = results["tpu"]
        (_, ref), ref_g = results["xla"]
        err, gerr = _rel(out, ref), max(_rel(g, r) for g, r in zip(grads, ref_g))
        print(f"splash attention {mesh_cfg} heads={heads} ({collective}): fwd {err:.2e} grad {gerr:.2e}")
        assert err <= TOL and gerr <= TOL, (mesh_cfg, err, gerr)


def _child_mmdit() -> None:
    """Tiny MMDiT (8 heads) forward + LoRA grads under four meshes vs one device."""
    from dreamactor_jax.models import lora as lora_lib
    from dreamactor_jax.models import mmdit
    from dreamactor_jax.models.config import MMDiTConfig

    cfg = MMDiTConfig.named("tiny-i2v-33ch", num_attention_heads=8, attention_impl="xla")
    lcfg = lora_lib.LoRAConfig(rank=4, alpha=4.0)
    # host (numpy) arrays only: no eager device ops, no per-leaf compiles
    params = jax.tree_util.tree_map(np.asarray, mmdit.init_params_numpy(cfg, seed=0, bias_std=0.05))
    rng = np.random.default_rng(1)
    shapes = jax.eval_shape(lambda: lora_lib.init_lora(cfg, lcfg, jax.random.key(1)))
    lora = jax.tree_util.tree_map(lambda a: 0.2 * rng.standard_normal(a.shape).astype(np.float32), shapes)
    b, L = 8, 5  # 18 video + 5 text = 23 tokens: padded to 24 for the sequence axis
    inp = (
        rng.standard_normal((b, 3, 4, 6, cfg.in_channels)).astype(np.float32),
        rng.uniform(0, 1000, b).astype(np.float32),
        rng.standard_normal((b, L, cfg.text_embed_dim)).astype(np.float32),
        (np.arange(L)[None] < rng.integers(1, L + 1, (b, 1))).astype(np.int32),
        rng.standard_normal((b, cfg.pooled_projection_dim)).astype(np.float32),
    )

    def loss_and_out(params, lora, x, t, text, mask, pooled):
        out = mmdit.forward(params, cfg, x, t, text, mask, pooled, lora=lora, lora_cfg=lcfg)
        return jnp.mean(jnp.square(out)), out

    grad_fn = jax.value_and_grad(loss_and_out, argnums=1, has_aux=True)
    (_, ref_out), ref_grads = jax.jit(grad_fn, compiler_options=FAST)(params, lora, *inp)

    # fsdp=8: placement only (no compile; the fsdp=4 x sequence=2 run below checks FSDP numerics)
    mesh = sharding.make_mesh({"fsdp": 8})
    _check_fsdp(jax.device_put(params, sharding.tree_shardings(mmdit.param_axes(cfg), mesh)), mmdit.param_axes(cfg), mesh)

    for mesh_cfg in ({"sequence": 8, "fsdp": 1}, {"fsdp": 4, "sequence": 2}):
        mesh = sharding.make_mesh(mesh_cfg)
        params_s = jax.device_put(params, sharding.tree_shardings(mmdit.param_axes(cfg), mesh))
        lora_s = jax.device_put(lora, sharding.tree_shardings(lora_lib.lora_axes(cfg, lcfg), mesh))
        batch = jax.sharding.NamedSharding(mesh, sharding.logical_to_spec(("batch",), mesh=mesh))
        inp_s = [jax.device_put(a, batch) for a in inp]
        with sharding.use_mesh(mesh):
            lowered = jax.jit(grad_fn, compiler_options=FAST).lower(params_s, lora_s, *inp_s)
            (_, out), grads = lowered.compile()(params_s, lora_s, *inp_s)
        text = lowered.as_text()
        if mesh.shape["sequence"] > 1:
            assert "all_to_all" in text, f"{mesh_cfg}: the Ulysses path did not run"
        else:
            assert "all_to_all" not in text and "shard_map" not in text
        if mesh.shape["fsdp"] > 1:
            _check_fsdp(params_s, mmdit.param_axes(cfg), mesh)
        err = _rel(out, ref_out)
        gerr = max(_rel(g, r) for g, r in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(ref_grads)))
        print(mesh_cfg, "forward rel err", err, "lora grad rel err", gerr)
        assert err <= TOL and gerr <= TOL, (mesh_cfg, err, gerr)


def _check_fsdp(params, axes, mesh) -> None:
    """Every weight with an `embed` dim is split over fsdp on that dim; device 0 holds ~1/fsdp of the base."""
    n = mesh.shape["fsdp"]
    dev = mesh.devices.flat[0]
    held = total = 0
    is_axes = lambda x: isinstance(x, tuple) and all(a is None or isinstance(a, str) for a in x)
    for p, ax in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(axes, is_leaf=is_axes)):
        shard = next(s for s in p.addressable_shards if s.device == dev).data
        total, held = total + p.size, held + shard.size
        if "embed" in ax:
            i = ax.index("embed")
            assert shard.shape[i] * n == p.shape[i], (ax, p.shape, shard.shape)
    print(f"fsdp={n}: device 0 holds {held / total:.4f} of the base")
    assert held / total <= 1 / n + 0.01, held / total


if __name__ == "__main__":
    assert jax.device_count() == 8, jax.devices()
    _child_attention()
    _child_splash()
    _child_mmdit()
    print("OK")
