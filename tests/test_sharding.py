"""Sharded forward (8 fake CPU devices) equals the unsharded one; mesh construction rules.

The 8-device part runs in a subprocess, since XLA_FLAGS must be set before jax starts and pytest
runs every test file in one process.
"""

from __future__ import annotations

import jax
import pytest
from jax.sharding import PartitionSpec as P

from dreamactor_jax import sharding
from fake_devices import run_on_fake_devices


def test_logical_to_spec_rules():
    assert sharding.logical_to_spec(("layers", "embed", "mlp")) == P(None, "fsdp", "tensor")
    assert sharding.logical_to_spec(("batch", "seq", "act_embed")) == P(("fsdp", "data"), "sequence", None)
    # a mesh axis is used once per array: the second 'embed' is replicated
    assert sharding.logical_to_spec(("embed", "embed")) == P("fsdp", None)
    with pytest.raises(ValueError, match="no sharding rule"):
        sharding.logical_to_spec(("nope",))


def test_mesh_config_fills_and_validates():
    assert sharding.MeshConfig(data=2, fsdp=-1, tensor=2).sizes(8) == (2, 2, 1, 2)
    assert sharding.MeshConfig(data=-1, fsdp=1).sizes(1) == (1, 1, 1, 1)
    with pytest.raises(ValueError, match="at most one axis"):
        sharding.MeshConfig(data=-1, fsdp=-1).sizes(8)
    with pytest.raises(ValueError, match="not divisible"):
        sharding.MeshConfig(data=3, fsdp=-1).sizes(8)
    with pytest.raises(ValueError, match="need 4 devices"):
        sharding.MeshConfig(data=2, fsdp=2).sizes(8)
    with pytest.raises(ValueError, match="unknown axes"):
        sharding.MeshConfig.from_mapping({"model": 2})
    mesh = sharding.make_mesh({"fsdp": -1}, devices=jax.devices()[:1])
    assert mesh.axis_names == sharding.MESH_AXES and mesh.devices.size == 1


# forward + LoRA gradients on the first, forward on the second (sequence axis: sequence-parallel attention)
MESHES = ({"data": 2, "fsdp": 2, "tensor": 2}, {"fsdp": 2, "sequence": 2, "tensor": 2})


@pytest.fixture(scope="module")
def child_results():
    results = {}
    for line in run_on_fake_devices(__file__).splitlines():
        if line.startswith("RESULT "):
            _, mesh, err, gerr = line.split(" ")
            results[mesh] = (float(err), float(gerr))
    return results


def _key(mesh_cfg) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(mesh_cfg.items()))


@pytest.mark.parametrize("mesh_cfg", MESHES, ids=_key)
def test_sharded_forward_and_lora_grads_equal_unsharded_on_8_fake_devices(child_results, mesh_cfg):
    err, gerr = child_results[_key(mesh_cfg)]
    assert err <= 1e-5 and gerr <= 1e-4, (err, gerr)


@pytest.mark.xfail(strict=False, reason="XLA (jax 0.10.2, CPU) miscompiles batch sharded data-major over (data, fsdp) "
                   "with (fsdp, tensor) weights; why RULES shard batch as (fsdp, data)")
def test_upstream_bug_batch_data_major(child_results):
    """Pure-JAX repro (no project code): batch items on mixed (data, fsdp) coordinates come out wrong.

    Same with the Shardy and the GSPMD partitioner; the fsdp-major order used by `RULES` is exact.
    Not strict: the bug belongs to XLA and may be fixed in the jax a fresh install picks; an XPASS
    in the report says the workaround can go. Our own order is asserted by the next test.
    """
    assert child_results["repro_data_major"][0] <= 1e-5


def test_fsdp_major_batch_order_is_exact(child_results):
    """The same repro with the batch order `RULES` uses is exact."""
    assert child_results["repro_fsdp_major"][0] <= 1e-5


