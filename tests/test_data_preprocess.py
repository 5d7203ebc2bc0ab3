"""Preprocessing: videos -> shards with the tiny JAX VAE; resumable; bad inputs skipped and reported."""

import dataclasses
import json

import numpy as np
import pytest

from dreamactor_jax.data import preprocess as pp
from dreamactor_jax.data.loader import make_dataset
from dreamactor_jax.data.shards import ShardSource, list_shards

H = W = 32


def _video(path, n, seed):
    from dreamactor_jax.media import write_video
    rng = np.random.default_rng(seed)
    frames = np.zeros((n, H, W, 3), np.uint8) + rng.integers(20, 60, 3, dtype=np.uint8)
    for t in range(n):  # a bright square moving right
        frames[t, 10:20, 2 + t % 12: 12 + t % 12] = (200, 180, 40)
    write_video(path, frames, fps=8)


def _estimator(frame):
    """A test double for the pose model: one standard person whose position follows the square."""
    from dreamactor_jax.pose.keypoints import standard_person
    cols = np.nonzero(frame[..., 0].max(0) > 150)[0]
    cx = (cols.mean() / frame.shape[1]) if len(cols) else 0.5
    return standard_person(center=(float(cx), 0.5), height=0.6)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    from dreamactor_jax.text.store import TextEmbeddings, save_text_embeddings
    d = tmp_path_factory.mktemp("inputs")
    _video(d / "good.mp4", 12, 0)
    _video(d / "also.mp4", 10, 1)
    _video(d / "short.mp4", 3, 2)
    (d / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + np.random.default_rng(0).bytes(500))
    rows = [{"video": "good.mp4", "id": "good"}, {"video": "also.mp4"}, {"video": "short.mp4"},
            {"video": "broken.mp4"}, {"video": "missing.mp4"}, {"nothing": 1}]
    (d / "manifest.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\nnot json\n")
    rng = np.random.default_rng(3)
    emb = TextEmbeddings(rng.normal(size=(1, 8, 32)).astype(np.float32), np.ones((1, 8), np.int32),
                         rng.normal(size=(1, 24)).astype(np.float32))
    null = TextEmbeddings(rng.normal(size=(1, 8, 32)).astype(np.float32),
                          (np.arange(8) < 2).astype(np.int32)[None], rng.normal(size=(1, 24)).astype(np.float32))
    save_text_embeddings(d / "text.safetensors", emb, ["good"], null=null)
    return d


CFG = pp.PreprocessConfig(min_frames=9, max_frames=9, fps=8.0, height=H, width=W, clips_per_shard=1,
                          clips_per_video=1)


@pytest.fixture(scope="module")
def encoder():
    return pp.make_vae_encoder("tiny", None, latent_channels=16)


