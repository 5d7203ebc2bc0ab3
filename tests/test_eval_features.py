"""Feature-model metrics on tiny random models made here (nothing downloaded): DINO / CLIP image
encoders from transformers configs, FVD's Frechet distance, and I3D loaded from safetensors."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from dreamactor_jax.eval import features  # noqa: E402

RNG = np.random.default_rng(0)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("feat")
    torch.manual_seed(0)
    dino = transformers.Dinov2Model(transformers.Dinov2Config(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, image_size=32, patch_size=8))
    dino.save_pretrained(root / "dino")
    clip = transformers.CLIPModel(transformers.CLIPConfig(
        text_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                         vocab_size=99, bos_token_id=0, eos_token_id=1),
        vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8), projection_dim=8))
    clip.save_pretrained(root / "clip")
    proc = transformers.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    proc.save_pretrained(root / "clip")
    return root


def test_dino_and_clip_encoders_from_local_folders(tiny):
    dino = features.ImageEncoder(tiny / "dino", "dino")
    video = RNG.integers(0, 255, (5, 40, 56, 3), np.uint8)
    emb = dino(video)
    assert emb.shape == (5, 16) and np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-6)
    # the same CLS feature as the model called directly on our preprocessing
    x = torch.from_numpy(features.preprocess(video, 32, *features.IMAGENET))
    with torch.no_grad():
        direct = dino.model(pixel_values=x).last_hidden_state[:, 0].numpy()
    direct /= np.linalg.norm(direct, axis=1, keepdims=True)
    assert np.abs(emb - direct).max() < 1e-5
    still = np.repeat(video[:1], 4, 0)
    assert features.dino_metrics(dino, still)["dino_subject_consistency"] == pytest.approx(1.0, abs=1e-5)
    assert features.dino_metrics(dino, video)["dino_subject_consistency"] < 0.999
    clip = features.ImageEncoder(tiny / "clip", "clip")
    assert clip.mean == list(transformers.CLIPImageProcessor().image_mean)  # read from the folder's processor config
    proc = transformers.CLIPImageProcessor.from_pretrained(tiny / "clip")
    yy, xx = np.mgrid[0:40, 0:56]
    smooth = np.stack([np.stack([(xx * 4 + k * 30) % 256, yy * 5, (xx + yy) * 2], -1) for k in range(3)]).astype(np.uint8)
    ref_px = np.asarray(proc(images=list(smooth), return_tensors="np")["pixel_values"])
    ours = features.preprocess(smooth, 32, clip.mean, clip.std)
    assert np.abs(ours - ref_px).mean() < 0.02  # same resize / crop / normalisation as transformers' processor
    m = features.clip_metrics(clip, still, video[0])
    assert m["clip_ref_sim"] == pytest.approx(1.0, abs=1e-5) and m["clip_consistency"] == pytest.approx(1.0, abs=1e-5)


def test_encoders_refuse_what_they_cannot_load_safely(tmp_path, tiny):
    with pytest.raises(ValueError, match="no config.json"):
        features.ImageEncoder(tmp_path, "dino")
    (tmp_path / "config.json").write_text((tiny / "dino" / "config.json").read_text())
    (tmp_path / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(ValueError, match="only safetensors"):
        features.ImageEncoder(tmp_path, "dino")


def test_consistency_is_vbench_formula():
    e = RNG.normal(size=(6, 8))
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    want = np.mean([(max(0, e[t] @ e[0]) + max(0, e[t] @ e[t - 1])) / 2 for t in range(1, 6)])
    assert features.consistency(e) == pytest.approx(want, rel=1e-12)


def test_frechet_distance_against_its_definition():
    a, b = RNG.normal(size=(200, 5)), RNG.normal(size=(150, 5)) @ np.diag([1, 2, 0.5, 1, 3]) + 0.7
    sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = np.linalg.eigh(sa)
    ra = v @ np.diag(np.sqrt(w)) @ v.T
    tr_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh(ra @ sb @ ra), 0, None)).sum()  # tr((Sa Sb)^1/2), symmetric form
    want = np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(sa) + np.trace(sb) - 2 * tr_sqrt
    assert features.frechet_distance(a, b) == pytest.approx(want, rel=1e-8)
    assert features.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    assert features.frechet_distance(a, a + 2.0) == pytest.approx(4.0 * 5, rel=1e-8)  # only the means differ
    with pytest.raises(ValueError, match="N >= 2"):
        features.frechet_distance(a[:1], b)


def test_fvd_with_a_stand_in_feature_model():
    """Not I3D: a tiny random 3D conv stands in, to test the FVD plumbing (clip sampling, sets)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv3d(3, 6, 3, stride=2), torch.nn.ReLU())

    def model(videos):
        x = torch.from_numpy(videos.astype(np.float32) / 127.5 - 1).permute(0, 4, 1, 2, 3)
        with torch.no_grad():
            return net(torch.nn.functional.interpolate(x, size=(8, 32, 32))).mean(dim=(2, 3, 4)).double().numpy()
    gen = [RNG.integers(0, 255, (20, 40, 48, 3), np.uint8) for _ in range(8)]
    other = [np.clip(v.astype(int) // 2 + 100, 0, 255).astype(np.uint8) for v in gen]
    assert features.fvd(model, gen, gen)["fvd"] == pytest.approx(0.0, abs=1e-6)
    far = features.fvd(model, gen, other)
    assert far["fvd"] > 1e-3 and far["videos"] == [8, 8]
    assert features.fvd_clip(gen[0]).shape == (16, 224, 224, 3)


def test_i3d_loads_from_safetensors_and_gives_pooled_features(tmp_path):
    from safetensors.torch import save_file

    from dreamactor_jax.eval.i3d import InceptionI3d, load_i3d

    torch.manual_seed(0)
    model = InceptionI3d(400)
    n = sum(p.numel() for p in model.parameters())
    assert 12_000_000 < n < 13_000_000  # Inception-v1 I3D with a 400-class head: ~12.7M parameters
    state = {k: v.contiguous() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert "Mixed_5c.b1b.conv3d.weight" in state and "logits.conv3d.bias" in state
    save_file(state, str(tmp_path / "i3d.safetensors"))
    feat = load_i3d(tmp_path / "i3d.safetensors")
    videos = RNG.integers(0, 255, (2, 8, 64, 64, 3), np.uint8)
    out = feat(videos)
    assert out.shape == (2, 1024) and np.isfinite(out).all() and np.abs(out[0] - out[1]).max() > 0
    assert np.allclose(feat(videos[:1]), out[:1], rtol=1e-5, atol=1e-6)  # batching does not matter
    del state["Mixed_3b.b0.conv3d.weight"]
    save_file(state, str(tmp_path / "broken.safetensors"))
    with pytest.raises(ValueError, match="missing"):
        load_i3d(tmp_path / "broken.safetensors")
    with pytest.raises(ValueError, match=r"\.safetensors"):
        (tmp_path / "rgb_imagenet.pt").write_bytes(b"x")
        load_i3d(tmp_path / "rgb_imagenet.pt")
