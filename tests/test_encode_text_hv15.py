"""tools/encode_text.py --backbone hv15 writes, per prompt id, exactly `text.hv15`'s Qwen2.5-VL text and
ByT5 glyph embeddings (tiny random encoders saved as a local diffusers-style pipeline folder, no
network), and the readers hand the glyph tokens on: preprocessing's `TextTable` (records' `text_2`) and
sampling's `TextSpec` (`cond` -> `model_inputs` -> `mmdit.forward`'s `text_2`, the null prompt's in the
CFG branch)."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from dreamactor_jax.text import hv15  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WORDS = "a woman man dances raises her right hand sign says hello open shop cat".split()
SPECIAL = ["<pad>", "<unk>", "<|im_start|>", "<|im_end|>", "system", "user", "assistant", "\n"]
CHAT = ("{% for m in messages %}<|im_start|> {{ m['role'] }} \n {{ m['content'] }} <|im_end|> \n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|> assistant \n{% endif %}")
PROMPTS = {"a": 'a woman raises her right hand, the sign says "hello"', "b": "a man dances"}
CROP, MAXLEN, GLYPH_LEN = 5, 64, 24  # tiny-hv15: text width 32, glyph width 24


def _tool():
    spec = importlib.util.spec_from_file_location("encode_text_tool", ROOT / "tools" / "encode_text.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def pipe_dir(tmp_path_factory):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    torch.manual_seed(0)
    vocab = {t: i for i, t in enumerate(SPECIAL + WORDS + list(".,:\"“”"))}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.normalizer, tk.pre_tokenizer = normalizers.Lowercase(), pre_tokenizers.WhitespaceSplit()
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", unk_token="<unk>",
                                               eos_token="<|im_end|>")
    tok.chat_template = CHAT
    qwen = transformers.Qwen2_5_VLTextModel(transformers.Qwen2_5_VLTextConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256, bos_token_id=None, eos_token_id=None,
        rope_scaling={"type": "mrope", "mrope_section": [2, 1, 1]})).eval()
    byt5 = transformers.T5EncoderModel(transformers.T5Config(
        vocab_size=384, d_model=24, d_kv=8, d_ff=32, num_layers=2, num_heads=2)).eval()
    d = tmp_path_factory.mktemp("hv15_pipe")
    qwen.save_pretrained(d / "text_encoder")
    tok.save_pretrained(d / "tokenizer")
    byt5.save_pretrained(d / "text_encoder_2")
    transformers.ByT5Tokenizer().save_pretrained(d / "tokenizer_2")
    return d


@pytest.fixture(scope="module")
def encoded(pipe_dir, tmp_path_factory):
    d = tmp_path_factory.mktemp("hv15_text")
    caps = d / "captions.json"
    caps.write_text(json.dumps(PROMPTS))
    out = d / "text.safetensors"
    assert _tool().main([str(out), "--captions", str(caps), "--backbone", "hv15", "--model-path", str(pipe_dir),
                         "--max-length", str(MAXLEN), "--crop-start", str(CROP),
                         "--glyph-max-length", str(GLYPH_LEN), "--quiet"]) == 0
    return out


def test_file_equals_hv15_functions(pipe_dir, encoded):
    from dreamactor_jax.text.store import load_text_embeddings

    enc = hv15.load_text_encoders(str(pipe_dir))
    f = load_text_embeddings(encoded)
    prompts = [PROMPTS[i] for i in f["ids"]]
    with torch.no_grad():
        t, m = hv15.text_embeddings(enc["text_encoder"], enc["tokenizer"], prompts, max_length=MAXLEN, crop_start=CROP)
        g, gm = hv15.glyph_embeddings(enc["glyph_encoder"], enc["glyph_tokenizer"], prompts, max_length=GLYPH_LEN)
        nt, _ = hv15.text_embeddings(enc["text_encoder"], enc["tokenizer"], [""], max_length=MAXLEN, crop_start=CROP)
    emb = f["emb"]
    assert emb.text.shape == (2, MAXLEN, 32) and emb.text_2.shape == (2, GLYPH_LEN, 24) and emb.pooled.shape == (2, 0)
    np.testing.assert_allclose(emb.text, t.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(emb.text_mask, m.numpy())
    np.testing.assert_allclose(emb.text_2, g.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(emb.text_2_mask, gm.numpy())
    row = {i: k for k, i in f["index"].items()}
    assert emb.text_2_mask[f["index"]["a"]].sum() > 0 and emb.text_2_mask[f["index"]["b"]].sum() == 0, row
    np.testing.assert_allclose(f["null"].text, nt.numpy(), rtol=1e-5, atol=1e-6)
    assert f["null"].text_2_mask.sum() == 0 and f["meta"]["backbone"] == "hv15"


def test_missing_folder_names_flag(tmp_path):
    with pytest.raises(ValueError, match="--model-path"):
        _tool().main([str(tmp_path / "o.safetensors"), "--prompt", "a cat", "--backbone", "hv15",
                      "--model-path", str(tmp_path / "nowhere")])
    with pytest.raises(ValueError, match="--model-path.*text_encoder"):
        _tool().main([str(tmp_path / "o.safetensors"), "--prompt", "a cat", "--backbone", "hv15",
                      "--model-path", str(tmp_path)])
    assert not (tmp_path / "o.safetensors").exists()


def test_readers_pass_text_2(encoded):
    import jax.numpy as jnp

    from dreamactor_jax.data.preprocess import TextTable
    from dreamactor_jax.models.config import MMDiTConfig
    from dreamactor_jax.sampling.text_choice import TextSpec
    from dreamactor_jax.sampling.velocity import model_inputs
    from dreamactor_jax.text.store import load_text_embeddings

    f = load_text_embeddings(encoded)
    mcfg = MMDiTConfig.named("tiny-hv15")
    table = TextTable(str(encoded), text_dim=mcfg.text_embed_dim, pooled_dim=mcfg.pooled_projection_dim,
                      glyph_dim=mcfg.text_embed_2_dim)
    rec, has = table.get("a")
    assert has
    np.testing.assert_array_equal(rec["text_2"], f["emb"].text_2[f["index"]["a"]])
    np.testing.assert_array_equal(rec["text_2_mask"], f["emb"].text_2_mask[f["index"]["a"]])
    assert "text_2" in table.get("unknown-id")[0]  # the null prompt's (zero) glyph tokens

    spec = TextSpec(text_embeddings=str(encoded), text_id="a", guidance_scale=5.0)
    cond, cfg_on, _ = spec.condition(spec.source(), None, mcfg, {})
    assert cfg_on
    i = f["index"]["a"]
    np.testing.assert_array_equal(cond["text_2"][0], f["emb"].text_2[i])
    np.testing.assert_array_equal(cond["null_text_2_mask"][0], f["null"].text_2_mask[0])
    n, h, w = 2, 4, 8
    cond.update(canvas=np.random.default_rng(0).normal(size=(1, n, h, w, 4)).astype(np.float32),
                mask=np.ones((1, n, h, w, 1), np.float32))
    x = jnp.asarray(np.random.default_rng(1).normal(size=(1, n, h, w, 4)), jnp.float32)
    _, extra = model_inputs(x, jnp.ones((1,)), cond, True)
    np.testing.assert_array_equal(np.asarray(extra["text_2"][0]), f["emb"].text_2[i])
    np.testing.assert_array_equal(np.asarray(extra["text_2"][1]), f["null"].text_2[0])

    with pytest.raises(ValueError, match="glyph"):
        spec.condition(spec.source(), None, MMDiTConfig.named("tiny-hv15", text_embed_2_dim=16), {})


def test_sample_prompt_uses_the_backbones_encoders(pipe_dir, tmp_path):
    """launch/sample.py --prompt on a HunyuanVideo-1.5 run: `TextSpec` encodes with the 1.5 encoders (the
    backbone's `text_encoders`), both streams and the empty prompt for CFG, exactly `hv15.encode_file`."""
    from dreamactor_jax.models.config import MMDiTConfig
    from dreamactor_jax.sampling.text_choice import TextSpec

    mcfg = MMDiTConfig.named("tiny-hv15")
    prompt = PROMPTS["a"]
    spec = TextSpec(prompt=prompt, text_model_path=str(pipe_dir), guidance_scale=4.0)
    cond, cfg_on, what = spec.condition(spec.source(mcfg), None, mcfg, {})
    emb, null = hv15.encode_file(hv15.load_text_encoders(str(pipe_dir)), [prompt])
    assert cfg_on and "Qwen2.5-VL" in what
    np.testing.assert_allclose(cond["text"][0], emb.text[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(cond["text_2_mask"][0], emb.text_2_mask[0])
    assert emb.text_2_mask[0].sum() > 0  # the quoted "hello" reached the glyph stream
    np.testing.assert_allclose(cond["null_text_2"][0], null.text_2[0], rtol=1e-5, atol=1e-6)
    # the encoders are looked for before anything slow, by the backbone's needs
    for bad, match in ((None, "--text-model-path DIR"), (str(tmp_path), "no text_encoder/")):
        with pytest.raises(ValueError, match=match):
            TextSpec(prompt=prompt, text_model_path=bad).source(mcfg)
