"""The end-to-end workflow at tiny scale on CPU, with real models: a pose run trained on a converted
tiny base -> tools/synthesize_pairs.py -> filtering (fake scorer) -> preprocess for configs/e2e.py
-> e2e training warm-started from the pose adapter -> launch/sample.py in end-to-end mode, and
the refusals between the two kinds of checkpoints."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

import jax  # noqa: E402
from e2e_testlib import FakeScorer, fake_estimator, ramp_video, read_jsonl  # noqa: E402
from PIL import Image  # noqa: E402

from dreamactor_jax import incontext, media  # noqa: E402
from dreamactor_jax.data import preprocess as pp  # noqa: E402
from dreamactor_jax.data.shards import ShardSource, list_shards  # noqa: E402
from dreamactor_jax.e2e import filter as flt  # noqa: E402
from dreamactor_jax.e2e import generator, units  # noqa: E402
from dreamactor_jax.sampling import inputs as sample_inputs  # noqa: E402
from dreamactor_jax.sampling.pipeline import to_unit  # noqa: E402
from dreamactor_jax.train.trainer import train  # noqa: E402
from cli_testlib import load_tool, run_main  # noqa: E402
from run_testlib import converted_tiny_base  # noqa: E402

jax.config.update("jax_enable_x64", False)
FRAMES = 5   # latent 2 x 4 x 8 at 32 x 32: the shape of the synthetic pose shards (one train-step compile)


def _config(name: str, root: Path, steps: int, **over):
    c = load_tool(f"configs/{name}.py").get_config("tiny")
    c.base_checkpoint = str(root / "base")
    c.preprocess.vae_checkpoint = str(root / "vae")
    c.train.steps, c.train.checkpoint_every, c.train.log_every, c.train.tensorboard = steps, steps, 1, False
    for k, v in over.items():
        obj = c
        *path, last = k.split(".")
        for p in path:
            obj = getattr(obj, p)
        setattr(obj, last, v)
    return c


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Converted tiny base + VAE, a pose run trained on them, text embeddings, videos and references."""
    from dreamactor_jax.text.store import TextEmbeddings, save_text_embeddings

    root = tmp_path_factory.mktemp("e2e_world")
    converted_tiny_base(root)

    c = _config("pose", root, 2, **{"preprocess.fps": 8.0, "preprocess.height": 32, "preprocess.width": 32})
    pose = train(c, root / "pose")
    assert pose["step"] == 2

    rng = np.random.default_rng(0)
    # text length 8, as in the trainer's synthetic shards: the e2e run reuses the pose run's compiled step
    row = lambda: TextEmbeddings(rng.standard_normal((1, 8, 32)).astype(np.float32),  # noqa: E731
                                 np.array([[1, 1, 1, 0, 0, 0, 0, 0]], np.int32),
                                 rng.standard_normal((1, 24)).astype(np.float32))
    save_text_embeddings(root / "text.safetensors", row(), ["prompt"], null=row(), prompts=["a person dancing"])

    (root / "videos").mkdir()
    media.write_video(root / "videos" / "a.mp4", ramp_video(20, 48, 64, seed=1), 8.0)
    media.write_video(root / "videos" / "b.mp4", ramp_video(16, 40, 40, seed=2), 8.0)
    media.write_video(root / "videos" / "dark.mp4", np.full((12, 32, 32, 3), 8, np.uint8), 8.0)
    for name in ("human/man", "anime/girl"):
        (root / "refs" / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (40, 30, 3), np.uint8)).save(root / "refs" / f"{name}.png")
    return root, pose


