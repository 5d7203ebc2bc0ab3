"""The MLLM judge against fake transports: Video-Bench's frame sampling, validated JSON answers,
retries on rate limits / timeouts / malformed answers, the cache, and the two real transports
(google-genai with a fake client; OpenAI-compatible HTTP with a fake urlopen and a loopback server)."""

from __future__ import annotations

import base64
import http.server
import io
import json
import threading
import time
import urllib.error

import numpy as np
import pytest
from google.genai import errors, types

from dreamactor_jax import media
from dreamactor_jax.eval import prompts
from dreamactor_jax.eval.frames import grid_indices, static_indices
from dreamactor_jax.eval.transports import GeminiTransport, JudgeRequest, OpenAITransport, TransportError
from dreamactor_jax.eval.scorers import make_scorer
from dreamactor_jax.eval.videobench import DIMENSIONS, ScoreError, VideoScore

SECRET = "sk-test-SECRET-123"


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    root = tmp_path_factory.mktemp("judge")
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (20, 48, 64, 3), np.uint8)
    media.write_video(root / "v.mp4", frames, 8.0)
    media.write_video(root / "w.mp4", frames[::-1].copy(), 8.0)
    from PIL import Image
    Image.fromarray(rng.integers(0, 255, (40, 30, 3), np.uint8)).save(root / "ref.png")
    return root


def answer(score=4, reason="fine"):
    return json.dumps({"score": score, "reason": reason})


class Script:
    """A fake transport: plays a script of answers / exceptions, records the requests."""

    def __init__(self, items=None, default=None):
        self.items, self.default, self.requests = list(items or []), default, []

    def __call__(self, req: JudgeRequest) -> str:
        self.requests.append(req)
        item = self.items.pop(0) if self.items else self.default
        if isinstance(item, BaseException):
            raise item
        if callable(item):
            return item(req)
        return item


def scorer(transport, tmp_path=None, **kw):
    sleeps = []
    s = make_scorer("gemini", transport=transport, sleep=sleeps.append,
                    cache_dir=(tmp_path / "cache") if tmp_path else None, **kw)
    return s, sleeps


def test_video_bench_frame_sampling_rules():
    # static: from frame 1 every int(fps / 2) frames while below T - 1, then the last frame
    assert static_indices(30, 8.0) == [1, 5, 9, 13, 17, 21, 25, 29]
    assert static_indices(121, 30.0) == [1, 16, 31, 46, 61, 76, 91, 106, 120]
    assert static_indices(1, 8.0) == [0] and static_indices(5, 1.0) == [1, 2, 3, 4]
    # grid: from frame 0 every int(fps / 8) frames, rows of 8, an incomplete last row dropped
    assert grid_indices(30, 8.0) == [list(range(0, 8)), list(range(8, 16)), list(range(16, 24))]
    assert grid_indices(121, 30.0)[0] == [0, 3, 6, 9, 12, 15, 18, 21] and len(grid_indices(121, 30.0)) == 5
    assert grid_indices(5, 8.0) == [[0, 1, 2, 3, 4]]  # too short for a row of 8: one shorter row


def test_scores_every_dimension_from_valid_answers(clip):
    by_dim = {d: 1 + i % 5 for i, d in enumerate(DIMENSIONS)}
    t = Script(default=lambda req: f"```json\n{answer(by_dim[req.dimension], 'seen ' + req.dimension)}\n```")
    s, _ = scorer(t, model="gemini-2.5-flash")
    vs = s.score(clip / "v.mp4", reference=clip / "ref.png")
    assert isinstance(vs, VideoScore) and vs.scores == {d: float(v) for d, v in by_dim.items()}
    assert vs.mean == pytest.approx(np.mean(list(by_dim.values())))
    assert vs.scorer == "gemini:gemini-2.5-flash:" + prompts.PROMPT_VERSION
    assert vs.reasons["motion_smoothness"] == "seen motion_smoothness"
    reqs = {r.dimension: r for r in t.requests}
    assert list(reqs) == list(DIMENSIONS) and len(t.requests) == 6
    n_static, n_rows = len(static_indices(20, 8.0)), len(grid_indices(20, 8.0))
    assert len(reqs["imaging_quality"].images) == n_static == 6 and n_rows == 2
    assert len(reqs["temporal_consistency"].images) == n_rows
    assert len(reqs["subject_consistency"].images) == n_rows + 1  # the reference comes first
    assert "REFERENCE IMAGE" in reqs["subject_consistency"].text and "REFERENCE" not in reqs["imaging_quality"].text
    assert all(r.images[0][:2] == b"\xff\xd8" for r in t.requests)  # JPEG
    assert '"score"' in reqs["aesthetic_quality"].text and reqs["aesthetic_quality"].system == prompts.SYSTEM


