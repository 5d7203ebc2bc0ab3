"""The MLLM judge: Video-Bench's six dimensions asked of Gemini or an OpenAI-compatible model.

Per video, one request per dimension (as Video-Bench asks one question per dimension): the
dimension's prompt (`prompts.py`), the frames Video-Bench would show (`frames.judge_frames`:
2 frames per second for imaging / aesthetic quality, rows of 8 frames at 8 per second for the
four temporal ones) and, for subject consistency, the reference image first when there is one.
The answer must be one JSON object `{"score": 1..5, "reason": "..."}` (code fences are tolerated;
anything else is malformed and asked again, `answer_retries` times). Rate limits (429), server
errors and timeouts are retried with exponential backoff and jitter (`max_attempts` in all);
what still fails is a `ScoreError` with its reason, which the runner counts as a skipped case.

`workers` > 1 asks the six questions of a video at once. Answers are cached on disk (`JudgeCache`): one file per (video sha256, reference sha256,
dimension, prompt version, backend + model); a repeated run asks nothing. No key in the cache.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import logging
import os
import random
import re
import threading
import time
from pathlib import Path
from typing import Callable

from dreamactor_jax.eval import prompts
from dreamactor_jax.eval.transports import ASK_AGAIN, RETRIABLE, JudgeRequest, TransportError
from dreamactor_jax.eval.videobench import DIMENSIONS, ScoreError, VideoScore
from dreamactor_jax.utils import write_text_atomic

log = logging.getLogger(__name__)

DEFAULT_MODELS = {"gemini": "gemini-2.5-pro", "openai": "gpt-4o-2024-08-06"}


@dataclasses.dataclass(frozen=True)
class JudgeConfig:
    model: str
    backend: str = "gemini"             # names the cache entries and the scorer
    timeout_s: float = 120.0            # per HTTP request
    max_attempts: int = 6               # per request, counting the first
    backoff_initial_s: float = 2.0      # 2, 4, 8, ... seconds, times a jitter in [0.5, 1]
    backoff_max_s: float = 60.0
    answer_retries: int = 2             # extra questions after a malformed / empty answer
    temperature: float = 0.0


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def parse_answer(text: str) -> tuple[int, str]:
    """(score, reason) from the judge's answer; TransportError("malformed") when it is not valid."""
    s = text.strip()
    fence = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", s, flags=re.S)
    if fence:
        s = fence.group(1)
    try:
        obj = json.loads(s)
    except json.JSONDecodeError:
        raise TransportError("malformed", f"answer is not JSON: {text[:80]!r}") from None
    if not isinstance(obj, dict):
        raise TransportError("malformed", f"answer is JSON but not an object: {text[:80]!r}")
    score, reason = obj.get("score"), obj.get("reason", "")
    if isinstance(score, float) and score.is_integer():
        score = int(score)
    if isinstance(score, bool) or not isinstance(score, int) or not 1 <= score <= 5:
        raise TransportError("malformed", f"answer's score must be an integer 1-5, got {score!r}")
    if not isinstance(reason, str):
        raise TransportError("malformed", f"answer's reason must be a string, got {type(reason).__name__}")
    return score, " ".join(reason.split())


