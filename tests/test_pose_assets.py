"""The pose pipeline on the real assets in ../shared/assets (skipped when absent).

The pose-video check needs only the media readers; the extraction tests need mediapipe==0.10.14
(the `pose` extra) and skip without it.
"""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT.parent / "shared" / "assets"
pytestmark = [pytest.mark.assets,
              pytest.mark.skipif(not ASSETS.is_dir(), reason=f"real test assets not found at {ASSETS}")]


def needs_mediapipe():
    try:
        import mediapipe  # noqa: F401
    except Exception as e:  # noqa: BLE001 (ImportError, or protobuf >= 5 breaking it at import)
        pytest.skip(f"mediapipe==0.10.14 not usable here (pip install '.[pose]'): {type(e).__name__}")


def load_tool():
    spec = importlib.util.spec_from_file_location("extract_pose_tool", ROOT / "tools" / "extract_pose.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_rendered_pose_video_is_recognised_and_passed_through(tmp_path, capsys):
    from dreamactor_jax.media import iter_frames, read_video
    from dreamactor_jax.pose.extract import looks_like_pose_video
    kps = ASSETS / "anyone-video-2_kps.mp4"
    assert looks_like_pose_video(list(iter_frames(kps, num_frames=8)))
    assert not looks_like_pose_video(list(iter_frames(ASSETS / "mtv-00001.mp4", num_frames=8)))
    assert not looks_like_pose_video(list(iter_frames(ASSETS / "dance1_right.mp4", num_frames=8)))
    assert load_tool().main([str(kps), "-o", str(tmp_path / "p.mp4"), "--num-frames", "10", "--quiet"]) == 0
    assert "already a pose video" in capsys.readouterr().out
    assert read_video(tmp_path / "p.mp4").shape == (10, 768, 512, 3)


def test_pose_video_of_a_real_dance_has_a_person_in_most_frames(tmp_path, capsys):
    needs_mediapipe()
    from dreamactor_jax.media import read_video
    from dreamactor_jax.pose import PoseClip
    out, js = tmp_path / "pose.mp4", tmp_path / "pose.json"
    args = [str(ASSETS / "mtv-00001.mp4"), "-o", str(out), "--json", str(js), "--fps", "6", "--num-frames", "16",
            "--quiet"]
    assert load_tool().main(args) == 0
    print(capsys.readouterr().out)
    clip = PoseClip.load(js)
    assert len(clip) == 16 and (clip.width, clip.height) == (604, 1080)
    assert clip.num_empty <= 3, f"{clip.num_empty} of 16 frames without a person"
    video = read_video(out)
    assert video.shape == (16, 1080, 604, 3) and (video.max(-1) > 100).mean() > 0.002
    # the dancer's skeleton is plausible: neck below nose, hips below neck, in most frames
    ok = [f.body[0, 0, 1] < f.body[0, 1, 1] < f.body[0, 8, 1] for f in clip.frames if f.num_people]
    assert np.mean(ok) > 0.8


@pytest.mark.parametrize("name", ["cup-character.png", "ax-13.jpeg", "anyone-1.png"])
def test_cartoon_and_non_human_images_go_through(tmp_path, capsys, name):
    needs_mediapipe()
    from PIL import Image
    from dreamactor_jax.pose import PoseClip
    assert load_tool().main([str(ASSETS / name), "-o", str(tmp_path / "p.png"), "--json", str(tmp_path / "k.json")]) == 0
    report = capsys.readouterr().out
    assert "person found in" in report  # the run says what it found, whatever it is
    clip = PoseClip.load(tmp_path / "k.json")
    img = np.asarray(Image.open(tmp_path / "p.png"))
    assert len(clip) == 1 and img.shape[:2] == (clip.height, clip.width)
    f = clip.frames[0]
    assert np.all(np.isfinite(f.body)) and (f.num_people == 0) == (img.max() == 0)
    if name == "ax-13.jpeg":  # a clear full-body cartoon: found, with both hands
        assert f.num_people == 1 and (f.hands[0, :, :, 2] > 0).any(-1).all()
