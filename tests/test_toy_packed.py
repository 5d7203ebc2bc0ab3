"""Packed runs (`sampling/packed.py`): the toy model as an ordinary checkpoint of launch/sample.py.

A tiny random toy model is packed at 32x32 (the smallest panel sample.py takes); launch/sample.py's
path (loading -> merged adapter -> Animator) must give the toy evaluation's video for the same case
and noise, and the toy demo must run on a pack.
"""

import json
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from dreamactor_jax.sampling import packed
from dreamactor_jax.toy import model as tm
from dreamactor_jax.toy import pack as toy_pack
from dreamactor_jax.toy.recipe import load as load_config

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--config.world.height=32", "--config.world.width=32", "--config.world.num_frames=5", "--config.eval.steps=3"]


@pytest.fixture(scope="module")
def tiny_pack(tmp_path_factory):
    """A packed toy model with random weights (the adapter's B made non-zero so it changes the output)."""
    from dreamactor_jax.models import lora as lora_lib
    from dreamactor_jax.models import mmdit

    c = load_config("ci", TINY)
    cfg = tm.mmdit_config(c.model)
    base = mmdit.init_params(cfg, jax.random.PRNGKey(0))
    lora = lora_lib.init_lora(cfg, tm.lora_config(c.lora), jax.random.PRNGKey(1))
    lora = jax.tree.map(lambda x: x + 0.05 * jax.random.normal(jax.random.PRNGKey(2), x.shape), lora)
    folder = tmp_path_factory.mktemp("pack") / "model"
    toy_pack.write(folder, c, prior=toy_pack.rounded(base), adapters={"pose": (toy_pack.rounded(lora), c.lora)},
                   result={"scores": {}, "device": "cpu"}, command="test", config_arg="ci", log=lambda m: None)
    return folder, c, base, lora


def test_pack_holds_bf16_weights_that_load_back_exactly_and_a_card(tiny_pack):
    folder, c, base, lora = tiny_pack
    info = packed.read_info(folder)
    assert info["autoencoder"] == {"kind": "haar"} and info["default_adapter"] == "pose" and info["dtype"] == "bfloat16"
    assert info["sampling"] == {"shift": 1.0, "steps": 3, "segment_frames": 5, "overlap": 1, "height": 32,
                                "width": 32, "fps": 4.0}
    mcfg, b2, adapters, _ = packed.load_parts(folder)
    assert mcfg == tm.mmdit_config(load_config("ci", TINY + ["--config.model.dtype=float32"]).model)
    for x, y in zip(jax.tree_util.tree_leaves(toy_pack.rounded(base)), jax.tree_util.tree_leaves(b2)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))  # bf16-rounded values, read back exactly
    l2 = adapters["pose"][0]
    for x, y in zip(jax.tree_util.tree_leaves(toy_pack.rounded(lora)), jax.tree_util.tree_leaves(l2)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    card = json.loads((folder / "card.json").read_text())
    assert set(card["files"]) == {p.name for p in folder.glob("*.safetensors")}
    assert all(packed.sha256(folder / f) == h for f, h in card["files"].items())
    assert set(card["check"]["scores"]) == {"prior", "pose"} and len(card["check"]["scores"]["pose"]) == 1


def test_sample_py_path_equals_the_toy_sampler_for_the_same_case_and_noise(tiny_pack):
    """The pack through launch/sample.py's parts (loading.load: adapter merged; Animator: canvas, mask,
    text, sampler) gives the toy evaluation's video: no special case for the toy inside the sampler."""
    from dreamactor_jax.sampling import loading
    from dreamactor_jax.sampling.pipeline import Animator, SampleSettings
    from dreamactor_jax.sampling.velocity import InContextVelocity
    from dreamactor_jax.toy.evaluate import generate, motion_inputs
    from dreamactor_jax.toy.world import WorldConfig, heldout_cases

    folder, c, _, _ = tiny_pack
    cfg, step = loading.read_config(folder)
    assert cfg["variant"] == "pose" and cfg["preprocess"]["fps"] == 4.0 and step == int(c.lora.steps)
    run = loading.load(folder, dtype="float32")
    s = cfg["sampling"]
    animator = Animator(InContextVelocity(run.mcfg), run.params, run.encode, run.decode, run.text,
                        SampleSettings(steps=s["steps"], shift=s["shift"], seed=0, segment_frames=s["segment_frames"],
                                       overlap=s["overlap"]))
    case = heldout_cases(1, WorldConfig(**dict(c.world)))[0]
    drive = motion_inputs([case], c)
    video, segments = animator.animate(case.reference, drive[0])
    assert len(segments) == 1 and video.shape == (5, 32, 32, 3)
    c32 = load_config("ci", TINY)
    c32.eval.batch = 1
    _, base, adapters, _ = packed.load_parts(folder)
    lora, lc = adapters["pose"][0], c32.lora
    want = generate(c32, base, lora, lc, "spatial", case.reference[None], drive, seed=0)[0]
    diff = np.abs(video.astype(int) - want.astype(int))
    assert diff.max() <= 2 and diff.mean() < 0.05, (diff.max(), diff.mean())
    without = generate(c32, base, None, None, "spatial", case.reference[None], drive, seed=0)[0]
    assert np.abs(without.astype(int) - want.astype(int)).mean() > 1  # the adapter does change the video


def test_sample_py_cli_on_a_packed_run_and_its_errors(tiny_pack, tmp_path):
    from dreamactor_jax.toy import examples
    from dreamactor_jax.toy.world import WorldConfig, heldout_cases

    folder, c, _, _ = tiny_pack
    paths = examples.write_case(tmp_path / "in", heldout_cases(1, WorldConfig(**dict(c.world)))[0], c)

    def sample(*args):
        return subprocess.run([sys.executable, str(ROOT / "launch" / "sample.py"), "--ref", str(paths["ref"]),
                               "--quiet", *args], capture_output=True, text=True, timeout=300)

    r = sample("--checkpoint", str(folder), "--pose", str(paths["pose"]), "-o", str(tmp_path / "o.mp4"),
               "--side-by-side", str(tmp_path / "s.mp4"))
    assert r.returncode == 0, r.stderr[-2000:]
    from dreamactor_jax.media import read_video
    out = read_video(tmp_path / "o.mp4")
    side = read_video(tmp_path / "s.mp4")
    assert out.shape[:3] == (5, 32, 32) and side.shape[:3] == (5, 32, 96)  # ref | pose | result
    r = sample("--checkpoint", str(folder / "e2e"), "--pose", str(paths["pose"]), "-o", str(tmp_path / "x.mp4"))
    assert r.returncode == 2 and "no adapter 'e2e'" in r.stderr.strip().splitlines()[-1]
    r = sample("--checkpoint", str(folder), "--base", str(tmp_path), "--pose", str(paths["pose"]), "-o",
               str(tmp_path / "x.mp4"))
    assert r.returncode == 2 and "carries its own" in r.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "x.mp4").exists()


