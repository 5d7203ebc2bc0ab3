"""Text embeddings with tiny random Llama / CLIP / LLaVA models built and saved locally.

The strongest check: equality with diffusers' own HunyuanVideo pipeline methods
(`_get_llama_prompt_embeds`, `_get_clip_prompt_embeds`) on the same tiny components.
"""

from __future__ import annotations

import dataclasses
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np
import pytest
import torch

from dreamactor_jax.text import embed
from dreamactor_jax.text.embed import (I2V_TEMPLATE, T2V_TEMPLATE, PromptTemplate, TextEncoderConfig,
                                       TextEncoders, encode_prompts, null_embeddings,
                                       template_crop_start)
from dreamactor_jax.text.store import TextEmbeddings, load_text_embeddings, save_text_embeddings

WORDS = ("describe the video by detailing following aspects according to reference image main content "
         "and theme of color shape size texture quantity text spatial relationships objects actions "
         "events behaviors temporal physical movement changes background environment light style "
         "atmosphere camera angles movements transitions used in a woman man dances raises her right "
         "hand left arm waves smiles cat bird wing").split()
SPECIAL = ["<pad>", "<unk>", "<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
           "<|end_header_id|>", "<|eot_id|>", "<image>", "\n\n"]
IMAGE_TOKEN, PAD = 7, 0
N_IMG = 4  # tiny vision tower: 28 px / 14 px patches -> 4 image features
MAXLEN = 24


def make_tokenizer():
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast
    vocab = {t: i for i, t in enumerate(SPECIAL + ["system", "user", "assistant"] + WORDS + list(".,:{}"))}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.normalizer = normalizers.Lowercase()
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tk.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A", special_tokens=[("<|begin_of_text|>", vocab["<|begin_of_text|>"])])
    return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<|begin_of_text|>",
                                   eos_token="<|end_of_text|>", pad_token="<pad>", unk_token="<unk>",
                                   additional_special_tokens=SPECIAL[4:])


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """Saves tiny random encoders in the diffusers repo layout; returns the folder."""
    from transformers import (CLIPImageProcessor, CLIPTextConfig, CLIPTextModel, CLIPVisionConfig,
                              LlamaConfig, LlamaModel, LlavaConfig, LlavaForConditionalGeneration)
    root = tmp_path_factory.mktemp("tiny_hunyuan")
    torch.manual_seed(0)
    tok = make_tokenizer()
    v = len(tok)
    lcfg = LlamaConfig(vocab_size=v, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                       pad_token_id=PAD, bos_token_id=2, eos_token_id=3)
    ccfg = CLIPTextConfig(vocab_size=v, hidden_size=24, intermediate_size=48, num_hidden_layers=2,
                          num_attention_heads=2, max_position_embeddings=77, projection_dim=16,
                          pad_token_id=3, bos_token_id=2, eos_token_id=3)
    vcfg = CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                            image_size=28, patch_size=14, projection_dim=8)
    llava_cfg = LlavaConfig(vision_config=vcfg, text_config=lcfg, image_token_index=IMAGE_TOKEN,
                            image_seq_length=N_IMG, vision_feature_layer=-2, pad_token_id=PAD)
    for t2v, folder in ((True, "t2v"), (False, "i2v")):
        d = root / folder
        llm = LlamaModel(lcfg) if t2v else LlavaForConditionalGeneration(llava_cfg)
        llm.save_pretrained(d / "text_encoder")
        CLIPTextModel(ccfg).save_pretrained(d / "text_encoder_2")
        tok.save_pretrained(d / "tokenizer")
        tok.save_pretrained(d / "tokenizer_2")
        CLIPImageProcessor(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28}).save_pretrained(
            d / "image_processor")
    return root


def t2v_cfg(root, **kw):
    tmpl = PromptTemplate(T2V_TEMPLATE.text, crop_start=None)
    return TextEncoderConfig(mode="t2v", model_path=str(root / "t2v"), template=tmpl, max_length=MAXLEN,
                             batch_size=2, **kw)


