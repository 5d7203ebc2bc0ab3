"""Parity of the Flax MMDiT with diffusers' HunyuanVideoTransformer3DModel (fp32, CPU, random weights).

For each variant (T2V, I2V token_replace, I2V latent_concat): a tiny config, the same random weights
mapped by `weights.diffusers_map`, batch 2, uneven text padding, an odd number of latent frames and
a non-square frame; max|out - ref| / max|ref| within `mmdit_sweep.tolerance` (1e-5 for timestep and
guidance <= 500, 2e-5 * max(t, g)/1000 above: the fp32 rounding of the reference itself, see
test_mmdit_configs.py).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

from dreamactor_jax.models import mmdit  # noqa: E402
from dreamactor_jax.models.config import MMDiTConfig  # noqa: E402
from dreamactor_jax.weights import diffusers_map  # noqa: E402
from convert_testlib import rel_err, torch_forward as run_reference  # noqa: E402
from mmdit_sweep import tolerance  # noqa: E402

jax.config.update("jax_enable_x64", False)

VARIANTS = ["tiny-t2v", "tiny-i2v-16ch", "tiny-i2v-33ch"]


def make_reference(cfg: MMDiTConfig, seed: int = 0):
    """diffusers model: default (random) init, plus random norm weights around 1 and nonzero biases."""
    from convert_testlib import tiny_transformer

    return tiny_transformer(cfg, seed, matrices=False)


def make_inputs(cfg: MMDiTConfig, seed: int = 1, frames: int = 3, height: int = 4, width: int = 6, text_len: int = 7):
    rng = np.random.default_rng(seed)
    b = 2
    x = rng.standard_normal((b, frames, height, width, cfg.in_channels)).astype(np.float32)
    text = rng.standard_normal((b, text_len, cfg.text_embed_dim)).astype(np.float32)
    mask = np.zeros((b, text_len), np.int64)
    mask[0, :text_len] = 1
    mask[1, :3] = 1  # uneven right padding
    pooled = rng.standard_normal((b, cfg.pooled_projection_dim)).astype(np.float32)
    timestep = np.array([937.5, 81.25], np.float32)
    guidance = np.array([6000.0, 3500.0], np.float32) if cfg.guidance_embeds else None
    return dict(x=x, timestep=timestep, text=text, text_mask=mask, pooled=pooled, guidance=guidance)


@functools.lru_cache(maxsize=None)
def build_case(name: str):
    """(cfg, reference model, mapped params, inputs, reference output) for one named tiny config."""
    cfg = MMDiTConfig.named(name)
    model = make_reference(cfg)
    params = diffusers_map.state_dict_to_params(model.state_dict(), cfg)
    params = jax.tree_util.tree_map(jnp.asarray, params)
    inp = make_inputs(cfg)
    return cfg, model, params, inp, run_reference(model, inp)


@pytest.fixture(scope="module", params=VARIANTS)
def case(request):
    return build_case(request.param)


_jit_forward = jax.jit(mmdit.forward, static_argnums=1)


def _forward(params, cfg, inp):
    return _jit_forward(params, cfg, inp["x"], inp["timestep"], inp["text"], inp["text_mask"], inp["pooled"], inp["guidance"])


def test_parity_with_diffusers(case):
    cfg, _, params, inp, ref = case
    out = _forward(params, cfg, inp)
    assert out.shape == ref.shape == (2, 3, 4, 6, cfg.out_channels)
    assert rel_err(out, ref) <= tolerance(inp), rel_err(out, ref)


def test_loop_equals_scan():
    """The debug loop (with full remat) computes what the scan does (one variant keeps CI fast)."""
    cfg, _, params, inp, ref = build_case("tiny-i2v-16ch")
    out = _forward(params, cfg.replace(scan_layers=False, remat_policy="full"), inp)
    assert rel_err(out, ref) <= tolerance(inp)


def test_padding_tokens_do_not_matter():
    """Values of masked text tokens must not change the output (the key-padding mask works)."""
    cfg, _, params, inp, _ = build_case("tiny-i2v-33ch")
    base = np.asarray(_forward(params, cfg, inp))
    noisy = dict(inp, text=inp["text"].copy())
    noisy["text"][1, 3:] = 100.0 * np.random.default_rng(5).standard_normal(noisy["text"][1, 3:].shape)
    out = np.asarray(_forward(params, cfg, noisy))
    assert rel_err(out[1], base[1]) <= 1e-5
    # ...while changing a valid token does change it.
    changed = dict(inp, text=inp["text"].copy())
    changed["text"][1, 0] += 1.0
    assert rel_err(np.asarray(_forward(params, cfg, changed))[1], base[1]) > 1e-4


def test_weight_mapping_round_trip_and_key_list():
    cfg = MMDiTConfig.named("tiny-i2v-16ch")
    model = make_reference(cfg, seed=3)
    sd = {k: v.numpy() for k, v in model.state_dict().items()}
    assert diffusers_map.expected_torch_shapes(cfg) == {k: tuple(v.shape) for k, v in sd.items()}
    params = diffusers_map.state_dict_to_params(sd, cfg)
    back = diffusers_map.params_to_state_dict(params, cfg)
    assert set(back) == set(sd)
    for k in sd:
        np.testing.assert_array_equal(back[k], sd[k])
    # the tree has exactly the model's structure and shapes
    shapes = jax.tree_util.tree_map(lambda a: a.shape, params)
    want = jax.tree_util.tree_map(lambda a: a.shape, jax.eval_shape(functools.partial(mmdit.init_params, cfg), jax.random.key(0)))
    assert shapes == want
    # one tensor at a time, for the streaming converter
    m = diffusers_map.torch_to_flax("transformer_blocks.1.ff.net.0.proj.weight", sd["transformer_blocks.1.ff.net.0.proj.weight"])
    assert m.path == ("transformer_blocks", "ff", "net_0", "proj", "kernel") and m.layer == 1
    np.testing.assert_array_equal(m.array, sd["transformer_blocks.1.ff.net.0.proj.weight"].T)
    m = diffusers_map.torch_to_flax("x_embedder.proj.weight", sd["x_embedder.proj.weight"])
    assert m.path == ("x_embedder", "proj", "kernel") and m.layer is None and m.array.shape == (1, 2, 2, 16, 32)


def test_state_dict_errors():
    cfg = MMDiTConfig.named("tiny-t2v")
    sd = {k: np.zeros(s, np.float32) for k, s in diffusers_map.expected_torch_shapes(cfg).items()}
    bad = dict(sd)
    bad.pop("proj_out.bias")
    with pytest.raises(ValueError, match="missing"):
        diffusers_map.state_dict_to_params(bad, cfg)
    bad = dict(sd, **{"proj_out.bias": np.zeros(3, np.float32)})
    with pytest.raises(ValueError, match="proj_out.bias"):
        diffusers_map.state_dict_to_params(bad, cfg)


def test_bad_inputs_raise_clear_errors():
    cfg = MMDiTConfig.named("tiny-i2v-33ch")
    params = jax.eval_shape(functools.partial(mmdit.init_params, cfg), jax.random.key(0))
    inp = make_inputs(cfg)
    call = lambda **kw: jax.eval_shape(
        lambda p, **a: mmdit.forward(p, cfg, **a), params, **{**{k: v for k, v in inp.items() if k != "guidance"}, **kw}
    )
    call()  # the good inputs trace
    with pytest.raises(ValueError, match=r"x: expected \[B, T', H', W', 33\]"):
        call(x=inp["x"][..., :16])
    with pytest.raises(ValueError, match="x: frames"):
        call(x=inp["x"][:, :, :3])
    with pytest.raises(ValueError, match="text_mask: expected shape"):
        call(text_mask=inp["text_mask"][:, :5])
    with pytest.raises(ValueError, match="text: expected"):
        call(text=inp["text"][..., :8])
    with pytest.raises(ValueError, match="pooled: expected"):
        call(pooled=inp["pooled"][:1])
    with pytest.raises(ValueError, match="guidance"):
        call(guidance=np.ones(2, np.float32))
