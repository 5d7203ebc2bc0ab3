"""Full-size key and shape coverage against the references on PyTorch's meta device (no memory).

For T2V and I2V-33ch (diffusers names and the original release's names) and the VAE: the
converter's expected tensors are exactly the reference's state_dict keys with their shapes, and
every params leaf is filled by them (`plan_leaves`).
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")
accelerate = pytest.importorskip("accelerate")

from convert_testlib import ShapeSource, to_original  # noqa: E402

from dreamactor_jax.models.config import MMDiTConfig  # noqa: E402
from dreamactor_jax.weights import convert, original_map  # noqa: E402


class _S:
    """Shape-only stand-in for a tensor, for the original-format inverse."""

    def __init__(self, shape):
        self.shape = tuple(shape)


def _meta_shapes(model_cls, **kwargs) -> dict[str, tuple[int, ...]]:
    with accelerate.init_empty_weights():
        model = model_cls(**kwargs)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _check(source: convert.Source, target: convert.Target, n_params: int):
    convert.validate(source, target)  # raises on any missing / unexpected / mis-shaped key
    plan = convert.plan_leaves(target)
    assert sum(len(v) for v in plan.values()) == len(target.expected)
    total = sum(int(np.prod(s)) for s in target.leaf_shapes.values())
    assert total == n_params
    for path, items in plan.items():  # each stacked leaf gathers its layers 0..n-1 once
        layers = sorted(i for _, i in items)
        if layers != [None]:
            assert layers == list(range(target.leaf_shapes[path][0])), path


@pytest.mark.parametrize("variant,n_params", [("t2v", 12_821_012_544), ("i2v-33ch", 12_810_991_680)])
def test_full_size_transformer_coverage(variant, n_params):
    cfg = MMDiTConfig.named(variant)
    shapes = _meta_shapes(diffusers.HunyuanVideoTransformer3DModel, **cfg.to_diffusers_config())
    assert sum(int(np.prod(s)) for s in shapes.values()) == n_params
    target = convert.mmdit_target(cfg)
    assert target.expected == shapes
    diff_src = convert.Source(ShapeSource(shapes), None, "diffusers", "mmdit", [])
    if variant == "i2v-33ch":  # only i2v-33ch has 33 input channels and no guidance embedder
        assert convert.mmdit_config(diff_src, None) == cfg
    else:  # t2v and i2v-16ch share their weights' shapes
        with pytest.raises(ValueError, match=r"fit \['t2v', 'i2v-16ch'\]; pass --variant"):
            convert.mmdit_config(diff_src, None)
    assert convert.mmdit_config(diff_src, variant) == cfg
    _check(diff_src, target, n_params)

    # the same model in the original release's names: every original tensor maps, shapes agree
    fused = to_original(
        {k: _S(s) for k, s in shapes.items()},
        concat=lambda xs: _S((sum(x.shape[0] for x in xs),) + xs[0].shape[1:]),
        swap=lambda x: x,
    )
    orig = {k: v.shape for k, v in fused.items()}
    assert orig["single_blocks.0.linear1.weight"] == (3 * 3072 + 12288, 3072)
    view = original_map.OriginalView(ShapeSource(orig), "transformer")
    assert view.unknown == []
    assert {k: view.info(k).shape for k in view.keys()} == shapes
    _check(convert.Source(view, None, "original", "mmdit", []), target, n_params)


def test_full_size_widened_t2v_coverage():
    t2v = MMDiTConfig.named("t2v")
    shapes = _meta_shapes(diffusers.HunyuanVideoTransformer3DModel, **t2v.to_diffusers_config())
    wide = convert.mmdit_target(t2v.replace(in_channels=33, image_condition_type="latent_concat"))
    src = convert.Source(ShapeSource(shapes), None, "diffusers", "mmdit", [])
    with pytest.raises(ValueError, match=r"x_embedder.proj.weight \[3072, 16, 1, 2, 2\] \(expected \[3072, 33, 1, 2, 2\]\)"):
        convert.validate(src, wide)
    convert.validate(src, wide, widen_from=16)


def test_full_size_vae_coverage():
    from dreamactor_jax.models.vae import VAEConfig

    shapes = _meta_shapes(diffusers.AutoencoderKLHunyuanVideo)
    n = sum(int(np.prod(s)) for s in shapes.values())
    assert n == 246_478_803
    target = convert.vae_target(VAEConfig.named("hunyuan"))
    assert target.expected == shapes
    _check(convert.Source(ShapeSource(shapes), None, "diffusers", "vae", []), target, n)
    view = original_map.OriginalView(ShapeSource({f"vae.{k}": s for k, s in shapes.items()}), "vae")
    _check(convert.Source(view, None, "original", "vae", []), target, n)
