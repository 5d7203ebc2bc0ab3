"""Pseudo-pair synthesis on a HunyuanVideo-1.5 pose run (`e2e.generator.PoseModel`) samples with the
reference's image tokens (`--image-encoder`, SigLIP) or zero ones (`--zero-image-embeds`), as
launch/sample.py does, refuses neither in one line naming the flags, and passes a file's glyph tokens
(`text_2`, the null prompt's in the CFG branch). The weights and the Animator are stand-ins here; the
Animator's use of `image_tokens` is tested in test_sampling_hv15.py."""

from __future__ import annotations

import types

import numpy as np
import pytest

from dreamactor_jax.e2e import generator
from dreamactor_jax.models.config import MMDiTConfig
from dreamactor_jax.text.store import TextEmbeddings, save_text_embeddings

CFG = MMDiTConfig.named("tiny-hv15")  # text 32, glyph 24, image 20


def _emb(rng, n, glyph_rows):
    mask2 = np.zeros((n, 6), np.int32)
    mask2[:glyph_rows, :3] = 1
    return TextEmbeddings(rng.normal(size=(n, 5, 32)).astype(np.float32), np.ones((n, 5), np.int32),
                          np.zeros((n, 0), np.float32), rng.normal(size=(n, 6, 24)).astype(np.float32), mask2)


@pytest.fixture
def setup(tmp_path, monkeypatch):
    from dreamactor_jax.models import vaes
    from dreamactor_jax.sampling import loading, pipeline

    rng = np.random.default_rng(0)
    path = tmp_path / "text.safetensors"
    save_text_embeddings(path, _emb(rng, 1, 1), ["p"], null=_emb(rng, 1, 0), prompts=['a sign says "hi"'])
    monkeypatch.setattr(generator, "read_run_config", lambda ckpt: {})
    monkeypatch.setattr(generator, "checkpoint_fingerprint", lambda ckpt, config=None: {"step": 1})
    monkeypatch.setattr(loading, "check", lambda ckpt, **kw: types.SimpleNamespace(mcfg=CFG))
    monkeypatch.setattr(loading, "load", lambda ckpt, plan=None, **kw: types.SimpleNamespace(
        mcfg=CFG, vcfg=None, vparams=None, params={}, config={}))
    monkeypatch.setattr(vaes, "module_for",
                        lambda vcfg: types.SimpleNamespace(encode_latents=None, decode_latents=None))
    calls = []

    class FakeAnimator:
        def __init__(self, model_fn, params, encode, decode, text, settings, image_tokens=None):
            calls.append(dict(text=text, image_tokens=image_tokens))

        def animate(self, reference, pose):
            return np.zeros((1,)), [0]
    monkeypatch.setattr(pipeline, "Animator", FakeAnimator)
    return path, calls


def test_neither_image_flag_is_one_line(setup):
    path, _ = setup
    with pytest.raises(ValueError, match="--image-encoder.*--zero-image-embeds") as e:
        generator.PoseModel("ckpt", path)
    assert "\n" not in str(e.value)


def test_zero_image_tokens_and_glyphs(setup):
    path, calls = setup
    model = generator.PoseModel("ckpt", path, zero_image_embeds=True,
                                settings=generator.SamplerSettings(guidance_scale=4.0))
    assert model.describe()["image_tokens"] == "zero"
    ref = np.random.default_rng(1).integers(0, 255, (32, 32, 3), np.uint8)
    _, meta = model(ref, np.zeros((5, 32, 32, 3), np.uint8), seed=0, text_keys=("p",))
    (call,) = calls
    assert meta["cfg"] and call["image_tokens"] is not None
    tokens = call["image_tokens"](ref)
    assert tokens.shape == (729, CFG.image_embed_dim) and not tokens.any()
    t = call["text"]
    np.testing.assert_array_equal(t["text_2"], model.text["emb"].text_2)
    np.testing.assert_array_equal(t["null_text_2_mask"], model.text["null"].text_2_mask)
    text, cfg_on, which = model._text(("nope",))  # the null prompt alone: its glyph tokens, no CFG twin
    assert which == "null" and not cfg_on and "null_text_2" not in text
    np.testing.assert_array_equal(text["text_2"], model.text["null"].text_2)


def test_reference_siglip_tokens(setup, monkeypatch, tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from dreamactor_jax.text import hv15

    path, calls = setup
    torch.manual_seed(0)
    siglip = transformers.SiglipVisionModel(transformers.SiglipVisionConfig(
        hidden_size=CFG.image_embed_dim, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        image_size=32, patch_size=8)).eval()
    proc = transformers.SiglipImageProcessor(size={"height": 32, "width": 32})
    monkeypatch.setattr(hv15, "load_image_encoder", lambda p, device="cpu": (siglip, proc))
    model = generator.PoseModel("ckpt", path, image_encoder=str(tmp_path))
    assert model.describe()["image_tokens"] == str(tmp_path.absolute())
    ref = np.random.default_rng(2).integers(0, 255, (40, 48, 3), np.uint8)
    model(ref, np.zeros((5, 40, 48, 3), np.uint8), seed=0)
    from PIL import Image

    with torch.no_grad():
        want = hv15.image_embeddings(siglip, proc, [Image.fromarray(ref)])[0].numpy()
    np.testing.assert_allclose(calls[0]["image_tokens"](ref), want, rtol=1e-5, atol=1e-6)