def test_examples_are_lossless_and_the_demo_runs_on_a_pack(tiny_pack, tmp_path):
    from dreamactor_jax.sampling import inputs
    from dreamactor_jax.toy import examples, shipped
    from dreamactor_jax.toy.world import WorldConfig, heldout_cases

    folder, c, _, _ = tiny_pack
    case = heldout_cases(1, WorldConfig(**dict(c.world)))[0]
    paths = examples.write_case(tmp_path / "in", case, c)
    back, fps, _, _ = inputs.read_motion(paths["driving"], 32, 32)
    assert fps == 4.0 and np.array_equal(back, case.driving.video)  # exactly the frames the model is fed
    m = shipped.run_demo(tmp_path / "demo", folder, cases=2, steps=2, log=lambda x: None)
    assert set(m["scores"]) == {"still", "prior", "pose"} and m["times"]["total_s"] > 0
    assert m["ceiling"]["psnr"] >= 99 and set(json.loads((tmp_path / "demo" / "metrics.json").read_text())) >= {
        "scores", "times", "ceiling"}
    assert (tmp_path / "demo" / "grid.png").is_file() and (tmp_path / "demo" / "demo.mp4").is_file()


def test_bad_packs_are_refused_with_one_line(tiny_pack, tmp_path):
    import shutil

    folder, _, _, _ = tiny_pack
    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    info = json.loads((bad / "run.json").read_text())
    (bad / "run.json").write_text(json.dumps({**info, "autoencoder": {"kind": "jpeg"}}))
    with pytest.raises(ValueError, match="autoencoder kind"):
        packed.read_info(bad)
    (bad / "run.json").write_text(json.dumps({**info, "model": {**info["model"], "num_single_layers": 2}}))
    with pytest.raises(ValueError, match="has no|shape"):
        packed.load_parts(bad)
    (bad / "run.json").write_text(json.dumps(info))
    (bad / info["base"][0]).unlink()
    with pytest.raises(ValueError, match="missing"):
        packed.load_parts(bad)
    (bad / "run.json").write_text("{not json")
    with pytest.raises(ValueError, match="unreadable"):
        packed.read_info(bad)
    c = load_config("ci", TINY)
    with pytest.raises(FileExistsError):
        toy_pack.write(folder, c, prior={}, adapters={"pose": ({}, c.lora)}, result={}, command="", config_arg="")
    assert not packed.is_packed(tmp_path) and packed.is_packed(folder) and packed.resolve(folder / "pose") == (folder, "pose")
