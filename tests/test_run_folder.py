"""The one reader of a training-run folder: every way of naming a checkpoint finds the same step,
the meta is read once and the adapter from the same open checkpoint, the architecture comes from
the fingerprint the trainer writes, and a folder that is not a run is a one-line error."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dreamactor_jax import run_folder
from dreamactor_jax.models import lora as lora_lib
from dreamactor_jax.models.config import MMDiTConfig
from dreamactor_jax.train.checkpoint import Checkpointer
from dreamactor_jax.train.state import RunSpec, fingerprint

CFG = MMDiTConfig.named("tiny-i2v-33ch")
LCFG = lora_lib.LoRAConfig(rank=4, alpha=2.0)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    lora = jax.tree_util.tree_map(lambda a: a + jax.random.normal(jax.random.key(1), a.shape),
                                  lora_lib.init_lora(CFG, LCFG, jax.random.key(0)))
    ck = Checkpointer(root / "checkpoints", fingerprint(RunSpec(CFG, LCFG, None, None)),
                      config={"variant": "pose", "lora": {"rank": 4}}, async_save=False)
    for step, scale in ((3, 1.0), (6, 2.0)):
        ck.save(step, {"step": jnp.asarray(step, jnp.int32), "lora": jax.tree_util.tree_map(lambda a: a * scale, lora)},
                force=True)
    ck.close()
    return root, lora


def test_every_name_of_a_checkpoint_finds_its_step(run):
    root, _ = run
    ck = root / "checkpoints"
    assert run_folder.find_step(root)[1] == 6 and run_folder.find_step(ck)[1] == 6
    assert run_folder.find_step(ck / "3") == (ck, 3) and run_folder.find_step(root, 3)[1] == 3
    with pytest.raises(ValueError, match=r"step: 5 not in .* \[3, 6\]"):
        run_folder.find_step(root, 5)
    with pytest.raises(ValueError, match="is step 3, step 6 asked for"):
        run_folder.find_step(ck / "3", 6)
    with pytest.raises(ValueError, match=r"--checkpoint .*: not a training checkpoint.*; run the trainer"):
        run_folder.find_step(root.parent, howto="run the trainer")


def test_meta_architecture_and_adapter_from_one_open_checkpoint(run, monkeypatch):
    root, lora = run
    reads = []
    real = run_folder.restore_meta
    monkeypatch.setattr(run_folder, "restore_meta", lambda m, s: reads.append(s) or real(m, s))
    with run_folder.open_run(root, 3) as r:
        assert r.step == 3 and r.config["variant"] == "pose" and reads == [3]
        cfg, lcfg = r.architecture()
        assert cfg.to_diffusers_config() == CFG.to_diffusers_config() and lcfg == LCFG
        got = r.read_lora()
        assert reads == [3]  # the meta is not read again for the adapter
    np.testing.assert_allclose(np.asarray(jax.tree_util.tree_leaves(got)[0]),
                               np.asarray(jax.tree_util.tree_leaves(lora)[0]), rtol=1e-6)
    assert run_folder.architecture_diffs(cfg, CFG) == []
    other = dataclasses.replace(CFG, num_layers=CFG.num_layers + 1)
    assert run_folder.architecture_diffs(other, CFG) == [f"num_layers: {CFG.num_layers + 1} vs {CFG.num_layers}"]
    with pytest.raises(ValueError, match="no fingerprint with 'model' and 'lora'"):
        run_folder.architecture({"model": CFG.to_diffusers_config()})
