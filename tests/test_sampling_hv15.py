"""The sampler's HunyuanVideo-1.5 model input against diffusers' `HunyuanVideo15ImageToVideoPipeline`.

The pipeline runs with a recording stand-in transformer and true CFG (its guider on); the project's
`Animator` + `InContextVelocity` run with `mmdit.forward` replaced by a recorder. Both get the same
prompt / negative embeddings and glyph tokens and the same reference image through the same tiny
random SigLIP (`text.hv15.image_token_fn`'s encoding). Checked: the image tokens are the reference's
SigLIP tokens in *both* guidance branches (as the pipeline passes them), the text and glyph streams the
prompt's in the first branch and the negative prompt's in the second.
"""

from __future__ import annotations

import numpy as np
import pytest


@pytest.mark.slow  # importing diffusers' pipelines and transformers' SigLIP takes ~10-30 s
def test_sampler_passes_the_hv15_i2v_pipelines_streams_to_both_cfg_branches(monkeypatch):
    torch = pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    pytest.importorskip("transformers")
    from hv15_testlib import recording_i2v_pipeline
    import jax
    import jax.numpy as jnp
    from PIL import Image

    from dreamactor_jax.models import mmdit
    from dreamactor_jax.models.config import MMDiTConfig
    from dreamactor_jax.sampling.pipeline import Animator, SampleSettings, text_cond
    from dreamactor_jax.sampling.velocity import InContextVelocity
    from dreamactor_jax.text import hv15

    latent_ch = 32
    pipe, rec, _ = recording_i2v_pipeline(latent_ch, guidance_scale=5.0)
    siglip, processor = pipe.image_encoder, pipe.feature_extractor
    rng = np.random.default_rng(3)
    ref = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    g = torch.Generator().manual_seed(1)
    emb = {k: torch.randn(1, n, 8, generator=g) for k, n in (("prompt_embeds", 4), ("negative_prompt_embeds", 4),
                                                             ("prompt_embeds_2", 3), ("negative_prompt_embeds_2", 3))}
    masks = {"prompt_embeds_mask": torch.tensor([[1, 1, 1, 0]]),
             "negative_prompt_embeds_mask": torch.tensor([[1, 0, 0, 0]]),
             "prompt_embeds_mask_2": torch.tensor([[1, 1, 0]]),
             "negative_prompt_embeds_mask_2": torch.zeros(1, 3, dtype=torch.int64)}
    with torch.no_grad():
        pipe(image=Image.fromarray(ref), num_frames=5, num_inference_steps=1, output_type="latent",
             return_dict=False, **emb, **masks)
    cond_call, uncond_call = rec.calls  # one step: the conditional then the unconditional branch
    torch.testing.assert_close(cond_call["image_embeds"], uncond_call["image_embeds"], rtol=0, atol=0)

    # the project's sampler on the same inputs, `mmdit.forward` recorded
    calls = []

    def forward(params, cfg, x, timestep, text, text_mask, pooled, guidance=None, **streams):
        calls.append({"text": text, "text_mask": text_mask, **streams})
        return jnp.zeros(x.shape[:-1] + (latent_ch,), jnp.float32)
    monkeypatch.setattr(mmdit, "forward", forward)

    def encode(px):  # a stand-in 16x / 4x VAE (the streams, not the latents, are under test)
        b, t, h, w, _ = px.shape
        z = px[:, ::4, ::16, ::16, :1]
        return jnp.broadcast_to(z, (b, (t - 1) // 4 + 1, h // 16, w // 16, latent_ch))

    def decode(z):
        b, t, h, w, _ = z.shape
        return jnp.zeros((b, 4 * (t - 1) + 1, 16 * h, 16 * w, 3))
    np_ = lambda k: emb[k][0].numpy()  # noqa: E731
    text = text_cond(np_("prompt_embeds"), masks["prompt_embeds_mask"][0].numpy(), np.zeros(0, np.float32),
                     null=(np_("negative_prompt_embeds"), masks["negative_prompt_embeds_mask"][0].numpy(),
                           np.zeros(0, np.float32)), scale=5.0)
    text.update(text_2=emb["prompt_embeds_2"].numpy(), text_2_mask=masks["prompt_embeds_mask_2"].numpy(),
                null_text_2=emb["negative_prompt_embeds_2"].numpy(),
                null_text_2_mask=masks["negative_prompt_embeds_mask_2"].numpy())
    cfg = MMDiTConfig.named("tiny-hv15", image_embed_dim=16)
    image_tokens = hv15.image_token_fn  # the real function, with the tiny encoder instead of a folder
    monkeypatch.setattr(hv15, "load_image_encoder", lambda path, device="cpu": (siglip, processor))
    animator = Animator(InContextVelocity(cfg, true_cfg=True), {}, encode, decode, text,
                        SampleSettings(steps=1, segment_frames=5, overlap=1),
                        image_tokens=image_tokens(16, "tiny-siglip"))
    motion = rng.integers(0, 256, (5, 64, 64, 3), dtype=np.uint8)
    with jax.disable_jit():
        animator.animate(ref, motion)
    (ours,) = calls
    b = 1
    for key, theirs in (("image_embeds", "image_embeds"), ("text", "encoder_hidden_states"),
                        ("text_mask", "encoder_attention_mask"), ("text_2", "encoder_hidden_states_2"),
                        ("text_2_mask", "encoder_attention_mask_2")):
        got = np.asarray(ours[key], np.float32)
        for half, call in ((slice(0, b), cond_call), (slice(b, 2 * b), uncond_call)):
            want = call[theirs].float().numpy()
            assert got[half].shape == want.shape, key
            assert np.abs(got[half] - want).max() <= 1e-5 * max(np.abs(want).max(), 1.0), key
    assert np.abs(np.asarray(ours["image_embeds"])).max() > 0
