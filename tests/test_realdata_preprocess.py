"""Issue 24, preprocessing: panels follow each video's orientation, poses are estimated on whole
source frames (or read from keypoints files), text is optional (the zero text), every bad input is
a counted skip or a one-line error, damaged shards are redone, the VAE is tiled by the memory at
hand and the full-size one never runs on random weights by accident. Tiny JAX VAE, synthetic
videos; tools/preprocess.py itself in a few subprocesses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dreamactor_jax import media
from dreamactor_jax.data import preprocess as pp
from dreamactor_jax.data.shards import SHARD_SUFFIX, ShardSource, list_shards
from dreamactor_jax.models import vae_tiling as vt
from dreamactor_jax.pose.keypoints import PoseClip, standard_person

ROOT = Path(__file__).resolve().parents[1]
CFG = pp.PreprocessConfig(min_frames=9, max_frames=9, fps=8.0, height=32, width=64, clips_per_shard=1)


def _video(path: Path, n: int, h: int, w: int, seed: int = 0) -> None:
    """A bright square moving over a flat background (the estimator double follows it)."""
    rng = np.random.default_rng(seed)
    frames = np.zeros((n, h, w, 3), np.uint8) + rng.integers(20, 60, 3, dtype=np.uint8)
    for t in range(n):
        y, x = h // 3, (w // 4 + 2 * t) % (w - 8)
        frames[t, y: y + 8, x: x + 8] = (220, 200, 40)
    media.write_video(path, frames, fps=8)


class Estimator:
    """A pose model double: one person centred on the bright square; remembers the frame sizes it saw."""

    def __init__(self):
        self.sizes = set()

    def __call__(self, frame):
        self.sizes.add(frame.shape[:2])
        ys, xs = np.nonzero(frame[..., 0] > 150)
        if not len(xs):
            from dreamactor_jax.pose.keypoints import PoseFrame
            return PoseFrame.empty()
        return standard_person((xs.mean() / frame.shape[1], ys.mean() / frame.shape[0]), height=0.5)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("pp")
    _video(d / "land.mp4", 12, 48, 96, 0)
    _video(d / "port.mp4", 12, 96, 48, 1)
    _video(d / "port2.mp4", 12, 96, 48, 2)
    (d / "broken.png").write_bytes(b"not an image")
    clip = PoseClip([standard_person((0.5, 0.5), 0.6)] * 12, 48, 96, 8.0)  # port.mp4's keypoints (w, h)
    clip.save(d / "port_pose.json")
    PoseClip([standard_person()] * 12, 100, 100, 8.0).save(d / "square_pose.json")  # another shape
    rows = [{"video": "land.mp4", "id": "land"}, {"video": "port.mp4", "id": "port_kp", "pose": "port_pose.json"},
            {"video": "port2.mp4", "id": "badref", "reference": "broken.png"},
            {"video": "port2.mp4", "id": "wrongkp", "pose": "square_pose.json"},
            {"video": "port2.mp4", "id": "nokp", "pose": "missing.json"}, {"video": "port2.mp4", "id": "port2"}]
    (d / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return d


@pytest.fixture(scope="module")
def encoder():
    return pp.make_vae_encoder("tiny", None, latent_channels=16)


def _zero_text():
    return pp.TextTable(None, text_dim=32, pooled_dim=24)


def test_orientation_source_poses_keypoints_files_and_skips(data, encoder, tmp_path):
    report = pp.Report()
    items = pp.read_manifest(data / "manifest.jsonl", report)
    est = Estimator()
    report = pp.run(items, tmp_path, CFG, encode=encoder, text=_zero_text(), estimator=est, report=report,
                    progress=False)
    assert report.written == 3 and report.crossed == 0
    assert dict(report.skipped) == {"unreadable or empty reference image": ["badref"],
                                    "keypoints file measured on frames of another shape than the video": ["wrongkp"],
                                    "missing keypoints file": ["nokp"]}
    assert est.sizes == {(48, 96), (96, 48)}  # whole source frames, never the 32x64 panel
    src = ShardSource(list_shards(tmp_path))
    got = {}
    for i in range(len(src)):
        arrays, meta = src[i]
        got[meta["video_id"]] = (meta, arrays)
    assert (got["land"][0]["height"], got["land"][0]["width"]) == (32, 64)
    assert (got["port2"][0]["height"], got["port2"][0]["width"]) == (64, 32)  # portrait video, portrait panel
    assert got["land"][1]["target"].shape == (3, 4, 16, 16) and got["port2"][1]["target"].shape == (3, 8, 8, 16)
    assert got["port_kp"][0]["pose_source"] == "keypoints file" and got["port2"][0]["pose_source"] == "estimator"
    for meta, arrays in got.values():  # the zero text: one valid zero token
        assert meta["text"] == "zero" and arrays["text"].shape == (1, 32) and not arrays["text"].any()
        assert arrays["text_mask"].tolist() == [1] and not arrays["pooled"].any()
    assert "skipped 3 inputs" in report.summary() and report.zero_text == 3 and report.null_text == 0


def test_fixed_orientation_is_counted(data, encoder, tmp_path):
    import dataclasses

    cfg = dataclasses.replace(CFG, orientation="config")
    items = [pp.Item("port2", data / "port2.mp4")]
    report = pp.run(items, tmp_path, cfg, encode=encoder, text=_zero_text(), estimator=Estimator(), progress=False)
    assert report.written == 1 and report.crossed == 1 and "other orientation" in report.summary()
    assert CFG.panel(96, 48) == (64, 32) and CFG.panel(48, 96) == (32, 64) and CFG.panel(50, 50) == (32, 64)
    assert cfg.panel(96, 48) == (32, 64)


def test_damaged_shards_are_redone(data, encoder, tmp_path):
    items = [pp.Item("land", data / "land.mp4"), pp.Item("port2", data / "port2.mp4")]
    run = lambda: pp.run(items, tmp_path, CFG, encode=encoder, text=_zero_text(),  # noqa: E731
                         estimator=Estimator(), progress=False)
    assert run().written == 2
    shards = sorted(tmp_path.glob("*" + SHARD_SUFFIX))
    first = shards[0].read_bytes()
    shards[0].write_bytes(first[:100] + bytes([first[100] ^ 0xFF]) + first[101:])  # same size, one byte off
    shards[1].write_bytes(shards[1].read_bytes() + b"junk")
    again = run()
    assert again.written == 2 and again.already_done == 0 and len(again.damaged) == 2
    assert "checksum" in " ".join(again.damaged) and "bytes" in " ".join(again.damaged)
    assert "damaged shard" in again.summary()
    src = ShardSource(list_shards(tmp_path))
    assert sorted(src[i][1]["video_id"] for i in range(len(src))) == ["land", "port2"]
    assert run().already_done == 2  # intact shards are trusted


def test_text_tables_check_widths_and_files(tmp_path):
    from dreamactor_jax.text.store import TextEmbeddings, save_text_embeddings

    rng = np.random.default_rng(0)
    e = TextEmbeddings(rng.normal(size=(1, 4, 16)).astype(np.float32), np.ones((1, 4), np.int32),
                       rng.normal(size=(1, 24)).astype(np.float32))
    save_text_embeddings(tmp_path / "t.safetensors", e, ["a"], null=e)
    with pytest.raises(ValueError, match="text width 16, the backbone takes 32"):
        pp.TextTable(tmp_path / "t.safetensors", text_dim=32, pooled_dim=24)
    (tmp_path / "x.safetensors").write_text("hello")
    with pytest.raises(ValueError, match="x.safetensors: not a text embeddings file"):
        pp.TextTable(tmp_path / "x.safetensors", text_dim=32, pooled_dim=24)


def test_full_size_vae_refuses_random_weights():
    with pytest.raises(ValueError, match=r"^--config\.preprocess\.vae_checkpoint: .*random weights.*--random_vae"):
        pp.make_vae_encoder("hunyuan", None)


def test_tiling_is_chosen_from_the_memory_budget():
    sizes = [("encode", 49, 480, 1664), ("decode", 121, 480, 832)]
    assert not vt.choose_tiling(sizes, 80 * 2**30).spatial  # an H200 after loading the base: framewise only
    tiles = [vt.choose_tiling(sizes, b * 2**30, dtype="float32") for b in (40, 20, 10, 4, 1)]
    sides = [t.min_height if t.spatial else 10**6 for t in tiles]
    assert sides == sorted(sides, reverse=True) and sides[-1] == vt.SPATIAL_TILES[-1]
    assert all(t.stride_height == t.min_height * 3 // 4 for t in tiles if t.spatial)
    # the estimate stays above what was measured (fp32 on this CPU: ~3.2 / ~4.9 KB per pixel-frame)
    assert vt.tile_peak_bytes("encode", 9, 128, 256, dtype="float32") > 3215 * 9 * 128 * 256
    assert vt.tile_peak_bytes("decode", 9, 128, 256, dtype="float32") > 4930 * 9 * 128 * 256
    assert vt.resolve_tiling("off", sizes)[0] == vt.Tiling.off()
    assert vt.resolve_tiling("256", sizes)[0].min_width == 256
    t, line = vt.resolve_tiling("auto", [("encode", 9, 32, 64)], base_channels=8, dtype="float32")
    assert not t.spatial and "framewise only" in line
    # a VAE without framewise tiling (HunyuanVideo-1.5's): the line does not claim it, auto counts all frames
    t, line = vt.resolve_tiling("auto", [("encode", 9, 32, 64)], base_channels=8, dtype="float32", framewise=False)
    assert not t.spatial and "framewise" not in line.split(";")[0] and "whole video" in line
    assert "framewise" not in vt.resolve_tiling("pipeline", sizes, framewise=False)[1]
    big = [("encode", 121, 480, 1664)]
    assert (vt.choose_tiling(big, 8 << 30, temporal=vt.Tiling(framewise_encode=False)).min_height
            <= vt.choose_tiling(big, 8 << 30).min_height)
    with pytest.raises(ValueError, match="--vae-tiling 100"):
        vt.resolve_tiling("100", sizes)


def _tool(args, cwd) -> subprocess.CompletedProcess:
    base = [sys.executable, str(ROOT / "tools" / "preprocess.py"), "--config", str(ROOT / "configs" / "pose.py") + ":tiny",
            "--config.preprocess.min_frames=9", "--config.preprocess.max_frames=9", "--config.preprocess.width=64"]
    return subprocess.run(base + [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=300)


ASSETS = ROOT.parent / "shared" / "assets"


@pytest.mark.skipif(not (ASSETS / "dance1_right.mp4").exists(), reason="../shared/assets not present")
def test_cli_one_real_video_without_text(tmp_path):
    pytest.importorskip("mediapipe")
    r = _tool(["--input", ASSETS / "dance1_right.mp4", "--output", tmp_path / "a"], tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "zero text" in r.stderr and "VAE tiling: auto" in r.stderr and "wrote 1 clips" in r.stdout
    assert "--config.data.global_batch=1" in r.stdout  # one clip cannot fill the default batch of 2
    (meta,) = [m for _, m in (ShardSource(list_shards(tmp_path / "a"))[i] for i in range(1))]
    assert (meta["height"], meta["width"]) == (64, 32)  # a portrait dance video: a portrait panel


def test_cli_errors_and_nothing_written(tmp_path):
    (tmp_path / "bin").write_bytes(bytes(range(256)) * 4)
    r = _tool(["--input", tmp_path / "bin", "--output", tmp_path / "b"], tmp_path)
    err = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert r.returncode == 2 and len(err) == 1 and "nor a JSONL manifest" in err[0], r.stderr[-2000:]
    (tmp_path / "vids").mkdir()
    (tmp_path / "vids" / "bad.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(300))
    r = _tool(["--input", tmp_path / "vids", "--output", tmp_path / "c"], tmp_path)
    assert r.returncode == 2 and "no clip written" in r.stderr and "1 x unreadable video" in r.stdout, r.stderr[-2000:]
    r = _tool(["--input", tmp_path / "vids", "--output", tmp_path / "c", "--config.model.name=i2v-33ch",
               "--config.preprocess.vae=hunyuan"], tmp_path)
    err = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert r.returncode == 2 and len(err) == 1 and "--config.preprocess.vae_checkpoint" in err[0], r.stderr[-2000:]
    r = _tool(["--input", tmp_path / "vids", "--output", tmp_path / "c", "--config.preprocess.vae_chekpoint=x"], tmp_path)
    err = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert r.returncode == 2 and len(err) == 1 and "vae_chekpoint" in err[0] and "Traceback" not in r.stderr
