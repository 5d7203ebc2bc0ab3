"""Readers (safetensors headers, shards, .pt) and the original-release name mapping."""

from __future__ import annotations

import json

import ml_dtypes
import numpy as np
import pytest

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")

from convert_testlib import DictSource, state_dict_numpy, tiny_transformer, to_original  # noqa: E402

from dreamactor_jax.models.config import MMDiTConfig  # noqa: E402
from dreamactor_jax.weights import original_map, safetensors_io  # noqa: E402


def _random_tensors(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "a.weight": torch.randn(6, 5, generator=g),
        "a.bias": torch.randn(6, generator=g).to(torch.bfloat16),
        "b.conv.weight": torch.randn(4, 3, 1, 2, 2, generator=g).to(torch.float16),
        "c.scale": torch.randn(3, generator=g).to(torch.bfloat16),
    }


def _np(t):
    return safetensors_io.torch_to_numpy(t)


def test_safetensors_reads_match_safe_open(tmp_path):
    tensors = _random_tensors()
    path = tmp_path / "x.safetensors"
    safetensors_torch.save_file(tensors, str(path), metadata={"format": "pt"})
    src = safetensors_io.open_file(path)
    assert sorted(src.keys()) == sorted(tensors)
    for k, t in tensors.items():
        got = src.read(k)
        assert got.shape == tuple(t.shape) and got.dtype == _np(t).dtype
        np.testing.assert_array_equal(got.view(np.uint8), _np(t).view(np.uint8))
    assert src.read("a.bias").dtype == ml_dtypes.bfloat16
    np.testing.assert_array_equal(src.read("a.weight", (2, 5)), _np(tensors["a.weight"])[2:5])
    np.testing.assert_array_equal(
        src.read("b.conv.weight", (1, 3)).astype(np.float32), _np(tensors["b.conv.weight"])[1:3].astype(np.float32)
    )


def test_truncated_and_corrupt_files_fail_in_one_line(tmp_path):
    path = tmp_path / "x.safetensors"
    safetensors_torch.save_file(_random_tensors(), str(path))
    data = path.read_bytes()
    (tmp_path / "t.safetensors").write_bytes(data[:-7])
    with pytest.raises(ValueError, match="truncated") as e:
        safetensors_io.open_file(tmp_path / "t.safetensors")
    assert "\n" not in str(e.value)
    (tmp_path / "h.safetensors").write_bytes(data[:20])
    with pytest.raises(ValueError, match="truncated|corrupt"):
        safetensors_io.open_file(tmp_path / "h.safetensors")
    n = int.from_bytes(data[:8], "little")
    bad = bytearray(data)
    bad[8 + n // 2] = 0xFF  # break the JSON header
    (tmp_path / "c.safetensors").write_bytes(bytes(bad))
    with pytest.raises(ValueError, match="corrupt"):
        safetensors_io.open_file(tmp_path / "c.safetensors")
    (tmp_path / "e.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="not a safetensors"):
        safetensors_io.open_file(tmp_path / "e.safetensors")


def test_folder_with_shards_and_index(tmp_path):
    cfg = MMDiTConfig.named("tiny-t2v")
    model = tiny_transformer(cfg)
    model.save_pretrained(tmp_path / "m", max_shard_size="60KB")
    shards = sorted((tmp_path / "m").glob("*.safetensors"))
    assert len(shards) >= 3
    src, config = safetensors_io.open_folder(tmp_path / "m")
    assert config["_class_name"] == "HunyuanVideoTransformer3DModel"
    sd = state_dict_numpy(model)
    assert sorted(src.keys()) == sorted(sd)
    for k in list(sd)[::7]:
        np.testing.assert_array_equal(src.read(k), sd[k])
    # a shard named by the index but missing
    shards[1].unlink()
    with pytest.raises(ValueError, match="missing"):
        safetensors_io.open_folder(tmp_path / "m")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not a checkpoint folder"):
        safetensors_io.open_folder(tmp_path / "empty")


def test_torch_pt_source_with_module_wrapper(tmp_path):
    tensors = _random_tensors(1)
    torch.save({"module": tensors}, tmp_path / "m.pt")
    src = safetensors_io.open_file(tmp_path / "m.pt")
    assert sorted(src.keys()) == sorted(tensors)
    for k, t in tensors.items():
        np.testing.assert_array_equal(src.read(k).view(np.uint8), _np(t).view(np.uint8))
    np.testing.assert_array_equal(src.read("a.weight", (1, 4)), _np(tensors["a.weight"])[1:4])
    # DeepSpeed files may hold both "module" and "ema": "module" is taken (Tencent's default load_key)
    ema = {k: t + 1 for k, t in tensors.items()}
    torch.save({"module": tensors, "ema": ema}, tmp_path / "both.pt")
    np.testing.assert_array_equal(safetensors_io.open_file(tmp_path / "both.pt").read("a.weight"), _np(tensors["a.weight"]))
    torch.save({"ema": ema}, tmp_path / "ema.pt")
    np.testing.assert_array_equal(safetensors_io.open_file(tmp_path / "ema.pt").read("a.weight"), _np(ema["a.weight"]))
    (tmp_path / "bad.pt").write_bytes(b"not a zip file at all")
    with pytest.raises(ValueError, match="torch.load"):
        safetensors_io.open_file(tmp_path / "bad.pt")


@pytest.mark.parametrize("variant", ["tiny-t2v", "tiny-i2v-33ch"])
def test_original_names_map_back_to_diffusers(variant):
    cfg = MMDiTConfig.named(variant)
    sd = state_dict_numpy(tiny_transformer(cfg, seed=3))
    orig = to_original(sd)
    assert "single_blocks.0.linear1.weight" in orig and "double_blocks.1.img_attn_qkv.bias" in orig
    view = original_map.OriginalView(DictSource(orig), "transformer")
    assert view.unknown == []
    assert sorted(view.keys()) == sorted(sd)
    for k, want in sd.items():
        assert view.info(k).shape == want.shape, k
        np.testing.assert_array_equal(view.read(k), want, err_msg=k)
    # rows of a split tensor read through the view
    np.testing.assert_array_equal(view.read("single_transformer_blocks.1.proj_mlp.weight", (3, 9)), sd["single_transformer_blocks.1.proj_mlp.weight"][3:9])
    np.testing.assert_array_equal(view.read("norm_out.linear.weight", (1, 4)), sd["norm_out.linear.weight"][1:4])


def test_original_unknown_names_are_reported():
    cfg = MMDiTConfig.named("tiny-t2v")
    orig = to_original(state_dict_numpy(tiny_transformer(cfg)))
    orig["double_blocks.0.img_extra.weight"] = np.ones((2, 2), np.float32)
    orig["step"] = np.ones((), np.float32)
    view = original_map.OriginalView(DictSource(orig), "transformer")
    assert view.unknown == ["double_blocks.0.img_extra.weight", "step"]
    with pytest.raises(ValueError, match="img_in"):
        original_map.OriginalView(DictSource({"encoder.conv_in.conv.weight": np.ones((2, 2))}), "transformer")


def test_original_vae_prefix_is_stripped():
    d = {"vae.encoder.conv_in.conv.weight": np.arange(6, dtype=np.float32).reshape(2, 3)}
    view = original_map.OriginalView(DictSource(d), "vae")
    assert view.keys() == ["encoder.conv_in.conv.weight"]
    np.testing.assert_array_equal(view.read("encoder.conv_in.conv.weight"), d["vae.encoder.conv_in.conv.weight"])
    json.dumps(view.keys())
