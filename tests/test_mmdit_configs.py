"""Every configuration diffusers' HunyuanVideoTransformer3DModel accepts: converter, mapping, forward.

A seeded random sweep (`mmdit_sweep.random_config`): head counts and dims, RoPE axes (zeros
included), mlp_ratio 0..4 (the text refiner keeps diffusers' fixed 4x), every stack possibly empty,
patch sizes 1-2 in space and time, guidance on/off, no image condition / latent_concat /
token_replace, every qk_norm diffusers builds, 1-6 text tokens with one valid token in item 0,
timesteps over [0, 1000] and guidance over 1000..10000 (embedded scale 1..10).

Tolerance (fp32, max|ours - diffusers| / max|diffusers|), by input range (`mmdit_sweep.tolerance`):
    1e-5 while timestep and guidance <= 500, else 2e-5 * max(timestep, guidance) / 1000
(2e-5 at t = 1000, 1.2e-4 at the release's guidance 6000, 2e-4 at 10000). The sinusoidal
embedding of t and of the guidance is fp32 in both implementations, whose exp/sin/cos round
differently at large arguments. Measured over the 100 exhaustive seeds: ours vs diffusers up to
4.4e-6 with t, g <= 1000 and 1.05e-5 * max(t, g)/1000 above; diffusers' own fp32 output against
its float64 evaluation up to 1.0e-5 and 1.45e-5 * max(t, g)/1000; ours against that float64 up to
1.05e-5 and 2.3e-5 * max(t, g)/1000; in float64 the two agree to <= 2.2e-13. So the bound is the
fp32 rounding of the reference itself (`test_large_inputs_error_is_fp32_rounding_of_the_reference`),
not a different function. Four random configs run by default (~30 s); 100 with `-m exhaustive`,
each also in float64 (<= 1e-12).
"""

from __future__ import annotations

import numpy as np
import pytest

from mmdit_sweep import (
    diffusers_float64,
    project_float64,
    project_forward,
    project_params,
    random_config,
    random_inputs,
    reference_forward,
    reference_model,
    rel_err,
    tolerance,
    torch,
)

from dreamactor_jax.models.config import MMDiTConfig

# Seeds whose configs together empty each stack once, use both image-condition types, four qk
# norms, mlp ratios 1, 2 and 4, temporal patches of 2, with and without guidance.
DEFAULT_SEEDS = (1, 2, 4, 6)
EXHAUSTIVE_SEEDS = range(100)
FP64_TOL = 1e-12


def check_seed(seed: int, fp64: bool) -> None:
    rng = np.random.default_rng(seed)
    cfg = random_config(rng)
    inp = random_inputs(rng, cfg)
    model = reference_model(cfg, seed)
    params = project_params(model, cfg)
    ref = reference_forward(model, inp)
    out = project_forward(params, cfg, inp)
    assert out.shape == ref.shape == inp["x"].shape[:4] + (cfg.out_channels,)
    assert np.isfinite(out).all() and np.abs(ref).max() > 0
    err = rel_err(out, ref)
    assert err <= tolerance(inp), (seed, cfg, err, tolerance(inp))
    if fp64:
        with diffusers_float64():
            ref64 = reference_forward(model, inp, torch.float64)
        with project_float64():
            out64 = project_forward(params, cfg, inp, "float64")
        assert rel_err(out64, ref64) <= FP64_TOL, (seed, cfg, rel_err(out64, ref64))


@pytest.mark.parametrize("seed", DEFAULT_SEEDS)
def test_random_config_matches_diffusers(seed):
    check_seed(seed, fp64=False)


@pytest.mark.exhaustive
@pytest.mark.parametrize("seed", EXHAUSTIVE_SEEDS)
def test_random_config_matches_diffusers_exhaustive(seed):
    check_seed(seed, fp64=True)


