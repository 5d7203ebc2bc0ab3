"""The in-context layout as a setting of the run (`objective.layout`) through data, trainer and sampler:
synthetic shards follow it, the trainer refuses shards of the other layout, and a tiny temporal run
trains (its loss falls) and `launch/sample.py` samples from it temporally without being told."""

import importlib.util
import json
from pathlib import Path

import jax
import numpy as np
import pytest

from dreamactor_jax import incontext
from dreamactor_jax.data.shards import check_layout, list_shards, shard_layout, sidecar_path, write_shard
from dreamactor_jax.data.synthetic import synthetic_example, write_synthetic_shards
from dreamactor_jax.train.trainer import train

jax.config.update("jax_enable_x64", False)
ROOT = Path(__file__).resolve().parents[1]
DIMS = dict(channels=16, text_len=8, text_dim=32, pooled_dim=24)


def _config(**over):
    """configs/pose.py:tiny, as `--config.objective.layout=...` and friends would set it."""
    spec = importlib.util.spec_from_file_location("pose_cfg", ROOT / "configs" / "pose.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    c = mod.get_config("tiny")
    c.train.tensorboard = False
    for key, v in over.items():
        section, name = key.split("__")
        setattr(getattr(c, section), name, v)
    return c


def test_synthetic_examples_follow_the_layout():
    sp = synthetic_example(np.random.default_rng(0), (2, 4, 8), **DIMS)
    np.testing.assert_array_equal(sp["mask"], incontext.make_mask(2, 4, 4))
    np.testing.assert_array_equal(sp["canvas"], sp["target"] * sp["mask"])
    tp = synthetic_example(np.random.default_rng(0), (3, 4, 4), layout="temporal", **DIMS)
    assert tp["target"].shape == tp["canvas"].shape == (3, 4, 4, 16) and tp["mask"].min() == 1
    # [V[0]; V] and [V[0]; D]: the reference leads both, then video and motion differ
    np.testing.assert_array_equal(tp["target"][0], tp["target"][1])
    np.testing.assert_array_equal(tp["canvas"][0], tp["target"][0])
    assert np.abs(tp["canvas"][1:] - tp["target"][1:]).max() > 0.1 and np.abs(tp["target"]).max() > 0.5


def test_trainer_refuses_shards_of_another_layout(tmp_path):
    paths = write_synthetic_shards(tmp_path, [(2, 4, 8)], clips_per_shape=2, shards=2, seed=0, **DIMS)
    assert [shard_layout(p) for p in paths] == ["spatial", "spatial"]
    side = sidecar_path(paths[0])  # a shard from before the field: spatial
    info = json.loads(side.read_text())
    del info["layout"]
    side.write_text(json.dumps(info))
    assert shard_layout(paths[0]) == "spatial"
    check_layout(list_shards(tmp_path), "spatial")  # an old spatial run's shards still train
    c = _config(objective__layout="temporal")
    c.data.shards = str(tmp_path)
    with pytest.raises(ValueError) as e:
        train(c, tmp_path / "run")
    msg = str(e.value)
    assert "\n" not in msg and paths[0].name in msg, msg
    assert "made for the spatial in-context layout, but this run's objective.layout is temporal" in msg
    with pytest.raises(ValueError, match="several in-context layouts"):
        ex = synthetic_example(np.random.default_rng(1), (2, 4, 8), **DIMS)
        write_shard(tmp_path / "mixed.array_record", [(ex, {"layout": "spatial"}), (ex, {"layout": "temporal"})])
    assert not (tmp_path / "mixed.array_record").exists()


@pytest.mark.slow  # a converted tiny base, 24 training steps, a 2-segment video: 25-50 s on 2 busy cores
def test_tiny_temporal_run_trains_and_samples_temporally(tmp_path, capsys):
    pytest.importorskip("diffusers")
    from cli_testlib import run_tool
    from run_testlib import converted_tiny_base

    from dreamactor_jax import media
    from dreamactor_jax.pose.keypoints import standard_person
    from dreamactor_jax.pose.render import render_pose
    from PIL import Image

    base, vae = converted_tiny_base(tmp_path)
    c = _config(objective__layout="temporal", data__synthetic_shapes="3x4x4", train__steps=24, train__log_every=4,
                train__checkpoint_every=24)
    c.base_checkpoint, c.preprocess.vae_checkpoint = str(base), str(vae)
    out = train(c, tmp_path / "run")
    losses = np.asarray(out["losses"])
    assert len(losses) == 24 and np.isfinite(losses).all()
    assert losses[-6:].mean() < 0.85 * losses[:6].mean(), losses
    shards = list_shards(tmp_path / "run" / "synthetic_shards")
    assert {shard_layout(p) for p in shards} == {"temporal"}

    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), np.uint8)).save(tmp_path / "ref.png")
    frames = [render_pose(standard_person((0.4 + 0.02 * t, 0.5), 0.8), 32, 32) for t in range(9)]
    media.write_video(tmp_path / "pose.mp4", np.stack(frames), fps=8)
    args = ["--checkpoint", tmp_path / "run", "--ref", tmp_path / "ref.png", "--pose", tmp_path / "pose.mp4",
            "-o", tmp_path / "out.mp4", "--no-text", "--steps", 2, "--segment-frames", 5, "--overlap", 1, "--quiet"]
    assert run_tool("launch/sample.py", args) == 0, capsys.readouterr().err
    cap = capsys.readouterr()
    assert "temporal in-context layout" in cap.err and "2 segment(s)" in cap.out  # the run's layout, no flag
    v = media.read_video(tmp_path / "out.mp4")
    assert v.shape == (9, 32, 32, 3) and v.std() > 1.0
