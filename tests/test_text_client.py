"""Gemini captioner against a fake transport: no network, recorded-format responses."""

from __future__ import annotations

import json
import os

import pytest

from google.genai import errors, types

from dreamactor_jax.text import prompts
from dreamactor_jax.text.cache import CaptionCache
from dreamactor_jax.text.client import (GeminiCaptioner, GeminiConfig, GeminiError, answer_text,
                                        api_key_from_env, video_duration_s)

os.environ.setdefault("HF_HUB_OFFLINE", "1")

MOTION = ("In the video, the character's initial pose is standing with both arms down. "
          "Subsequently, the character raises the right hand, palm facing the viewer. "
          "Finally, the character waves.")
APPEAR = "The character in the image is female with short black hair and a red coat."
FUSED = "In the video, a woman with short black hair and a red coat raises her right hand and waves."


def recorded(text: str, finish: str = "STOP") -> types.GenerateContentResponse:
    """A response as the REST API returns it (camelCase JSON), parsed by the SDK's own model."""
    raw = {"candidates": [{"content": {"parts": [{"text": text}], "role": "model"},
                           "finishReason": finish, "index": 0}],
           "usageMetadata": {"promptTokenCount": 1200, "candidatesTokenCount": 80},
           "modelVersion": "gemini-2.5-pro"}
    return types.GenerateContentResponse.model_validate(json.loads(json.dumps(raw)))


class FakeModels:
    def __init__(self, script):
        self.script = list(script)
        self.calls = []

    def generate_content(self, *, model, contents, config=None):
        self.calls.append({"model": model, "contents": contents, "config": config})
        if not self.script:
            raise AssertionError("unexpected request")
        item = self.script.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item


class FakeFiles:
    def __init__(self, states=("PROCESSING", "ACTIVE")):
        self.states = list(states)
        self.uploaded, self.deleted, self.gets = [], [], 0

    def upload(self, *, file, config=None):
        self.uploaded.append((file, config))
        return types.File(name="files/vid1", uri="https://files/vid1", mime_type="video/mp4",
                          state=self.states.pop(0))

    def get(self, *, name):
        self.gets += 1
        return types.File(name=name, uri="https://files/vid1", mime_type="video/mp4", state=self.states.pop(0))

    def delete(self, *, name):
        self.deleted.append(name)


class FakeClient:
    def __init__(self, script, states=("PROCESSING", "ACTIVE")):
        self.models = FakeModels(script)
        self.files = FakeFiles(states)


def make(script, tmp_path=None, cfg=GeminiConfig(), states=("PROCESSING", "ACTIVE"), duration=3.0):
    sleeps = []
    cache = CaptionCache(tmp_path / "cache") if tmp_path is not None else None
    cap = GeminiCaptioner(cfg, client=FakeClient(script, states), cache=cache, sleep=sleeps.append,
                          probe_duration=lambda p: duration)
    return cap, sleeps


@pytest.fixture
def media(tmp_path):
    video = tmp_path / "drive.mp4"
    video.write_bytes(os.urandom(2048))
    image = tmp_path / "ref.png"
    image.write_bytes(os.urandom(1024))
    return video, image


def test_full_caption_with_recorded_responses(tmp_path, media):
    video, image = media
    cap, sleeps = make([recorded(MOTION), recorded(APPEAR), recorded(FUSED)], tmp_path)
    out = cap.caption(video, image)
    assert out == {"motion": MOTION, "appearance": APPEAR, "fused": FUSED}
    calls = cap.client.models.calls
    assert [c["model"] for c in calls] == ["gemini-2.5-pro"] * 3
    # motion: the uploaded (ACTIVE) file then the motion prompt; polled once while PROCESSING
    assert calls[0]["contents"][1] == prompts.MOTION_PROMPT
    assert calls[0]["contents"][0].name == "files/vid1"
    assert cap.client.files.uploaded[0][1] == {"mime_type": "video/mp4"}
    assert cap.client.files.gets == 1 and sleeps == [cfg_poll()]
    assert cap.client.files.deleted == ["files/vid1"]
    # appearance: inline image bytes + prompt; fusion: both captions inside the fusion prompt
    part = calls[1]["contents"][0]
    assert part.inline_data.data == image.read_bytes() and part.inline_data.mime_type == "image/png"
    assert calls[1]["contents"][1] == prompts.APPEARANCE_PROMPT
    assert APPEAR in calls[2]["contents"][0] and MOTION in calls[2]["contents"][0]
    assert cap.stats["requests"] == 3 and cap.stats["format_warnings"] == 0
    assert cap.stats["input_tokens"] == 3 * 1200 and cap.stats["output_tokens"] == 3 * 80


def cfg_poll():
    return GeminiConfig().file_poll_s


