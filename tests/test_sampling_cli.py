"""launch/sample.py end to end on a tiny converted checkpoint (tiny diffusers MMDiT + VAE through the
converter, an adapter saved by the trainer's checkpointer), and its one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

import jax  # noqa: E402
from PIL import Image  # noqa: E402

from dreamactor_jax import media  # noqa: E402
from dreamactor_jax.pose import PoseFrame, standard_person  # noqa: E402
from dreamactor_jax.sampling import inputs  # noqa: E402

from cli_testlib import run_tool  # noqa: E402
from run_testlib import sampling_run, save_run  # noqa: E402

jax.config.update("jax_enable_x64", False)

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT.parent / "shared" / "assets"


def run(argv) -> int:
    return run_tool("launch/sample.py", argv)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """Converted tiny base + VAE, a trained-looking adapter run, text embeddings and inputs."""
    root = tmp_path_factory.mktemp("sample")
    rng = np.random.default_rng(0)
    config, lora = sampling_run(root, rng)  # text: "prompt" (a dancer) and the null prompt
    save_run(root / "random_run", {**config, "base_checkpoint": None}, lora)
    save_run(root / "e2e_run", {**config, "variant": "e2e"}, lora)

    Image.fromarray(rng.integers(0, 255, (60, 44, 3), np.uint8)).save(root / "ref.png")
    media.write_video(root / "driving.mp4", rng.integers(0, 255, (12, 48, 40, 3), np.uint8), 8.0)
    return root


def _base_args(root, out):
    return ["--checkpoint", root / "run", "--ref", root / "ref.png", "-o", out, "--text-embeddings",
            root / "text.safetensors", "--height", 32, "--width", 32, "--steps", 2, "--segment-frames", 5,
            "--overlap", 1, "--frames", 9, "--quiet"]


def test_end_to_end_pose_mode_writes_video_and_side_by_side(ckpt, tmp_path, monkeypatch, capsys):
    people = [standard_person((0.3, 0.5), 0.8), standard_person((0.7, 0.5), 0.7)]
    monkeypatch.setattr(inputs, "make_pose_estimator",
                        lambda *a, **k: (lambda img: PoseFrame.concat(people)))  # two people per frame
    out, sbs = tmp_path / "out.mp4", tmp_path / "sbs.mp4"
    assert run(["--driving", ckpt / "driving.mp4", "--side-by-side", sbs, "--guidance-scale", 3.0]
               + _base_args(ckpt, out)) == 0
    video = media.read_video(out)
    assert video.shape == (9, 32, 32, 3)
    assert video.std() > 1.0  # not a blank video
    assert media.read_video(sbs).shape == (9, 32, 4 * 32, 3)  # reference | driving | pose | result
    cap = capsys.readouterr()
    assert "up to 2 per frame" in cap.err and "CFG x3" in cap.err
    assert "2 segment(s)" in cap.out and "seams:" in cap.out
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]


@pytest.mark.skipif(not (ASSETS / "anyone-video-2_kps.mp4").exists(), reason="../shared/assets not present")
def test_rendered_pose_video(ckpt, tmp_path):
    out = tmp_path / "kps.mp4"
    assert run(["--pose", ASSETS / "anyone-video-2_kps.mp4"] + _base_args(ckpt, out)) == 0
    assert media.read_video(out).shape == (9, 32, 32, 3)


def test_end_to_end_checkpoint_takes_raw_frames(ckpt, tmp_path, monkeypatch, capsys):
    def no_estimator(*a, **k):
        raise AssertionError("an end-to-end checkpoint must not extract poses")
    monkeypatch.setattr(inputs, "make_pose_estimator", no_estimator)
    out, sbs = tmp_path / "e2e.mp4", tmp_path / "e2e_sbs.mp4"
    args = _base_args(ckpt, out)
    args[1] = ckpt / "e2e_run"
    assert run(["--driving", ckpt / "driving.mp4", "--side-by-side", sbs] + args) == 0
    assert media.read_video(out).shape == (9, 32, 32, 3)
    assert media.read_video(sbs).shape == (9, 32, 3 * 32, 3)  # reference | driving | result
    assert "(e2e)" in capsys.readouterr().err
    assert run(["--pose", ckpt / "driving.mp4"] + args) == 2  # a skeleton video is not its motion signal
    assert "end-to-end" in capsys.readouterr().err


def test_panel_size_follows_the_reference_aspect():
    assert inputs.choose_size(720, 1280) == (480, 848)       # landscape 16:9 at about 480x832 pixels
    assert inputs.choose_size(1280, 720) == (848, 480)       # portrait
    assert inputs.choose_size(1000, 1000, height=512) == (512, 512)
    assert inputs.choose_size(600, 300, width=256) == (512, 256)
    for kw in (dict(height=500), dict(width=16), dict(height=0)):
        with pytest.raises(ValueError, match="multiples of 16"):
            inputs.choose_size(100, 100, **kw)
    panels = inputs.side_by_side([np.zeros((4, 6, 3), np.uint8), np.ones((5, 4, 8, 3), np.uint8)])
    assert panels.shape == (5, 4, 14, 3) and panels[:, :, 6:].min() == 1


def test_without_checkpoint_says_what_to_do_and_writes_nothing(ckpt, tmp_path, capsys):
    out = tmp_path / "o.mp4"
    args = _base_args(ckpt, out)
    del args[:2]
    assert run(["--pose", ckpt / "driving.mp4"] + args) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and "tools/convert_weights.py" in err[0] and "launch/train.py" in err[0], err
    assert not out.exists()
    args = _base_args(ckpt, out)
    args[1] = ckpt / "base"  # a converted base alone is no adapter run
    assert run(["--pose", ckpt / "driving.mp4"] + args) == 2
    assert "no trained adapter" in capsys.readouterr().err
    args[1] = ckpt / "random_run"  # trained on a random base: refused
    assert run(["--pose", ckpt / "driving.mp4"] + args) == 2
    assert "random weights" in capsys.readouterr().err
    args[1] = ckpt / "run"
    assert run(["--pose", ckpt / "driving.mp4", "--vae", ckpt / "base"] + args) == 2  # the base is no VAE
    assert "expected the converted VAE" in capsys.readouterr().err
    assert not out.exists()


def test_bad_inputs_are_one_line_errors(ckpt, tmp_path, monkeypatch, capsys):
    out = tmp_path / "o.mp4"
    (tmp_path / "bad.mp4").write_bytes(b"not a video at all")
    cases = [
        (["--pose", ckpt / "driving.mp4", "--ref", tmp_path / "missing.png"], "missing.png"),
        (["--pose", tmp_path / "missing.mp4"], "missing.mp4"),
        (["--pose", tmp_path / "bad.mp4"], "bad.mp4"),
        (["--pose", ckpt / "driving.mp4", "--height", 40], "--height 40"),
    ]
    for extra, needle in cases:
        assert run(_base_args(ckpt, out) + extra) == 2, extra
        err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
        assert len(err) == 1 and needle in err[0], err
    monkeypatch.setattr(inputs, "make_pose_estimator", lambda *a, **k: (lambda img: PoseFrame.empty()))
    assert run(_base_args(ckpt, out) + ["--driving", ckpt / "driving.mp4"]) == 2
    err = capsys.readouterr().err
    assert "no person found" in err and "driving.mp4" in err
    assert not out.exists()