class JudgeCache:
    """(video sha, reference sha, dimension, prompt version, model) -> {"score", "reason"} on disk."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    @staticmethod
    def key(video_sha: str, ref_sha: str, dimension: str, prompt_version: str, model: str) -> str:
        h = hashlib.sha256()
        for part in (video_sha, ref_sha, dimension, prompt_version, model):
            b = part.encode()
            h.update(len(b).to_bytes(8, "little") + b)
        return h.hexdigest()

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, *fields: str) -> tuple[int, str] | None:
        try:
            rec = json.loads(self._path(self.key(*fields)).read_text("utf-8"))
            if [rec["video_sha256"], rec["reference_sha256"], rec["dimension"], rec["prompt_version"],
                    rec["model"]] != list(fields):
                return None
            return parse_answer(json.dumps({"score": rec["score"], "reason": rec["reason"]}))
        except (OSError, ValueError, KeyError, TypeError, TransportError):
            return None  # a missing, corrupt or mismatching entry is a miss

    def put(self, video_sha: str, ref_sha: str, dimension: str, prompt_version: str, model: str,
            score: int, reason: str) -> None:
        rec = {"video_sha256": video_sha, "reference_sha256": ref_sha, "dimension": dimension,
               "prompt_version": prompt_version, "model": model, "score": score, "reason": reason,
               "created": time.time()}
        write_text_atomic(self._path(self.key(video_sha, ref_sha, dimension, prompt_version, model)),
                          json.dumps(rec, ensure_ascii=False, indent=1))


class MLLMScorer:
    """The judge behind `make_scorer("gemini" | "openai")`; `stats` counts requests, retries,
    answer_retries and cache_hits."""

    def __init__(self, cfg: JudgeConfig, transport: Callable[[JudgeRequest], str], *,
                 cache_dir: str | os.PathLike | None = None, sleep: Callable[[float], None] = time.sleep,
                 rng: random.Random | None = None, model_id: str | None = None, workers: int = 1):
        self.cfg, self.transport, self.workers = cfg, transport, max(1, int(workers))
        self.cache = JudgeCache(cache_dir) if cache_dir else None
        self.sleep, self.rng = sleep, rng or random.Random()
        self.model_id = model_id or f"{cfg.backend}:{cfg.model}"  # what the cache is keyed by
        self.name = f"{self.model_id}:{prompts.PROMPT_VERSION}"
        self.stats: collections.Counter = collections.Counter()
        self._lock = threading.Lock()

    def _count(self, what: str) -> None:
        with self._lock:
            self.stats[what] += 1

    def _ask_once(self, req: JudgeRequest, what: str) -> str:
        """One answer text, retrying rate limits, server errors and timeouts with backoff."""
        cfg = self.cfg
        for attempt in range(cfg.max_attempts):
            self._count("requests")
            try:
                return self.transport(req)
            except TransportError as e:
                err = e
            except TimeoutError as e:  # a fake or a bare socket timeout
                err = TransportError("timeout", f"timed out ({e})")
            except ConnectionError as e:
                err = TransportError("server", f"connection failed ({type(e).__name__})")
            if err.reason not in RETRIABLE:
                raise err
            if attempt + 1 >= cfg.max_attempts:
                raise ScoreError(f"{what}: gave up after {cfg.max_attempts} attempts ({err.reason}: {err})",
                                 err.reason)
            delay = min(cfg.backoff_max_s, cfg.backoff_initial_s * 2 ** attempt) * (0.5 + 0.5 * self.rng.random())
            if err.retry_after is not None:
                delay = min(cfg.backoff_max_s, max(delay, err.retry_after))
            self._count("retries")
            log.warning("%s: %s (attempt %d/%d), retrying in %.1f s", what, err.reason, attempt + 1,
                        cfg.max_attempts, delay)
            self.sleep(delay)
        raise AssertionError("unreachable")

    def ask(self, req: JudgeRequest, what: str) -> tuple[int, str]:
        """A validated (score, reason); malformed or empty answers are asked again."""
        for extra in range(self.cfg.answer_retries + 1):
            try:
                return parse_answer(self._ask_once(req, what))
            except TransportError as e:
                if e.reason not in ASK_AGAIN:
                    raise ScoreError(f"{what}: {e}", e.reason) from None
                if extra >= self.cfg.answer_retries:
                    raise ScoreError(f"{what}: no valid answer after {self.cfg.answer_retries + 1} tries "
                                     f"({e.reason}: {e})", "malformed") from None
                self._count("answer_retries")
                log.warning("%s: %s, asking again", what, e)
        raise AssertionError("unreachable")

    def score(self, video: str | os.PathLike, *, reference: str | os.PathLike | None = None) -> VideoScore:
        from dreamactor_jax import media
        from dreamactor_jax.eval.frames import jpeg, judge_frames, read_frames

        video = Path(video)
        try:
            frames, fps = read_frames(video, max_side=1024)
        except (ValueError, FileNotFoundError) as e:
            raise ScoreError(str(e), "input") from None
        vsha, rsha, ref_jpeg = sha256_file(video), "", None
        if reference is not None:
            try:
                ref_jpeg = jpeg(media.read_image(reference))
            except (ValueError, FileNotFoundError, OSError) as e:
                raise ScoreError(f"reference {reference}: {e}", "input") from None
            rsha = sha256_file(reference)
        shown = judge_frames(frames, fps)
        def one(dim: str) -> tuple[int, str]:
            kind, _ = prompts.CRITERIA[dim]
            use_ref = dim == "subject_consistency" and ref_jpeg is not None
            images = ([ref_jpeg] if use_ref else []) + shown[kind]
            ref_key = rsha if use_ref else ""
            key = (vsha, ref_key, dim, prompts.PROMPT_VERSION, self.model_id)
            hit = self.cache.get(*key) if self.cache else None
            if hit is not None:
                self._count("cache_hits")
                return hit
            req = JudgeRequest(dim, prompts.SYSTEM, prompts.request_text(dim, num_images=len(shown[kind]),
                                                                         with_reference=use_ref),
                               tuple(images), self.cfg.model, self.cfg.temperature)
            got = self.ask(req, f"{video.name} {dim}")
            if self.cache:
                self.cache.put(*key, *got)
            return got

        if self.workers > 1:  # the six questions at once (each still retried on its own)
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(min(self.workers, len(DIMENSIONS))) as pool:
                answers = dict(zip(DIMENSIONS, pool.map(one, DIMENSIONS)))
        else:
            answers = {d: one(d) for d in DIMENSIONS}
        return VideoScore({d: a[0] for d, a in answers.items()}, self.name, {d: a[1] for d, a in answers.items()})


def make_judge(kind: str, *, model: str | None = None, base_url: str | None = None,
               cache_dir: str | os.PathLike | None = None, transport: Callable | None = None,
               timeout_s: float = 120.0, max_attempts: int = 6, answer_retries: int = 2,
               json_mode: bool = True, client=None, sleep: Callable[[float], None] = time.sleep,
               workers: int = 1) -> MLLMScorer:
    """The Gemini or OpenAI-compatible judge; `transport` replaces the network (tests)."""
    from dreamactor_jax.eval.transports import GeminiTransport, OpenAITransport

    model = model or DEFAULT_MODELS[kind]
    cfg = JudgeConfig(model=model, backend=kind, timeout_s=timeout_s, max_attempts=max_attempts,
                      answer_retries=answer_retries)
    model_id = f"{kind}:{model}"
    if kind == "openai":
        if transport is None:
            transport = OpenAITransport(base_url or "https://api.openai.com/v1", timeout_s=timeout_s, json_mode=json_mode)
        if base_url:
            model_id = f"openai:{base_url.rstrip('/')}:{model}"
    elif transport is None:
        transport = GeminiTransport(client=client, timeout_s=timeout_s)
    return MLLMScorer(cfg, transport, cache_dir=cache_dir, sleep=sleep, model_id=model_id, workers=workers)
