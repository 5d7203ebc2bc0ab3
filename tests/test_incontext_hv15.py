"""The in-context input stack for HunyuanVideo-1.5: 65 = 32 noise + 32 condition latent + 1 mask.

Runs diffusers' `HunyuanVideo15ImageToVideoPipeline` (tiny random 16x VAE with 32 latent channels,
tiny random SigLIP, a transformer that records its inputs) and rebuilds the recorded input with the
project's `incontext.stack_channels` / `make_mask` / `mask_condition`: same channel order, same
mask (the reference panel's M_r: 1 on latent frame 0), condition zero where M is 0, frame 0 the image
latent; and the SigLIP tokens go in as `image_embeds`, the model's image stream.
"""

from __future__ import annotations

import numpy as np
import pytest

from dreamactor_jax import incontext as ic


@pytest.mark.slow  # importing diffusers' pipelines and transformers' SigLIP takes ~10-30 s
def test_channel_stack_matches_diffusers_hv15_i2v_pipeline():
    torch = pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    pytest.importorskip("transformers")
    from hv15_testlib import recording_i2v_pipeline
    from PIL import Image

    latent_ch = 32
    pipe, rec, vae = recording_i2v_pipeline(latent_ch)  # CFG off: one call
    img = Image.fromarray(np.random.default_rng(9).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    t = 9
    with torch.no_grad():
        pipe(image=img, num_frames=t, num_inference_steps=1, prompt_embeds=torch.randn(1, 4, 8),
             prompt_embeds_mask=torch.ones(1, 4), prompt_embeds_2=torch.randn(1, 3, 8),
             prompt_embeds_mask_2=torch.ones(1, 3), output_type="latent", return_dict=False)
        h, w = pipe.video_processor.calculate_default_height_width(64, 64, rec.config.target_size)
        image = pipe.video_processor.preprocess(pipe.video_processor.resize(img, h, w, resize_mode="crop"), h, w)
        z_img = vae.encode(image[:, :, None]).latent_dist.mode() * vae.config.scaling_factor
    call = rec.calls[0]
    x = call["x"].permute(0, 2, 3, 4, 1).numpy()  # [B, T', H', W', 65], channels-last
    tl, hl, wl = ic.num_latent_frames(t), h // 16, w // 16
    assert x.shape == (1, tl, hl, wl, 65)

    m_r = np.asarray(ic.make_mask(tl, hl, wl))[:, :, :wl]  # the reference panel's mask M_r
    np.testing.assert_array_equal(x[..., 64:], np.broadcast_to(m_r, x[..., 64:].shape))
    cond = x[..., latent_ch:2 * latent_ch]
    np.testing.assert_array_equal(cond, ic.mask_condition(cond, m_r))  # zero where M is 0
    z0 = z_img.permute(0, 2, 3, 4, 1).numpy()[:, 0]
    assert np.abs(cond[:, 0] - z0).max() <= 1e-5 * np.abs(z0).max()  # frame 0: the image latent
    assert (x[..., :latent_ch] != 0).all()  # the noise channels come first
    np.testing.assert_array_equal(ic.stack_channels(x[..., :latent_ch], cond, m_r), x)
    # the SigLIP last hidden state of the image is the image stream (all 16 tokens of a 32 px / 8 px grid)
    assert tuple(call["image_embeds"].shape) == (1, 16, 16) and bool((call["image_embeds"] != 0).any())
