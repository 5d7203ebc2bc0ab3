"""Full-size configs, by shapes only (nothing allocated): exact parameter counts and the key list."""

from __future__ import annotations

import functools
import math

import jax
import pytest

from dreamactor_jax.models import mmdit
from dreamactor_jax.models.config import MMDiTConfig
from dreamactor_jax.weights import diffusers_map

EXPECTED = {"t2v": 12_821_012_544, "i2v-16ch": 12_821_012_544, "i2v-33ch": 12_810_991_680}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_eval_shape_param_count(name):
    cfg = MMDiTConfig.named(name)
    shapes = jax.eval_shape(functools.partial(mmdit.init_params, cfg), jax.random.key(0))
    n = sum(math.prod(x.shape) for x in jax.tree_util.tree_leaves(shapes))
    assert n == EXPECTED[name] == mmdit.count_params(cfg)
    # the tree mirrors the spec table, stacked layers carry the layer axis
    assert shapes["transformer_blocks"]["ff"]["net_0"]["proj"]["kernel"].shape == (20, 3072, 12288)
    assert shapes["single_transformer_blocks"]["proj_out"]["kernel"].shape == (40, 15360, 3072)
    assert shapes["x_embedder"]["proj"]["kernel"].shape == (1, 2, 2, cfg.in_channels, 3072)


def test_full_size_key_list_matches_diffusers_meta_model():
    """Every diffusers key and shape of the full I2V-33ch model is covered by the mapping."""
    diffusers = pytest.importorskip("diffusers")
    accelerate = pytest.importorskip("accelerate")
    cfg = MMDiTConfig.named("i2v-33ch")
    with accelerate.init_empty_weights():
        model = diffusers.HunyuanVideoTransformer3DModel(**cfg.to_diffusers_config())
    ref = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert diffusers_map.expected_torch_shapes(cfg) == ref
    assert MMDiTConfig.from_diffusers_config(dict(model.config)) == cfg