def _child() -> None:
    """Runs in the 8-device subprocess: forward and LoRA gradient, sharded vs unsharded."""
    import jax.numpy as jnp
    import numpy as np

    from dreamactor_jax.models import lora as lora_lib
    from dreamactor_jax.models import mmdit
    from dreamactor_jax.models.config import MMDiTConfig

    assert jax.device_count() == 8, jax.devices()
    cfg = MMDiTConfig.named("tiny-i2v-33ch")
    lcfg = lora_lib.LoRAConfig(rank=4, alpha=4.0)
    params = mmdit.init_params_numpy(cfg, seed=0, bias_std=0.05)
    rng = np.random.default_rng(1)
    lora = lora_lib.init_lora(cfg, lcfg, jax.random.key(1))
    lora = jax.tree_util.tree_map(lambda x: x + 0.05 * rng.standard_normal(x.shape).astype(np.float32), lora)
    b, L = 4, 6
    inp = (
        rng.standard_normal((b, 3, 4, 6, cfg.in_channels)).astype(np.float32),
        np.array([900.0, 500.0, 100.0, 10.0], np.float32),
        rng.standard_normal((b, L, cfg.text_embed_dim)).astype(np.float32),
        (np.arange(L)[None] < np.array([[6], [2], [4], [1]])).astype(np.int32),
        rng.standard_normal((b, cfg.pooled_projection_dim)).astype(np.float32),
    )

    def loss_and_out(params, lora, x, t, text, mask, pooled):
        out = mmdit.forward(params, cfg, x, t, text, mask, pooled, lora=lora, lora_cfg=lcfg)
        return jnp.mean(jnp.square(out)), out

    grad_fn = jax.value_and_grad(loss_and_out, argnums=1, has_aux=True)
    (ref_loss, ref_out), ref_grads = jax.jit(grad_fn)(params, lora, *inp)

    for order in ("data_major", "fsdp_major"):
        print("RESULT", f"repro_{order}", _repro(order), 0.0)
    for mesh_cfg in MESHES:
        mesh = sharding.make_mesh(mesh_cfg)
        p_sh = sharding.tree_shardings(mmdit.param_axes(cfg), mesh)
        l_sh = sharding.tree_shardings(lora_lib.lora_axes(cfg, lcfg), mesh)
        batch = jax.sharding.NamedSharding(mesh, sharding.logical_to_spec(("batch",), mesh=mesh))
        params_s = jax.device_put(params, p_sh)
        lora_s = jax.device_put(lora, l_sh)
        inp_s = [jax.device_put(a, batch) for a in inp]
        with_grads = mesh_cfg == MESHES[0]  # gradients on one mesh only: keeps the test's CPU time small
        with sharding.use_mesh(mesh):
            if with_grads:
                (loss, out), grads = jax.jit(grad_fn)(params_s, lora_s, *inp_s)
            else:
                out = jax.jit(lambda *a: loss_and_out(*a)[1])(params_s, lora_s, *inp_s)
        assert len(params_s["transformer_blocks"]["ff"]["net_0"]["proj"]["kernel"].sharding.device_set) == 8
        err = float(jnp.max(jnp.abs(out - ref_out)) / jnp.max(jnp.abs(ref_out)))
        gerr = 0.0
        if with_grads:
            gerr = max(
                float(jnp.max(jnp.abs(g - r)) / (jnp.max(jnp.abs(r)) + 1e-30))
                for g, r in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(ref_grads))
            )
        print("RESULT", _key(mesh_cfg), err, gerr)


def _repro(order: str) -> float:
    """adaLN-gated MLP in pure JAX, batch over (data, fsdp) in the given order, weights (fsdp, tensor)."""
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import Mesh, NamedSharding

    mesh = Mesh(np.array(jax.devices()).reshape(2, 2, 2), ("data", "fsdp", "tensor"))
    rng = np.random.default_rng(0)
    r = lambda *s: rng.standard_normal(s).astype(np.float32)
    b, d, m = 4, 32, 128
    arrays = [r(b, 6, d), r(b, d), r(d, d), r(d, d), r(d, 2 * d), r(d, m), r(m, d)]

    def f(x, temb, wv, wo, wm, w0, w2):
        g1, g2 = jnp.split(jax.nn.silu(temb) @ wm, 2, axis=-1)
        x = x + ((x @ wv) @ wo) * g1[:, None]
        return x + (jax.nn.silu(x @ w0) @ w2) * g2[:, None]

    ref = np.asarray(jax.jit(f)(*arrays))
    batch = ("data", "fsdp") if order == "data_major" else ("fsdp", "data")
    specs = [P(batch), P(batch), P("fsdp", "tensor"), P("tensor", "fsdp"), P("fsdp", "tensor"), P("fsdp", "tensor"), P("tensor", "fsdp")]
    out = jax.jit(f)(*[jax.device_put(a, NamedSharding(mesh, s)) for a, s in zip(arrays, specs)])
    return float(np.max(np.abs(np.asarray(out) - ref)) / np.max(np.abs(ref)))


if __name__ == "__main__":
    _child()