def test_malformed_answers_are_asked_again_then_skipped(clip):
    t = Script(["I would say 4.", answer(9), '{"score": true}', answer(3)] + [answer(3)] * 5)
    s, sleeps = scorer(t, answer_retries=3)
    vs = s.score(clip / "v.mp4")
    assert vs.scores["imaging_quality"] == 3 and s.stats["answer_retries"] == 3 and not sleeps
    t = Script(default="not json at all")
    s, _ = scorer(t, answer_retries=2)
    with pytest.raises(ScoreError) as e:
        s.score(clip / "v.mp4")
    assert e.value.reason == "malformed" and len(t.requests) == 3 and "not JSON" in str(e.value)


def test_rate_limits_and_timeouts_back_off_then_give_up(clip):
    t = Script([TransportError("rate_limited", "429"), TransportError("rate_limited", "429", retry_after=30.0),
                TimeoutError("slow")], default=answer(5))
    s, sleeps = scorer(t)
    assert s.score(clip / "v.mp4").mean == 5.0
    assert len(sleeps) == 3 and 1.0 <= sleeps[0] <= 2.0 and sleeps[1] >= 30.0 and 4.0 <= sleeps[2] <= 8.0
    assert s.stats["retries"] == 3
    t = Script(default=TimeoutError("read timed out"))
    s, sleeps = scorer(t, max_attempts=4)
    with pytest.raises(ScoreError) as e:
        s.score(clip / "v.mp4")
    assert e.value.reason == "timeout" and len(t.requests) == 4 and len(sleeps) == 3
    assert sleeps == sorted(sleeps) or max(sleeps) <= 60  # exponential, capped
    t = Script(default=TransportError("auth", "HTTP 401: key refused"))
    s, sleeps = scorer(t)
    with pytest.raises(ScoreError) as e:
        s.score(clip / "v.mp4")
    assert e.value.reason == "auth" and len(t.requests) == 1 and not sleeps  # final: no retry


def test_workers_ask_the_six_questions_at_once(clip):
    seen, lock, peak = [], threading.Lock(), [0]

    def slow(req):
        with lock:
            seen.append(req.dimension)
            peak[0] = max(peak[0], len(seen) - sum(1 for _ in done))
        time.sleep(0.05)
        done.append(1)
        return answer(1 + DIMENSIONS.index(req.dimension) % 5)
    done = []
    s, _ = scorer(Script(default=slow), workers=6)
    vs = s.score(clip / "v.mp4")
    assert sorted(seen) == sorted(DIMENSIONS) and peak[0] > 1
    assert vs.scores == {d: float(1 + i % 5) for i, d in enumerate(DIMENSIONS)}


def test_cache_keys_video_prompt_version_and_model(clip, tmp_path, monkeypatch):
    t = Script(default=answer(4))
    s, _ = scorer(t, tmp_path)
    s.score(clip / "v.mp4")
    assert len(t.requests) == 6
    s2, _ = scorer(t, tmp_path)
    assert s2.score(clip / "v.mp4").mean == 4.0 and len(t.requests) == 6 and s2.stats["cache_hits"] == 6
    s2.score(clip / "w.mp4")                          # another video
    assert len(t.requests) == 12
    scorer(t, tmp_path, model="other-model")[0].score(clip / "v.mp4")   # another model
    assert len(t.requests) == 18
    s2.score(clip / "v.mp4", reference=clip / "ref.png")  # a reference changes subject consistency only
    assert len(t.requests) == 19
    monkeypatch.setattr(prompts, "PROMPT_VERSION", "prompts-v999")
    scorer(t, tmp_path)[0].score(clip / "v.mp4")
    assert len(t.requests) == 25
    files = list((tmp_path / "cache").rglob("*.json"))
    assert len(files) == 25 and all(json.loads(f.read_text())["score"] == 4 for f in files)
    files[0].write_text("{broken")                    # a corrupt entry is a miss, never an error
    scorer(t, tmp_path)[0].score(clip / "v.mp4")


