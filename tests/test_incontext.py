"""The in-context canvas, target and mask (Eq. 2) checked region by region on random inputs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dreamactor_jax import incontext as ic

jax.config.update("jax_enable_x64", False)


def rand_u8(rng, shape):
    return rng.integers(1, 256, shape, dtype=np.uint8)  # never 0: the zero panel is then visible


# --------------------------------------------------------------------------- frame counts
def test_causal_frame_groups():
    for t in (1, 5, 9, 33):
        tl = ic.num_latent_frames(t)
        groups = [list(ic.pixel_frames_of(k)) for k in range(tl)]
        assert groups[0] == [0]  # latent frame 0 is pixel frame 0 alone (the paper's t = 1)
        assert sum(groups, []) == list(range(t))  # a partition, in order
        assert all(ic.latent_frame_of(p) == k for k, g in enumerate(groups) for p in g)
    assert ic.num_latent_frames(6, strict=False) == 2
    with pytest.raises(ValueError, match="4k \\+ 1"):
        ic.num_latent_frames(6)
    with pytest.raises(ValueError, match="num_frames"):
        ic.num_latent_frames(0)
    assert ic.latent_shape(9, 32, 48) == (3, 4, 12)
    assert ic.latent_shape(9, 32, 48, "temporal") == (4, 4, 6)
    with pytest.raises(ValueError, match="width must be a positive multiple of 16"):
        ic.latent_shape(9, 32, 40)


# -------------------------------------------------------------------------------- canvas
@pytest.mark.parametrize("batch", [(), (2,)])
def test_spatial_canvas_regions_numpy(batch):
    rng = np.random.default_rng(0)
    t, h, w = 5, 8, 6
    ref, drv = rand_u8(rng, batch + (h, w, 3)), rand_u8(rng, batch + (t, h, w, 3))
    c = ic.make_canvas(ref, drv)
    assert isinstance(c, np.ndarray) and c.shape == batch + (t, h, 2 * w, 3) and c.dtype == np.uint8
    np.testing.assert_array_equal(c[..., 0, :, :w, :], ref)  # C[1] left  = I_ref
    np.testing.assert_array_equal(c[..., 0, :, w:, :], drv[..., 0, :, :, :])  # C[1] right = D[1]
    assert (c[..., 1:, :, :w, :] == 0).all()  # C[t] left = 0 for t > 1
    np.testing.assert_array_equal(c[..., 1:, :, w:, :], drv[..., 1:, :, :, :])  # C[t] right = D[t]


def test_spatial_canvas_jax_fill_and_jit():
    rng = np.random.default_rng(1)
    ref = rng.uniform(-1, 1, (4, 6, 3)).astype(np.float32)
    drv = rng.uniform(-1, 1, (3, 4, 6, 3)).astype(np.float32)
    c = jax.jit(lambda r, d: ic.make_canvas(r, d, fill=-1.0))(jnp.asarray(ref), jnp.asarray(drv))
    assert isinstance(c, jax.Array) and c.shape == (3, 4, 12, 3)
    c = np.asarray(c)
    np.testing.assert_array_equal(c[0, :, :6], ref)
    np.testing.assert_array_equal(c[:, :, 6:], drv)
    np.testing.assert_array_equal(c[1:, :, :6], -np.ones((2, 4, 6, 3)))


def test_temporal_canvas_and_target():
    rng = np.random.default_rng(2)
    t, h, w = 5, 8, 6
    ref, drv, vid = rand_u8(rng, (h, w, 3)), rand_u8(rng, (t, h, w, 3)), rand_u8(rng, (t, h, w, 3))
    c = ic.make_canvas(ref, drv, "temporal")
    assert c.shape == (t + 1, h, w, 3)
    np.testing.assert_array_equal(c[0], ref)
    np.testing.assert_array_equal(c[1:], drv)
    tgt = ic.make_target(vid, drv, "temporal")
    assert tgt.shape == (t + 1, h, w, 3)
    np.testing.assert_array_equal(tgt[0], vid[0])  # the reference frame is V[0] by default
    np.testing.assert_array_equal(tgt[1:], vid)
    np.testing.assert_array_equal(ic.make_target(vid, drv, "temporal", ref=ref)[0], ref)
    np.testing.assert_array_equal(ic.target_half(tgt, "temporal"), vid)


def test_spatial_target_and_halves():
    rng = np.random.default_rng(3)
    vid, drv = rand_u8(rng, (2, 5, 8, 6, 3)), rand_u8(rng, (2, 5, 8, 6, 3))
    tgt = ic.make_target(vid, drv)
    assert tgt.shape == (2, 5, 8, 12, 3)
    np.testing.assert_array_equal(tgt[..., :6, :], vid)  # left half: the character video V
    np.testing.assert_array_equal(tgt[..., 6:, :], drv)  # right half: the motion signal D
    np.testing.assert_array_equal(ic.target_half(tgt), vid)
    np.testing.assert_array_equal(ic.motion_half(tgt), drv)
    # the canvas is the target with the unknown part blanked: they agree on frame 0 and the right half
    c = ic.make_canvas(vid[:, 0], drv)
    np.testing.assert_array_equal(c[:, 0], tgt[:, 0])
    np.testing.assert_array_equal(ic.motion_half(c), ic.motion_half(tgt))


@pytest.mark.parametrize(
    "ref_shape,drv_shape,match",
    [
        ((8, 7, 3), (5, 8, 6, 3), "ref must be"),
        ((2, 8, 6, 3), (3, 5, 8, 6, 3), "ref must be"),
        ((8, 6, 3), (8, 6, 3), "driving must be"),
        ((8, 6, 3), (0, 8, 6, 3), "no frames"),
    ],
)
def test_canvas_shape_errors(ref_shape, drv_shape, match):
    with pytest.raises(ValueError, match=match):
        ic.make_canvas(np.ones(ref_shape, np.uint8), np.ones(drv_shape, np.uint8))


def test_other_input_errors():
    a = np.ones((5, 8, 6, 3), np.uint8)
    with pytest.raises(ValueError, match="layout"):
        ic.make_canvas(a[0], a, "diagonal")
    with pytest.raises(ValueError, match="same shape"):
        ic.make_target(a, a[:4])
    with pytest.raises(ValueError, match="only used by layout='temporal'"):
        ic.make_target(a, a, ref=a[0])
    with pytest.raises(ValueError, match="even"):
        ic.target_half(np.ones((5, 8, 7, 3)))
    with pytest.raises(ValueError, match="latent_w"):
        ic.make_mask(3, 4, 0)


# ---------------------------------------------------------------------------------- masks
def causal_pool(x, f=ic.SPACE_FACTOR):
    """A stand-in causal VAE on `[..., T, H, W, C]`: each latent frame is the mean over its pixel
    frames (`pixel_frames_of`) and 8x8 blocks. Exact enough to locate every region."""
    tl = ic.num_latent_frames(x.shape[-4])
    frames = [x[..., list(ic.pixel_frames_of(k)), :, :, :].mean(axis=-4) for k in range(tl)]
    z = np.stack(frames, axis=-4)
    *lead, t, h, w, c = z.shape
    return z.reshape(*lead, t, h // f, f, w // f, f, c).mean(axis=(-4, -2))


@pytest.mark.parametrize("t", [1, 5, 9])
def test_spatial_mask_matches_eq2_regions(t):
    """M is 1 exactly where the canvas carries a signal, at latent resolution, frame by frame."""
    rng = np.random.default_rng(4)
    h, w = 16, 32
    c = ic.make_canvas(rand_u8(rng, (h, w, 3)), rand_u8(rng, (t, h, w, 3)))
    signal = causal_pool((c != 0).all(-1, keepdims=True).astype(np.float32))
    m = np.asarray(ic.make_mask(ic.num_latent_frames(t), h // 8, w // 8))
    assert m.shape == (ic.num_latent_frames(t), h // 8, 2 * w // 8, 1) and m.dtype == np.float32
    np.testing.assert_array_equal(m, signal)  # regions are whole latent cells: pooling is exact
    wl = w // 8
    assert (m[0, :, :wl] == 1).all()  # M_r: reference panel on latent frame 0 (pixel frame 1)
    assert (m[1:, :, :wl] == 0).all()  # M_r: empty after
    assert (m[:, :, wl:] == 1).all()  # M_m: motion panel on every frame


def test_temporal_mask():
    m = np.asarray(ic.make_mask(3, 2, 4, "temporal"))
    assert m.shape == (4, 2, 4, 1) and (m == 1).all()  # M_r (reference frame) and M_m (motion frames)


def test_region_masks():
    tl, h, w = 3, 2, 4
    r = np.asarray(ic.region_mask(tl, h, w))
    assert r.shape == (tl, h, 2 * w, 1)
    assert (r[:, :, :w] == 1).all() and (r[:, :, w:] == 0).all()
    r = np.asarray(ic.region_mask(tl, h, w, "temporal"))
    assert r.shape == (tl + 1, h, w, 1) and (r[0] == 0).all() and (r[1:] == 1).all()
    assert (np.asarray(ic.region_mask(tl, h, w, region="canvas")) == 1).all()
    with pytest.raises(ValueError, match="region"):
        ic.region_mask(tl, h, w, region="left")
    # the target region of a canvas-shaped array is what target_half returns
    x = np.random.default_rng(5).normal(size=(tl, h, 2 * w, 1))
    np.testing.assert_array_equal(x[r_s := np.asarray(ic.region_mask(tl, h, w)) > 0], ic.target_half(x).ravel())
    assert r_s.sum() == tl * h * w


# ---------------------------------------------------------------------- latents and stacking
@pytest.mark.parametrize("layout", ["spatial", "temporal"])
def test_encode_canvas_segments_and_condition_zeroing(layout):
    rng = np.random.default_rng(6)
    t, h, w = 9, 16, 16
    ref, drv = rand_u8(rng, (h, w, 3)).astype(np.float32), rand_u8(rng, (t, h, w, 3)).astype(np.float32)
    cond = ic.encode_canvas(causal_pool, ic.make_canvas(ref, drv, layout), layout)
    tl = ic.num_latent_frames(t)
    z_ref, z_drv = causal_pool(ref[None]), causal_pool(drv)
    if layout == "spatial":
        assert cond.shape == (tl, 2, 4, 3)
        np.testing.assert_allclose(cond[0, :, :2], z_ref[0], rtol=1e-6)
        assert (cond[1:, :, :2] == 0).all()
        np.testing.assert_allclose(cond[:, :, 2:], z_drv, rtol=1e-6)
    else:
        assert cond.shape == (tl + 1, 2, 2, 3)  # the reference gets its own latent frame
        np.testing.assert_allclose(cond[0], z_ref[0], rtol=1e-6)
        np.testing.assert_allclose(cond[1:], z_drv, rtol=1e-6)
        with pytest.raises(ValueError, match="4k \\+ 1"):
            causal_pool(ic.make_canvas(ref, drv, layout))  # encoding it whole would misalign time
    # the target is encoded the same way, without zeroing
    tgt = ic.encode_canvas(causal_pool, ic.make_target(drv, drv, layout), layout, zero_unmasked=False)
    assert tgt.shape == cond.shape and (tgt != 0).all()


def test_stack_channels_order_batch_and_jit():
    rng = np.random.default_rng(7)
    noise = rng.normal(size=(2, 3, 2, 8, 16)).astype(np.float32)
    cond = rng.normal(size=(2, 3, 2, 8, 16)).astype(np.float32)
    mask = np.asarray(ic.make_mask(3, 2, 4))

    @jax.jit
    def build(n, c):
        m = ic.make_mask(3, 2, 4)
        return ic.stack_channels(n, ic.mask_condition(c, m), m)

    x = build(jnp.asarray(noise), jnp.asarray(cond))
    assert isinstance(x, jax.Array) and x.shape == (2, 3, 2, 8, 33) and x.dtype == jnp.float32
    x = np.asarray(x)
    np.testing.assert_array_equal(x[..., :16], noise)  # [noise (16), condition (16), mask (1)]
    np.testing.assert_array_equal(x[..., 16:32], cond * mask)
    np.testing.assert_array_equal(x[..., 32:], np.broadcast_to(mask, (2, 3, 2, 8, 1)))
    assert (x[:, 1:, :, :4, 16:32] == 0).all() and (x[:, 0, :, :4, 16:32] != 0).all()
    # numpy in, numpy out; a batched mask works too
    y = ic.stack_channels(noise, cond * mask, np.broadcast_to(mask, (2, 3, 2, 8, 1)))
    assert isinstance(y, np.ndarray)
    np.testing.assert_array_equal(y, x)


def test_stack_channels_errors():
    n = np.zeros((3, 2, 8, 16), np.float32) + 1
    with pytest.raises(ValueError, match="same shape"):
        ic.stack_channels(n, n[..., :8], np.ones((3, 2, 8, 1)))
    with pytest.raises(ValueError, match="mask must be"):
        ic.stack_channels(n, n, np.ones((3, 2, 4, 1)))
    with pytest.raises(ValueError, match="mask must be"):
        ic.stack_channels(n, n, np.ones((3, 2, 8, 2)))
    with pytest.raises(ValueError, match="mask"):
        ic.mask_condition(n, np.ones((2, 2, 8, 1)))


# ------------------------------------------------------------------ against diffusers' pipeline
@pytest.mark.slow  # importing diffusers' pipelines takes ~10-30 s on a busy CPU
def test_channel_stack_matches_diffusers_i2v_pipeline():
    """Runs diffusers' HunyuanVideo I2V pipeline (tiny random VAE, a transformer that records its
    input) and rebuilds the recorded 33-channel input with `stack_channels` and `make_mask`: same
    channel order [noise, condition, mask], same mask (our M_r panel), condition zero where M is 0."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    from diffusers import AutoencoderKLHunyuanVideo, FlowMatchEulerDiscreteScheduler
    from diffusers.configuration_utils import ConfigMixin, register_to_config
    from diffusers.models.modeling_utils import ModelMixin
    from diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video_image2video import (
        HunyuanVideoImageToVideoPipeline,
    )
    from PIL import Image

    class Recorder(ModelMixin, ConfigMixin):
        @register_to_config
        def __init__(self, in_channels=33, image_condition_type="latent_concat", guidance_embeds=False):
            super().__init__()
            self.dummy = torch.nn.Parameter(torch.zeros(1))
            self.inputs = []

        def forward(self, hidden_states, timestep, encoder_hidden_states, encoder_attention_mask,
                    pooled_projections, guidance=None, attention_kwargs=None, return_dict=True):
            self.inputs.append(hidden_states.detach().clone())
            return (torch.zeros_like(hidden_states[:, :16]),)

    torch.manual_seed(0)
    vae = AutoencoderKLHunyuanVideo(block_out_channels=(8, 8, 8, 8), layers_per_block=1, norm_num_groups=4).eval()
    rec = Recorder()
    pipe = HunyuanVideoImageToVideoPipeline(
        text_encoder=None, tokenizer=None, transformer=rec, vae=vae, scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
        text_encoder_2=None, tokenizer_2=None, image_processor=None,
    )
    h, w, t = 32, 48, 9
    img = Image.fromarray(np.random.default_rng(9).integers(0, 256, (h, w, 3), dtype=np.uint8))
    with torch.no_grad():
        pipe(image=img, height=h, width=w, num_frames=t, num_inference_steps=1,
             prompt_embeds=torch.randn(1, 4, 4096), pooled_prompt_embeds=torch.randn(1, 768),
             prompt_attention_mask=torch.ones(1, 4), output_type="latent", return_dict=False)
        image = pipe.video_processor.preprocess(img, h, w)[:, :, None]
        z_img = vae.encode(image).latent_dist.mode() * vae.config.scaling_factor
    x = rec.inputs[0].permute(0, 2, 3, 4, 1).numpy()  # [B, T', H', W', 33], channels-last
    tl, hl, wl = ic.num_latent_frames(t), h // 8, w // 8
    assert x.shape == (1, tl, hl, wl, 33)

    m_r = np.asarray(ic.make_mask(tl, hl, wl))[:, :, :wl]  # the reference panel's mask: M_r
    np.testing.assert_array_equal(x[..., 32:], np.broadcast_to(m_r, x[..., 32:].shape))
    cond = x[..., 16:32]
    np.testing.assert_array_equal(cond, ic.mask_condition(cond, m_r))  # zero where M is 0
    z0 = z_img.permute(0, 2, 3, 4, 1).numpy()[:, 0]
    assert np.abs(cond[:, 0] - z0).max() <= 1e-5 * np.abs(z0).max()  # frame 0: the image latent
    assert (x[..., :16] != 0).all()  # the noise channels come first
    np.testing.assert_array_equal(ic.stack_channels(x[..., :16], cond, m_r), x)
