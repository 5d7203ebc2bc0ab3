"""How a judge request reaches a model: google-genai (Gemini) or an OpenAI-compatible HTTP endpoint.

A transport is any callable `transport(request: JudgeRequest) -> str` returning the model's answer
text. It raises `TransportError` with a `reason` the judge acts on: "rate_limited", "server" and
"timeout" are retried with backoff (honouring a Retry-After delay when the server gives one);
"empty" / "malformed" / "truncated" answers are asked again; "auth", "not_found", "refused" and
"request" are final. Tests pass a fake callable; `GeminiTransport(client=...)` and
`OpenAITransport(urlopen=...)` also take fakes of their one network call, so the real request
building and answer parsing are tested offline.

API keys come from the environment only (Gemini: GEMINI_API_KEY, else GOOGLE_API_KEY; OpenAI:
OPENAI_API_KEY, optional for a local server). They live in the transport object, are never put in
a request record, a cache entry, a log line or an error message (messages are scrubbed of them).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import socket
import urllib.error
import urllib.request
from typing import Any, Callable

RETRIABLE = ("rate_limited", "server", "timeout")
ASK_AGAIN = ("empty", "malformed", "truncated")
GEMINI_KEYS = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
OPENAI_KEY = "OPENAI_API_KEY"

ANSWER_SCHEMA = {"type": "OBJECT", "properties": {"score": {"type": "INTEGER"}, "reason": {"type": "STRING"}},
                 "required": ["score", "reason"]}


@dataclasses.dataclass(frozen=True)
class JudgeRequest:
    """One question to the judge: a dimension's system + user text and its JPEG images (in order)."""

    dimension: str
    system: str
    text: str
    images: tuple[bytes, ...]
    model: str
    temperature: float = 0.0


