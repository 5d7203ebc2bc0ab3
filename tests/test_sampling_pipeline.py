"""The sampling pipeline: the stepped loop equals the compiled loop, the in-context MMDiT sampler equals
a hand-written Euler loop (with and without true CFG), seeds, and long-video continuity."""

import numpy as np
import pytest

import jax
import jax.numpy as jnp

from dreamactor_jax import incontext
from dreamactor_jax.models import mmdit
from dreamactor_jax.models.config import MMDiTConfig
from dreamactor_jax.sampling import long_video, pipeline, sampler, scheduler
from dreamactor_jax.sampling.velocity import InContextVelocity

from sampling_testlib import random_params

jax.config.update("jax_enable_x64", False)


def rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / np.abs(b).max())


def _mixing_model(params, x, timestep, cond):
    h = x @ params["w"] + x.mean(axis=1, keepdims=True)
    return jnp.tanh(h) * (timestep[:, None, None] / 1000.0) + cond["bias"]


def test_stepped_loop_equals_compiled_loop_and_reports_every_step():
    rng = np.random.default_rng(0)
    params = {"w": jnp.asarray(rng.standard_normal((6, 6)).astype(np.float32))}
    cond = {"bias": jnp.asarray(rng.standard_normal((1, 5, 6)).astype(np.float32))}
    noise = jax.random.normal(jax.random.key(1), (1, 5, 6))
    sig = scheduler.flow_sigmas(9, 5.0)
    known = jnp.asarray(rng.standard_normal((1, 5, 6)).astype(np.float32))
    mask = jnp.zeros((1, 5, 1)).at[:, :2].set(1.0)
    a = sampler.sample(_mixing_model, params, cond, noise, jnp.asarray(sig), known, mask)
    seen = []
    b = sampler.sample_loop(_mixing_model, params, cond, noise, sig, known, mask, on_step=seen.append)
    assert seen == list(range(9))
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------- tiny MMDiT

CFG = MMDiTConfig.named("tiny-i2v-33ch", attention_impl="xla")


@pytest.fixture(scope="module")
def tiny():
    # every leaf random (drawn with numpy: fast), so the test sees every parameter
    rng = np.random.default_rng(3)
    params = random_params(CFG, rng)
    t, h, w = 2, 4, 4  # latent frames, height, one panel's width
    canvas = rng.standard_normal((1, t, h, 2 * w, 16)).astype(np.float32)
    mask = np.asarray(incontext.make_mask(t, h, w))[None]
    canvas = canvas * mask
    text = rng.standard_normal((1, 6, CFG.text_embed_dim)).astype(np.float32)
    tmask = np.array([[1, 1, 1, 1, 0, 0]], np.int32)
    pooled = rng.standard_normal((1, CFG.pooled_projection_dim)).astype(np.float32)
    null = (rng.standard_normal((1, 6, CFG.text_embed_dim)).astype(np.float32), np.array([[1, 0, 0, 0, 0, 0]], np.int32),
            rng.standard_normal((1, CFG.pooled_projection_dim)).astype(np.float32))
    noise = rng.standard_normal(canvas.shape).astype(np.float32)
    return dict(params=params, canvas=canvas, mask=mask, text=(text, tmask, pooled), null=null, noise=noise)


_FWD = jax.jit(lambda p, *a: mmdit.forward(p, CFG, *a))


def _manual(tiny, sig, scale=None):
    """Hand-written Euler loop over mmdit.forward (two forwards per step for CFG)."""
    x = tiny["noise"].astype(np.float64)
    text, tmask, pooled = tiny["text"]
    fwd = _FWD
    for s, s_next in zip(sig[:-1], sig[1:]):
        inp = np.concatenate([x, tiny["canvas"], tiny["mask"]], axis=-1).astype(np.float32)
        t = np.array([s * 1000.0], np.float32)
        v = np.asarray(fwd(tiny["params"], inp, t, text, tmask, pooled), np.float64)
        if scale is not None:
            u = np.asarray(fwd(tiny["params"], inp, t, *tiny["null"]), np.float64)
            v = u + scale * (v - u)
        x = x + (s_next - s) * v
    return x


@pytest.mark.parametrize("scale", [None, 4.0])
def test_incontext_sampler_equals_manual_euler_loop(tiny, scale):
    sig = scheduler.flow_sigmas(3, 7.0)
    text = pipeline.text_cond(*tiny["text"], null=None if scale is None else tiny["null"], scale=scale or 1.0)
    cond = {"canvas": jnp.asarray(tiny["canvas"]), "mask": jnp.asarray(tiny["mask"]),
            **{k: jnp.asarray(v) for k, v in text.items()}}
    fn = InContextVelocity(CFG, true_cfg=scale is not None)
    got = sampler.sample(fn, tiny["params"], cond, jnp.asarray(tiny["noise"]), jnp.asarray(sig))
    want = _manual(tiny, sig, scale)
    assert rel_err(got, want) < 1e-4, rel_err(got, want)
    if scale is not None:  # guidance changes the result (the null branch is really used)
        plain = _manual(tiny, sig, None)
        assert rel_err(plain, want) > 1e-3


def test_text_cond_checks_shapes():
    t, m, p = np.ones((6, 32)), np.ones(6), np.ones(24)
    c = pipeline.text_cond(t, m, p, null=(t, m, p), scale=3.0, guidance=2.0)
    assert c["text"].shape == (1, 6, 32) and c["null_text_mask"].shape == (1, 6)
    assert c["guidance"][0] == 2000.0 and c["scale"] == 3.0
    with pytest.raises(ValueError, match="null text"):
        pipeline.text_cond(t, m, p, null=(np.ones((7, 32)), np.ones(7), p))
    with pytest.raises(ValueError, match="text"):
        pipeline.text_cond(np.ones((2, 6, 32)), m, p)


