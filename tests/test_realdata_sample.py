"""Issue 24, sampling as a user walks it. The README's smoke test (a tiny random base from
tools/make_random_base.py, a few tiny training steps by launch/train.py, then launch/sample.py)
animates on CPU; on that run, sample.py's real-data failures are one-line errors raised before any
slow work, the text is optional and never fetched, orientation mismatches are padded with a
warning, poses come from the whole source frames, and truncated drivers are reported."""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")

from PIL import Image  # noqa: E402

from dreamactor_jax import media  # noqa: E402
from dreamactor_jax.pose import render_pose, standard_person  # noqa: E402
from dreamactor_jax.sampling import inputs  # noqa: E402
from dreamactor_jax.utils import cli_main  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _main(path: str):
    spec = importlib.util.spec_from_file_location(f"m_{Path(path).stem}", ROOT / path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.main


def sample(argv, capsys) -> tuple[int, str, str]:
    try:
        cli_main(_main("launch/sample.py"), [str(a) for a in argv])
        code = 0
    except SystemExit as e:
        code = e.code
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def _pose_video(path: Path, n: int, h: int, w: int) -> None:
    frames = [render_pose(standard_person((0.5 + 0.02 * np.sin(t), 0.5), 0.8), h, w) for t in range(n)]
    media.write_video(path, np.stack(frames), fps=8)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """The README smoke test's first two commands: a tiny random base, then 3 tiny training steps on it."""
    root = tmp_path_factory.mktemp("smoke")
    t0 = time.time()
    cli = _main("tools/make_random_base.py")
    try:
        cli_main(cli, [str(root / "base")])
    except SystemExit as e:
        assert e.code == 0
    r = subprocess.run([sys.executable, "launch/train.py", "--config", "configs/pose.py:tiny", "--workdir",
                        str(root / "run"), f"--config.base_checkpoint={root / 'base' / 'transformer'}",
                        f"--config.preprocess.vae_checkpoint={root / 'base' / 'vae'}", "--config.train.steps=3"],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "done: step 3" in r.stdout
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 80, 3), np.uint8)).save(root / "ref.png")
    _pose_video(root / "pose.mp4", 12, 96, 64)  # a portrait driver for a landscape reference
    return {"root": root, "run": root / "run", "seconds": time.time() - t0}


def test_readme_smoke_test_animates(smoke, tmp_path, capsys):
    t0 = time.time()
    out, sbs = tmp_path / "tiny.mp4", tmp_path / "sbs.mp4"
    code, so, se = sample(["--checkpoint", smoke["run"], "--ref", smoke["root"] / "ref.png", "--pose",
                           smoke["root"] / "pose.mp4", "-o", out, "--side-by-side", sbs, "--no-text", "--steps", 4,
                           "--quiet"], capsys)
    assert code == 0, se
    v = media.read_video(out)
    assert v.shape == (12, 32, 48, 3) and v.std() > 1.0  # the reference's aspect at about the training area
    assert "text: none" in se and "CFG off" in se and "VAE tiling: auto -> framewise only" in se
    warn = [ln for ln in se.splitlines() if ln.startswith("warning:")]  # portrait driver, landscape panel
    assert len(warn) == 1 and "portrait" in warn[0] and "--fit" in warn[0] and "--height" in warn[0]
    pose = media.read_video(sbs)[0, :, 48:96]
    cols = np.nonzero(pose.max(-1).max(0) > 60)[0]
    assert 6 < cols.min() and cols.max() < 42  # padded into the panel: the whole skeleton, centred
    print(f"smoke test: base + 3 training steps {smoke['seconds']:.0f} s, sampling {time.time() - t0:.0f} s")


ASSETS = ROOT.parent / "shared" / "assets"


@pytest.mark.skipif(not (ASSETS / "dance1_right.mp4").exists(), reason="../shared/assets not present")
def test_readme_smoke_command_with_a_real_dance(smoke, tmp_path, capsys):
    """The README's third command as written: --driving a real video (MediaPipe), the reference's panel."""
    pytest.importorskip("mediapipe")
    code, _, se = sample(["--checkpoint", smoke["run"], "--ref", ASSETS / "ax-11.jpeg", "--driving",
                          ASSETS / "dance1_right.mp4", "-o", tmp_path / "tiny.mp4", "--no-text", "--frames", 9,
                          "--quiet"], capsys)
    assert code == 0, se
    assert "person found in 9/9 frames" in se and "warning" not in se  # portrait dance, portrait reference
    assert media.read_video(tmp_path / "tiny.mp4").shape[0] == 9


def test_text_is_optional_and_never_fetched(smoke, tmp_path, capsys, monkeypatch):
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    monkeypatch.setattr(socket.socket, "connect", lambda *a, **k: pytest.fail("network used"))
    monkeypatch.setattr(inputs, "read_reference", lambda *a, **k: pytest.fail("inputs read before the text check"))
    base = ["--checkpoint", smoke["run"], "--ref", smoke["root"] / "ref.png", "--pose", smoke["root"] / "pose.mp4",
            "-o", tmp_path / "o.mp4"]
    for extra, repo in (([], "HunyuanVideo-I2V"), (["--prompt", "a dance", "--text-mode", "t2v"], "HunyuanVideo:")):
        t0 = time.time()
        code, _, se = sample(base + extra, capsys)
        err = [ln for ln in se.splitlines() if ln.strip()]
        assert code == 2 and len(err) == 1 and time.time() - t0 < 15, se
        assert repo in err[0] and "--no-text" in err[0] and "--text-embeddings" in err[0]
    assert not (tmp_path / "o.mp4").exists()