def test_large_inputs_error_is_fp32_rounding_of_the_reference():
    """At t ~ 940 and guidance 6000 (the release's default scale 6) ours and diffusers' fp32 outputs
    differ by more than 1e-5; diffusers' own fp32 result is as far from float64, and in float64 the
    two agree to ~1e-13: the difference is fp32 rounding, not a different function."""
    cfg = MMDiTConfig.named("tiny-t2v")
    model = reference_model(cfg, 0)
    params = project_params(model, cfg)
    rng = np.random.default_rng(1)
    inp = random_inputs(rng, cfg, timesteps=[937.5, 940.0], guidance=[6000.0, 6000.0])
    ref32, out32 = reference_forward(model, inp), project_forward(params, cfg, inp)
    with diffusers_float64():
        ref64 = reference_forward(model, inp, torch.float64)
    with project_float64():
        out64 = project_forward(params, cfg, inp, "float64")
    ours_vs_ref = rel_err(out32, ref32)
    ref_own = rel_err(ref32, ref64)  # diffusers fp32 against the float64 truth
    ours_own = rel_err(out32, ref64)
    assert rel_err(out64, ref64) <= FP64_TOL
    assert ours_vs_ref <= tolerance(inp)
    assert ref_own >= 0.5 * ours_vs_ref  # the reference's own rounding is of the same size
    assert ours_own <= 2.0 * ref_own  # and ours is no further from the truth than diffusers
    # small arguments (t, guidance <= 500): within the plain 1e-5
    small = dict(inp, timestep=np.array([50.0, 500.0], np.float32), guidance=np.array([500.0, 100.0], np.float32))
    assert rel_err(project_forward(params, cfg, small), reference_forward(model, small)) <= 1e-5


def test_configs_diffusers_refuses_are_refused():
    """What diffusers' constructor (or forward) rejects is a one-line ValueError naming the field."""
    tiny = MMDiTConfig.named("tiny-t2v")
    bad = {
        "qk_norm": dict(qk_norm="rms_norm_across_heads"),  # diffusers: TypeError (kv_heads None)
        "qk_norm: 'l2' is refused": dict(qk_norm="l2"),  # with dual-stream blocks
        "rope_axes_dim": dict(rope_axes_dim=(4, 6, 7)),  # odd: diffusers asserts
        "rope_axes_dim: expected 3": dict(rope_axes_dim=(8, 8)),
        "image_condition_type": dict(image_condition_type="concat"),
        "mlp_ratio": dict(mlp_ratio=-1.0),
        "num_single_layers": dict(num_single_layers=-1),
    }
    for match, over in bad.items():
        with pytest.raises(ValueError, match=match):
            tiny.replace(**over)
    assert tiny.replace(qk_norm="l2", num_layers=0).qk_norm == "l2"  # single-stream blocks take it


def test_converter_takes_the_configs_it_used_to_refuse(tmp_path):
    """A diffusers folder with mlp_ratio != 4 and no single-stream blocks converts, loads, matches."""
    import importlib.util
    from pathlib import Path

    from dreamactor_jax.weights import checkpoint

    cfg = MMDiTConfig.named("tiny-t2v", mlp_ratio=2.0, num_single_layers=0, num_refiner_layers=1)
    model = reference_model(cfg, 3)
    model.save_pretrained(tmp_path / "diffusers", max_shard_size="40KB")
    tool = Path(__file__).resolve().parents[1] / "tools" / "convert_weights.py"
    spec = importlib.util.spec_from_file_location("convert_weights_tool", tool)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main([str(tmp_path / "diffusers"), str(tmp_path / "out"), "--dtype", "fp32", "--quiet"]) == 0
    loaded_cfg = checkpoint.load_config(tmp_path / "out")
    assert loaded_cfg == cfg
    params = checkpoint.load_params(tmp_path / "out")
    assert params["single_transformer_blocks"]["proj_out"]["kernel"].shape == (0, 32 + 64, 32)
    assert params["context_embedder"]["token_refiner"]["refiner_blocks"]["ff"]["net_0"]["proj"]["kernel"].shape == (1, 32, 128)
    inp = random_inputs(np.random.default_rng(5), cfg)
    out = project_forward({k: v for k, v in params.items()}, cfg, inp)
    assert rel_err(out, reference_forward(model, inp)) <= tolerance(inp)