def i2v_cfg(root, **kw):
    tmpl = PromptTemplate(I2V_TEMPLATE.text, crop_start=None, image_emb_start=5, image_emb_end=5 + N_IMG,
                          image_emb_len=N_IMG)
    return TextEncoderConfig(mode="i2v", model_path=str(root / "i2v"), template=tmpl, max_length=MAXLEN,
                             batch_size=2, image_embed_interleave=2, **kw)


def random_prompts(n, seed=0):
    rng = np.random.default_rng(seed)
    lens = rng.integers(3, 12, n)
    return [" ".join(rng.choice(WORDS[20:], k)) for k in lens]


@pytest.fixture(scope="module")
def t2v(tiny_dir):
    return TextEncoders.load(t2v_cfg(tiny_dir))


@pytest.fixture(scope="module")
def i2v(tiny_dir):
    return TextEncoders.load(i2v_cfg(tiny_dir))


@pytest.fixture(autouse=True)
def no_grad():
    with torch.no_grad():
        yield


def rel_err(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def test_t2v_matches_diffusers(t2v):
    from diffusers import HunyuanVideoPipeline
    prompts = random_prompts(3) + [""]
    emb, stats = encode_prompts(t2v, prompts, progress=False)
    pipe = HunyuanVideoPipeline(text_encoder=t2v.text_encoder, tokenizer=t2v.tokenizer, transformer=None,
                                vae=None, scheduler=None, text_encoder_2=t2v.text_encoder_2,
                                tokenizer_2=t2v.tokenizer_2)
    tmpl = {"template": T2V_TEMPLATE.text, "crop_start": None}  # diffusers counts the crop itself
    ref, ref_mask = pipe._get_llama_prompt_embeds(prompts, tmpl, device="cpu", dtype=torch.float32,
                                                  max_sequence_length=MAXLEN)
    ref_pooled = pipe._get_clip_prompt_embeds(prompts, device="cpu", dtype=torch.float32)
    assert emb.text.shape == (4, MAXLEN, 32) and emb.text_mask.shape == (4, MAXLEN)
    assert emb.pooled.shape == (4, 24) and emb.text.dtype == np.float32 and emb.text_mask.dtype == np.int32
    assert rel_err(emb.text, ref.numpy()) < 1e-6
    np.testing.assert_array_equal(emb.text_mask, ref_mask.numpy())
    assert rel_err(emb.pooled, ref_pooled.numpy()) < 1e-6
    assert stats == {"n": 4, "llm_truncated": 0, "clip_truncated": 0}


def test_t2v_layer_crop_mask_and_padding(t2v):
    tok, model = t2v.tokenizer, t2v.text_encoder
    prompt = "a woman raises her right hand"
    emb, _ = encode_prompts(t2v, [prompt], progress=False)
    crop = template_crop_start(tok, t2v.cfg.prompt_template)
    full = tok(T2V_TEMPLATE.text.format(prompt)).input_ids
    # the crop removes exactly the template's tokens before the prompt
    assert full[:crop] == tok(T2V_TEMPLATE.text.split("{}")[0]).input_ids
    assert full[crop:] == tok(prompt, add_special_tokens=False).input_ids + [tok.convert_tokens_to_ids("<|eot_id|>")]
    n_valid = len(full) - crop  # prompt words + <|eot_id|>
    np.testing.assert_array_equal(emb.text_mask[0], [1] * n_valid + [0] * (MAXLEN - n_valid))
    # which layer: hidden_states[-3] of the same model, at the prompt's positions
    with torch.no_grad():
        hs = model(input_ids=torch.tensor([full]), output_hidden_states=True).hidden_states
    assert len(hs) == model.config.num_hidden_layers + 1
    assert rel_err(emb.text[0, :n_valid], hs[-3][0, crop:].numpy()) < 1e-5
    assert rel_err(emb.text[0, :n_valid], hs[-2][0, crop:].numpy()) > 1e-2  # not the neighbour layer
    # batching does not change a row (right padding + mask)
    emb2, _ = encode_prompts(t2v, random_prompts(3, seed=1) + [prompt], progress=False)
    assert rel_err(emb2.text[3, :n_valid], emb.text[0, :n_valid]) < 1e-5


def test_truncation_counted(t2v, caplog):
    long = " ".join(["woman"] * (MAXLEN + 5))
    emb, stats = encode_prompts(t2v, [long, "a cat"], progress=False)
    assert stats["llm_truncated"] == 1 and emb.text_mask[0].all()
    assert "truncated" in caplog.text


def test_i2v_matches_diffusers(i2v):
    import PIL.Image
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, (40, 30, 3), dtype=np.uint8) for _ in range(3)]
    prompts = random_prompts(3, seed=2)
    emb, _ = encode_prompts(i2v, prompts, images, progress=False)
    pipe, tmpl = _i2v_pipeline(i2v)
    n_out = N_IMG // 2 + MAXLEN - embed.ASSISTANT_TOKENS
    assert emb.text.shape == (3, n_out, 32) and emb.text_mask.shape == (3, n_out)
    for i in range(3):  # diffusers' crop is written for one image per call
        ref, ref_mask = pipe._get_llama_prompt_embeds(PIL.Image.fromarray(images[i]), [prompts[i]], tmpl,
                                                      device="cpu", dtype=torch.float32,
                                                      max_sequence_length=MAXLEN, image_embed_interleave=2)
        assert rel_err(emb.text[i], ref[0].numpy()) < 1e-5
        np.testing.assert_array_equal(emb.text_mask[i], ref_mask[0].numpy())
    # a prompt cut by truncation (the assistant header is lost): diffusers' fallback crop
    long = " ".join(WORDS[20:] * 2)
    emb_l, stats = encode_prompts(i2v, [long], images[:1], progress=False)
    ref, ref_mask = pipe._get_llama_prompt_embeds(PIL.Image.fromarray(images[0]), [long], tmpl, device="cpu",
                                                  dtype=torch.float32, max_sequence_length=MAXLEN)
    assert stats["llm_truncated"] == 1 and emb_l.text.shape == ref.shape
    assert rel_err(emb_l.text[0], ref[0].numpy()) < 1e-5
    np.testing.assert_array_equal(emb_l.text_mask[0], ref_mask[0].numpy())
    # the image slots come first and are all valid; the text part keeps the prompt + "\n\n"
    n_words = [len(p.split()) for p in prompts]
    assert (emb.text_mask[:, :N_IMG // 2] == 1).all()
    np.testing.assert_array_equal(emb.text_mask.sum(1), np.array(n_words) + N_IMG // 2 + 1)
    # the image matters
    other, _ = encode_prompts(i2v, prompts[:1], [255 - images[0]], progress=False)
    assert rel_err(other.text[0], emb.text[0]) > 1e-3


def _i2v_pipeline(i2v):
    """diffusers' I2V pipeline around the tiny encoders, and its prompt template dict."""
    from diffusers import HunyuanVideoImageToVideoPipeline

    pipe = HunyuanVideoImageToVideoPipeline(
        text_encoder=i2v.text_encoder, tokenizer=i2v.tokenizer, transformer=None, vae=None, scheduler=None,
        text_encoder_2=i2v.text_encoder_2, tokenizer_2=i2v.tokenizer_2, image_processor=i2v.image_processor)
    crop = template_crop_start(i2v.tokenizer, i2v.cfg.prompt_template)
    return pipe, {"template": I2V_TEMPLATE.text, "crop_start": crop, "image_emb_start": 5,
                  "image_emb_end": 5 + N_IMG, "image_emb_len": N_IMG}


def test_null_embeddings(t2v, i2v):
    import PIL.Image
    null = null_embeddings(t2v)
    assert null.text.shape == (1, MAXLEN, 32) and null.text_mask[0].sum() == 1  # only <|eot_id|>
    emb, _ = encode_prompts(t2v, [""], progress=False)
    np.testing.assert_array_equal(null.text, emb.text)
    inull = null_embeddings(i2v)  # empty prompt with a black image, as the I2V pipeline's CFG branch
    pipe, tmpl = _i2v_pipeline(i2v)
    ref, _ = pipe._get_llama_prompt_embeds(PIL.Image.new("RGB", (96, 48), 0), [""], tmpl, device="cpu",
                                           dtype=torch.float32, max_sequence_length=MAXLEN)
    assert rel_err(inull.text[0], ref[0].numpy()) < 1e-5


def test_store_roundtrip_and_errors(t2v, tmp_path):
    prompts = random_prompts(3, seed=4)
    emb, _ = encode_prompts(t2v, prompts, progress=False)
    null = null_embeddings(t2v)
    path = tmp_path / "emb.safetensors"
    save_text_embeddings(path, emb, ["a", "b", "c"], null=null, prompts=prompts,
                         meta={"text_source": "file", "mode": "t2v"})
    got = load_text_embeddings(path)
    np.testing.assert_array_equal(got["emb"].text, emb.text)
    np.testing.assert_array_equal(got["null"].text_mask, null.text_mask)
    assert got["ids"] == ["a", "b", "c"] and got["index"]["c"] == 2 and got["prompts"] == prompts
    assert got["meta"]["text_source"] == "file"
    assert [p.name for p in tmp_path.iterdir()] == ["emb.safetensors"]  # no temp file left
    with pytest.raises(ValueError, match="ids: 2 ids for 3"):
        save_text_embeddings(tmp_path / "x.safetensors", emb, ["a", "b"])
    with pytest.raises(ValueError, match="inconsistent shapes"):
        TextEmbeddings(emb.text, emb.text_mask[:, :3], emb.pooled)
    with pytest.raises(FileNotFoundError):
        load_text_embeddings(tmp_path / "missing.safetensors")


def test_bad_inputs(tiny_dir, t2v, i2v):
    with pytest.raises(ValueError, match="mode"):
        TextEncoderConfig(mode="v2v")
    with pytest.raises(ValueError, match="prompts: empty"):
        encode_prompts(t2v, [], progress=False)
    with pytest.raises(ValueError, match=r"prompts\[1\]"):
        encode_prompts(t2v, ["a", None], progress=False)
    with pytest.raises(ValueError, match="only the i2v mode"):
        encode_prompts(t2v, ["a"], [np.zeros((8, 8, 3), np.uint8)], progress=False)
    with pytest.raises(ValueError, match="one image per prompt"):
        encode_prompts(i2v, ["a", "b"], [np.ones((8, 8, 3), np.uint8)], progress=False)
    bad = dataclasses.replace(i2v, cfg=dataclasses.replace(i2v.cfg, template=dataclasses.replace(
        i2v.cfg.prompt_template, image_emb_len=N_IMG + 1, image_emb_end=None)))
    with pytest.raises(ValueError, match=f"image_emb_len={N_IMG + 1}, but the model makes {N_IMG}"):
        encode_prompts(bad, ["a"], [np.ones((8, 8, 3), np.uint8)], progress=False)
    auto = dataclasses.replace(i2v, cfg=dataclasses.replace(i2v.cfg, template=dataclasses.replace(
        i2v.cfg.prompt_template, image_emb_start=None, image_emb_end=None, image_emb_len=None)))
    assert embed.image_slots(auto) == (5, 5 + N_IMG, N_IMG)  # <image> after bos + 4 header tokens
    with pytest.raises(FileNotFoundError, match="missing"):
        TextEncoders.load(dataclasses.replace(t2v_cfg(tiny_dir), clip_subfolder="nope"))


def test_default_templates_match_diffusers():
    from diffusers.pipelines.hunyuan_video import pipeline_hunyuan_video as t2v_mod
    from diffusers.pipelines.hunyuan_video import pipeline_hunyuan_video_image2video as i2v_mod
    assert T2V_TEMPLATE.text == t2v_mod.DEFAULT_PROMPT_TEMPLATE["template"]
    assert T2V_TEMPLATE.crop_start == t2v_mod.DEFAULT_PROMPT_TEMPLATE["crop_start"] == 95
    d = i2v_mod.DEFAULT_PROMPT_TEMPLATE
    assert I2V_TEMPLATE.text == d["template"]
    assert (I2V_TEMPLATE.crop_start, I2V_TEMPLATE.image_emb_start, I2V_TEMPLATE.image_emb_end,
            I2V_TEMPLATE.image_emb_len) == (d["crop_start"], d["image_emb_start"], d["image_emb_end"],
                                            d["image_emb_len"])
