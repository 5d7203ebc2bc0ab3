"""Pseudo-pair synthesis (dreamactor_jax/e2e/synthesize.py, tools/synthesize_pairs.py) with a fake
pose model: what a unit holds, skips counted by reason, atomic units, resume, shards, refusals.
The real pose model runs in tests/test_e2e_pipeline.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from cli_testlib import load_tool, run_main
from e2e_testlib import STEP, FakePoseModel, fake_estimator, make_inputs
from PIL import Image

from dreamactor_jax import media
from dreamactor_jax.e2e import plan, synthesize, units

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = synthesize.SynthSettings(frames=9, fps=8.0, height=32, width=32, units_per_video=2, seed=5)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return make_inputs(tmp_path_factory.mktemp("e2e_inputs"))


def _run(inputs, out, settings=SETTINGS, model=None, **kw):
    sources, _ = plan.read_sources(inputs[0])
    pool, _ = plan.read_references(inputs[1])
    model = model or FakePoseModel()
    rep = synthesize.run(sources, pool, out, settings, generate=model, estimator=fake_estimator, progress=False, **kw)
    return rep, model


def _metas(out: Path) -> dict:
    out = {u.id: dict(u.meta) for u in units.list_units(out)}
    for m in out.values():
        m.pop("created")
    return out


def test_units_hold_the_segment_its_poses_and_a_reference_of_another_identity(inputs, tmp_path):
    rep, model = _run(inputs, tmp_path)
    assert (rep.planned, rep.written, rep.already_done) == (10, 4, 0)
    assert {k: sorted(v) for k, v in rep.skipped.items()} == {
        "no person found": ["dark-u000", "dark-u001"],
        "too short (< 9 frames at 8 fps)": ["short-u000", "short-u001"],
        "unreadable video": ["broken-u000", "broken-u001"]}
    assert "4 written" in rep.summary() and "2 x no person found" in rep.summary()
    assert json.loads((tmp_path / "synthesis_report.json").read_text())["written"] == 4

    got = units.list_units(tmp_path)
    assert [u.id for u in got] == ["a-u000", "a-u001", "b-u000", "b-u001"]
    for u, call in zip(got, model.calls):
        m = u.meta
        assert sorted(p.name for p in u.dir.iterdir()) == ["generated.mp4", "pose.mp4", "reference.png",
                                                          "source.mp4", "unit.json"]
        src = media.read_video(u.source)
        assert src.shape == media.read_video(u.generated).shape == media.read_video(u.pose).shape == (9, 32, 32, 3)
        # the source segment: 9 frames at 8 fps from start_frame (the ramp's brightness says which frames:
        # one frame off would be STEP or more off on every frame)
        want = media.read_video(inputs[0] / f"{m['source']['id']}.mp4", fps=8.0, start=m["source"]["start_frame"],
                                num_frames=9)
        want = media.resize_to(want, 32, 32)
        assert np.abs(src.astype(float).mean((1, 2, 3)) - want.astype(float).mean((1, 2, 3))).max() < STEP / 3
        assert m["source"]["frames"] == 9 and m["source"]["fps"] == 8.0 and m["size"] == [32, 32]
        # the reference is another identity's picture, fed to the model at the panel size
        assert m["reference"]["identity"] != m["source"]["identity"]
        ref = np.asarray(Image.open(u.reference))
        np.testing.assert_array_equal(ref, call["reference"])
        assert m["reference"]["tags"] == [m["reference"]["id"].split("/")[0]]
        # seeds, the text lookup and the pose model's fingerprint are recorded
        assert m["seeds"] == {"plan": 5, "noise": plan.noise_seed(5, m["source"]["id"], m["source"]["index"])}
        assert call["seed"] == m["seeds"]["noise"] and call["text_keys"] == (u.id, m["reference"]["id"])
        assert m["checkpoint"]["state_blake2b"] == "fake-v1" and m["pose"]["frames_with_person"] == 9
    assert len({u.meta["seeds"]["noise"] for u in got}) == 4


def test_resume_skips_complete_units_and_remakes_only_the_missing_one(inputs, tmp_path):
    _run(inputs, tmp_path)
    before = _metas(tmp_path)
    rep, model = _run(inputs, tmp_path)
    assert (rep.written, rep.already_done, model.calls) == (0, 4, [])
    shutil.rmtree(tmp_path / "b-u001")
    rep, model = _run(inputs, tmp_path)
    assert (rep.written, rep.already_done, len(model.calls)) == (1, 3, 1)
    assert _metas(tmp_path) == before  # the same plan, seeds and reference as the first time
    # more units per video later: the first two stay, two more per usable video are added
    rep, _ = _run(inputs, tmp_path, settings=synthesize.SynthSettings(**{**SETTINGS.__dict__, "units_per_video": 3}))
    assert (rep.written, rep.already_done) == (2, 4)


def test_an_interrupted_unit_leaves_nothing_half_written(inputs, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        _run(inputs, tmp_path, model=FakePoseModel(fail_on_call=2))
    assert [u.id for u in units.list_units(tmp_path)] == ["a-u000"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert json.loads((tmp_path / "synthesis_report.json").read_text())["written"] == 1
    leftover = tmp_path / ".a-u001.x1y2.tmp"  # as a killed process would leave it
    leftover.mkdir()
    (leftover / "source.mp4").write_bytes(b"partial")
    rep, _ = _run(inputs, tmp_path)
    assert (rep.written, rep.already_done) == (3, 1) and not leftover.exists()


def test_shards_split_the_units_and_together_make_the_same_set(inputs, tmp_path):
    whole = tmp_path / "whole"
    _run(inputs, whole)
    parts = [_run(inputs, tmp_path / "split", shard=(i, 2))[0] for i in range(2)]
    assert sum(p.planned for p in parts) == 10 and [p.written for p in parts] == [2, 2]
    assert _metas(tmp_path / "split") == _metas(whole)
    assert (tmp_path / "split" / "synthesis_report.shard-1-of-2.json").is_file()


def test_other_settings_or_model_in_the_same_output_are_refused(inputs, tmp_path):
    _run(inputs, tmp_path)
    with pytest.raises(ValueError, match=r"made with other settings \(settings.frames: 9 there vs 5 now"):
        _run(inputs, tmp_path, settings=synthesize.SynthSettings(**{**SETTINGS.__dict__, "frames": 5}))
    with pytest.raises(ValueError, match="state_blake2b"):
        _run(inputs, tmp_path, model=FakePoseModel(tag="another-checkpoint"))
    (tmp_path / "synthesis.json").write_text("{truncated")
    with pytest.raises(ValueError, match="synthesis.json is damaged"):
        _run(inputs, tmp_path)
    for bad, msg in (({"frames": 10}, "4k \\+ 1"), ({"height": 40}, "multiple of 16"), ({"min_person": 2.0}, "fraction")):
        with pytest.raises(ValueError, match=msg):
            synthesize.SynthSettings(**bad)


def test_identities_from_manifests_and_unusable_references(inputs, tmp_path):
    vids, refs = inputs
    (tmp_path / "v.jsonl").write_text(json.dumps({"video": str(vids / "b.mp4"), "id": "alice-dance",
                                                  "identity": "alice"}) + "\n")
    (tmp_path / "r.jsonl").write_text(json.dumps({"image": str(refs / "human/man.png"), "identity": "alice"}) + "\n"
                                      + json.dumps({"image": str(refs / "animal/cat.png"), "identity": "bob"}) + "\n")
    sources, _ = plan.read_sources(tmp_path / "v.jsonl")
    pool, _ = plan.read_references(tmp_path / "r.jsonl")
    s = synthesize.SynthSettings(**{**SETTINGS.__dict__, "units_per_video": 6})
    rep = synthesize.run(sources, pool, tmp_path / "out", s, generate=FakePoseModel(), estimator=fake_estimator,
                         progress=False)
    assert rep.written == 6
    assert {u.meta["reference"]["identity"] for u in units.list_units(tmp_path / "out")} == {"bob"}
    # only alice's pictures, or an unreadable one: skipped and counted, never fatal
    (tmp_path / "bad.png").write_bytes(b"not an image")
    for pool, reason in (([r for r in pool if r.identity == "alice"], "no reference of another identity"),
                         ([plan.Reference("bad", tmp_path / "bad.png", "carol")], "unreadable reference image")):
        rep = synthesize.run(sources, pool, tmp_path / reason[:6], s, generate=FakePoseModel(),
                             estimator=fake_estimator, progress=False)
        assert rep.written == 0 and list(rep.skipped) == [reason] and len(rep.skipped[reason]) == 6


# ---------------------------------------------------------------------------------------------
# the command line (the pose model faked; tests/test_e2e_pipeline.py runs it with a real one)
# ---------------------------------------------------------------------------------------------


def _tool():
    return load_tool("tools/synthesize_pairs.py")


def _cli(mod, argv) -> int:
    return run_main(mod.main, argv)


@pytest.fixture
def tool(monkeypatch):
    from dreamactor_jax.e2e import generator

    mod = _tool()
    monkeypatch.setattr(generator, "read_run_config", lambda ckpt: {"variant": "pose", "preprocess": {"fps": 8.0}})
    monkeypatch.setattr(generator, "PoseModel", lambda *a, **k: FakePoseModel())
    monkeypatch.setattr(mod, "make_estimator", lambda *a: fake_estimator)
    return mod


def test_cli_counts_skips_and_fails_only_when_nothing_is_made(inputs, tmp_path, tool, capsys):
    vids, refs = inputs
    (tmp_path / "text.safetensors").write_bytes(b"x")
    base = ["--checkpoint", "runs/pose", "--references", refs, "--text-embeddings", tmp_path / "text.safetensors",
            "--frames", 9, "--height", 32, "--width", 32, "--quiet"]
    assert _cli(tool, base + ["--videos", vids, "-o", tmp_path / "out", "--shard", "0/2"]) == 0
    out = capsys.readouterr()
    assert "shard 0/2: 3 units planned, 1 written" in out.out and "1 x unreadable video: broken-u000" in out.out
    assert [u.id for u in units.list_units(tmp_path / "out")] == ["a-u000"]  # sources a, broken, short
    only_bad = tmp_path / "bad_videos"
    only_bad.mkdir()
    shutil.copy(vids / "dark.mp4", only_bad)
    shutil.copy(vids / "broken.mp4", only_bad)
    assert _cli(tool, base + ["--videos", only_bad, "-o", tmp_path / "none"]) == 1
    err = capsys.readouterr().err
    assert "produced no unit" in err
    for extra, needle in ((["--shard", "2/2"], "--shard"), (["--frames", 8], "--frames 8"),
                          (["--videos", tmp_path / "nowhere"], "--videos")):
        args = base + ["--videos", vids, "-o", tmp_path / "x"] + extra
        assert _cli(tool, args) == 2, extra
        lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
        assert len(lines) == 1 and needle in lines[0], lines
    assert not (tmp_path / "x").exists() or not units.list_units(tmp_path / "x")


ASSETS = ROOT.parent / "shared" / "assets"


@pytest.mark.skipif(not (ASSETS / "mtv-00001.mp4").exists(), reason="../shared/assets not present")
def test_real_videos_through_mediapipe(tmp_path):
    """A real dancer (phone video, 30 fps) and an RGBA anime reference through the real pose
    estimator; a skeleton video has no person in it and is skipped as such."""
    pytest.importorskip("mediapipe")
    from dreamactor_jax.pose.extract import looks_like_pose_video, make_estimator

    sources = [plan.Source(n, ASSETS / f"{n}.mp4", n) for n in ("mtv-00001", "anyone-video-2_kps")]
    pool = [plan.Reference("anyone-1", ASSETS / "anyone-1.png", "anyone-1", ("anime",))]
    s = synthesize.SynthSettings(frames=9, fps=8.0, height=192, width=128)
    rep = synthesize.run(sources, pool, tmp_path, s, generate=FakePoseModel(),
                         estimator=make_estimator("mediapipe", video=True), progress=False)
    assert rep.written == 1 and dict(rep.skipped) == {"no person found": ["anyone-video-2_kps-u000"]}
    (u,) = units.list_units(tmp_path)
    assert u.meta["pose"]["frames_with_person"] >= 8 and u.meta["source"]["source_fps"] == pytest.approx(30, abs=0.1)
    pose = media.read_video(u.pose)
    assert pose.shape == (9, 192, 128, 3) and looks_like_pose_video(pose)
    assert np.asarray(Image.open(u.reference)).shape == (192, 128, 3)  # RGBA composited, cropped to the panel
