"""Gemini captioner on google-genai: motion from a video, appearance from an image, their fusion.

`GeminiCaptioner` wraps a `genai.Client`-like object (injectable: tests pass a fake with
`models.generate_content` and `files.upload/get/delete`), adds retries with exponential backoff
and jitter on rate limits (429), server errors (5xx) and timeouts, checks inputs before paying for
an upload (duration, size), turns refused / empty / malformed answers into `GeminiError` with a
`reason`, and consults a `CaptionCache` first so a repeated call makes no request.

The API key comes from GEMINI_API_KEY or GOOGLE_API_KEY; it is never logged, cached or put in an
error message (messages are scrubbed of it).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import mimetypes
import os
import random
import threading
import time
from pathlib import Path
from typing import Any, Callable

from dreamactor_jax.text import prompts
from dreamactor_jax.text.cache import CaptionCache, sha256_file, sha256_text

log = logging.getLogger(__name__)

KEY_ENV_VARS = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
_REFUSAL_FINISH = {"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY",
                   "LANGUAGE"}


@dataclasses.dataclass(frozen=True)
class GeminiConfig:
    """Settings of the captioner (hashable; one per run)."""
    model: str = "gemini-2.5-pro"
    timeout_s: float = 180.0            # per HTTP request
    max_attempts: int = 6               # per request, counting the first
    backoff_initial_s: float = 2.0      # 2, 4, 8, ... (times a jitter factor in [0.5, 1])
    backoff_max_s: float = 64.0
    answer_retries: int = 1             # extra tries for an empty or malformed answer
    max_video_seconds: float = 120.0    # refuse longer videos before uploading
    video_fps: float | None = None      # frames per second the model samples (None: API default, 1)
    motion_seconds: float | None = None  # only send the first N seconds (the prompt reads 5)
    max_video_bytes: int = 2_000_000_000  # Files API limit is 2 GB
    max_image_bytes: int = 15_000_000   # inline request limit is 20 MB in total
    file_poll_s: float = 2.0
    file_active_timeout_s: float = 600.0
    temperature: float | None = None    # None: the model's default


FATAL_REASONS = ("auth", "not_found")


class GeminiError(ValueError):
    """A caption could not be obtained. `reason` is one of: refused, empty, malformed, truncated,
    rate_limited, server, timeout, request, upload, input, and the run-wide auth, not_found
    (`FATAL_REASONS`: no per-item fallback makes sense for those)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def api_key_from_env(env: dict | None = None) -> str:
    """The API key from GEMINI_API_KEY, else GOOGLE_API_KEY; a clear error when neither is set."""
    env = os.environ if env is None else env
    for name in KEY_ENV_VARS:
        value = (env.get(name) or "").strip()
        if value:
            return value
    raise ValueError("GEMINI_API_KEY / GOOGLE_API_KEY: not set; export one of them for --gemini "
                     "captioning, or use --captions FILE or --no-text")


def make_genai_client(cfg: GeminiConfig, api_key: str) -> Any:
    """A real google-genai client with the request timeout of `cfg` (SDK retries off: ours run)."""
    from google import genai
    from google.genai import types
    return genai.Client(api_key=api_key,
                        http_options=types.HttpOptions(timeout=int(cfg.timeout_s * 1000)))


def video_duration_s(path: str | os.PathLike) -> float:
    """Duration of a video file in seconds, read from its container with PyAV."""
    import av
    with av.open(str(path)) as c:
        if c.duration is not None:
            return float(c.duration) / av.time_base
        s = c.streams.video[0]
        if s.duration is not None and s.time_base is not None:
            return float(s.duration * s.time_base)
        if s.frames and s.average_rate:
            return float(s.frames / s.average_rate)
    raise ValueError(f"{path}: cannot read the video's duration")


def _enum_name(value: Any) -> str:
    if value is None:
        return ""
    return str(getattr(value, "name", None) or getattr(value, "value", None) or value).upper()


def _is_timeout(e: BaseException) -> bool:
    return isinstance(e, TimeoutError) or any("Timeout" in t.__name__ for t in type(e).__mro__)


def _status_code(e: BaseException) -> int | None:
    code = getattr(e, "code", None)
    return code if isinstance(code, int) else None


