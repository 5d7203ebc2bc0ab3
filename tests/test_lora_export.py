"""LoRA round trip: JAX forward with an adapter == diffusers forward with the exported adapter loaded.

A training checkpoint (written by `train.checkpoint.Checkpointer`) holds a random nonzero adapter;
`tools/export_lora.py` writes PEFT safetensors; diffusers' `load_lora_adapter` loads it into the
same tiny random `HunyuanVideoTransformer3DModel` the JAX params came from.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")
pytest.importorskip("peft", reason="diffusers needs peft to load LoRA adapters (test extra)")

from convert_testlib import make_inputs, rel_err, state_dict_numpy, tiny_transformer, torch_forward  # noqa: E402

from dreamactor_jax.models import lora as lora_lib  # noqa: E402
from dreamactor_jax.models import mmdit  # noqa: E402
from dreamactor_jax.models.config import MMDiTConfig  # noqa: E402
from dreamactor_jax.weights import diffusers_map, lora_export, safetensors_io  # noqa: E402

jax.config.update("jax_enable_x64", False)

TOOL = Path(__file__).resolve().parents[1] / "tools" / "export_lora.py"


def _tool(argv):
    spec = importlib.util.spec_from_file_location("export_lora_tool", TOOL)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.main([str(a) for a in argv])


def _random_lora(cfg, lora_cfg, seed):
    """init_lora, then B random too (a fresh adapter has B = 0 and would change nothing)."""
    lora = lora_lib.init_lora(cfg, lora_cfg, jax.random.key(seed))
    leaves, tree = jax.tree_util.tree_flatten(lora)
    keys = jax.random.split(jax.random.key(seed + 1), len(leaves))
    leaves = [x + 0.3 * jax.random.normal(k, x.shape, x.dtype) for x, k in zip(leaves, keys)]
    return jax.tree_util.tree_unflatten(tree, leaves)


def _save_training_checkpoint(workdir: Path, cfg, lora_cfg, lora, step: int):
    from dreamactor_jax.train.checkpoint import Checkpointer

    fp = {"model": cfg.to_diffusers_config(), "lora": dataclasses.asdict(lora_cfg)}
    ck = Checkpointer(workdir / "checkpoints", fp, async_save=False)
    ck.save(step, {"step": jnp.asarray(step, jnp.int32), "lora": lora, "rng": jax.random.key_data(jax.random.key(0))})
    ck.close()


@pytest.mark.parametrize(
    "targets",
    [
        lora_lib.DEFAULT_TARGETS,  # the paper: feed-forward only, proj_out's MLP columns
        lora_lib.DEFAULT_TARGETS + (r"single_transformer_blocks\.proj_out:attn", r"transformer_blocks\.attn\.to_q"),
    ],
    ids=["ffn-only", "ffn+attn"],
)
def test_exported_adapter_matches_in_diffusers(tmp_path, targets):
    cfg = MMDiTConfig.named("tiny-t2v")
    model = tiny_transformer(cfg, seed=2)
    params = diffusers_map.state_dict_to_params(state_dict_numpy(model), cfg)
    lora_cfg = lora_lib.LoRAConfig(rank=3, alpha=5.0, targets=targets)
    lora = _random_lora(cfg, lora_cfg, seed=4)
    inp = make_inputs(cfg)
    out_jax = np.asarray(
        mmdit.forward(
            params, cfg, jnp.asarray(inp["x"]), inp["timestep"], jnp.asarray(inp["text"]), inp["text_mask"],
            jnp.asarray(inp["pooled"]), inp["guidance"], lora=lora, lora_cfg=lora_cfg,
        )
    )
    base = torch_forward(model, inp)
    assert rel_err(out_jax, base) > 1e-2  # the adapter really changes the output

    _save_training_checkpoint(tmp_path / "run", cfg, lora_cfg, lora, step=7)
    out = tmp_path / "adapter.safetensors"
    assert _tool([tmp_path / "run", out]) == 0

    src = safetensors_io.open_file(out)
    d, m = cfg.hidden_size, cfg.mlp_dim
    a = src.read("transformer.single_transformer_blocks.1.proj_out.lora_A.weight")
    if "proj_out:attn" in " ".join(targets):
        assert a.shape == (6, d + m) and np.abs(a[:3, :d]).max() > 0 and not a[:3, d:].any() and not a[3:, :d].any()
    else:  # MLP-only adapter: A is zero over the attention columns
        assert a.shape == (3, d + m) and not a[:, :d].any() and np.abs(a[:, d:]).max() > 0
    assert not any("ff_context" in k for k in src.keys())

    # the pipeline's loader accepts the file as is (diffusers PEFT format, transformer. prefix)
    sd = diffusers.HunyuanVideoPipeline.lora_state_dict(str(out))
    sd = sd[0] if isinstance(sd, tuple) else sd
    assert sorted(sd) == sorted(src.keys())

    model.load_lora_adapter(str(out), prefix="transformer", adapter_name="dreamactor")
    out_torch = torch_forward(model, inp)
    err = rel_err(out_jax, out_torch)
    assert err <= 1e-5, err


def test_export_errors(tmp_path):
    cfg = MMDiTConfig.named("tiny-t2v")
    lora_cfg = lora_lib.LoRAConfig(rank=2, alpha=2.0)
    lora = _random_lora(cfg, lora_cfg, seed=1)
    _save_training_checkpoint(tmp_path / "run", cfg, lora_cfg, lora, step=3)
    (tmp_path / "exists.safetensors").write_bytes(b"x")
    with pytest.raises(FileExistsError, match="--overwrite"):
        lora_export.export_lora(tmp_path / "run", tmp_path / "exists.safetensors")
    with pytest.raises(ValueError, match="not a training checkpoint"):
        lora_export.export_lora(tmp_path, tmp_path / "a.safetensors")
    with pytest.raises(ValueError, match=r"step: 5 not in .* \[3\]"):
        lora_export.export_lora(tmp_path / "run", tmp_path / "a.safetensors", step=5)
    lora_export.export_lora(tmp_path / "run" / "checkpoints" / "3", tmp_path / "a.safetensors", dtype="bf16")
    src = safetensors_io.open_file(tmp_path / "a.safetensors")
    assert src.info("transformer.transformer_blocks.0.ff.net.2.lora_B.weight").dtype.name == "bfloat16"
    # an adapter that lacks a configured target
    del lora["single_transformer_blocks"]["proj_mlp"]
    with pytest.raises(ValueError, match="no adapter at single_transformer_blocks/proj_mlp"):
        lora_export.lora_to_peft(lora, cfg, lora_cfg)
