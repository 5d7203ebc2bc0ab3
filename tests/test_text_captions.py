"""The three caption paths (gemini / file / none), their report and the counted fallbacks."""

from __future__ import annotations

import json
import os
import time

import pytest
from google.genai import types

from dreamactor_jax.text.cache import CaptionCache
from dreamactor_jax.text.captions import (CaptionItem, caption_items, load_captions_file, load_items,
                                          write_captions_jsonl)
from dreamactor_jax.text.client import GeminiCaptioner, GeminiConfig
from test_text_client import APPEAR, FUSED, MOTION, FakeClient, recorded


@pytest.fixture
def items(tmp_path):
    out = []
    for k in ("a", "b"):
        (tmp_path / f"{k}.mp4").write_bytes(os.urandom(512))
        (tmp_path / f"{k}.png").write_bytes(os.urandom(256))
        out.append(CaptionItem(k, str(tmp_path / f"{k}.mp4"), str(tmp_path / f"{k}.png")))
    return out


def captioner(script, tmp_path):
    return GeminiCaptioner(GeminiConfig(), client=FakeClient(script, states=("ACTIVE",) * 4),
                           cache=CaptionCache(tmp_path / "cache"), sleep=lambda s: None,
                           probe_duration=lambda p: 4.0)


def test_none_mode_is_explicit(items):
    recs, rep = caption_items(items, "none")
    assert [(r.id, r.fused, r.source) for r in recs] == [("a", "", "none"), ("b", "", "none")]
    assert rep.fallbacks == [] and "no text (null prompt) by request" in rep.summary()


def test_gemini_mode_with_fallback_and_cache(items, tmp_path):
    blocked = types.GenerateContentResponse.model_validate({"promptFeedback": {"blockReason": "SAFETY"}})
    script = [recorded(MOTION), recorded(APPEAR), recorded(FUSED), blocked]
    cap = captioner(script, tmp_path)
    recs, rep = caption_items(items, "gemini", captioner=cap, on_error="fallback", progress=False)
    assert (recs[0].fused, recs[0].motion, recs[0].appearance, recs[0].source) == (FUSED, MOTION, APPEAR, "gemini")
    assert (recs[1].fused, recs[1].source) == ("", "fallback:refused")
    assert rep.captioned == 1 and rep.fallbacks == [("b", "refused")] and rep.requests == 4
    assert rep.tokens == {"input": 3 * 1200, "output": 3 * 80}  # the refusal reported no usage
    s = rep.summary()
    assert "mode=gemini" in s and "gemini-2.5-pro" in s and "1 FALLBACKS" in s and "refused: 1" in s
    # second run: item a entirely from the cache; b is asked again (refusals are not cached)
    cap2 = captioner([recorded(MOTION), recorded(APPEAR), recorded(FUSED)], tmp_path)
    recs2, rep2 = caption_items(items, "gemini", captioner=cap2, progress=False)
    assert [r.fused for r in recs2] == [FUSED, FUSED] and rep2.cache_hits == 3 + 1  # + b's fusion: same two captions as a's
    assert rep2.requests == 2 and rep2.fallbacks == []


def test_auth_error_stops_even_with_fallback(items, tmp_path):
    from google.genai import errors
    e401 = errors.ClientError(401, {"error": {"code": 401, "message": "bad key", "status": "UNAUTHENTICATED"}})
    cap = captioner([e401], tmp_path)
    with pytest.raises(ValueError, match="item 'a': .*API key was refused"):
        caption_items(items, "gemini", captioner=cap, on_error="fallback", progress=False)


def test_gemini_failure_names_item(items, tmp_path):
    cap = captioner([recorded("  ")] * 2, tmp_path)
    with pytest.raises(ValueError, match=r"item 'a': .*empty answer"):
        caption_items(items, "gemini", captioner=cap, progress=False)
    with pytest.raises(ValueError, match="need an image"):
        caption_items([CaptionItem("x", video="v.mp4")], "gemini", captioner=cap, progress=False)
    with pytest.raises(ValueError, match="need a video"):
        caption_items([CaptionItem("x", image="r.png")], "gemini", captioner=cap, progress=False)


def test_file_mode_json_and_missing_entries(items, tmp_path):
    path = tmp_path / "caps.json"
    path.write_text(json.dumps({"a": "In the video, a  cat\nwaves."}))
    caps = load_captions_file(path)
    assert caps["a"]["fused"] == "In the video, a cat waves."  # one paragraph
    with pytest.raises(ValueError, match=r"1 of 2 items have no caption \(first: 'b'\)"):
        caption_items(items, "file", captions=caps)
    recs, rep = caption_items(items, "file", captions=caps, on_error="fallback")
    assert [(r.fused, r.source) for r in recs] == [("In the video, a cat waves.", "file"), ("", "fallback:missing")]
    assert rep.fallbacks == [("b", "missing")] and "missing: 1" in rep.summary()


def test_jsonl_roundtrip_keeps_sources(items, tmp_path):
    blocked = types.GenerateContentResponse.model_validate({"candidates": []})
    cap = captioner([recorded(MOTION), recorded(APPEAR), recorded(FUSED), blocked, blocked], tmp_path)
    recs, _ = caption_items(items, "gemini", captioner=cap, on_error="fallback", progress=False)
    out = tmp_path / "caps.jsonl"
    write_captions_jsonl(out, recs)
    caps = load_captions_file(out)
    assert caps["a"] == {"fused": FUSED, "motion": MOTION, "appearance": APPEAR, "source": "gemini"}
    recs2, rep2 = caption_items(items, "file", captions=caps)
    assert recs2[0].source == "file" and recs2[1].source == "fallback:empty"
    assert rep2.captioned == 1 and rep2.fallbacks == [("b", "empty")]  # still reported downstream