def answer_text(resp: Any, what: str) -> str:
    """The text of a generate_content response as one paragraph; GeminiError when there is none."""
    fb = getattr(resp, "prompt_feedback", None)
    block = _enum_name(getattr(fb, "block_reason", None)) if fb is not None else ""
    if block and block != "BLOCKED_REASON_UNSPECIFIED":
        raise GeminiError("refused", f"{what}: the model refused the request (block_reason={block})")
    if not hasattr(resp, "candidates"):
        raise GeminiError("malformed", f"{what}: malformed answer (no candidates field)")
    cands = resp.candidates
    if not cands:
        raise GeminiError("empty", f"{what}: empty answer (no candidates)")
    cand = cands[0]
    finish = _enum_name(getattr(cand, "finish_reason", None))
    if finish in _REFUSAL_FINISH:
        raise GeminiError("refused", f"{what}: the model refused to answer (finish_reason={finish})")
    content = getattr(cand, "content", None)
    parts = getattr(content, "parts", None) if content is not None else None
    if parts is None:
        if content is None and finish in ("", "STOP"):
            raise GeminiError("empty", f"{what}: empty answer (no content)")
        if content is None:
            raise GeminiError("empty", f"{what}: empty answer (finish_reason={finish})")
        raise GeminiError("malformed", f"{what}: malformed answer (content without parts)")
    if not isinstance(parts, (list, tuple)):
        raise GeminiError("malformed", f"{what}: malformed answer (parts is {type(parts).__name__})")
    texts = []
    for p in parts:
        if getattr(p, "thought", False):
            continue
        t = getattr(p, "text", None)
        if t is None:
            continue
        if not isinstance(t, str):
            raise GeminiError("malformed", f"{what}: malformed answer (text is {type(t).__name__})")
        texts.append(t)
    text = " ".join(" ".join(texts).split())
    if not text:
        raise GeminiError("empty", f"{what}: empty answer (finish_reason={finish or 'none'})")
    if finish == "MAX_TOKENS":
        raise GeminiError("truncated", f"{what}: answer cut off at the output token limit")
    return text


