"""HunyuanVideo-1.5 conversion: a tiny random diffusers `HunyuanVideo15Transformer3DModel` saved with
`save_pretrained` (forced into several shards) -> tools/convert_weights.py (streaming, leaf by leaf)
-> load_params -> the project's forward equals diffusers' (fp32, <= 1e-5 relative); the same weights
without config.json are recognised by their names; wrong variants fail in one line."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")

from convert_testlib import rel_err  # noqa: E402
from hv15_testlib import hv15_inputs, hv15_torch_forward, jax_kwargs, tiny_hv15  # noqa: E402
from test_convert import convert_sharded, run_tool  # noqa: E402

from dreamactor_jax.models import mmdit  # noqa: E402
from dreamactor_jax.models.config import MMDiTConfig  # noqa: E402
from dreamactor_jax.weights import checkpoint  # noqa: E402


@pytest.fixture(scope="module")
def hv15(tmp_path_factory):
    cfg = MMDiTConfig.named("tiny-hv15-meanflow")
    return convert_sharded(tmp_path_factory.mktemp("hv15"), cfg, tiny_hv15(cfg, seed=3), max_shard_size="1MB")


def test_hv15_diffusers_folder_converts_to_matching_forward(hv15):
    out = hv15["root"] / "out"
    cfg = checkpoint.load_config(out)
    assert cfg == hv15["cfg"]
    meta = json.loads((out / "config.json").read_text())
    assert meta["_class_name"] == "HunyuanVideo15Transformer3DModel"
    params = checkpoint.load_params(out)
    inp = hv15_inputs(cfg, seed=7)
    got = np.asarray(mmdit.forward(params, cfg, inp["x"], inp["timestep"], inp["text"], inp["text_mask"], None,
                                   **jax_kwargs(inp)))
    err = rel_err(got, hv15_torch_forward(hv15["model"], cfg, inp))
    assert err <= 1e-5, err
    assert params["cond_type_embed"]["embedding"].shape == (3, cfg.hidden_size)
    assert params["time_embed"]["timestep_embedder_r"]["linear_1"]["kernel"].shape == (256, cfg.hidden_size)


def test_hv15_weights_without_config_json_and_variant_checks(hv15, tmp_path):
    src = tmp_path / "model.safetensors"
    safetensors_torch.save_file({k: v.contiguous() for k, v in hv15["model"].state_dict().items()}, str(src))
    # tiny weights fit no full-size variant: the message says what they are
    with pytest.raises(ValueError, match=r"9 input channels, no guidance embedder, MeanFlow \(hunyuan_video15\)"):
        run_tool(src, tmp_path / "a")
    assert run_tool(src, tmp_path / "b", "--variant", "tiny-hv15-meanflow", "--dtype", "fp32") == 0
    a = checkpoint.load_params(tmp_path / "b")
    b = checkpoint.load_params(hv15["root"] / "out")
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    with pytest.raises(ValueError, match=r"variant: 'tiny-hv15' expects 9 input channels and no guidance embedder \(hunyuan_video15\)"):
        run_tool(src, tmp_path / "c", "--variant", "tiny-hv15")
    with pytest.raises(ValueError, match="variant: 'tiny-i2v-33ch' does not match"):
        run_tool(hv15["root"] / "diffusers", tmp_path / "d", "--variant", "tiny-i2v-33ch")
    assert not (tmp_path / "c").exists() and not (tmp_path / "d").exists()


def test_hv15_lora_exports_to_peft_that_diffusers_loads(hv15, tmp_path):
    """The paper's FFN-only adapter on HunyuanVideo-1.5 (`lora.ffn_targets`): JAX forward with it ==
    diffusers' transformer with the exported PEFT file loaded (`load_lora_adapter`; diffusers 0.42.1's
    HunyuanVideo-1.5 pipelines have no `load_lora_weights`)."""
    pytest.importorskip("peft", reason="diffusers needs peft to load LoRA adapters (test extra)")
    from test_lora_export import _random_lora, _save_training_checkpoint, _tool

    from dreamactor_jax.models import lora as lora_lib
    from dreamactor_jax.weights import safetensors_io

    cfg, model = hv15["cfg"], tiny_hv15(hv15["cfg"], seed=3)
    params = checkpoint.load_params(hv15["root"] / "out")
    lora_cfg = lora_lib.LoRAConfig(rank=3, alpha=5.0, targets=lora_lib.ffn_targets(cfg))
    lora = _random_lora(cfg, lora_cfg, seed=4)
    inp = hv15_inputs(cfg, seed=8)
    out_jax = np.asarray(mmdit.forward(params, cfg, inp["x"], inp["timestep"], inp["text"], inp["text_mask"], None,
                                       lora=lora, lora_cfg=lora_cfg, **jax_kwargs(inp)))
    assert rel_err(out_jax, hv15_torch_forward(model, cfg, inp)) > 1e-2  # the adapter changes the output
    _save_training_checkpoint(tmp_path / "run", cfg, lora_cfg, lora, step=5)
    out = tmp_path / "adapter.safetensors"
    assert _tool([tmp_path / "run", out]) == 0
    keys = sorted(safetensors_io.open_file(out).keys())
    assert keys and all(".ff.net." in k and k.startswith("transformer.transformer_blocks.") for k in keys)
    model.load_lora_adapter(str(out), prefix="transformer", adapter_name="dreamactor")
    err = rel_err(out_jax, hv15_torch_forward(model, cfg, inp))
    assert err <= 1e-5, err


def test_hv15_original_release_converts_to_identical_params(hv15, tmp_path):
    """The same weights in the 1.5 release's names (`tencent/HunyuanVideo-1.5` transformer/<type>/*.safetensors:
    dual q/k/v apart, fused refiner qkv, swapped final modulation; written by the independent inverse
    `convert_testlib.to_original_hv15`) convert to exactly the params of the diffusers folder."""
    from convert_testlib import state_dict_numpy, to_original_hv15

    orig = to_original_hv15(state_dict_numpy(hv15["model"]))
    assert "double_blocks.0.img_attn_q.weight" in orig and "cond_type_embedding.weight" in orig
    assert "txt_in.individual_token_refiner.blocks.0.self_attn_qkv.weight" in orig and "time_r_in.mlp.0.weight" in orig
    src = tmp_path / "release"
    src.mkdir()
    (src / "config.json").write_text(json.dumps({"model_type": "hunyuanvideo15", "hidden_size": 32}))  # the release's own
    keys = sorted(orig)
    for n, part in enumerate((keys[: len(keys) // 2], keys[len(keys) // 2:])):  # sharded, as released
        safetensors_torch.save_file({k: torch.from_numpy(orig[k]) for k in part}, str(src / f"model-{n}.safetensors"))
    assert run_tool(src, tmp_path / "out", "--variant", "tiny-hv15-meanflow", "--dtype", "fp32") == 0
    a = checkpoint.load_params(tmp_path / "out")
    b = checkpoint.load_params(hv15["root"] / "out")
    fa, fb = jax.tree_util.tree_flatten_with_path(a)[0], jax.tree_util.tree_flatten_with_path(b)[0]
    assert [p for p, _ in fa] == [p for p, _ in fb]
    for (p, x), (_, y) in zip(fa, fb):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=str(p))
    # one tensor the table does not know: named, nothing written
    orig["vision_in.proj.9.weight"] = orig["vision_in.proj.0.weight"].copy()
    bad = tmp_path / "bad.safetensors"
    safetensors_torch.save_file({k: torch.from_numpy(v) for k, v in orig.items()}, str(bad))
    with pytest.raises(ValueError, match=r"vision_in\.proj\.9\.weight"):
        run_tool(bad, tmp_path / "bad_out", "--variant", "tiny-hv15-meanflow")
    assert not (tmp_path / "bad_out").exists()