class TransportError(Exception):
    def __init__(self, reason: str, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.reason = reason
        self.retry_after = retry_after


def _reason_for_status(code: int | None) -> str:
    if code == 429:
        return "rate_limited"
    if code in (408, 504):
        return "timeout"
    if code is not None and code >= 500:
        return "server"
    if code in (401, 403):
        return "auth"
    if code == 404:
        return "not_found"
    return "request"


def _is_timeout(e: BaseException) -> bool:
    return isinstance(e, (TimeoutError, socket.timeout)) or any("Timeout" in t.__name__ for t in type(e).__mro__)


def key_from_env(names: tuple[str, ...], *, required: bool, what: str) -> str | None:
    for n in names:
        v = (os.environ.get(n) or "").strip()
        if v:
            return v
    if required:
        raise ValueError(f"{' / '.join(names)}: not set; export it for the {what} judge, or use --scorer offline")
    return None


class _Scrubbing:
    _key: str | None = None

    def _scrub(self, msg: str) -> str:
        return msg.replace(self._key, "***") if self._key else msg


class GeminiTransport(_Scrubbing):
    """google-genai `models.generate_content` with a JSON answer schema (SDK retries off: ours run)."""

    def __init__(self, *, client: Any = None, timeout_s: float = 120.0):
        if client is None:
            from google import genai
            from google.genai import types

            self._key = key_from_env(GEMINI_KEYS, required=True, what="Gemini")
            client = genai.Client(api_key=self._key, http_options=types.HttpOptions(timeout=int(timeout_s * 1000)))
        self.client = client

    def __call__(self, req: JudgeRequest) -> str:
        from google.genai import types

        from dreamactor_jax.text.client import GeminiError, answer_text

        contents = [req.text] + [types.Part.from_bytes(data=b, mime_type="image/jpeg") for b in req.images]
        config = types.GenerateContentConfig(system_instruction=req.system, temperature=req.temperature,
                                             response_mime_type="application/json", response_schema=ANSWER_SCHEMA)
        try:
            resp = self.client.models.generate_content(model=req.model, contents=contents, config=config)
        except Exception as e:  # noqa: BLE001 - classified, never swallowed
            raise self._classify(e) from None
        try:
            return answer_text(resp, req.dimension)
        except GeminiError as e:
            reason = e.reason if e.reason in ASK_AGAIN + ("refused",) else "malformed"
            raise TransportError(reason, str(e)) from None

    def _classify(self, e: BaseException) -> TransportError:
        code = getattr(e, "code", None)
        code = code if isinstance(code, int) else None
        detail = self._scrub(f"{type(e).__name__}: {e}")[:300]
        if _is_timeout(e):
            return TransportError("timeout", f"timed out ({detail})")
        if code is None and isinstance(e, ConnectionError):
            return TransportError("server", f"connection failed ({detail})")
        if code is None and "API_KEY" in str(e):
            return TransportError("auth", f"the API key was refused ({detail})")
        return TransportError(_reason_for_status(code), f"HTTP {code}: {detail}" if code else detail)


class OpenAITransport(_Scrubbing):
    """POST {base_url}/chat/completions with images as data URLs (as Video-Bench calls its judge).

    Plain stdlib HTTP, so a local server (vLLM, llama.cpp, SGLang, ...) works the same way.
    `json_mode` asks for `response_format: json_object` (turn it off for servers that reject it;
    the answer is validated either way). `detail` is the image detail ("low", as Video-Bench asks).
    """

    def __init__(self, base_url: str, *, timeout_s: float = 120.0, json_mode: bool = True, detail: str = "low",
                 urlopen: Callable | None = None):
        if not base_url or not base_url.startswith(("http://", "https://")):
            raise ValueError(f"--base-url {base_url!r}: expected an http(s):// URL of an OpenAI-compatible API "
                             "(e.g. https://api.openai.com/v1 or http://localhost:8000/v1)")
        self.url = base_url.rstrip("/") + "/chat/completions"
        self._key = key_from_env((OPENAI_KEY,), required="api.openai.com" in base_url, what="OpenAI")
        self.timeout_s, self.json_mode, self.detail = timeout_s, json_mode, detail
        self.urlopen = urlopen or urllib.request.urlopen

    def body(self, req: JudgeRequest) -> dict:
        content = [{"type": "text", "text": req.text}] + [
            {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64," + base64.b64encode(b).decode(),
                                                "detail": self.detail}} for b in req.images]
        body = {"model": req.model, "temperature": req.temperature,
                "messages": [{"role": "system", "content": req.system}, {"role": "user", "content": content}]}
        if self.json_mode:
            body["response_format"] = {"type": "json_object"}
        return body

    def __call__(self, req: JudgeRequest) -> str:
        headers = {"Content-Type": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        http = urllib.request.Request(self.url, data=json.dumps(self.body(req)).encode(), headers=headers, method="POST")
        try:
            with self.urlopen(http, timeout=self.timeout_s) as r:
                raw = r.read()
        except urllib.error.HTTPError as e:
            retry = e.headers.get("Retry-After") if e.headers is not None else None
            try:
                retry = float(retry) if retry is not None else None
            except ValueError:
                retry = None
            msg = self._scrub(e.read().decode("utf-8", "replace")[:300] if e.fp is not None else str(e))
            raise TransportError(_reason_for_status(e.code), f"HTTP {e.code} from {self.url}: {msg}", retry) from None
        except urllib.error.URLError as e:
            reason = "timeout" if _is_timeout(e.reason) else "server"
            raise TransportError(reason, f"{self.url}: {self._scrub(str(e.reason))[:200]}") from None
        except Exception as e:  # noqa: BLE001 - a socket timeout while reading, a reset connection
            if _is_timeout(e):
                raise TransportError("timeout", f"{self.url}: timed out") from None
            if isinstance(e, (ConnectionError, OSError)):
                raise TransportError("server", f"{self.url}: {type(e).__name__}") from None
            raise
        return self.answer_text(raw)

    def answer_text(self, raw: bytes) -> str:
        try:
            data = json.loads(raw)
            choice = data["choices"][0]
            content = choice["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise TransportError("malformed", f"{self.url}: the response is not a chat completion") from None
        if choice.get("finish_reason") == "length":
            raise TransportError("truncated", f"{self.url}: answer cut off at the token limit")
        if choice.get("finish_reason") == "content_filter":
            raise TransportError("refused", f"{self.url}: the answer was filtered")
        if isinstance(content, list):  # some servers return content parts
            content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
        if not isinstance(content, str) or not content.strip():
            raise TransportError("empty", f"{self.url}: empty answer")
        return content
