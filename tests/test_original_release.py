"""The original-release converter against the real names and shapes of Tencent's HunyuanVideo.

`fixtures/hunyuan_original_keys.json` lists every tensor of the released transformer
(`mp_rank_00_model_states.pt`, T2V and the I2V variants) with its shape, derived from the module
definitions in github.com/Tencent/HunyuanVideo and Tencent-Hunyuan/HunyuanVideo-I2V (sources and
commits in the file). `original_map` must map every one of them (nothing unknown), cover each
tensor's rows exactly once (nothing left over), and produce exactly the diffusers model's keys and
shapes, which then fill every params leaf of the named config.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dreamactor_jax.models.config import MMDiTConfig
from dreamactor_jax.weights import convert, original_map
from dreamactor_jax.weights.safetensors_io import TensorInfo

FIXTURE = Path(__file__).parent / "fixtures" / "hunyuan_original_keys.json"
N_PARAMS = {"t2v": 12_821_012_544, "i2v-16ch": 12_821_012_544, "i2v-33ch": 12_810_991_680}


class _Shapes:
    """A TensorSource that knows shapes only (validation never reads)."""

    def __init__(self, shapes):
        self.shapes = {k: tuple(v) for k, v in shapes.items()}

    def keys(self):
        return list(self.shapes)

    def info(self, k):
        return TensorInfo(self.shapes[k], np.dtype(np.float32))

    def read(self, k, rows=None):  # pragma: no cover - must not be called
        raise AssertionError("no reads in a key test")


def release_shapes(variant: str) -> dict[str, tuple[int, ...]]:
    data = json.loads(FIXTURE.read_text())
    entry = data[variant]
    if "same_as" in entry:
        return release_shapes(entry["same_as"])
    if "based_on" in entry:
        out = release_shapes(entry["based_on"])
        out.update({k: tuple(v) for k, v in entry["changed"].items()})
        for k in entry["removed"]:
            del out[k]
        return out
    return {k: tuple(v) for k, v in entry.items()}


@pytest.mark.parametrize("variant", sorted(N_PARAMS))
def test_every_release_tensor_maps_once_with_the_right_shape(variant):
    shapes = release_shapes(variant)
    assert sum(int(np.prod(s)) for s in shapes.values()) == N_PARAMS[variant]
    view = original_map.OriginalView(_Shapes(shapes), "transformer")
    assert view.unknown == []  # every name of the release has a rule

    # nothing left over: the pieces cut from each release tensor cover its rows exactly once
    rows: dict[str, list[tuple[int, int]]] = {}
    for piece in view.pieces.values():
        n = shapes[piece.src][0]
        rows.setdefault(piece.src, []).append(piece.rows or (0, n))
    assert set(rows) == set(shapes)
    for src, parts in rows.items():
        parts.sort()
        assert parts[0][0] == 0 and parts[-1][1] == shapes[src][0], (src, parts)
        assert all(a[1] == b[0] for a, b in zip(parts, parts[1:])), (src, parts)

    # ... into exactly the diffusers model's keys and shapes, which fill every params leaf
    cfg = MMDiTConfig.named(variant)
    target = convert.mmdit_target(cfg)
    assert {k: tuple(view.info(k).shape) for k in view.keys()} == target.expected
    source = convert.Source(view, None, "original", "mmdit", view.unknown)
    convert.validate(source, target)
    plan = convert.plan_leaves(target)
    assert sum(len(v) for v in plan.values()) == len(target.expected)
    assert sum(int(np.prod(s)) for s in target.leaf_shapes.values()) == N_PARAMS[variant]
    assert convert.mmdit_config(source, variant) == cfg


def test_release_without_variant_is_decided_by_its_weights():
    i2v = release_shapes("i2v-33ch")
    src = convert.Source(original_map.OriginalView(_Shapes(i2v), "transformer"), None, "original", "mmdit", [])
    assert convert.mmdit_config(src, None) == MMDiTConfig.named("i2v-33ch")
    t2v = release_shapes("t2v")
    src = convert.Source(original_map.OriginalView(_Shapes(t2v), "transformer"), None, "original", "mmdit", [])
    with pytest.raises(ValueError, match=r"fit \['t2v', 'i2v-16ch'\]; pass --variant"):
        convert.mmdit_config(src, None)
    with pytest.raises(ValueError, match=r"'i2v-33ch' expects 33 input channels"):
        convert.mmdit_config(src, "i2v-33ch")


def test_a_release_tensor_missing_or_misshapen_is_named():
    shapes = release_shapes("t2v")
    cfg = MMDiTConfig.named("t2v")
    broken = dict(shapes)
    del broken["double_blocks.7.txt_attn_q_norm.weight"]
    broken["single_blocks.3.linear1.weight"] = (3 * 3072 + 6144, 3072)  # a narrower MLP
    view = original_map.OriginalView(_Shapes(broken), "transformer")
    with pytest.raises(ValueError) as e:
        convert.validate(convert.Source(view, None, "original", "mmdit", view.unknown), convert.mmdit_target(cfg))
    msg = str(e.value)
    assert "transformer_blocks.7.attn.norm_added_q.weight" in msg and "missing" in msg
    assert "single_transformer_blocks.3.proj_mlp.weight [6144, 3072] (expected [12288, 3072])" in msg
