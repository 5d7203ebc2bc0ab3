"""HunyuanVideo-1.5 as a config of the project's MMDiT: parity with diffusers'
`HunyuanVideo15Transformer3DModel` (fp32, CPU, random weights, <= 1e-5 relative), with and without
image (SigLIP) and glyph (ByT5) tokens, MeanFlow off and on; full-size parameter count and key list
against diffusers' model built on the meta device.

Inputs: batch 2, text masks that are not a prefix (item 1), an odd frame count, a non-square frame,
timesteps <= 500 (see `mmdit_sweep.tolerance`). "none" image / glyph on the JAX side (arguments left
out) is compared with what diffusers needs for the same thing (all-zero image embeddings: its
text-to-video rule; an all-masked glyph sequence).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

from dreamactor_jax.models import mmdit  # noqa: E402
from dreamactor_jax.models.config import MMDiTConfig  # noqa: E402
from dreamactor_jax.weights import diffusers_map  # noqa: E402
from convert_testlib import rel_err  # noqa: E402
from hv15_testlib import hv15_inputs, hv15_torch_forward, jax_kwargs, tiny_hv15  # noqa: E402

TOL = 1e-5
FULL_PARAMS = {"hv15": 8_326_608_160, "hv15-meanflow": 8_326_608_160 + 256 * 2048 + 2048 + 2048 * 2048 + 2048}


@functools.lru_cache(maxsize=None)
def build(name: str):
    cfg = MMDiTConfig.named(name)
    model = tiny_hv15(cfg)
    params = jax.tree_util.tree_map(jnp.asarray, diffusers_map.state_dict_to_params(model.state_dict(), cfg))
    return cfg, model, params


_jit_forward = jax.jit(mmdit.forward, static_argnums=1)


def run(params, cfg, inp):
    return np.asarray(_jit_forward(params, cfg, inp["x"], inp["timestep"], inp["text"], inp["text_mask"], None,
                                   **jax_kwargs(inp)))


CASES = [  # (config, image tokens, glyph tokens)
    ("tiny-hv15", "random", "partial"),  # image-to-video with glyph text
    ("tiny-hv15", "zeros", "masked"),  # text-to-video, no valid glyph token
    ("tiny-hv15", "none", "none"),  # the streams left out (what the DreamActor trainer passes)
    ("tiny-hv15-meanflow", "random", "partial"),
]


@pytest.mark.parametrize("name,image,glyph", CASES)
def test_hv15_parity_with_diffusers(name, image, glyph):
    cfg, model, params = build(name)
    inp = hv15_inputs(cfg, image=image, glyph=glyph)
    ref = hv15_torch_forward(model, cfg, inp)
    out = run(params, cfg, inp)
    assert out.shape == ref.shape == (2, 3, 4, 6, cfg.out_channels)
    assert rel_err(out, ref) <= TOL, rel_err(out, ref)


def random_hv15_config(rng: np.random.Generator) -> MMDiTConfig:
    """A small HunyuanVideo-1.5 config drawn over what diffusers' HunyuanVideo15Transformer3DModel builds."""
    rope = [2 * int(rng.integers(0, 4)) for _ in range(3)]
    rope[2] = rope[2] or 2
    return MMDiTConfig.named(
        "tiny-hv15", in_channels=int(rng.integers(1, 10)), out_channels=int(rng.integers(1, 6)),
        num_attention_heads=int(rng.integers(1, 4)), attention_head_dim=sum(rope), rope_axes_dim=tuple(rope),
        num_layers=int(rng.integers(0, 3)), num_refiner_layers=int(rng.integers(0, 3)),
        mlp_ratio=float(rng.choice([0.5, 1.0, 2.75, 4.0])), patch_size=int(rng.integers(1, 3)),
        patch_size_t=int(rng.integers(1, 3)), qk_norm=["rms_norm", "layer_norm", "fp32_layer_norm"][int(rng.integers(3))],
        text_embed_dim=int(rng.integers(1, 33)), text_embed_2_dim=int(rng.integers(1, 17)),
        image_embed_dim=int(rng.integers(1, 17)), rope_theta=float(rng.choice([256.0, 10000.0])),
        use_meanflow=bool(rng.integers(2)))


def _random_case(seed: int):
    rng = np.random.default_rng(seed)
    cfg = random_hv15_config(rng)
    model = tiny_hv15(cfg, seed=seed)
    params = jax.tree_util.tree_map(jnp.asarray, diffusers_map.state_dict_to_params(model.state_dict(), cfg))
    pt, p = cfg.patch_size_t, cfg.patch_size
    inp = hv15_inputs(cfg, seed=seed, image=["random", "zeros", "none"][seed % 3], glyph=["partial", "masked", "none"][seed % 3],
                      frames=pt * int(rng.integers(1, 3)), height=p * int(rng.integers(1, 4)), width=p * int(rng.integers(1, 4)))
    ref = hv15_torch_forward(model, cfg, inp)
    assert rel_err(run(params, cfg, inp), ref) <= TOL, (cfg, rel_err(run(params, cfg, inp), ref))


def test_hv15_random_config_matches_diffusers():
    _random_case(11)  # patch sizes, qk norm, widths, layer counts drawn (one here; the sweep below has 24)


@pytest.mark.exhaustive
@pytest.mark.parametrize("seed", range(24))
def test_hv15_random_configs_match_diffusers_exhaustive(seed):
    _random_case(100 + seed)


@pytest.mark.exhaustive
@pytest.mark.parametrize("name", ["tiny-hv15", "tiny-hv15-meanflow"])
@pytest.mark.parametrize("image", ["random", "zeros", "none"])
@pytest.mark.parametrize("glyph", ["partial", "masked", "none"])
def test_hv15_parity_all_streams(name, image, glyph):
    test_hv15_parity_with_diffusers(name, image, glyph)