def test_unreadable_inputs_are_score_errors(clip, tmp_path):
    (tmp_path / "bad.mp4").write_bytes(b"junk")
    s, _ = scorer(Script(default=answer()))
    for video, ref in ((tmp_path / "bad.mp4", None), (tmp_path / "none.mp4", None), (clip / "v.mp4", tmp_path / "no.png")):
        with pytest.raises(ScoreError) as e:
            s.score(video, reference=ref)
        assert e.value.reason == "input"


# ---------------------------------------------------------------- google-genai (real request building)
def recorded(text: str, finish: str = "STOP") -> types.GenerateContentResponse:
    raw = {"candidates": [{"content": {"parts": [{"text": text}], "role": "model"}, "finishReason": finish}]}
    return types.GenerateContentResponse.model_validate(raw)


class FakeModels:
    def __init__(self, script):
        self.script, self.calls = list(script), []

    def generate_content(self, *, model, contents, config=None):
        self.calls.append({"model": model, "contents": contents, "config": config})
        item = self.script.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item


class FakeClient:
    def __init__(self, script):
        self.models = FakeModels(script)


def test_gemini_transport_builds_the_sdk_request_and_classifies_errors(clip):
    err = lambda code: (errors.ClientError if code < 500 else errors.ServerError)(  # noqa: E731
        code, {"error": {"code": code, "message": "x", "status": "X"}})

    class ReadTimeout(Exception):
        pass
    client = FakeClient([err(429), err(503), ReadTimeout("t"), recorded("not json"),
                         recorded(answer(2))] + [recorded(answer(3))] * 5)
    s, sleeps = scorer(GeminiTransport(client=client), model="gemini-2.5-pro")
    vs = s.score(clip / "v.mp4")
    assert vs.scores["imaging_quality"] == 2 and vs.scores["subject_consistency"] == 3 and len(sleeps) == 3
    call = client.models.calls[-1]
    assert call["model"] == "gemini-2.5-pro" and isinstance(call["contents"][0], str)
    assert all(isinstance(p, types.Part) and p.inline_data.mime_type == "image/jpeg" for p in call["contents"][1:])
    cfg = call["config"]
    assert isinstance(cfg, types.GenerateContentConfig) and cfg.system_instruction == prompts.SYSTEM
    assert cfg.response_mime_type == "application/json" and cfg.temperature == 0.0
    gt = GeminiTransport(client=FakeClient([err(403), recorded("x", finish="SAFETY"), err(404)]))
    req = JudgeRequest("imaging_quality", "s", "t", (b"\xff\xd8",), "m")
    for reason in ("auth", "refused", "not_found"):
        with pytest.raises(TransportError) as e:
            gt(req)
        assert e.value.reason == reason


def test_gemini_key_only_from_env_and_never_leaks(clip, tmp_path, monkeypatch):
    from google import genai

    seen = {}

    class FakeGenai:
        def __init__(self, api_key, http_options):
            seen["key"], seen["timeout"] = api_key, http_options.timeout
            self.models = FakeModels([RuntimeError(f"API_KEY_INVALID {api_key} was refused")])
    monkeypatch.setattr(genai, "Client", FakeGenai)
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    with pytest.raises(ValueError, match="GEMINI_API_KEY / GOOGLE_API_KEY: not set"):
        make_scorer("gemini")
    monkeypatch.setenv("GOOGLE_API_KEY", SECRET)
    s = make_scorer("gemini", cache_dir=tmp_path / "c", timeout_s=30)
    assert seen == {"key": SECRET, "timeout": 30000}
    with pytest.raises(ScoreError) as e:
        s.score(clip / "v.mp4")
    assert e.value.reason == "auth" and SECRET not in str(e.value) and "***" in str(e.value)
    assert all(SECRET not in f.read_text() for f in tmp_path.rglob("*") if f.is_file())


