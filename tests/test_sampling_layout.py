"""The sampler in either in-context layout (`SampleSettings.layout`): a temporal segment on the tiny
MMDiT equals the one built by hand from `incontext`, spatial is what it was, context frames are clamped
where the target holds them, and a run's own layout is the one it samples with."""

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dreamactor_jax import api, incontext
from dreamactor_jax.models import mmdit
from dreamactor_jax.models.config import MMDiTConfig
from dreamactor_jax.sampling import loading, pipeline, sampler
from dreamactor_jax.sampling.velocity import InContextVelocity

from sampling_testlib import random_params

jax.config.update("jax_enable_x64", False)

CFG = MMDiTConfig.named("tiny-i2v-33ch", attention_impl="xla")
H = W = 32  # pixels per panel: latents 4 x 4


def toy_encode(px):
    """A causal stand-in VAE: latent frame j = pixel frame 4j, 8x8 mean pooling, 16 channels."""
    px = jnp.asarray(px)
    b, t, h, w, _ = px.shape
    z = px[:, ::4].reshape(b, (t - 1) // 4 + 1, h // 8, 8, w // 8, 8, 3).mean((3, 5))
    return jnp.concatenate([z, -z, 0.5 * z, z * z, jnp.sin(3 * z), jnp.cos(z)[..., :1]], -1)


def toy_decode(z):
    """latents [1, T', H', W', 16] -> pixels [1, 4(T'-1)+1, 8H', 8W', 3] (nearest, repeated in time)."""
    z = jnp.repeat(jnp.repeat(jnp.asarray(z)[..., :3], 8, 2), 8, 3)
    return jnp.concatenate([z[:, :1], jnp.repeat(z[:, 1:], 4, axis=1)], axis=1)


@pytest.fixture(scope="module")
def tiny():
    """Random tiny-MMDiT weights (every leaf drawn), a random text condition, a reference and motion."""
    rng = np.random.default_rng(7)
    params = random_params(CFG, rng)
    text = pipeline.text_cond(rng.standard_normal((6, CFG.text_embed_dim)), np.array([1, 1, 1, 0, 0, 0]),
                              rng.standard_normal(CFG.pooled_projection_dim))
    ref = rng.uniform(-1, 1, (H, W, 3)).astype(np.float32)
    motion = rng.uniform(-1, 1, (9, H, W, 3)).astype(np.float32)
    return dict(params=params, text=text, ref=ref, motion=motion, rng=rng)


def _animator(tiny, layout, **kw):
    s = pipeline.SampleSettings(steps=3, shift=5.0, seed=4, segment_frames=9, overlap=5, layout=layout, **kw)
    return pipeline.Animator(InContextVelocity(CFG), tiny["params"], toy_encode, toy_decode, tiny["text"], s)


_FWD = jax.jit(lambda p, *a: mmdit.forward(p, CFG, *a))


def test_temporal_segment_equals_the_one_built_by_hand(tiny):
    an = _animator(tiny, "temporal")
    got = an.segment(2, tiny["ref"], tiny["motion"], None)
    # by hand: canvas [ref; D] encoded in two pieces, all-ones mask, Euler over mmdit.forward, the frames after ref
    canvas = incontext.make_canvas(tiny["ref"], tiny["motion"], "temporal", fill=-1.0)
    z_cond = np.concatenate([toy_encode(canvas[None, :1]), toy_encode(canvas[None, 1:])], axis=1)
    assert z_cond.shape == (1, 4, 4, 4, 16)  # reference + 3 latent frames, one panel wide
    mask = np.ones(z_cond.shape[:-1] + (1,), np.float32)
    x = np.asarray(jax.random.normal(jax.random.fold_in(jax.random.PRNGKey(4), 2), z_cond.shape), np.float64)
    text = tiny["text"]
    for s, s_next in zip(an.sigmas[:-1], an.sigmas[1:]):
        inp = np.concatenate([x, z_cond, mask], axis=-1).astype(np.float32)
        t = np.array([s * 1000.0], np.float32)
        v = _FWD(tiny["params"], inp, t, text["text"], text["text_mask"], text["pooled"])
        x = x + (s_next - s) * np.asarray(v, np.float64)
    want = np.asarray(toy_decode(x[:, 1:].astype(np.float32)))[0, :9]
    assert got.shape == want.shape == (9, H, W, 3)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    spatial = _animator(tiny, "spatial").segment(2, tiny["ref"], tiny["motion"], None)
    assert np.abs(spatial - got).max() > 1e-2  # the layout really changes what the model sees


def test_spatial_segment_is_what_it_was(tiny):
    """The spatial segment, with context, equals today's code for it, to the bit."""
    an = _animator(tiny, "spatial")
    ctx = tiny["rng"].uniform(-1, 1, (5, H, W, 3)).astype(np.float32)
    got = an.segment(1, tiny["ref"], tiny["motion"], ctx)
    # the pre-layout pipeline, line by line
    ref, motion = tiny["ref"], tiny["motion"]
    z_cond = jnp.asarray(incontext.encode_canvas(toy_encode, incontext.make_canvas(ref, motion, fill=-1.0)[None]))
    _, tl, hl, wl2, _ = z_cond.shape
    mask = incontext.make_mask(tl, hl, wl2 // 2)[None]
    noise = jax.random.normal(jax.random.fold_in(jax.random.PRNGKey(4), 1), z_cond.shape, jnp.float32)
    known, known_mask = np.zeros(z_cond.shape, np.float32), np.zeros((1, tl, 1, 1, 1), np.float32)
    z_ctx = np.asarray(toy_encode(jnp.asarray(np.concatenate([ctx, motion[:5]], axis=-2))[None]))
    known[:, :2], known_mask[:, :2] = z_ctx, 1.0
    cond = {"canvas": z_cond, "mask": mask, **an.text}
    latent = sampler.sample_loop(an.model_fn, an.params, cond, noise, an.sigmas, jnp.asarray(known),
                                 jnp.asarray(known_mask))
    want = np.asarray(toy_decode(incontext.target_half(latent)), np.float32)[0, :9]
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("layout", ["spatial", "temporal"])
def test_context_frames_are_clamped_where_the_target_holds_them(tiny, layout, monkeypatch):
    """5 context frames are 2 latent frames: spatial, the first two (both panels); temporal, the two
    after the reference's latent frame, which stays free as in a first segment."""
    seen = {}
    real = sampler.sample_loop

    def spy(model_fn, params, cond, noise, sigmas, known=None, known_mask=None, on_step=None):
        out = real(model_fn, params, cond, noise, sigmas, known, known_mask, on_step=on_step)
        seen.update(known=np.asarray(known), known_mask=np.asarray(known_mask), latent=np.asarray(out))
        return out
    monkeypatch.setattr(pipeline.sampler, "sample_loop", spy)
    ctx = tiny["rng"].uniform(-1, 1, (5, H, W, 3)).astype(np.float32)
    _animator(tiny, layout).segment(1, tiny["ref"], tiny["motion"], ctx)
    lat, km = seen["latent"], seen["known_mask"][0, :, 0, 0, 0]
    if layout == "spatial":
        np.testing.assert_array_equal(km, [1, 1, 0])
        want = toy_encode(np.concatenate([ctx, tiny["motion"][:5]], axis=-2)[None])  # V (+) D
        np.testing.assert_allclose(lat[:, :2], want, rtol=1e-6, atol=1e-6)
        assert np.abs(lat[:, 2:] - seen["known"][:, 2:]).max() > 1e-2
    else:
        np.testing.assert_array_equal(km, [0, 1, 1, 0])
        np.testing.assert_allclose(lat[:, 1:3], toy_encode(ctx[None]), rtol=1e-6, atol=1e-6)
        assert np.abs(lat[:, 0] - toy_encode(tiny["ref"][None, None])[:, 0]).max() > 1e-3  # the reference frame: free
        assert np.abs(lat[:, 3:] - seen["known"][:, 3:]).max() > 1e-2


def test_layout_setting_and_the_runs_own_layout(tiny):
    assert pipeline.SampleSettings().layout == "spatial"
    with pytest.raises(ValueError, match=r"layout 'diagonal': must be one of \('spatial', 'temporal'\)"):
        pipeline.SampleSettings(layout="diagonal")
    # a run's config: objective.layout, older runs (no such key) spatial
    assert loading.layout_of({}) == loading.layout_of({"objective": {"shift": 1.0}}) == "spatial"
    assert loading.layout_of({"objective": {"layout": "temporal"}}) == "temporal"
    # the API's animator takes the run's layout (a packed-style run: its own codec, no VAE config)
    run = types.SimpleNamespace(config={"objective": {"layout": "temporal"}}, mcfg=CFG, params=tiny["params"],
                                vcfg=None, encode=toy_encode, decode=toy_decode, text=None)
    assert api.make_animator(run, steps=2).settings.layout == "temporal"
    assert api.make_animator(run, steps=2, layout="spatial").settings.layout == "spatial"
    run.config = {"variant": "pose"}
    assert api.make_animator(run, steps=2).settings.layout == "spatial"


def test_packed_run_adapter_layout(tmp_path):
    import json

    from dreamactor_jax.sampling import packed

    info = {"format": packed.FORMAT, "version": 1, "model": {}, "base": [], "default_adapter": "a",
            "autoencoder": {"kind": "haar"}, "adapters": {"a": {"file": "x", "lora": {}},
                                                          "t": {"file": "y", "lora": {}, "layout": "temporal"}}}
    (tmp_path / packed.RUN_FILE).write_text(json.dumps(info))
    assert loading.layout_of(packed.read_config(tmp_path)[0]) == "spatial"
    assert loading.layout_of(packed.read_config(tmp_path / "t")[0]) == "temporal"