def test_hv15_padding_and_image_tokens_matter_only_when_valid():
    cfg, _, params = build("tiny-hv15")
    inp = hv15_inputs(cfg)
    base = run(params, cfg, inp)
    noisy = dict(inp, text=inp["text"].copy(), text_2=inp["text_2"].copy())
    noisy["text"][1, [2, 3, 5, 6]] = 50.0  # masked text tokens (item 1's mask is 1 at 0, 1, 4)
    noisy["text_2"][0, 2:] = -30.0  # masked glyph tokens
    assert rel_err(run(params, cfg, noisy), base) <= 1e-5
    changed = dict(inp, image_embeds=inp["image_embeds"] + np.random.default_rng(2).standard_normal(inp["image_embeds"].shape).astype(np.float32))
    assert rel_err(run(params, cfg, changed), base) > 1e-4


def test_hv15_scan_loop_and_remat_agree():
    cfg, model, params = build("tiny-hv15")
    inp = hv15_inputs(cfg, seed=4)
    ref = hv15_torch_forward(model, cfg, inp)
    assert rel_err(run(params, cfg.replace(scan_layers=False, remat_policy="full"), inp), ref) <= TOL


def test_hv15_bad_inputs_raise_clear_errors():
    cfg, _, params = build("tiny-hv15")
    inp = hv15_inputs(cfg)
    call = lambda **kw: jax.eval_shape(lambda p, **a: mmdit.forward(p, cfg, **a), params,
                                       **{**{k: v for k, v in inp.items()}, "pooled": None, **kw})
    call()
    with pytest.raises(ValueError, match=r"text_2: expected \[2, N, 24\]"):
        call(text_2=inp["text_2"][..., :8])
    with pytest.raises(ValueError, match="text_2_mask"):
        call(text_2_mask=None)
    with pytest.raises(ValueError, match="image_embeds"):
        call(image_embeds=inp["image_embeds"][0])
    with pytest.raises(ValueError, match="timestep_r: expected None"):
        call(timestep_r=inp["timestep"])
    with pytest.raises(ValueError, match="pooled"):
        call(pooled=np.zeros((2, 3), np.float32))
    v1 = MMDiTConfig.named("tiny-i2v-33ch")
    with pytest.raises(ValueError, match="text_2: expected None"):
        jax.eval_shape(lambda: mmdit.forward(jax.eval_shape(functools.partial(mmdit.init_params, v1), jax.random.key(0)),
                                             v1, np.zeros((2, 1, 2, 2, 33), np.float32), inp["timestep"], np.zeros((2, 3, 32)),
                                             np.ones((2, 3)), np.zeros((2, 24)), text_2=inp["text_2"], text_2_mask=inp["text_2_mask"]))


def test_hv15_config_round_trip_and_refusals():
    for name in ("hv15", "hv15-meanflow", "tiny-hv15"):
        cfg = MMDiTConfig.named(name)
        assert cfg.diffusers_class == "HunyuanVideo15Transformer3DModel"
        assert MMDiTConfig.from_diffusers_config(cfg.to_diffusers_config()) == cfg
        raw = {"_class_name": cfg.diffusers_class, "target_size": 640, "task_type": "i2v", **cfg.to_diffusers_config()}
        assert MMDiTConfig.from_diffusers_config(raw) == cfg
    with pytest.raises(ValueError, match="num_single_layers: backbone 'hunyuan_video15'"):
        MMDiTConfig.named("tiny-hv15", num_single_layers=2)
    with pytest.raises(ValueError, match="qk_norm: expected one of .* for backbone 'hunyuan_video15'"):
        MMDiTConfig.named("tiny-hv15", qk_norm=None)  # diffusers' 1.5 attention calls norm_q unconditionally
    with pytest.raises(ValueError, match="use_meanflow: backbone 'hunyuan_video'"):
        MMDiTConfig.named("tiny-t2v", use_meanflow=True)
    with pytest.raises(ValueError, match="guidance_embeds: backbone 'hunyuan_video15'"):
        MMDiTConfig.from_diffusers_config({"_class_name": "HunyuanVideo15Transformer3DModel", "guidance_embeds": True})
    with pytest.raises(ValueError, match=r"not understood .*\['num_single'\]"):
        MMDiTConfig.from_diffusers_config({"_class_name": "HunyuanVideo15Transformer3DModel", "num_single": 1})


@pytest.mark.parametrize("name", sorted(FULL_PARAMS))
def test_hv15_full_size_params_and_keys_match_diffusers_meta_model(name):
    accelerate = pytest.importorskip("accelerate")
    cfg = MMDiTConfig.named(name)
    shapes = jax.eval_shape(functools.partial(mmdit.init_params, cfg), jax.random.key(0))
    n = sum(math.prod(x.shape) for x in jax.tree_util.tree_leaves(shapes))
    with accelerate.init_empty_weights():
        model = diffusers.HunyuanVideo15Transformer3DModel(**cfg.to_diffusers_config())
    ref = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert n == sum(math.prod(s) for s in ref.values()) == mmdit.count_params(cfg) == FULL_PARAMS[name]
    assert diffusers_map.expected_torch_shapes(cfg) == ref
    assert MMDiTConfig.from_diffusers_config(dict(model.config)) == cfg
    assert shapes["transformer_blocks"]["ff"]["net_0"]["proj"]["kernel"].shape == (54, 2048, 8192)
    assert shapes["x_embedder"]["proj"]["kernel"].shape == (1, 1, 1, 65, 2048)