def test_preprocess_writes_clips_and_reports_skips(inputs, encoder, tmp_path):
    report = pp.Report()
    items = pp.read_manifest(inputs / "manifest.jsonl", report)
    text = pp.TextTable(inputs / "text.safetensors")
    enc = encoder
    report = pp.run(items, tmp_path, CFG, encode=enc, text=text, estimator=_estimator, report=report,
                    progress=False)
    assert report.written == 2 and report.null_text == 1
    reasons = {r: v for r, v in report.skipped.items()}
    assert reasons["missing video"] == ["missing"]
    assert reasons["unreadable video"] == ["broken"]
    assert any(r.startswith("too short") and v == ["short"] for r, v in reasons.items())
    assert sum(len(v) for k, v in reasons.items() if k.startswith("bad manifest row")) == 2
    assert "skipped 5 inputs" in report.summary()
    src = ShardSource(list_shards(tmp_path))
    assert len(src) == 2
    by_id = {}
    for i in range(len(src)):
        arrays, meta = src[i]
        by_id[meta["video_id"]] = (arrays, meta)
    arrays, meta = by_id["good"]
    t = (meta["num_frames"] - 1) // 4 + 1
    assert arrays["target"].shape == (t, H // 8, 2 * W // 8, 16)
    assert arrays["mask"][0, :, :4].min() == 1 and arrays["mask"][1:, :, :4].max() == 0
    assert arrays["mask"][:, :, 4:].min() == 1
    # the condition latent is zero where the mask is 0, the target is not
    assert np.abs(arrays["canvas"][1:, :, :4]).max() == 0 and np.abs(arrays["target"][1:, :, :4]).max() > 0
    assert all(np.abs(arrays["canvas"][k, :, 4:]).max() > 0 for k in range(t))  # motion on every frame
    np.testing.assert_allclose(arrays["text"], text.emb.text[0])
    assert meta["text"] == "caption" and by_id["also"][1]["text"] == "null"
    np.testing.assert_allclose(by_id["also"][0]["text"], text.null.text[0])
    assert json.loads((tmp_path / "preprocess_report.json").read_text())["written"] == 2
    # a rerun does nothing new; the loader reads what was written
    again = pp.run(items, tmp_path, CFG, encode=enc, text=text, estimator=_estimator, progress=False)
    assert again.written == 0 and again.already_done == 2 and len(list_shards(tmp_path)) == 2
    batch = next(iter(make_dataset(tmp_path, global_batch=2, seed=0)))
    assert batch["target"].shape == (2, 3, H // 8, 2 * W // 8, 16)


def test_interrupted_run_resumes_without_redoing_finished_clips(inputs, encoder, tmp_path):
    items = pp.scan_folder(inputs)
    assert [i.id for i in items] == ["also", "broken", "good", "short"]
    text = pp.TextTable(inputs / "text.safetensors")
    calls = []

    def flaky_encoder(x, enc=encoder):
        calls.append(x.shape)
        if len(calls) == 3:  # dies while encoding the second clip
            raise KeyboardInterrupt
        return enc(x)

    with pytest.raises(KeyboardInterrupt):
        pp.run(items, tmp_path, CFG, encode=flaky_encoder, text=text, estimator=_estimator, progress=False)
    assert len(list_shards(tmp_path)) == 1  # the finished clip was flushed
    report = pp.run(items, tmp_path, CFG, encode=encoder, text=text, estimator=_estimator, progress=False)
    assert report.already_done == 1 and report.written == 1
    assert len(ShardSource(list_shards(tmp_path))) == 2


def test_plan_clips_is_deterministic_and_respects_bounds():
    cfg = pp.PreprocessConfig()
    a = pp.plan_clips("vid", 300, cfg)
    assert a == pp.plan_clips("vid", 300, cfg)
    (start, length), = a
    assert 49 <= length <= 121 and (length - 1) % 4 == 0 and start + length <= 300
    assert pp.plan_clips("vid", 48, cfg) == []
    assert pp.plan_clips("vid", 52, cfg)[0][1] == 49
    with pytest.raises(ValueError, match="4k \\+ 1"):
        pp.PreprocessConfig(min_frames=48)


def test_e2e_variant_uses_the_driving_clip_and_reference(inputs, encoder, tmp_path):
    from PIL import Image
    Image.fromarray(np.full((40, 48, 3), 90, np.uint8)).save(inputs / "ref.png")
    rows = [{"video": "good.mp4", "id": "good", "driving": "also.mp4", "reference": "ref.png"},
            {"video": "also.mp4", "id": "nodrive"}]
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    for name in ("good.mp4", "also.mp4", "ref.png"):
        (tmp_path / name).symlink_to(inputs / name)
    report = pp.Report()
    items = pp.read_manifest(tmp_path / "m.jsonl", report)
    cfg = pp.PreprocessConfig(variant="e2e", min_frames=9, max_frames=9, fps=8.0, height=H, width=W)
    out = pp.run(items, tmp_path / "out", cfg, encode=encoder, text=pp.TextTable(inputs / "text.safetensors"),
                 progress=False, report=report)
    assert out.written == 1 and out.skipped == {"e2e row without a driving video": ["nodrive"]}
    arrays, meta = ShardSource(list_shards(tmp_path / "out"))[0]
    assert meta["variant"] == "e2e" and meta["driving"].endswith("also.mp4") and not meta["pose_augmented"]
    # same clip with the pose variant differs only through the motion signal
    pose = pp.make_example(items[0], meta["start"], 9, dataclasses.replace(cfg, variant="pose"), encoder,
                           pp.TextTable(inputs / "text.safetensors"), _estimator)[0]
    assert np.abs(pose["canvas"][:, :, 4:] - arrays["canvas"][:, :, 4:]).max() > 1e-3


def test_image_tokens_of_the_reference_frame_go_into_the_record(inputs, encoder, tmp_path):
    """A backbone with an image stream (HunyuanVideo-1.5): each record carries `image_tokens` of the
    clip's reference frame (the manifest's reference image in the panel), and the loader batches them."""
    from PIL import Image

    from dreamactor_jax import media
    from dreamactor_jax.text.hv15 import IMAGE_TOKENS, image_token_fn

    ref = np.random.default_rng(4).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    Image.fromarray(ref).save(tmp_path / "ref.png")
    (tmp_path / "good.mp4").symlink_to(inputs / "good.mp4")
    (tmp_path / "m.jsonl").write_text(json.dumps({"video": "good.mp4", "id": "good", "reference": "ref.png"}))
    items = pp.read_manifest(tmp_path / "m.jsonl", pp.Report())
    seen = []

    def tokens(image):  # a stand-in encoder: 3 tokens of width 5 from the image it is given
        seen.append(image)
        return np.asarray(image, np.float32).reshape(-1)[:15].reshape(3, 5) / 255.0
    out = pp.run(items, tmp_path / "out", CFG, encode=encoder, text=pp.TextTable(inputs / "text.safetensors"),
                 estimator=_estimator, progress=False, image_tokens=tokens)
    assert out.written == 1
    arrays, _ = ShardSource(list_shards(tmp_path / "out"))[0]
    np.testing.assert_array_equal(seen[0], media.resize_to(ref, H, W, mode="crop"))  # the reference panel
    np.testing.assert_array_equal(arrays["image_embeds"], tokens(seen[0]))
    batch = next(iter(make_dataset(str(tmp_path / "out"), global_batch=1, seed=0, num_threads=1, prefetch=1)))
    assert batch["image_embeds"].shape == (1, 3, 5)
    # the tools' choice: none without an image stream, zeros on request, else a one-line error naming the flag
    assert image_token_fn(0) is None
    assert image_token_fn(7, zero=True)(ref).shape == (IMAGE_TOKENS, 7)
    with pytest.raises(ValueError, match="--image_encoder: required .* or --zero_image_embeds"):
        image_token_fn(7)


def test_temporal_layout_writes_the_reference_as_a_leading_frame(inputs, encoder, tmp_path):
    """objective.layout=temporal (PreprocessConfig.layout): canvas [ref; D] and target [ref; V] of T'+1
    latent frames, one panel wide, the mask all ones; the layout in the record and the shard index;
    a folder of the other layout is refused."""
    from dreamactor_jax.data.shards import shard_layout

    items = [i for i in pp.scan_folder(inputs) if i.id == "good"]
    text = pp.TextTable(inputs / "text.safetensors")
    cfg = dataclasses.replace(CFG, layout="temporal")
    assert pp.run(items, tmp_path, cfg, encode=encoder, text=text, estimator=_estimator, progress=False).written == 1
    (shard,) = list_shards(tmp_path)
    arrays, meta = ShardSource([shard])[0]
    t = (meta["num_frames"] - 1) // 4 + 1
    assert meta["layout"] == "temporal" and shard_layout(shard) == "temporal"
    assert arrays["target"].shape == arrays["canvas"].shape == (t + 1, H // 8, W // 8, 16)
    assert arrays["mask"].shape == (t + 1, H // 8, W // 8, 1) and arrays["mask"].min() == 1
    # the reference (the clip's frame 0) encoded alone, then the clip: the target is [VAE(ref); VAE(V)],
    # the canvas starts with the same reference latent and then holds the motion, not the video
    from dreamactor_jax.data.clip import read_clip

    v, _ = read_clip(inputs / "good.mp4", (H, W), 8.0, meta["start"], meta["num_frames"], False)
    px = v.astype(np.float32) / 127.5 - 1.0
    np.testing.assert_allclose(arrays["target"][:1], np.asarray(encoder(px[None, :1]))[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(arrays["target"][1:], np.asarray(encoder(px[None]))[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(arrays["canvas"][0], arrays["target"][0])
    assert np.abs(arrays["target"][0]).max() > 0.05
    assert np.abs(arrays["canvas"][1:] - arrays["target"][1:]).max() > 0.05
    # a rerun into the same folder with the spatial layout is refused, naming both layouts
    with pytest.raises(ValueError, match="made for the temporal in-context layout.*objective.layout is spatial"):
        pp.run(items, tmp_path, CFG, encode=encoder, text=text, estimator=_estimator, progress=False)