class GeminiCaptioner:
    """Motion, appearance and fusion captions from Gemini, cached on disk.

    `stats` counts: requests (generate calls made), uploads, retries (transient failures
    retried), answer_retries, cache_hits, format_warnings (an answer without the required opening
    sentence), and the billed input_tokens / output_tokens / thought_tokens the answers report.
    """

    def __init__(self, cfg: GeminiConfig = GeminiConfig(), client: Any = None,
                 cache: CaptionCache | None = None, *, sleep: Callable[[float], None] = time.sleep,
                 rng: random.Random | None = None,
                 probe_duration: Callable[[str], float] = video_duration_s):
        self.cfg = cfg
        self._key = None
        if client is None:
            self._key = api_key_from_env()
            client = make_genai_client(cfg, self._key)
        self.client = client
        self.cache = cache
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.probe_duration = probe_duration
        self.stats: collections.Counter = collections.Counter()
        self._lock = threading.Lock()  # one captioner may serve several worker threads
        self._key_locks: dict = {}

    # ------------------------------------------------------------------ plumbing
    def _count(self, name: str) -> None:
        with self._lock:
            self.stats[name] += 1

    def _scrub(self, msg: str) -> str:
        return msg.replace(self._key, "***") if self._key else msg

    def _with_retries(self, what: str, fn: Callable[[], Any]) -> Any:
        """Calls fn, retrying 429 / 5xx / timeouts with exponential backoff and jitter."""
        cfg = self.cfg
        for attempt in range(cfg.max_attempts):
            try:
                return fn()
            except GeminiError:
                raise
            except Exception as e:  # noqa: BLE001 - classified below, never swallowed
                code = _status_code(e)
                if _is_timeout(e):
                    reason = "timeout"
                elif code == 429:
                    reason = "rate_limited"
                elif code is not None and (code >= 500 or code == 408):
                    reason = "server"
                elif isinstance(e, ConnectionError):
                    reason = "server"
                else:
                    detail = self._scrub(f"{type(e).__name__}: {e}")[:300]
                    if code in (401, 403) or "API_KEY" in str(e):
                        raise GeminiError("auth", f"{what}: the API key was refused ({detail})") from None
                    if code == 404:
                        raise GeminiError("not_found", f"{what}: not found, check the model name "
                                                       f"{self.cfg.model!r} ({detail})") from None
                    raise GeminiError("request", f"{what}: request failed ({detail})") from None
                if attempt + 1 >= cfg.max_attempts:
                    raise GeminiError(reason, f"{what}: gave up after {cfg.max_attempts} attempts "
                                              f"({reason}, last: {type(e).__name__} {code or ''})".rstrip()
                                      ) from None
                delay = min(cfg.backoff_max_s, cfg.backoff_initial_s * 2 ** attempt)
                delay *= 0.5 + 0.5 * self.rng.random()
                self._count("retries")
                log.warning("%s: %s (attempt %d/%d), retrying in %.1fs", what, reason, attempt + 1,
                            cfg.max_attempts, delay)
                self.sleep(delay)
        raise AssertionError("unreachable")

    def _generate(self, what: str, contents: list) -> str:
        """One caption: a generate call (with retries), parsed; empty/malformed answers retried."""
        config = None
        if self.cfg.temperature is not None:
            config = {"temperature": self.cfg.temperature}
        for extra in range(self.cfg.answer_retries + 1):
            def call():
                self._count("requests")
                return self.client.models.generate_content(model=self.cfg.model, contents=contents,
                                                           config=config)
            resp = self._with_retries(what, call)
            self._count_usage(resp)
            try:
                return answer_text(resp, what)
            except GeminiError as e:
                if e.reason not in ("empty", "malformed") or extra >= self.cfg.answer_retries:
                    raise
                self._count("answer_retries")
                log.warning("%s, asking again", e)
        raise AssertionError("unreachable")

    def _count_usage(self, resp: Any) -> None:
        """Adds the answer's token counts (what the request is billed by) to stats."""
        usage = getattr(resp, "usage_metadata", None)
        for field, name in (("prompt_token_count", "input_tokens"), ("candidates_token_count", "output_tokens"),
                            ("thoughts_token_count", "thought_tokens")):
            n = getattr(usage, field, None) if usage is not None else None
            if isinstance(n, int):
                with self._lock:
                    self.stats[name] += n

    def _cached(self, kind: str, content_sha: str, make: Callable[[], str]) -> str:
        # one request per content at a time: a second worker with the same video waits for the
        # first one's answer and then finds it in the cache
        with self._lock:
            key_lock = self._key_locks.setdefault((kind, content_sha), threading.Lock())
        with key_lock:
            return self._cached_locked(kind, content_sha, make)

    def _cached_locked(self, kind: str, content_sha: str, make: Callable[[], str]) -> str:
        if self.cache is not None:
            hit = self.cache.get(kind, content_sha, prompts.PROMPT_VERSION, self.cfg.model)
            if hit is not None:
                self._count("cache_hits")
                return hit
        text = make()
        if self.cache is not None:
            self.cache.put(kind, content_sha, prompts.PROMPT_VERSION, self.cfg.model, text)
        return text

    def _check_opening(self, what: str, text: str, opening: str) -> None:
        if not text.startswith(opening):
            self._count("format_warnings")
            log.warning("%s: answer does not start with %r", what, opening)

    # ------------------------------------------------------------------ uploads
    def _upload_video(self, path: Path) -> Any:
        mime = mimetypes.guess_type(path.name)[0] or "video/mp4"
        what = f"{path}: upload"
        f = self._with_retries(what, lambda: self.client.files.upload(
            file=str(path), config={"mime_type": mime}))
        self._count("uploads")
        t0 = time.monotonic()
        waited = 0.0
        while True:
            state = _enum_name(getattr(f, "state", None))
            if state == "ACTIVE":
                return f
            if state == "FAILED":
                raise GeminiError("upload", f"{path}: the Files API could not process the video")
            if waited >= self.cfg.file_active_timeout_s or time.monotonic() - t0 > self.cfg.file_active_timeout_s:
                raise GeminiError("timeout", f"{path}: uploaded video not ACTIVE after "
                                             f"{self.cfg.file_active_timeout_s:.0f}s (state {state})")
            self.sleep(self.cfg.file_poll_s)
            waited += self.cfg.file_poll_s
            name = f.name
            f = self._with_retries(f"{path}: file status", lambda: self.client.files.get(name=name))

    def _delete(self, f: Any) -> None:
        try:
            self.client.files.delete(name=f.name)
        except Exception as e:  # noqa: BLE001 - files expire after 48 h anyway
            log.info("could not delete uploaded file: %s", type(e).__name__)

    # ------------------------------------------------------------------ public
    def check_video(self, path: str | os.PathLike) -> Path:
        """Refuses (before any upload) a missing, empty, too large or too long video."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: video not found")
        size = path.stat().st_size
        if size == 0:
            raise GeminiError("input", f"{path}: video file is empty")
        if size > self.cfg.max_video_bytes:
            raise GeminiError("input", f"{path}: video is {size / 1e6:.0f} MB, over the "
                                       f"{self.cfg.max_video_bytes / 1e6:.0f} MB upload limit")
        dur = self.probe_duration(str(path))
        if dur > self.cfg.max_video_seconds:
            raise GeminiError("input", f"{path}: video is {dur:.1f}s long, over max_video_seconds="
                                       f"{self.cfg.max_video_seconds:g} (trim it first)")
        return path

    def motion_caption(self, video: str | os.PathLike) -> str:
        """Appearance-free motion description of a driving video (uploaded via the Files API)."""
        path = self.check_video(video)

        cfg = self.cfg

        def make() -> str:
            f = self._upload_video(path)
            try:
                text = self._generate(f"{path}: motion caption", [self._video_part(f), prompts.MOTION_PROMPT])
            finally:
                self._delete(f)
            self._check_opening(f"{path}: motion caption", text, prompts.MOTION_OPENING)
            return text
        content = sha256_file(path)
        if cfg.video_fps is not None or cfg.motion_seconds is not None:  # a different request
            content = sha256_text(content, f"fps={cfg.video_fps}", f"seconds={cfg.motion_seconds}")
        return self._cached("motion", content, make)

    def _video_part(self, f: Any) -> Any:
        """The uploaded file as it goes into the request: as is, or with a frame rate / end offset."""
        if self.cfg.video_fps is None and self.cfg.motion_seconds is None:
            return f
        from google.genai import types
        meta = types.VideoMetadata(
            fps=self.cfg.video_fps,
            end_offset=None if self.cfg.motion_seconds is None else f"{self.cfg.motion_seconds:g}s")
        return types.Part(file_data=types.FileData(file_uri=f.uri, mime_type=f.mime_type), video_metadata=meta)

    def appearance_caption(self, image: str | os.PathLike) -> str:
        """Pose-free appearance description of a reference image (sent inline)."""
        path = Path(image)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: image not found")
        data = path.read_bytes()
        if not data:
            raise GeminiError("input", f"{path}: image file is empty")
        if len(data) > self.cfg.max_image_bytes:
            raise GeminiError("input", f"{path}: image is {len(data) / 1e6:.1f} MB, over "
                                       f"max_image_bytes={self.cfg.max_image_bytes}")
        mime = mimetypes.guess_type(path.name)[0]
        if not mime or not mime.startswith("image/"):
            raise GeminiError("input", f"{path}: not a recognised image type")

        def make() -> str:
            from google.genai import types
            part = types.Part.from_bytes(data=data, mime_type=mime)
            return self._generate(f"{path}: appearance caption", [part, prompts.APPEARANCE_PROMPT])
        return self._cached("appearance", sha256_file(path), make)

    def fuse(self, appearance: str, motion: str) -> str:
        """One target-oriented description: the image character performing the video's motion."""
        text_in = prompts.fusion_prompt(appearance, motion)

        def make() -> str:
            text = self._generate("fusion caption", [text_in])
            self._check_opening("fusion caption", text, prompts.FUSION_OPENING)
            return text
        return self._cached("fusion", sha256_text(appearance.strip(), motion.strip()), make)

    def caption(self, video: str | os.PathLike, image: str | os.PathLike) -> dict[str, str]:
        """motion, appearance and fused captions for one (driving video, reference image) pair."""
        motion = self.motion_caption(video)
        appearance = self.appearance_caption(image)
        return {"motion": motion, "appearance": appearance, "fused": self.fuse(appearance, motion)}