def test_synthesize_filter_preprocess_train_and_sample_end_to_end(world, tmp_path, monkeypatch, capsys, caplog):
    root, pose = world
    # ---- synthesis with the trained pose run, through the command line
    synth = load_tool("tools/synthesize_pairs.py")
    monkeypatch.setattr(synth, "make_estimator", lambda *a: fake_estimator)
    out = tmp_path / "units"
    args = ["--checkpoint", root / "pose", "--videos", root / "videos", "--references", root / "refs",
            "--text-embeddings", root / "text.safetensors", "-o", out, "--frames", FRAMES, "--steps", 2, "--quiet"]
    assert run_main(synth.main, args) == 0
    text = capsys.readouterr()
    assert "3 units planned, 2 written" in text.out and "1 x no person found: dark-u000" in text.out
    assert "units of 5 frames at 8 fps, 32x32; pose model step 2" in text.err  # the pose run's fps and size
    got = units.list_units(out)
    assert [u.id for u in got] == ["a-u000", "b-u000"]
    fp = got[0].meta["checkpoint"]
    assert fp["step"] == 2 and fp["variant"] == "pose" and len(fp["state_blake2b"]) == 32
    assert fp["path"] == str((root / "pose" / "checkpoints").absolute())
    assert got[0].meta["generation"]["text"] == "null" and got[0].meta["generation"]["steps"] == 2
    videos = [media.read_video(u.generated) for u in got]
    assert all(v.shape == (FRAMES, 32, 32, 3) and v.std() > 2.0 for v in videos)
    assert np.abs(videos[0].astype(float) - videos[1].astype(float)).mean() > 2.0
    assert run_main(synth.main, args) == 0 and "0 written, 2 already done" in capsys.readouterr().out  # resumed

    # ---- filtering: both kept
    res, _ = flt.score_units(got, FakeScorer({"a-u000": 4.6, "b-u000": 4.2}), progress=False)
    pairs = tmp_path / "pairs.jsonl"
    flt.write_jsonl(pairs, flt.pair_rows(flt.manifest_rows(got, res, "fake:v1", 4.0), tmp_path))
    assert [r["id"] for r in read_jsonl(pairs)] == ["a-u000", "b-u000"]

    # ---- preprocess for configs/e2e.py (what tools/preprocess.py runs): target V_src, driving V_o
    c = _config("e2e", root, 2, init_lora=str(root / "pose"))
    p = c.preprocess
    cfg = pp.PreprocessConfig(variant=c.variant, min_frames=FRAMES, max_frames=FRAMES, fps=8.0, height=32, width=32,
                              clips_per_shard=4, pose_augmentation=p.pose_augmentation, text_guidance=p.text_guidance)
    rep = pp.Report()
    items = pp.read_manifest(pairs, rep)
    encode = pp.make_vae_encoder(p.vae, p.vae_checkpoint, latent_channels=16)
    rep = pp.run(items, tmp_path / "shards", cfg, encode=encode, text=pp.TextTable(root / "text.safetensors"),
                 report=rep, progress=False)
    assert rep.written == 2 and not rep.skipped
    records = ShardSource(list_shards(tmp_path / "shards"))
    arrays, meta = records[[records[i][1]["video_id"] for i in range(len(records))].index("a-u000")]
    assert (Path(meta["source"]).name, Path(meta["driving"]).name, meta["variant"]) == \
        ("source.mp4", "generated.mp4", "e2e")
    # Eq. 4: the target is V_src (left) beside V_o (right), and the canvas' frame 0 holds I_ref = V_src[0]
    src, gen = (to_unit(media.read_video(f)) for f in (got[0].source, got[0].generated))
    want_target = np.asarray(encode(np.concatenate([src, gen], axis=2)[None]))[0]
    want_canvas = np.asarray(incontext.encode_canvas(encode, incontext.make_canvas(src[0], gen, fill=-1.0)[None]))[0]
    for have, want in ((arrays["target"], want_target), (arrays["canvas"], want_canvas)):
        assert np.abs(have - want).max() <= 1e-4 * np.abs(want).max()

    # ---- e2e training, warm-started from the pose adapter with a fresh optimizer
    c.data.shards = str(tmp_path / "shards")
    with caplog.at_level(logging.INFO, logger="dreamactor_jax.train"):
        start = train(c, tmp_path / "e2e0", stop_after=0)
    assert "fresh optimizer state, step 0" in caplog.text
    for a, b in zip(jax.tree.leaves(pose["lora"]), jax.tree.leaves(start["lora"]), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    e2e = train(c, tmp_path / "e2e")
    assert e2e["step"] == 2 and np.isfinite(e2e["losses"]).all() and e2e["resumed_from"] is None
    moved = max(float(np.abs(np.asarray(a) - np.asarray(b)).max())
                for a, b in zip(jax.tree.leaves(pose["lora"]), jax.tree.leaves(e2e["lora"])))
    assert moved > 0

    # ---- sampling in end-to-end mode: raw driving frames, no pose extraction
    def no_estimator(*a, **k):
        raise AssertionError("an end-to-end checkpoint must not extract poses")
    monkeypatch.setattr(sample_inputs, "make_pose_estimator", no_estimator)
    sample = load_tool("launch/sample.py").main
    base = ["--ref", root / "refs" / "human" / "man.png", "--text-embeddings", root / "text.safetensors",
            "--height", 32, "--width", 32, "--steps", 2, "--guidance-scale", 1, "--quiet"]
    video_out = tmp_path / "e2e.mp4"
    assert run_main(sample, ["--checkpoint", tmp_path / "e2e", "--driving", got[0].generated, "--raw", "-o", video_out]
                + base) == 0
    assert "(e2e)" in capsys.readouterr().err
    v = media.read_video(video_out)
    assert v.shape == (FRAMES, 32, 32, 3) and v.std() > 2.0

    # ---- the two kinds of checkpoints refuse each other's motion signal, in one line
    cases = [(["--checkpoint", tmp_path / "e2e", "--pose", got[0].pose], "trained end-to-end on raw frames"),
             (["--checkpoint", root / "pose", "--driving", got[0].source, "--raw"], "is a pose checkpoint")]
    for argv, needle in cases:
        assert run_main(sample, argv + ["-o", tmp_path / "x.mp4"] + base) == 2
        err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
        assert len(err) == 1 and needle in err[0], err
    assert not (tmp_path / "x.mp4").exists()
    args[1] = tmp_path / "e2e"  # synthesis needs a pose run
    assert run_main(synth.main, args[:-1] + ["-o", tmp_path / "u2", "--quiet"]) == 2
    assert "synthesis animates poses, so it needs a pose checkpoint" in capsys.readouterr().err


def test_pose_model_is_deterministic_in_its_seed_and_finds_prompts_by_key(world):
    root, _ = world
    model = generator.PoseModel(root / "pose", root / "text.safetensors",
                                settings=generator.SamplerSettings(steps=2, guidance_scale=3.0))
    rng = np.random.default_rng(3)
    ref = rng.integers(0, 255, (32, 32, 3), np.uint8)
    pose = rng.integers(0, 255, (FRAMES, 32, 32, 3), np.uint8)
    a, meta = model(ref, pose, seed=11)
    b, _ = model(ref, pose, seed=11)
    c, _ = model(ref, pose, seed=12)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a.astype(float) - c.astype(float)).mean() > 1.0
    assert meta["text"] == "null" and not meta["cfg"]
    # a unit's prompt: keyed by its unit id, else its reference id (e.g. a caption of the pool), else null
    text, cfg_on, which = model._text(("no-such-unit", "prompt"))
    assert (cfg_on, which) == (True, "prompt") and float(text["scale"]) == 3.0 and "null_text" in text
    text, cfg_on, which = model._text(("no-such-unit",))
    assert (cfg_on, which) == (False, "null") and "null_text" not in text
    assert model.describe()["checkpoint"] == generator.checkpoint_fingerprint(root / "pose")


def test_warm_start_from_an_adapter_of_another_shape_is_one_line(world, tmp_path):
    root, _ = world
    c = _config("e2e", root, 1, init_lora=str(root / "pose"), **{"lora.rank": 8})
    with pytest.raises(ValueError) as e:
        train(c, tmp_path / "bad")
    msg = str(e.value)
    assert "\n" not in msg and "init_lora" in msg and "lora.rank: checkpoint 4 vs run 8" in msg
    assert not list((tmp_path / "bad").glob("checkpoints/*/state"))
    c = _config("e2e", root, 1, init_lora=str(root / "pose"),
                **{"lora.targets": (r"transformer_blocks\.ff\.net\.0\.proj", r"transformer_blocks\.ff\.net\.2")})
    with pytest.raises(ValueError, match=r"init_lora .*lora.targets: checkpoint"):
        train(c, tmp_path / "bad2")