def test_settings_reject_bad_values():
    for kw, flag in ((dict(steps=0), "--steps"), (dict(shift=0.0), "--shift"),
                     (dict(segment_frames=120), "--segment-frames"), (dict(overlap=4), "--overlap"),
                     (dict(segment_frames=9, overlap=9), "--overlap")):
        with pytest.raises(ValueError, match=flag):
            pipeline.SampleSettings(**kw)


# ---------------------------------------------------------------------------------------------- long videos
# A toy causal VAE (latent frame j = pixel frame 4j, 8x8 average pooling; decode = nearest
# upsampling and linear interpolation in time, so encode(decode(z)) = z) and an analytic velocity
# field: the exact denoiser of a world where the character is `drive + 0.3 ref + b`, with `b ~ N(0,
# sigma_b^2)` shared by all frames of a clip and NOT given by the reference (lighting, a fold of
# cloth). Without context every segment draws its own b: a seam. With the clamped context the next
# segment takes b from the frames already made.

def toy_encode(px):
    px = jnp.asarray(px)
    b, t, h, w, c = px.shape
    return px[:, ::4].reshape(b, (t - 1) // 4 + 1, h // 8, 8, w // 8, 8, c).mean((3, 5))


def toy_decode(z):
    z = jnp.repeat(jnp.repeat(jnp.asarray(z), 8, 2), 8, 3)
    frames = [z[:, 0]]
    for j in range(1, z.shape[1]):
        frames += [(1 - k / 4) * z[:, j - 1] + (k / 4) * z[:, j] for k in range(1, 5)]
    return jnp.stack(frames, 1)


class Analytic:
    """The exact posterior-mean velocity of the toy world (hashable: a static jit argument)."""

    def __init__(self, sigma_b: float):
        self.sigma_b = sigma_b

    def __hash__(self):
        return hash(self.sigma_b)

    def __eq__(self, other):
        return isinstance(other, Analytic) and other.sigma_b == self.sigma_b

    def __call__(self, params, x, timestep, cond):
        s = (timestep / 1000.0)[:, None, None, None, None]
        w = x.shape[3] // 2
        drive = cond["canvas"][:, :, :, w:]
        base = drive + 0.3 * cond["canvas"][:, :1, :, :w]
        y = x[:, :, :, :w] - (1 - s) * base
        var = self.sigma_b ** 2
        b = var * (1 - s) * y.sum(1, keepdims=True) / (var * (1 - s) ** 2 * x.shape[1] + s ** 2)
        x0 = jnp.concatenate([base + b, drive], axis=3)
        return (x - x0) / s


def _toy_inputs(n=45, size=16):
    t = np.arange(n)[:, None, None, None]
    yy, xx = np.mgrid[:size, :size]
    motion = (40 + 3.0 * t + 30 * np.sin(xx / 3.0)[None, :, :, None] + np.zeros(3)).astype(np.uint8)
    ref = (127.5 + 50 * np.cos(yy / 3.0)[..., None] + np.zeros(3)).astype(np.uint8)
    return ref, motion


def test_long_video_context_removes_the_seam():
    ref, motion = _toy_inputs()
    settings = pipeline.SampleSettings(steps=10, shift=3.0, segment_frames=17, overlap=5)
    an = pipeline.Animator(Analytic(0.1), {}, toy_encode, toy_decode, {}, settings)
    out, segs = an.animate(ref, motion)
    assert out.shape == motion.shape and len(segs) == 4
    assert len({s.length for s in segs}) == 1  # one shape: compiled once
    with_ctx = long_video.boundary_continuity(out, segs)

    plain = an.segment
    an.segment = lambda i, r, m, c, cb=None: plain(i, r, m, None, cb)  # drop the context
    out2, _ = an.animate(ref, motion)
    no_ctx = long_video.boundary_continuity(out2, segs)
    # the criterion: the change across a boundary is no larger than between neighbours
    assert with_ctx["ratio"] <= 1.05, with_ctx
    assert no_ctx["ratio"] > 2.0, no_ctx  # the measure sees a seam when there is one
    # and the frames up to each boundary are the earlier segment's (stitching keeps them once)
    np.testing.assert_array_equal(out[:segs[1].start + segs[1].context], out2[:segs[1].start + segs[1].context])


def test_animator_is_deterministic_for_a_seed():
    ref, motion = _toy_inputs(n=9)
    mk = lambda seed: pipeline.Animator(Analytic(0.5), {}, toy_encode, toy_decode, {},
                                        pipeline.SampleSettings(steps=4, seed=seed, segment_frames=9, overlap=1))
    a, _ = mk(0).animate(ref, motion)
    b, _ = mk(0).animate(ref, motion)
    c, _ = mk(1).animate(ref, motion)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a.astype(int) - c.astype(int)).max() > 0


@pytest.mark.parametrize("n,max_frames,overlap", [(122, 121, 5), (400, 121, 9), (57, 17, 5), (18, 17, 1), (17, 17, 5)])
def test_equal_length_plan_covers_every_frame_once(n, max_frames, overlap):
    segs = long_video.plan_segments(n, max_frames, overlap, equal_lengths=True)
    frames = np.arange(n)[:, None]
    outs = [long_video.segment_frames(frames, s) for s in segs]
    for s in segs[1:]:
        assert s.length == max_frames and (s.context - 1) % 4 == 0 and s.context >= overlap
    np.testing.assert_array_equal(long_video.stitch(outs, segs)[:, 0], np.arange(n))