def test_cache_second_call_makes_no_request(tmp_path, media):
    video, image = media
    cap, _ = make([recorded(MOTION), recorded(APPEAR), recorded(FUSED)], tmp_path)
    first = cap.caption(video, image)
    cap2, _ = make([], tmp_path)  # any request would raise "unexpected request"
    assert cap2.caption(video, image) == first
    assert cap2.stats["cache_hits"] == 3 and cap2.stats["requests"] == 0
    assert cap2.client.files.uploaded == []
    # a different model or prompt version does not hit
    cap3, _ = make([recorded(MOTION)], tmp_path, cfg=GeminiConfig(model="gemini-other"))
    cap3.motion_caption(video)
    assert cap3.stats["requests"] == 1
    # the cache holds the caption and never a key
    blobs = [p.read_text() for p in (tmp_path / "cache").rglob("*.json")]
    assert len(blobs) == 4 and all("api_key" not in b.lower() for b in blobs)


def test_video_fps_and_clip_sent_and_keyed(tmp_path, media):
    video, _ = media
    cfg = GeminiConfig(video_fps=4.0, motion_seconds=5.0)
    cap, _ = make([recorded(MOTION)], tmp_path, cfg=cfg, states=("ACTIVE",))
    assert cap.motion_caption(video) == MOTION
    part = cap.client.models.calls[0]["contents"][0]
    assert part.file_data.file_uri == "https://files/vid1" and part.file_data.mime_type == "video/mp4"
    assert part.video_metadata.fps == 4.0 and part.video_metadata.end_offset == "5s"
    # the settings change the request, so they key the cache: the plain request is not a hit
    cap2, _ = make([recorded(MOTION)], tmp_path, states=("ACTIVE",))
    cap2.motion_caption(video)
    assert cap2.stats["requests"] == 1 and cap2.stats["cache_hits"] == 0
    cap3, _ = make([], tmp_path, cfg=cfg)
    assert cap3.motion_caption(video) == MOTION and cap3.stats["cache_hits"] == 1


def test_429_then_success_backs_off(tmp_path, media):
    _, image = media
    e429 = errors.ClientError(429, {"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED"}})
    e503 = errors.ServerError(503, {"error": {"code": 503, "message": "busy", "status": "UNAVAILABLE"}})
    cap, sleeps = make([e429, e503, recorded(APPEAR)])
    assert cap.appearance_caption(image) == APPEAR
    assert cap.stats["retries"] == 2 and cap.stats["requests"] == 3
    cfg = GeminiConfig()
    assert cfg.backoff_initial_s * 0.5 <= sleeps[0] <= cfg.backoff_initial_s
    assert cfg.backoff_initial_s <= sleeps[1] <= 2 * cfg.backoff_initial_s  # exponential


def test_timeout_retried_then_gives_up(media):
    _, image = media
    cap, sleeps = make([TimeoutError("read timed out")] * 3, cfg=GeminiConfig(max_attempts=3))
    with pytest.raises(GeminiError, match="gave up after 3 attempts") as ei:
        cap.appearance_caption(image)
    assert ei.value.reason == "timeout" and len(sleeps) == 2

    class ReadTimeout(Exception):  # like httpx's, recognised by name
        pass
    cap, _ = make([ReadTimeout(), recorded(APPEAR)])
    assert cap.appearance_caption(image) == APPEAR


def test_client_error_not_retried_and_key_scrubbed(media, monkeypatch):
    _, image = media
    monkeypatch.setenv("GEMINI_API_KEY", "sk-secret-123")
    e400 = errors.ClientError(400, {"error": {"code": 400, "message": "bad key sk-secret-123",
                                              "status": "INVALID_ARGUMENT"}})
    import dreamactor_jax.text.client as client_mod
    monkeypatch.setattr(client_mod, "make_genai_client", lambda cfg, key: FakeClient([e400]))
    cap = GeminiCaptioner(GeminiConfig(), sleep=lambda s: None)
    with pytest.raises(GeminiError) as ei:
        cap.appearance_caption(image)
    assert ei.value.reason == "request" and "sk-secret-123" not in str(ei.value)
    assert cap.stats["requests"] == 1
    e403 = errors.ClientError(403, {"error": {"code": 403, "message": "denied sk-secret-123",
                                              "status": "PERMISSION_DENIED"}})
    e404 = errors.ClientError(404, {"error": {"code": 404, "message": "models/gemini-x is not found",
                                              "status": "NOT_FOUND"}})
    cap.client = FakeClient([e403, e404])
    with pytest.raises(GeminiError, match="API key was refused") as ei:
        cap.appearance_caption(image)
    assert ei.value.reason == "auth" and "sk-secret-123" not in str(ei.value)
    with pytest.raises(GeminiError, match="check the model name") as ei:
        cap.appearance_caption(image)
    assert ei.value.reason == "not_found"


def test_malformed_and_empty_answers(media):
    _, image = media
    empty = recorded("   \n ")
    no_cands = types.GenerateContentResponse.model_validate({"candidates": []})

    class Weird:  # not a response at all
        pass
    cap, _ = make([Weird(), Weird()])
    with pytest.raises(GeminiError, match="malformed") as ei:
        cap.appearance_caption(image)
    assert ei.value.reason == "malformed" and cap.stats["requests"] == 2  # asked again once
    cap, _ = make([empty, recorded(APPEAR)])
    assert cap.appearance_caption(image) == APPEAR and cap.stats["answer_retries"] == 1
    cap, _ = make([no_cands, empty])
    with pytest.raises(GeminiError, match="empty answer"):
        cap.appearance_caption(image)


