"""The toy end-to-end study (toy/e2e.py) at CI size on a tiny random packed model: pseudo-pairs from
the pose adapter, a filter that never sees the ground truth, the e2e LoRA (warm-started) and its
ablations, held-out humanoid and quadruped cases driven by RGB video, and the model folder written
again with the e2e adapter, which launch/sample.py's loader then samples from a raw video."""

import json

import jax
import numpy as np
import pytest

from dreamactor_jax.toy import e2e
from dreamactor_jax.toy.recipe import load as load_config

from test_toy_packed import tiny_pack  # noqa: F401  (the fixture)


def test_plausibility_prefers_intact_bodies_without_the_ground_truth():
    from dreamactor_jax.toy.world import WorldConfig, heldout_cases

    w = WorldConfig(num_frames=5, marker_radius=0.035, limb_width=1.35)
    clean = np.stack([k.target.video for k in heldout_cases(3, w)])
    rng = np.random.default_rng(0)
    noisy = np.clip(clean.astype(int) + rng.integers(-90, 90, clean.shape), 0, 255).astype(np.uint8)
    shuffled = clean.copy()
    shuffled[:, 2:] = clean[::-1, 2:]  # bodies that change size and place mid-clip
    p_clean, p_noisy, p_shuf = (e2e.plausibility(v) for v in (clean, noisy, shuffled))
    assert (p_clean > p_noisy).all() and p_clean.mean() > p_shuf.mean()
    assert p_clean.max() <= 1.0


def test_e2e_study_runs_end_to_end_and_repacks(tiny_pack, tmp_path):  # noqa: F811
    from dreamactor_jax.sampling import loading, packed

    folder = tiny_pack[0]
    c = load_config("ci")
    m = e2e.run(c, folder, tmp_path / "run", pack=tmp_path / "pack", command="test", log=lambda x: None)
    assert m["filter"]["units"] == 6 and m["filter"]["kept"] == 3
    assert set(m["lora"]) == {"e2e", "e2e_seed1", "e2e_cold", "e2e_nofilter", "e2e_oracle"}
    assert m["lora"]["e2e_oracle"]["drive"] == "oracle" and not m["lora"]["e2e_cold"]["warm_start"]
    for kind in ("humanoid", "quadruped"):
        assert set(m[kind]["scores"]) == {"still", "prior", "pose", "e2e", "e2e_seed1", *e2e.ABLATIONS}
        assert m[kind]["ceiling"]["psnr"] >= 99
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["filter"]["kept"] == 3
    info = packed.read_info(tmp_path / "pack")
    assert set(info["adapters"]) == {"pose", "e2e"} and info["adapters"]["e2e"]["variant"] == "e2e"
    card = json.loads((tmp_path / "pack" / "card.json").read_text())
    assert set(card["check"]["scores"]) == {"prior", "pose", "e2e"} and card["e2e"]["command"] == "test"
    assert all(packed.sha256(tmp_path / "pack" / f) == h for f, h in card["files"].items())
    # the base is stored again unchanged
    assert {f: h for f, h in card["files"].items() if f.startswith("base")} == \
        {f: packed.sha256(folder / f) for f in packed.read_info(folder)["base"]}
    cfg, _ = loading.read_config(tmp_path / "pack" / "e2e")
    assert cfg["variant"] == "e2e"
    run = loading.load(tmp_path / "pack" / "e2e", dtype="float32")
    pose = loading.load(tmp_path / "pack", dtype="float32")
    diff = [float(np.abs(np.asarray(a) - np.asarray(b)).max(initial=0.0))
            for a, b in zip(jax.tree_util.tree_leaves(run.params), jax.tree_util.tree_leaves(pose.params))]
    assert max(diff) > 0  # another adapter merged
    with pytest.raises(FileExistsError):
        e2e.main(["--config", "ci", "--model", str(folder), "--out", str(tmp_path / "o"), "--pack", str(tmp_path / "pack")])