def test_bad_inputs_fail_before_slow_work(smoke, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(inputs, "make_pose_estimator", lambda *a, **k: pytest.fail("pose model loaded"))
    root, out = smoke["root"], tmp_path / "o.mp4"
    rgba = np.zeros((40, 30, 4), np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "clear.png")
    media.write_video(tmp_path / "one.mp4", np.zeros((1, 32, 32, 3), np.uint8), fps=8)
    from dreamactor_jax.train.checkpoint import Checkpointer  # a run trained on a random base (no base path)
    import jax.numpy as jnp

    ck = Checkpointer(tmp_path / "random_run" / "checkpoints", {}, config={"variant": "pose", "base_checkpoint": None},
                      async_save=False)
    ck.save(1, {"step": jnp.asarray(1, jnp.int32), "lora": {}}, force=True)
    ck.close()
    common = ["--checkpoint", smoke["run"], "--ref", root / "ref.png", "--no-text"]
    cases = [
        (["--driving", root / "ref.png", "-o", out], "still image"),
        (["--driving", tmp_path / "one.mp4", "-o", out], "one frame"),
        (["--pose", root / "pose.mp4", "-o", tmp_path / "x.png"], "x.png: expected an .mp4"),
        (["--pose", root / "pose.mp4", "-o", out, "--side-by-side", tmp_path / "s.gif"], "s.gif"),
        (["--pose", root / "pose.mp4", "-o", root / "pose.mp4"], "is one of the inputs"),
        (["--pose", root / "pose.mp4", "-o", out, "--vae-tiling", "100"], "--vae-tiling 100"),
        (["--pose", root / "pose.mp4", "-o", out, "--ref", tmp_path / "clear.png"], "fully transparent"),
        (["--driving", root / "pose.mp4", "-o", out, "--checkpoint", tmp_path / "random_run"], "random weights"),
    ]
    for extra, needle in cases:
        code, _, se = sample(common + extra, capsys)
        err = [ln for ln in se.splitlines() if ln.startswith("error:")]
        assert code == 2 and len(err) == 1 and needle in err[0], (extra, se)
    assert not out.exists() and not (tmp_path / "x.png").exists()


def test_driving_video_poses_at_source_size_and_orientation(tmp_path, capsys):
    seen = set()

    def est(frame):
        seen.add(frame.shape[:2])
        return standard_person((0.5, 0.5), 0.9)
    rng = np.random.default_rng(2)
    media.write_video(tmp_path / "tall.mp4", rng.integers(0, 255, (5, 160, 80, 3), np.uint8), fps=8)
    frames, fps, fit, clip = inputs.read_motion(tmp_path / "tall.mp4", 32, 48, fit=None, estimator=est)
    assert seen == {(160, 80)} and fit == "pad" and frames.shape == (5, 32, 48, 3) and fps == 8
    warn = capsys.readouterr().err
    assert warn.count("warning:") == 1 and "portrait" in warn and "--fit" in warn
    # padded: the 80x160 source is 16x32 in the middle of the 48-wide panel; a centred person stays centred
    np.testing.assert_allclose(clip.frames[0].body[0, 1, :2], [0.5, 0.5 + (0.2 - 0.5) * 0.9], atol=1e-6)
    rendered, st = inputs.pose_from_clip(clip)
    assert rendered.shape == (5, 32, 48, 3) and st["empty"] == 0
    _, _, fit, clip = inputs.read_motion(tmp_path / "tall.mp4", 32, 48, fit="crop", estimator=est)
    assert fit == "crop" and "warning" not in capsys.readouterr().err
    assert clip.frames[0].body[0, 1, 1] < 0  # cropped: the neck is above the panel
    # a landscape driver for a landscape panel: crop, silently
    media.write_video(tmp_path / "wide.mp4", rng.integers(0, 255, (5, 80, 160, 3), np.uint8), fps=8)
    assert inputs.read_motion(tmp_path / "wide.mp4", 32, 48, fit=None)[2] == "crop"
    assert capsys.readouterr().err == ""


def test_truncated_driver_is_reported(tmp_path, capsys):
    ffmpeg = pytest.importorskip("imageio_ffmpeg").get_ffmpeg_exe()
    _pose_video(tmp_path / "full.mp4", 30, 96, 96)
    subprocess.run([ffmpeg, "-loglevel", "error", "-y", "-i", str(tmp_path / "full.mp4"), "-c", "copy",
                    "-movflags", "+faststart", str(tmp_path / "fs.mp4")], check=True)
    data = (tmp_path / "fs.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    frames, _, _, _ = inputs.read_motion(tmp_path / "cut.mp4", 32, 32, what="--pose")
    warn = capsys.readouterr().err.splitlines()
    assert len(warn) == 1 and "--pose" in warn[0] and "truncated: decoding stops at frame" in warn[0]
    assert "of the 30 its header declares" in warn[0] and 1 < len(frames) < 30
