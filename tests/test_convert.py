"""End to end: tiny random diffusers models -> tools/convert_weights.py -> load_params -> forward.

The diffusers checkpoint is forced into several shards; the same weights in the original
release's names and fusions (written by an independent inverse, `convert_testlib.to_original`)
must convert to identical params; bad inputs fail with one line and leave nothing behind.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")

from convert_testlib import (  # noqa: E402
    flat_params, make_inputs, rel_err, state_dict_numpy, tiny_transformer, to_original, torch_forward,
)

from dreamactor_jax.models import mmdit  # noqa: E402
from dreamactor_jax.models.config import MMDiTConfig  # noqa: E402
from dreamactor_jax.weights import checkpoint  # noqa: E402

jax.config.update("jax_enable_x64", False)

TOOL = Path(__file__).resolve().parents[1] / "tools" / "convert_weights.py"


def _tool_main():
    import importlib.util

    spec = importlib.util.spec_from_file_location("convert_weights_tool", TOOL)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.main


def run_tool(*argv) -> int:
    return _tool_main()([str(a) for a in argv] + ["--quiet"])


def convert_sharded(root: Path, cfg, model, max_shard_size: str) -> dict:
    """`model` saved to root/diffusers in three shards or more and converted (fp32) by the tool to
    root/out: dict(root, cfg, model, out)."""
    model.save_pretrained(root / "diffusers", max_shard_size=max_shard_size)
    assert len(list((root / "diffusers").glob("*.safetensors"))) >= 3
    assert run_tool(root / "diffusers", root / "out", "--dtype", "fp32") == 0
    return dict(root=root, cfg=cfg, model=model, out=root / "out")


def jax_forward(params, cfg, inp):
    return np.asarray(
        mmdit.forward(
            params, cfg, jnp.asarray(inp["x"]), inp["timestep"], jnp.asarray(inp["text"]), inp["text_mask"], jnp.asarray(inp["pooled"]), inp["guidance"]
        )
    )


def _assert_same_params(a, b):
    fa, fb = dict(flat_params(a)), dict(flat_params(b))
    assert sorted(fa) == sorted(fb)
    for k in fa:
        assert fa[k].dtype == fb[k].dtype, k
        np.testing.assert_array_equal(fa[k], fb[k], err_msg="/".join(k))


def _no_leftovers(folder: Path):
    assert not [p.name for p in folder.iterdir() if ".tmp" in p.name or ".old" in p.name or "partial_save" in p.name]


@pytest.fixture(scope="module")
def t2v(tmp_path_factory):
    """A tiny T2V diffusers folder in several shards, its torch model, and its fp32 conversion."""
    cfg = MMDiTConfig.named("tiny-t2v")
    return convert_sharded(tmp_path_factory.mktemp("t2v"), cfg, tiny_transformer(cfg, seed=0), max_shard_size="60KB")


def test_diffusers_folder_converts_to_matching_forward(t2v):
    cfg = checkpoint.load_config(t2v["out"])
    assert cfg == t2v["cfg"]
    params = checkpoint.load_params(t2v["out"])
    assert all(isinstance(v, jax.Array) and v.dtype == jnp.float32 for v in jax.tree_util.tree_leaves(params))
    inp = make_inputs(cfg)
    err = rel_err(jax_forward(params, cfg, inp), torch_forward(t2v["model"], inp))
    assert err <= 1e-5, err
    meta = json.loads((t2v["out"] / "config.json").read_text())
    assert meta["_dreamactor"]["source_format"] == "diffusers" and meta["_class_name"] == "HunyuanVideoTransformer3DModel"
    _no_leftovers(t2v["root"])


def test_load_params_into_shardings_and_dtype(t2v):
    from jax.sharding import NamedSharding

    from dreamactor_jax import sharding

    cfg = checkpoint.load_config(t2v["out"])
    mesh = sharding.make_mesh(None)
    shard_tree = sharding.tree_shardings(mmdit.param_axes(cfg), mesh)
    params = checkpoint.load_params(t2v["out"], shardings=shard_tree, dtype=jnp.bfloat16)
    leaf = params["single_transformer_blocks"]["proj_out"]["kernel"]
    assert leaf.dtype == jnp.bfloat16 and isinstance(leaf.sharding, NamedSharding)
    assert leaf.sharding == shard_tree["single_transformer_blocks"]["proj_out"]["kernel"]
    ref = checkpoint.load_params(t2v["out"])
    np.testing.assert_array_equal(np.asarray(leaf), np.asarray(ref["single_transformer_blocks"]["proj_out"]["kernel"]).astype(jnp.bfloat16))
    # the plain Orbax reader sees ONE params pytree
    import orbax.checkpoint as ocp

    raw = ocp.PyTreeCheckpointer().restore(checkpoint.pytree_dir(t2v["out"]))
    assert sorted(raw) == sorted(ref)
    with pytest.raises(ValueError, match="shardings"):
        checkpoint.load_params(t2v["out"], shardings={"proj_out": leaf.sharding})


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_original_format_converts_to_identical_params(t2v, tmp_path, suffix):
    orig = {k: torch.from_numpy(v) for k, v in to_original(state_dict_numpy(t2v["model"])).items()}
    src = tmp_path / f"mp_rank_00_model_states{suffix}"
    if suffix == ".pt":
        torch.save({"module": orig}, src)
    else:
        safetensors_torch.save_file(orig, str(src))
    # 16 channels with guidance fit t2v and i2v-16ch: the variant must be named
    with pytest.raises(ValueError, match="pass --variant"):
        from dreamactor_jax.weights.convert import convert

        convert(src, tmp_path / "nope")
    assert run_tool(src, tmp_path / "out", "--variant", "tiny-t2v", "--dtype", "fp32") == 0
    _assert_same_params(checkpoint.load_params(tmp_path / "out"), checkpoint.load_params(t2v["out"]))
    assert checkpoint.load_config(tmp_path / "out") == t2v["cfg"]


def test_i2v_33ch_original_detected_and_matches_forward(tmp_path):
    cfg = MMDiTConfig.named("tiny-i2v-33ch")
    model = tiny_transformer(cfg, seed=5)
    orig = {k: torch.from_numpy(v).to(torch.bfloat16) for k, v in to_original(state_dict_numpy(model)).items()}
    safetensors_torch.save_file(orig, str(tmp_path / "orig.safetensors"))
    # no --variant: 33 channels without guidance can only be i2v-33ch (size from the tiny config)
    with pytest.raises(ValueError, match="does not fit"):
        run_tool(tmp_path / "orig.safetensors", tmp_path / "x")  # full-size i2v-33ch expected
    assert run_tool(tmp_path / "orig.safetensors", tmp_path / "out", "--variant", "tiny-i2v-33ch") == 0
    params = checkpoint.load_params(tmp_path / "out")
    assert params["x_embedder"]["proj"]["kernel"].dtype == jnp.bfloat16
    model = model.to(torch.bfloat16).float()  # the reference with the same bf16-rounded weights
    inp = make_inputs(cfg)
    params32 = checkpoint.load_params(tmp_path / "out", dtype=jnp.float32)
    err = rel_err(jax_forward(params32, cfg, inp), torch_forward(model, inp))
    assert err <= 1e-5, err


def test_widened_t2v_ignores_the_new_channels(t2v, tmp_path):
    assert run_tool(t2v["root"] / "diffusers", tmp_path / "wide", "--widen-33ch", "--dtype", "fp32") == 0
    cfg = checkpoint.load_config(tmp_path / "wide")
    assert cfg.in_channels == 33 and cfg.out_channels == 16 and cfg.image_condition_type == "latent_concat"
    params = checkpoint.load_params(tmp_path / "wide")
    k = np.asarray(params["x_embedder"]["proj"]["kernel"])  # [kt, kh, kw, in, out]
    assert k.shape[3] == 33 and not k[..., 16:, :].any() and k[..., :16, :].any()
    inp16 = make_inputs(t2v["cfg"])
    inp = dict(inp16, x=np.concatenate([inp16["x"], np.random.default_rng(9).standard_normal(inp16["x"].shape[:4] + (17,)).astype(np.float32)], -1))
    err = rel_err(jax_forward(params, cfg, inp), torch_forward(t2v["model"], inp16))
    assert err <= 1e-5, err


def test_bad_inputs_fail_in_one_line_and_leave_nothing(t2v, tmp_path):
    from dreamactor_jax.weights.convert import convert

    src = t2v["root"] / "diffusers"
    # existing output folder
    (tmp_path / "exists").mkdir()
    with pytest.raises(FileExistsError, match="--overwrite"):
        convert(src, tmp_path / "exists")
    # a folder that is not a checkpoint
    (tmp_path / "notckpt").mkdir()
    (tmp_path / "notckpt" / "readme.txt").write_text("hi")
    with pytest.raises(ValueError, match="not a checkpoint"):
        convert(tmp_path / "notckpt", tmp_path / "o1")
    # a variant that does not match the weights
    with pytest.raises(ValueError, match="variant.*in_channels"):
        convert(src, tmp_path / "o2", variant="tiny-i2v-33ch")
    # a truncated shard
    bad = tmp_path / "trunc"
    bad.mkdir()
    for f in src.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    shard = sorted(bad.glob("*.safetensors"))[1]
    shard.write_bytes(shard.read_bytes()[:-100])
    with pytest.raises(ValueError, match="truncated"):
        convert(bad, tmp_path / "o3")
    # missing and unexpected tensors are listed by name
    sd = {k: torch.from_numpy(v) for k, v in state_dict_numpy(t2v["model"]).items()}
    sd.pop("proj_out.bias")
    sd["transformer_blocks.0.attn.extra.weight"] = torch.ones(2, 2)
    safetensors_torch.save_file(sd, str(tmp_path / "odd.safetensors"))
    with pytest.raises(ValueError, match=r"1 missing \[proj_out.bias\]; 1 unexpected \[transformer_blocks.0.attn.extra.weight\]"):
        convert(tmp_path / "odd.safetensors", tmp_path / "o4", variant="tiny-t2v")
    # the VAE cannot be widened
    for name in ("o1", "o2", "o3", "o4"):
        assert not (tmp_path / name).exists()
    _no_leftovers(tmp_path)
    # the command line gives exit code 2 and one line
    import subprocess
    import sys

    r = subprocess.run([sys.executable, str(TOOL), str(src), str(tmp_path / "exists")], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "exists" in r.stderr, r.stderr


def test_overwrite_replaces_atomically(t2v, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    assert run_tool(t2v["root"] / "diffusers", out, "--overwrite") == 0
    assert not (out / "stale.txt").exists()
    params = checkpoint.load_params(out)
    assert params["proj_out"]["kernel"].dtype == jnp.bfloat16
    ref = checkpoint.load_params(t2v["out"])
    np.testing.assert_array_equal(
        np.asarray(params["proj_out"]["kernel"]), np.asarray(ref["proj_out"]["kernel"]).astype(jnp.bfloat16)
    )
    _no_leftovers(tmp_path)
    os.listdir(out)