@pytest.mark.parametrize("content,match", [
    ('{"a": ""}', "empty caption"),
    ('{"a": 3}', "expected a caption string"),
    ('[{"fused": "x"}]', "missing a string 'id'"),
    ('[{"id": "a", "text": "x"}, {"id": "a", "text": "y"}]', "duplicate id 'a'"),
    ('{"a": {"motion": "m"}}', "no caption field"),
    ('{"a": ', "not valid JSON"),
    ('{}', "no captions"),
])
def test_captions_file_errors(tmp_path, content, match):
    p = tmp_path / "c.json"
    p.write_text(content)
    with pytest.raises(ValueError, match=match):
        load_captions_file(p)


def test_appearance_from_first_frame(tmp_path):
    """A training item without a reference image: the appearance comes from the video's first frame."""
    import numpy as np
    from PIL import Image
    from dreamactor_jax.media import write_video
    rng = np.random.default_rng(0)
    colors = rng.integers(30, 226, (5, 3))  # one flat colour per frame (survives H.264)
    frames = np.broadcast_to(colors[:, None, None, :], (5, 32, 48, 3)).astype(np.uint8)
    write_video(tmp_path / "clip.mp4", frames, fps=8)
    cap = captioner([recorded(MOTION), recorded(APPEAR), recorded(FUSED)], tmp_path)
    recs, rep = caption_items([CaptionItem("clip", str(tmp_path / "clip.mp4"))], "gemini", captioner=cap,
                              frames_dir=tmp_path / "frames", progress=False)
    assert recs[0].fused == FUSED and rep.image_from_video == 1 and "first frame" in rep.summary()
    (png,) = (tmp_path / "frames").glob("*.png")
    sent = cap.client.models.calls[1]["contents"][0].inline_data
    assert sent.mime_type == "image/png" and sent.data == png.read_bytes()
    img = np.asarray(Image.open(png))
    err = [np.abs(img.astype(int) - f).mean() for f in frames]
    assert img.shape == (32, 48, 3) and err[0] < 8 and err[0] == min(err)  # frame 0 (lossy video)


def test_preprocess_manifest_accepted(tmp_path):
    (tmp_path / "train.jsonl").write_text('{"video": "vids/a.mp4", "reference": "ref/a.png"}\n'
                                          '{"video": "vids/b.mp4", "id": "bee"}\n')
    a, b = load_items(tmp_path / "train.jsonl")
    assert (a.id, a.video, a.image) == ("vids/a", str(tmp_path / "vids/a.mp4"), str(tmp_path / "ref/a.png"))
    assert (b.id, b.image) == ("bee", None)


def test_manifest_and_bad_args(tmp_path):
    (tmp_path / "m.jsonl").write_text('{"id": "x", "video": "v/x.mp4", "image": "/abs/r.png"}\n')
    (it,) = load_items(tmp_path / "m.jsonl")
    assert it.video == str(tmp_path / "v/x.mp4") and it.image == "/abs/r.png"
    with pytest.raises(ValueError, match="mode"):
        caption_items([it], "llm")
    with pytest.raises(ValueError, match="duplicate ids"):
        caption_items([it, it], "none")
    with pytest.raises(ValueError, match="needs a GeminiCaptioner"):
        caption_items([it], "gemini")


def test_gemini_workers_keep_order(tmp_path):
    """Several requests in flight: records stay in item order; stats are counted under a lock."""
    from dreamactor_jax.text import prompts

    class ByPrompt:
        def generate_content(self, *, model, contents, config=None):
            last = contents[-1]
            if last == prompts.MOTION_PROMPT:
                time.sleep(0.05)  # slow enough that the other workers arrive meanwhile
                return recorded(MOTION)
            if last == prompts.APPEARANCE_PROMPT:
                return recorded(f"The character in the image is number {contents[0].inline_data.data[:1].hex()}.")
            return recorded(FUSED + " " + last.split("number ")[1].split(".")[0])

    class Files:
        def upload(self, *, file, config=None):
            return types.File(name="files/" + os.path.basename(file), state="ACTIVE")

        def delete(self, *, name):
            pass

    class Client:
        models, files = ByPrompt(), Files()

    its = []
    (tmp_path / "shared.mp4").write_bytes(os.urandom(64))
    for k in range(6):
        (tmp_path / f"{k}.png").write_bytes(bytes([k]) + os.urandom(64))
        its.append(CaptionItem(str(k), str(tmp_path / "shared.mp4"), str(tmp_path / f"{k}.png")))
    cap = GeminiCaptioner(GeminiConfig(), client=Client(), cache=CaptionCache(tmp_path / "cache"),
                          sleep=lambda s: None, probe_duration=lambda p: 1.0)
    recs, rep = caption_items(its, "gemini", captioner=cap, workers=3, progress=False)
    assert [r.id for r in recs] == [str(k) for k in range(6)]
    assert [r.fused.split()[-1] for r in recs] == [f"{k:02x}" for k in range(6)]
    # one driving video shared by all items: described once, even with 3 workers at a time
    assert rep.requests == 1 + 6 + 6 and rep.cache_hits == 5 and rep.captioned == 6
    with pytest.raises(ValueError, match="workers"):
        caption_items(its, "gemini", captioner=cap, workers=0)
