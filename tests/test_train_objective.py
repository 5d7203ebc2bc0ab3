"""Flow-matching objective against diffusers' FlowMatchEulerDiscreteScheduler; LoRA optimizer."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dreamactor_jax.train import objective as O
from dreamactor_jax.train.optim import OptimConfig, lr_schedule, make_optimizer

jax.config.update("jax_enable_x64", False)


def _rel(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(np.asarray(b))))


def test_noising_shift_and_velocity_match_diffusers_scheduler():
    torch = pytest.importorskip("torch")
    from diffusers import FlowMatchEulerDiscreteScheduler

    raw = np.linspace(1.0, 0.05, 10).astype(np.float32)
    sch = FlowMatchEulerDiscreteScheduler(shift=7.0)
    sch.set_timesteps(sigmas=raw)  # the scheduler applies its shift to custom sigmas
    sig_ref = sch.sigmas.numpy()[:-1]
    assert _rel(O.shift_sigma(jnp.asarray(raw), 7.0), sig_ref) < 1e-6
    assert _rel(O.timesteps_from_sigmas(jnp.asarray(sig_ref)), sch.timesteps.numpy()) < 1e-6

    rng = np.random.default_rng(0)
    x0 = rng.normal(size=(1, 3, 2, 4, 5)).astype(np.float32)
    noise = rng.normal(size=x0.shape).astype(np.float32)
    k = 4
    t = sch.timesteps[k:k + 1]
    ref = sch.scale_noise(torch.from_numpy(x0), t, torch.from_numpy(noise)).numpy()
    xt = O.add_noise(jnp.asarray(x0), jnp.asarray(noise), jnp.asarray(sig_ref[k:k + 1]))
    assert _rel(xt, ref) < 1e-6
    # One Euler step with the exact velocity lands on the next noise level: v = noise - x0.
    v = O.velocity_target(jnp.asarray(x0), jnp.asarray(noise))
    sch._step_index = k
    nxt = sch.step(torch.from_numpy(np.array(v)), t[0], torch.from_numpy(ref)).prev_sample.numpy()
    want = O.add_noise(jnp.asarray(x0), jnp.asarray(noise), jnp.asarray(sch.sigmas.numpy()[k + 1:k + 2]))
    assert _rel(nxt, want) < 1e-5


def test_sigma_sampling_ranges_and_shift_moves_mass_up():
    key = jax.random.PRNGKey(0)
    for sampling in O.SAMPLINGS:
        s1 = np.asarray(O.sample_sigmas(key, 4096, O.FlowConfig(sampling=sampling, shift=1.0)))
        s7 = np.asarray(O.sample_sigmas(key, 4096, O.FlowConfig(sampling=sampling, shift=7.0)))
        assert s1.dtype == np.float32 and (s1 >= 0).all() and (s1 <= 1).all()
        assert np.median(s7) > np.median(s1) + 0.2
    ln = np.asarray(O.sample_sigmas(key, 4096, O.FlowConfig(sampling="logit_normal", shift=1.0)))
    assert abs(np.median(ln) - 0.5) < 0.05 and ln.std() < 0.25  # concentrated around 0.5


def test_loss_region_target_ignores_the_right_half():
    rng = np.random.default_rng(1)
    pred = jnp.asarray(rng.normal(size=(2, 2, 3, 8, 4)), jnp.float32)
    tgt = jnp.asarray(rng.normal(size=pred.shape), jnp.float32)
    changed = pred.at[:, :, :, 4:].add(10.0)
    whole, per = O.flow_loss(pred, tgt, "canvas")
    assert per.shape == (2,) and abs(float(whole) - float(jnp.mean((pred - tgt) ** 2))) < 1e-5
    left, _ = O.flow_loss(pred, tgt, "target")
    assert abs(float(left) - float(jnp.mean((pred[:, :, :, :4] - tgt[:, :, :, :4]) ** 2))) < 1e-5
    assert float(O.flow_loss(changed, tgt, "target")[0]) == pytest.approx(float(left), rel=1e-6)
    assert float(O.flow_loss(changed, tgt, "canvas")[0]) > float(whole) + 10


def test_loss_region_temporal_ignores_the_reference_frame():
    """layout="temporal" (Table 2 A): the target region is every frame after the leading reference frame."""
    rng = np.random.default_rng(2)
    pred = jnp.asarray(rng.normal(size=(2, 3, 3, 4, 4)), jnp.float32)
    tgt = jnp.asarray(rng.normal(size=pred.shape), jnp.float32)
    video, per = O.flow_loss(pred, tgt, "target", "temporal")
    assert per.shape == (2,)
    assert abs(float(video) - float(jnp.mean((pred[:, 1:] - tgt[:, 1:]) ** 2))) < 1e-5
    changed = pred.at[:, 0].add(10.0)  # the reference frame is not scored
    assert float(O.flow_loss(changed, tgt, "target", "temporal")[0]) == pytest.approx(float(video), rel=1e-6)
    whole, _ = O.flow_loss(pred, tgt, "canvas", "temporal")
    assert abs(float(whole) - float(jnp.mean((pred - tgt) ** 2))) < 1e-5
    with pytest.raises(ValueError, match="layout"):
        O.FlowConfig(layout="diagonal")


def test_bad_objective_config():
    with pytest.raises(ValueError, match="sampling"):
        O.FlowConfig(sampling="cosmic")
    with pytest.raises(ValueError, match="loss_region"):
        O.FlowConfig(loss_region="right")


def test_warmup_schedule_and_decoupled_weight_decay():
    cfg = OptimConfig(lr=1e-3, warmup_steps=10, weight_decay=0.1)
    sched = lr_schedule(cfg)
    assert float(sched(0)) == 0.0 and float(sched(5)) == pytest.approx(5e-4)
    assert float(sched(10)) == pytest.approx(1e-3) and float(sched(1000)) == pytest.approx(1e-3)
    cos = lr_schedule(OptimConfig(lr=1e-3, warmup_steps=10, schedule="cosine", total_steps=110))
    assert float(cos(110)) == pytest.approx(0.0, abs=1e-9) and float(cos(60)) == pytest.approx(5e-4, rel=1e-4)
    opt = make_optimizer(cfg)
    p = {"a": jnp.asarray(np.random.default_rng(0).normal(size=(3, 4)), jnp.float32)}
    st = opt.init(p)
    zeros = jax.tree.map(jnp.zeros_like, p)
    for _ in range(6):  # after 5 updates the step count is 5 -> lr 5e-4
        upd, st = opt.update(zeros, st, p)
    np.testing.assert_allclose(upd["a"], -5e-4 * 0.1 * p["a"], rtol=1e-5)


def test_clipping_bounds_the_gradient_norm():
    p = {"a": jnp.ones((4,))}
    g = {"a": jnp.asarray([30.0, -40.0, 0.0, 0.0])}  # norm 50
    for clip, want in ((0.5, 0.5), (0.0, 50.0)):
        opt = make_optimizer(OptimConfig(lr=1.0, warmup_steps=0, b1=0.9, clip_norm=clip))
        _, st = opt.update(g, opt.init(p), p)
        mu = jax.tree.leaves(st)[1]  # Adam's first moment = (1 - b1) * (clipped) gradient
        assert mu.shape == (4,)
        assert float(jnp.linalg.norm(mu)) == pytest.approx(0.1 * want, rel=1e-5)