def test_refusals_are_errors_not_retried(media):
    _, image = media
    blocked = types.GenerateContentResponse.model_validate({"promptFeedback": {"blockReason": "SAFETY"}})
    cap, _ = make([blocked])
    with pytest.raises(GeminiError, match="refused") as ei:
        cap.appearance_caption(image)
    assert ei.value.reason == "refused" and cap.stats["requests"] == 1
    cap, _ = make([recorded("partial", finish="PROHIBITED_CONTENT")])
    with pytest.raises(GeminiError, match="finish_reason=PROHIBITED_CONTENT"):
        cap.appearance_caption(image)
    with pytest.raises(GeminiError, match="cut off"):
        answer_text(recorded("In the video, a", finish="MAX_TOKENS"), "x")


def test_video_checks_before_upload(tmp_path, media):
    video, _ = media
    cap, _ = make([], duration=600.0)
    with pytest.raises(GeminiError, match="600.0s long, over max_video_seconds=120"):
        cap.motion_caption(video)
    cap, _ = make([], cfg=GeminiConfig(max_video_bytes=100))
    with pytest.raises(GeminiError, match="upload limit"):
        cap.motion_caption(video)
    assert cap.client.files.uploaded == []
    cap, _ = make([], states=("FAILED",))
    with pytest.raises(GeminiError, match="could not process"):
        cap.motion_caption(video)
    cap, _ = make([], states=("PROCESSING",) * 5, cfg=GeminiConfig(file_active_timeout_s=6, file_poll_s=2))
    with pytest.raises(GeminiError, match="not ACTIVE"):
        cap.motion_caption(video)
    with pytest.raises(FileNotFoundError):
        cap.motion_caption(tmp_path / "missing.mp4")


def test_format_warning_counted(media):
    video, _ = media
    cap, _ = make([recorded("The person waves.")])
    assert cap.motion_caption(video) == "The person waves."
    assert cap.stats["format_warnings"] == 1


def test_api_key_from_env():
    assert api_key_from_env({"GOOGLE_API_KEY": "k2"}) == "k2"
    assert api_key_from_env({"GEMINI_API_KEY": "k1", "GOOGLE_API_KEY": "k2"}) == "k1"
    with pytest.raises(ValueError, match="GEMINI_API_KEY / GOOGLE_API_KEY: not set"):
        api_key_from_env({"GEMINI_API_KEY": " "})


def test_no_key_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    with pytest.raises(ValueError, match="not set"):
        GeminiCaptioner(GeminiConfig())


def test_prompts_versioned_and_structured():
    assert prompts.prompt_digest() == prompts.PROMPT_DIGESTS[prompts.PROMPT_VERSION], \
        "prompt text changed: bump PROMPT_VERSION and record its digest"
    for phrase in ("Subsequently,", "Then,", "After that,", "Finally,", prompts.MOTION_OPENING,
                   "first 5 seconds", "palm"):
        assert phrase in prompts.MOTION_PROMPT
    assert "gender" in prompts.APPEARANCE_PROMPT and "posture" in prompts.APPEARANCE_PROMPT
    filled = prompts.fusion_prompt(APPEAR, MOTION)
    assert APPEAR in filled and MOTION in filled and "{" not in filled
    for phrase in ("bird", "quadruped", "In the video, a"):
        assert phrase in filled
    with pytest.raises(ValueError, match="motion_caption"):
        prompts.fusion_prompt(APPEAR, "  ")


ASSETS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "assets")


def test_real_assets_checks_and_mime():
    if not os.path.isdir(ASSETS):
        pytest.skip("../shared/assets absent (real videos and images for the input checks)")
    assert abs(video_duration_s(os.path.join(ASSETS, "dance1_right.mp4")) - 4.0) < 0.2  # 32 frames, 8 fps
    assert abs(video_duration_s(os.path.join(ASSETS, "talkinghead-2.mp4")) - 20.0) < 0.5  # 601 frames
    cap = GeminiCaptioner(GeminiConfig(max_video_seconds=10), client=FakeClient([recorded(APPEAR)]),
                          sleep=lambda s: None)
    with pytest.raises(GeminiError, match=r"talkinghead-2.mp4: video is 20.\d+s long"):
        cap.motion_caption(os.path.join(ASSETS, "talkinghead-2.mp4"))
    assert cap.check_video(os.path.join(ASSETS, "mtv-00001.mp4")).name == "mtv-00001.mp4"
    assert cap.appearance_caption(os.path.join(ASSETS, "ax-11.jpeg")) == APPEAR
    part = cap.client.models.calls[0]["contents"][0]
    assert part.inline_data.mime_type == "image/jpeg"


def test_real_client_constructs_offline():
    """The real google-genai client is built (no request) with our timeout and no SDK retries."""
    from dreamactor_jax.text.client import make_genai_client
    c = make_genai_client(GeminiConfig(timeout_s=7), "k-test")
    assert callable(c.models.generate_content) and callable(c.files.upload) and callable(c.files.get)
    assert c._api_client._http_options.timeout == 7000
    assert c._api_client._http_options.retry_options is None
