"""CFG-parallel and sequence-parallel sampling (`sampling.parallel`) equal one device (fp32, tiny
I2V-33ch, true CFG, 3 Euler steps), on 8 fake CPU devices in a child process (XLA's device count is
fixed when jax starts): meshes data=2 (the cond and null halves on two devices) and data=2 x
sequence=4 (each half's tokens over four, attention by Ulysses/ring)."""

from __future__ import annotations

import numpy as np

from fake_devices import run_on_fake_devices


def test_cfg_and_sequence_parallel_sampling_on_8_fake_devices():
    stdout = run_on_fake_devices(__file__)
    assert stdout.strip().endswith("OK"), stdout[-3000:]


def _child() -> None:
    import jax
    import jax.numpy as jnp

    from dreamactor_jax import sharding
    from dreamactor_jax.models import mmdit
    from dreamactor_jax.models.config import MMDiTConfig
    from dreamactor_jax.sampling import parallel, pipeline, sampler, scheduler
    from dreamactor_jax.sampling.velocity import InContextVelocity

    assert jax.device_count() == 8
    cfg = MMDiTConfig.named("tiny-i2v-33ch", attention_impl="xla", num_layers=1, num_single_layers=1)
    params = mmdit.init_params_numpy(cfg, seed=3, bias_std=0.05)
    rng = np.random.default_rng(4)
    t, h, w = 2, 4, 4
    mask = np.zeros((1, t, h, 2 * w, 1), np.float32)
    mask[:, 0, :, :w] = 1
    mask[:, :, :, w:] = 1
    rnd = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    null = (rnd(1, 8, cfg.text_embed_dim), np.array([[1] + [0] * 7], np.int32), rnd(1, cfg.pooled_projection_dim))
    text = pipeline.text_cond(rnd(1, 8, cfg.text_embed_dim), np.array([[1] * 5 + [0] * 3], np.int32),
                              rnd(1, cfg.pooled_projection_dim), null=null, scale=4.0)
    cond = {"canvas": rnd(1, t, h, 2 * w, 16) * mask, "mask": mask, **text}
    noise = rnd(1, t, h, 2 * w, 16)
    sig = np.asarray(scheduler.flow_sigmas(3, 5.0), np.float32)
    model = InContextVelocity(cfg, true_cfg=True)
    one = jax.devices()[:1]
    with jax.default_device(one[0]):
        want = np.asarray(sampler.sample(model, params, jax.tree_util.tree_map(jnp.asarray, cond), jnp.asarray(noise),
                                         jnp.asarray(sig)))
    for axes in ({"data": 2, "fsdp": 1}, {"data": 2, "fsdp": 1, "sequence": 4}):
        n = int(np.prod(list(axes.values())))
        mesh = sharding.make_mesh(axes, devices=jax.devices()[:n])
        got = parallel.sample_on_mesh(model, params, cond, noise, sig, mesh)
        assert len(got.sharding.device_set) == n
        err = float(np.abs(np.asarray(got) - want).max() / np.abs(want).max())
        assert err <= 1e-5, (axes, err)
        print(axes, "max rel err", err, flush=True)
        with sharding.use_mesh(mesh):  # what really ran: the compiled per-device program
            hlo = sampler.sample.lower(parallel.OnMesh(model, mesh), *jax.tree_util.tree_map(
                jnp.asarray, (params, cond, noise, sig))).compile().as_text()
        # each device group holds one half of the 2B = 2 CFG batch: the blocks' activations are batch 1
        per_dev = f"f32[1,{16 // axes.get('sequence', 1)},32]"  # [B, video tokens, d] of one device
        assert per_dev in hlo and "f32[2,16,32]" not in hlo, axes
        if axes.get("sequence", 1) > 1:
            assert "all-to-all" in hlo or "collective-permute" in hlo, axes
    print("OK")


if __name__ == "__main__":
    _child()
