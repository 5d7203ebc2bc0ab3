"""On-disk caption cache: captioning a dataset twice costs nothing the second time.

A caption is keyed by what made it: the kind (motion / appearance / fusion), the sha256 of the
input content (video or image bytes, or the two captions being fused), the prompt version and the
model name. One small JSON file per entry, written atomically, under `root/ab/<key>.json`. Nothing
secret goes in (no API key, no request headers).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from dreamactor_jax.utils import write_text_atomic

KINDS = ("motion", "appearance", "fusion")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes, read in chunks (videos can be large)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_text(*parts: str) -> str:
    """sha256 of several strings, unambiguously separated."""
    h = hashlib.sha256()
    for p in parts:
        b = p.encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


def cache_key(kind: str, content_sha256: str, prompt_version: str, model: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {KINDS}, got {kind!r}")
    return sha256_text(kind, content_sha256, prompt_version, model)


class CaptionCache:
    """Maps (kind, content hash, prompt version, model) to a caption string on disk."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.hits = 0
        self.misses = 0

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, kind: str, content_sha256: str, prompt_version: str, model: str) -> str | None:
        """The cached caption, or None. A corrupt or mismatching entry counts as a miss."""
        key = cache_key(kind, content_sha256, prompt_version, model)
        path = self._path(key)
        try:
            rec = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError):
            self.misses += 1
            return None
        ok = (isinstance(rec, dict) and rec.get("kind") == kind and rec.get("model") == model
              and rec.get("prompt_version") == prompt_version
              and rec.get("content_sha256") == content_sha256
              and isinstance(rec.get("text"), str) and rec["text"].strip())
        if not ok:
            self.misses += 1
            return None
        self.hits += 1
        return rec["text"]

    def put(self, kind: str, content_sha256: str, prompt_version: str, model: str, text: str) -> None:
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"text: refusing to cache an empty {kind} caption")
        key = cache_key(kind, content_sha256, prompt_version, model)
        rec = {"kind": kind, "model": model, "prompt_version": prompt_version,
               "content_sha256": content_sha256, "text": text, "created": time.time()}
        write_text_atomic(self._path(key), json.dumps(rec, ensure_ascii=False, indent=1))
