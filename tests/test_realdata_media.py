"""Issue 24, media and pose boundary: truncated videos reported, OpenCV fallbacks, output suffixes,
transparent images refused, SIGTERM leaves no temporaries, poses mapped from source frames to the
panel. Synthetic files, plus the real assets where present."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dreamactor_jax import media
from dreamactor_jax.pose.extract import DETECT_MAX_SIDE, detection_frame, fit_clip, fit_pose
from dreamactor_jax.pose.keypoints import PoseClip, PoseFrame

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT.parent / "shared" / "assets"


def _levels(n, h=48, w=64, noise=0):
    """Frame i has mean grey 30 + 7 i (readable after coding); `noise` adds texture (bytes per frame)."""
    rng = np.random.default_rng(0)
    v = np.stack([np.full((h, w, 3), 30 + 7 * i, np.int32) for i in range(n)])
    if noise:
        v = v + rng.integers(-noise, noise + 1, v.shape)
    return v.astype(np.uint8)


def _decode_levels(v):
    return np.rint((v.reshape(len(v), -1).mean(1) - 30) / 7).astype(int)


def _faststart(src: Path, dst: Path) -> None:
    """Remux with the index (moov) first, as phones and web videos are: then a cut file still opens."""
    ffmpeg = pytest.importorskip("imageio_ffmpeg").get_ffmpeg_exe()
    subprocess.run([ffmpeg, "-loglevel", "error", "-y", "-i", str(src), "-c", "copy", "-movflags", "+faststart",
                    str(dst)], check=True)


@pytest.fixture(scope="module")
def truncated(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("trunc")
    media.write_video(d / "full.mp4", _levels(30, 96, 128, noise=20), fps=24)
    _faststart(d / "full.mp4", d / "fs.mp4")
    data = (d / "fs.mp4").read_bytes()
    (d / "cut.mp4").write_bytes(data[: int(len(data) * 0.5)])
    return d / "cut.mp4"


@pytest.mark.parametrize("backend", ["auto", "pyav", "imageio", "cv2"])
def test_truncated_video_is_reported_not_used_short(truncated, backend):
    with pytest.raises(ValueError, match=r"cut\.mp4: .*truncated"):
        media.read_video(truncated, backend=backend)
    seen = []
    got = media.read_video(truncated, backend=backend, on_truncated=lambda n, total: seen.append((n, total)))
    assert len(seen) == 1 and seen[0][1] == 30 and seen[0][0] == len(got) < 30
    # frames that decoded are the right ones
    assert _decode_levels(got).tolist() == list(range(len(got)))


def test_complete_videos_are_not_called_truncated(tmp_path):
    media.write_video(tmp_path / "a.mp4", _levels(17), fps=8)
    for fps in (None, 3, 24):
        media.read_video(tmp_path / "a.mp4", fps=fps)  # no error, no callback
    with pytest.raises(ValueError, match="got 17 frame"):  # too short is still "too short", not truncated
        media.read_video(tmp_path / "a.mp4", num_frames=30)


@pytest.mark.skipif(not (ASSETS / "mtv-00001.mp4").exists(), reason="../shared/assets not present")
def test_truncated_real_phone_video(tmp_path):
    _faststart(ASSETS / "mtv-00001.mp4", tmp_path / "fs.mp4")
    data = (tmp_path / "fs.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: int(len(data) * 0.3)])
    with pytest.raises(ValueError, match="truncated"):
        media.read_video(tmp_path / "cut.mp4", backend="pyav")
    for name in ("mtv-00001.mp4", "dance1_right.mp4", "talkinghead-2.mp4"):  # whole files are whole
        assert len(media.read_video(ASSETS / name, fps=4)) > 1


def test_cv2_backends_read_and_write(tmp_path):
    pytest.importorskip("cv2")
    v = _levels(12)
    media.write_video(tmp_path / "x.mp4", v, fps=12, backend="cv2")
    for backend in ("cv2", "pyav"):
        got = media.read_video(tmp_path / "x.mp4", backend=backend)
        assert got.shape == v.shape and np.abs(got.astype(int) - v).mean() < 3, backend
    info = media.video_info(tmp_path / "x.mp4", backend="cv2")
    assert (info.num_frames, info.fps, info.height, info.width) == (12, 12.0, 48, 64)


def test_write_video_checks_the_suffix(tmp_path):
    with pytest.raises(ValueError, match=r"x\.png.*\.mp4"):
        media.write_video(tmp_path / "x.png", _levels(3), fps=8)
    assert list(tmp_path.iterdir()) == []


def test_fully_transparent_image_is_refused(tmp_path):
    rgba = np.zeros((20, 16, 4), np.uint8)
    rgba[..., :3] = 200
    Image.fromarray(rgba, "RGBA").save(tmp_path / "clear.png")
    with pytest.raises(ValueError, match="clear.png.*fully transparent"):
        media.read_image(tmp_path / "clear.png")
    rgba[5, 5, 3] = 255  # one visible pixel is an image
    Image.fromarray(rgba, "RGBA").save(tmp_path / "dot.png")
    assert media.read_image(tmp_path / "dot.png")[5, 5].tolist() == [200, 200, 200]


def test_sigterm_leaves_no_temporary_file(tmp_path):
    """A CLI killed while writing an mp4 removes its hidden temporary (cli_main's signal handler)."""
    script = tmp_path / "slow.py"
    script.write_text(textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        import numpy as np
        from dreamactor_jax import media
        from dreamactor_jax.utils import cli_main

        def frames():
            for i in range(10000):
                if i == 80:  # past the encoder's look-ahead: the temporary file is being written
                    print("writing", flush=True)
                time.sleep(0.01)
                yield np.full((32, 32, 3), i % 255, np.uint8)

        cli_main(lambda argv: media.write_video({str(tmp_path / 'out.mp4')!r}, frames(), 8))
    """))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    for _ in range(50):
        if any(".tmp" in p.name for p in tmp_path.iterdir()):
            break
        time.sleep(0.1)
    assert any(".tmp" in p.name for p in tmp_path.iterdir())  # it is mid-write
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    assert sorted(p.name for p in tmp_path.iterdir()) == ["slow.py"]


# ------------------------------------------------------------------- poses at source resolution
@pytest.mark.parametrize("src,panel,mode", [((90, 160), (64, 32), "crop"), ((90, 160), (64, 32), "pad"),
                                            ((160, 90), (32, 64), "crop"), ((120, 120), (48, 80), "pad")])
def test_fit_pose_lands_where_resize_puts_the_pixel(src, panel, mode):
    """A keypoint measured on the whole source frame goes where media.resize_to puts that pixel."""
    rng = np.random.default_rng(sum(src) + len(mode))
    (sh, sw), (h, w) = src, panel
    g = media.fit_geometry(sh, sw, h, w, mode)
    r = 5 * g.resized_w / sw + 1  # the dot's radius in panel pixels, plus blur
    checked = 0
    for _ in range(12):
        y, x = int(rng.integers(4, sh - 5)), int(rng.integers(4, sw - 5))
        frame = np.zeros((sh, sw, 3), np.uint8)
        frame[y - 4: y + 5, x - 4: x + 5] = 255
        out = media.resize_to(frame, h, w, mode=mode, resample="bilinear")[..., 0].astype(float)
        pose = PoseFrame.from_body(np.tile([[(x + 0.5) / sw, (y + 0.5) / sh, 1.0]], (1, 18, 1)))
        px, py = fit_pose(pose, sh, sw, h, w, mode).body[0, 0, :2] * (w, h)
        if px < -r or px > w + r or py < -r or py > h + r:
            assert out.max() < 1  # cut away by the crop: outside the panel, as the keypoint says
        elif r <= px <= w - r and r <= py <= h - r:
            ys, xs = np.indices(out.shape)
            cy, cx = (out * ys).sum() / out.sum() + 0.5, (out * xs).sum() / out.sum() + 0.5
            assert abs(px - cx) < 0.5 and abs(py - cy) < 0.5, ((px, py), (cx, cy))
            checked += 1
    assert checked >= 3


def test_fit_clip_and_detection_frame():
    pose = PoseFrame.from_body(np.tile([[0.5, 0.25, 0.9]], (1, 18, 1)))
    clip = fit_clip(PoseClip([pose, PoseFrame.empty()], 200, 100, 8.0), 64, 32, "crop")
    assert (clip.width, clip.height, clip.fps, clip.num_empty) == (32, 64, 8.0, 1)
    # a 200x100 (w x h) frame cropped into 32 wide x 64 tall: scale 0.64, x offset -(128 - 32) / 2
    np.testing.assert_allclose(clip.frames[0].body[0, 0, :2], [(0.5 * 128 - 48) / 32, 0.25], atol=1e-6)
    big = np.zeros((2000, 1000, 3), np.uint8)
    assert detection_frame(big).shape == (DETECT_MAX_SIDE, DETECT_MAX_SIDE // 2, 3)
    small = np.zeros((300, 200, 3), np.uint8)
    assert detection_frame(small) is small


# ------------------------------------------------------------------------- tools/extract_pose.py
def _extract_pose(argv, capsys, monkeypatch, estimator):
    import dreamactor_jax.pose.extract as ex
    from cli_testlib import run_tool

    monkeypatch.setattr(ex, "make_estimator", lambda *a, **k: estimator)
    return run_tool("tools/extract_pose.py", argv), capsys.readouterr().err


def test_extract_pose_nobody_found_is_an_error_and_writes_nothing(tmp_path, capsys, monkeypatch):
    rng = np.random.default_rng(0)
    media.write_video(tmp_path / "empty_room.mp4", rng.integers(0, 255, (6, 48, 64, 3), np.uint8), fps=8)
    nobody = lambda frame: PoseFrame.empty()  # noqa: E731
    code, err = _extract_pose([tmp_path / "empty_room.mp4", "-o", tmp_path / "p.mp4", "--json", tmp_path / "k.json",
                               "--quiet", "--input-kind", "video"], capsys, monkeypatch, nobody)
    assert code == 2 and "no person found in any of its 6 frames" in err and err.count("\n") == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty_room.mp4"]


def test_extract_pose_output_suffixes(tmp_path, capsys, monkeypatch):
    media.write_video(tmp_path / "v.mp4", _levels(4), fps=8)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "i.png")
    someone = lambda frame: PoseFrame.from_body(np.full((1, 18, 3), 0.5))  # noqa: E731
    cases = [([tmp_path / "v.mp4", "-o", tmp_path / "x.png"], "output is an .mp4"),
             ([tmp_path / "i.png", "-o", tmp_path / "x.mp4"], "output is one"),
             ([tmp_path / "v.mp4", "-o", tmp_path / "x.mp4", "--json", tmp_path / "k.txt"], "--json"),
             ([tmp_path / "v.mp4", "-o", tmp_path / "v.mp4"], "is the input")]
    for argv, needle in cases:
        code, err = _extract_pose(argv, capsys, monkeypatch, someone)
        assert code == 2 and needle in err and err.count("\n") == 1, (argv, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["i.png", "v.mp4"]