# ---------------------------------------------------------------- OpenAI-compatible HTTP
class FakeResponse(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def chat(content, finish="stop"):
    return json.dumps({"choices": [{"message": {"role": "assistant", "content": content},
                                    "finish_reason": finish}]}).encode()


def test_openai_transport_request_body_and_errors(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    sent = []

    def urlopen(req, timeout):
        sent.append((req, timeout))
        if len(sent) == 1:
            raise urllib.error.HTTPError(req.full_url, 429, "Too Many", {"Retry-After": "7"}, io.BytesIO(b"slow down"))
        return FakeResponse(chat(answer(5)))
    t = OpenAITransport("http://localhost:9999/v1/", timeout_s=12, urlopen=urlopen)
    req = JudgeRequest("aesthetic_quality", "SYS", "TEXT", (b"\xff\xd8ab", b"\xff\xd8cd"), "qwen-vl")
    with pytest.raises(TransportError) as e:
        t(req)
    assert e.value.reason == "rate_limited" and e.value.retry_after == 7.0
    assert json.loads(t(req)) == {"score": 5, "reason": "fine"}
    http_req, timeout = sent[-1]
    assert http_req.full_url == "http://localhost:9999/v1/chat/completions" and timeout == 12
    assert http_req.get_header("Authorization") == f"Bearer {SECRET}"
    body = json.loads(http_req.data)
    assert body["model"] == "qwen-vl" and body["temperature"] == 0.0 and body["response_format"] == {"type": "json_object"}
    system, user = body["messages"]
    assert system == {"role": "system", "content": "SYS"} and user["content"][0] == {"type": "text", "text": "TEXT"}
    img = user["content"][1]["image_url"]
    assert img["url"] == "data:image/jpeg;base64," + base64.b64encode(b"\xff\xd8ab").decode() and img["detail"] == "low"
    for raw, reason in ((b"<html>", "malformed"), (chat("x", "length"), "truncated"), (chat(""), "empty"),
                        (chat("x", "content_filter"), "refused")):
        with pytest.raises(TransportError) as e:
            t.answer_text(raw)
        assert e.value.reason == reason
    with pytest.raises(ValueError, match="--base-url"):
        OpenAITransport("localhost:8000")
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(ValueError, match="OPENAI_API_KEY"):
        OpenAITransport("https://api.openai.com/v1")
    assert OpenAITransport("http://127.0.0.1:1/v1")._key is None  # a local server needs no key


def test_openai_judge_against_a_loopback_server(clip, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    state = {"n": 0, "paths": [], "delay": 0.0}

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state["n"] += 1
            state["paths"].append((self.path, body["model"], self.headers.get("Authorization")))
            time.sleep(state["delay"])
            if state["n"] == 1:
                self.send_response(429)
                self.send_header("Retry-After", "0")
                self.end_headers()
                return
            out = chat("nope" if state["n"] == 2 else answer(4))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        s = make_scorer("openai", base_url=url, model="local-vl", sleep=lambda d: None)
        vs = s.score(clip / "v.mp4")
        assert vs.mean == 4.0 and state["n"] == 8  # 429, a malformed answer, then six answers
        assert vs.scorer == f"openai:{url}:local-vl:{prompts.PROMPT_VERSION}"
        assert state["paths"][0] == ("/v1/chat/completions", "local-vl", None)
        state["delay"] = 1.0
        t = OpenAITransport(url, timeout_s=0.2)
        with pytest.raises(TransportError) as e:
            t(JudgeRequest("imaging_quality", "s", "t", (), "local-vl"))
        assert e.value.reason == "timeout"
    finally:
        server.shutdown()
        server.server_close()
