"""The sampler core: schedule equals diffusers', the loop equals diffusers' scheduler steps, clamping,
CFG, determinism, and long-video segment bookkeeping."""

import numpy as np
import pytest

import jax
import jax.numpy as jnp

from dreamactor_jax.sampling import long_video, sampler, scheduler

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")


def _diffusers_scheduler(num_steps, shift):
    s = diffusers.FlowMatchEulerDiscreteScheduler(shift=shift)
    s.set_timesteps(sigmas=np.linspace(1.0, 0.0, num_steps + 1)[:-1])
    return s


@pytest.mark.parametrize("num_steps,shift", [(1, 1.0), (7, 7.0), (30, 5.0)])
def test_schedule_matches_diffusers(num_steps, shift):
    ref = _diffusers_scheduler(num_steps, shift)
    sig = scheduler.flow_sigmas(num_steps, shift)
    np.testing.assert_allclose(sig, ref.sigmas.numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(scheduler.timesteps_from_sigmas(sig[:-1]), ref.timesteps.numpy(), rtol=1e-6)


def test_bad_schedule_arguments():
    with pytest.raises(ValueError, match="num_steps"):
        scheduler.flow_sigmas(0)
    with pytest.raises(ValueError, match="shift"):
        scheduler.flow_sigmas(4, shift=0.0)


def _linear_model(w):
    # A velocity that depends on x, the timestep and the conditioning, so every input matters.
    def model_fn(params, x, timestep, cond):
        h = x @ params["w"] + x.mean(axis=1, keepdims=True)  # mixes frames, so context frames matter
        return jnp.tanh(h) * (timestep[:, None, None] / 1000.0) + cond["bias"]
    return model_fn


LINEAR = _linear_model(None)


def test_loop_matches_diffusers_scheduler_steps():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((6, 6)).astype(np.float32) * 0.5
    bias = rng.standard_normal((2, 5, 6)).astype(np.float32) * 0.1
    noise = rng.standard_normal((2, 5, 6)).astype(np.float32)
    ref = _diffusers_scheduler(12, 7.0)
    x = torch.from_numpy(noise.copy())
    for t in ref.timesteps:
        xn = x.numpy()
        v = np.tanh(xn @ w + xn.mean(axis=1, keepdims=True)) * (t.item() / 1000.0) + bias
        x = ref.step(torch.from_numpy(v.astype(np.float32)), t, x, return_dict=False)[0]
    out = sampler.sample(LINEAR, {"w": jnp.asarray(w)}, {"bias": jnp.asarray(bias)}, jnp.asarray(noise),
                         jnp.asarray(scheduler.flow_sigmas(12, 7.0)))
    err = np.abs(np.asarray(out) - x.numpy()).max() / np.abs(x.numpy()).max()
    assert err < 1e-5, err


def test_deterministic_and_clamped():
    rng = np.random.default_rng(1)
    params = {"w": jnp.asarray(rng.standard_normal((6, 6)).astype(np.float32))}
    cond = {"bias": jnp.asarray(rng.standard_normal((1, 5, 6)).astype(np.float32))}
    noise = jax.random.normal(jax.random.key(3), (1, 5, 6))
    sig = jnp.asarray(scheduler.flow_sigmas(8, 3.0))
    a = sampler.sample(LINEAR, params, cond, noise, sig)
    b = sampler.sample(LINEAR, params, cond, noise, sig)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    known = jnp.asarray(rng.standard_normal((1, 5, 6)).astype(np.float32))
    mask = jnp.zeros((1, 5, 1)).at[:, :2].set(1.0)
    c = np.asarray(sampler.sample(LINEAR, params, cond, noise, sig, known, mask))
    np.testing.assert_allclose(c[:, :2], np.asarray(known)[:, :2], atol=1e-6)
    assert np.abs(c[:, 2:] - np.asarray(a)[:, 2:]).max() > 1e-3  # the context steers the free part


def test_guided_velocity():
    rng = np.random.default_rng(2)
    c, u = rng.standard_normal((2, 3, 4)).astype(np.float32)
    np.testing.assert_allclose(sampler.guided_velocity(c, u, 1.0), c, rtol=1e-6)
    np.testing.assert_allclose(sampler.guided_velocity(c, u, 0.0), u, rtol=1e-6)
    np.testing.assert_allclose(sampler.guided_velocity(c, u, 4.5), u + 4.5 * (c - u), rtol=1e-6)


@pytest.mark.parametrize("n,max_frames,overlap", [(1, 121, 5), (121, 121, 5), (122, 121, 5),
                                                  (400, 121, 9), (57, 17, 5), (18, 17, 1)])
def test_plan_segments_covers_every_frame_once(n, max_frames, overlap):
    segs = long_video.plan_segments(n, max_frames, overlap)
    frames = np.arange(n)[:, None] + np.zeros((1, 3))
    outs = []
    for s in segs:
        assert (s.length - 1) % 4 == 0 and s.length <= max_frames
        assert s.context == (0 if s is segs[0] else overlap)
        chunk = long_video.segment_frames(frames, s)
        assert chunk.shape[0] == s.length
        np.testing.assert_array_equal(chunk[: s.valid, 0], np.arange(s.start, s.start + s.valid))
        outs.append(chunk)
    np.testing.assert_array_equal(long_video.stitch(outs, segs)[:, 0], np.arange(n))


def test_plan_segments_rejects_bad_lengths():
    with pytest.raises(ValueError, match="max_frames"):
        long_video.plan_segments(100, 120)
    with pytest.raises(ValueError, match="overlap"):
        long_video.plan_segments(100, 121, 4)
    with pytest.raises(ValueError, match="num_frames"):
        long_video.plan_segments(0)


def test_boundary_continuity_detects_a_seam():
    segs = long_video.plan_segments(40, 17, 5)
    t = np.linspace(0, 1, 40)[:, None, None, None] * np.ones((1, 4, 4, 3))
    smooth = long_video.boundary_continuity(t, segs)
    assert smooth["ratio"] == pytest.approx(1.0, rel=1e-5)
    jumpy = t.copy()
    jumpy[segs[1].start + segs[1].context:] += 0.5
    assert long_video.boundary_continuity(jumpy, segs)["ratio"] > 5
