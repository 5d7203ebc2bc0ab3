"""HunyuanVideo-1.5's text, glyph and image streams (`text.hv15`) equal what diffusers'
`HunyuanVideo15ImageToVideoPipeline` computes with its own `_get_mllm_prompt_embeds`,
`_get_byt5_prompt_embeds` and `_get_image_embeds`, on tiny random Qwen2.5-VL text / ByT5 / SigLIP
models built locally (no network)."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("diffusers")

from dreamactor_jax.text import hv15  # noqa: E402

WORDS = "a woman man dances raises her right hand sign says hello open shop cat".split()
SPECIAL = ["<pad>", "<unk>", "<|im_start|>", "<|im_end|>", "system", "user", "assistant", "\n"]
CHAT = ("{% for m in messages %}<|im_start|> {{ m['role'] }} \n {{ m['content'] }} <|im_end|> \n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|> assistant \n{% endif %}")
SYSTEM = "you are a helpful assistant."  # short, so the tiny test sees padding
CROP, MAXLEN, GLYPH_LEN = 13, 16, 24  # 13 template tokens before the user text


def _tokenizer():
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    vocab = {t: i for i, t in enumerate(SPECIAL + WORDS + list(".,:\"“”") + ["helpful", "assistant."])}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.normalizer = normalizers.Lowercase()
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", unk_token="<unk>",
                                               eos_token="<|im_end|>")
    tok.chat_template = CHAT
    return tok


@pytest.fixture(scope="module")
def parts():
    torch.manual_seed(0)
    tok = _tokenizer()
    qwen = transformers.Qwen2_5_VLTextModel(transformers.Qwen2_5_VLTextConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=128, bos_token_id=None, eos_token_id=None, rope_scaling={"type": "mrope", "mrope_section": [2, 1, 1]})).eval()
    byt5_tok = transformers.ByT5Tokenizer()
    byt5 = transformers.T5EncoderModel(transformers.T5Config(
        vocab_size=384, d_model=16, d_kv=8, d_ff=32, num_layers=2, num_heads=2)).eval()
    siglip = transformers.SiglipVisionModel(transformers.SiglipVisionConfig(
        hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=32,
        patch_size=8)).eval()
    proc = transformers.SiglipImageProcessor(size={"height": 32, "width": 32})
    return dict(tok=tok, qwen=qwen, byt5_tok=byt5_tok, byt5=byt5, siglip=siglip, proc=proc)


def _pipe():
    from diffusers.pipelines.hunyuan_video1_5.pipeline_hunyuan_video1_5_image2video import (
        HunyuanVideo15ImageToVideoPipeline,
    )
    return HunyuanVideo15ImageToVideoPipeline


PROMPTS = ['a woman dances', '', 'a sign says "open shop" and “hello” . "open shop"']


def test_defaults_are_the_pipelines():
    import inspect

    p = _pipe()
    sig = inspect.signature(p._get_mllm_prompt_embeds).parameters
    assert sig["system_message"].default == hv15.SYSTEM_MESSAGE and sig["crop_start"].default == hv15.CROP_START
    assert sig["tokenizer_max_length"].default == hv15.MAX_LENGTH and sig["num_hidden_layers_to_skip"].default == 2
    assert inspect.signature(p._get_byt5_prompt_embeds).parameters["tokenizer_max_length"].default == 256
    from diffusers.pipelines.hunyuan_video1_5.pipeline_hunyuan_video1_5_image2video import extract_glyph_texts
    for prompt in PROMPTS + ['"a" "b" "a"', "“x”"]:
        assert hv15.glyph_text(prompt) == extract_glyph_texts(prompt)


def test_text_glyph_and_image_match_the_pipeline(parts):
    p = _pipe()
    with torch.no_grad():
        got, mask = hv15.text_embeddings(parts["qwen"], parts["tok"], PROMPTS, max_length=MAXLEN, crop_start=CROP,
                                         system=SYSTEM)
        ref, ref_mask = p._get_mllm_prompt_embeds(parts["qwen"], parts["tok"], PROMPTS, "cpu", tokenizer_max_length=MAXLEN,
                                                  crop_start=CROP, system_message=SYSTEM)
        assert got.shape == (3, MAXLEN, 32) and torch.equal(mask, ref_mask) and 0 < int(mask[0].sum()) < MAXLEN
        np.testing.assert_allclose(got.numpy(), ref.numpy(), rtol=0, atol=1e-6 * float(ref.abs().max()))
        g, gm = hv15.glyph_embeddings(parts["byt5"], parts["byt5_tok"], PROMPTS, max_length=GLYPH_LEN)
        rg, rgm = p._get_byt5_prompt_embeds(parts["byt5_tok"], parts["byt5"], PROMPTS, "cpu", tokenizer_max_length=GLYPH_LEN)
        assert torch.equal(gm, rgm) and int(gm[0].sum()) == 0 and int(gm[2].sum()) == GLYPH_LEN  # truncated
        np.testing.assert_allclose(g.numpy(), rg.numpy(), rtol=0, atol=1e-6 * float(rg.abs().max()))
        from PIL import Image

        img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8))
        e = hv15.image_embeddings(parts["siglip"], parts["proc"], [img])
        re_ = p._get_image_embeds(parts["siglip"], parts["proc"], img, "cpu")
        assert e.shape == (1, 16, 16) and torch.equal(e, re_)
