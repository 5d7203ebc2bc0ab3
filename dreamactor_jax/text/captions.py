"""The three explicit ways to get the fused caption T_fusion of a (driving video, reference image):

- `gemini`: motion + appearance captions from the MLLM, fused by the LLM (`client.GeminiCaptioner`,
  cached on disk);
- `file`:   captions the user supplies in a JSON / JSONL file keyed by item id (no network);
- `none`:   no text: every item gets the empty prompt (the backbone's null text).

Every run returns a `CaptionReport` saying which path was used, how many captions came from the
cache or from requests, and every fallback (an item that got the empty prompt although text was
asked for) with its reason. Fallbacks happen only when `on_error="fallback"` is passed; by default
a failure is an error naming the item. Nothing is silently empty: an empty caption in a record
always carries `source` "none" or "fallback:<reason>".
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

from dreamactor_jax.text import prompts
from dreamactor_jax.utils import write_text_atomic

MODES = ("gemini", "file", "none")
TEXT_KEYS = ("fused", "text", "caption", "prompt")  # accepted names of the fused caption in a file


@dataclasses.dataclass(frozen=True)
class CaptionItem:
    """One training clip or sampling request: a driving video and a reference image."""
    id: str
    video: str | None = None
    image: str | None = None


@dataclasses.dataclass
class CaptionRecord:
    id: str
    fused: str                 # what the text encoder reads ("" = the null prompt)
    source: str                # gemini | file | none | fallback:<reason>
    motion: str = ""
    appearance: str = ""

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class CaptionReport:
    mode: str
    total: int = 0
    captioned: int = 0
    fallbacks: list = dataclasses.field(default_factory=list)  # [(id, reason)]
    cache_hits: int = 0
    requests: int = 0
    model: str | None = None
    prompt_version: str | None = None
    tokens: dict = dataclasses.field(default_factory=dict)  # input / output / thought tokens billed
    image_from_video: int = 0  # items without an image: appearance from the video's first frame

    def summary(self) -> str:
        """One line for logs and tool output."""
        head = f"text mode={self.mode}"
        if self.mode == "gemini":
            head += f" (model {self.model}, prompts {self.prompt_version})"
        line = f"{head}: {self.total} items, {self.captioned} captioned"
        if self.mode == "gemini":
            line += f", {self.cache_hits} cached answers, {self.requests} requests"
            if self.tokens:
                line += " (tokens " + ", ".join(f"{k} {v}" for k, v in self.tokens.items()) + ")"
            if self.image_from_video:
                line += f", {self.image_from_video} appearances from the video's first frame"
        if self.mode == "none":
            line = f"{head}: {self.total} items, no text (null prompt) by request"
        if self.fallbacks:
            reasons = collections.Counter(r for _, r in self.fallbacks)
            line += (f", {len(self.fallbacks)} FALLBACKS to the null prompt ("
                     + ", ".join(f"{k}: {v}" for k, v in sorted(reasons.items())) + ")")
        return line

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["fallbacks"] = [list(f) for f in self.fallbacks]
        return d


def _fused_of(entry: Any, where: str) -> tuple[str, dict]:
    """(fused text, the whole entry as a dict) from a captions-file entry."""
    if isinstance(entry, str):
        entry = {"fused": entry}
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: expected a caption string or an object, got {type(entry).__name__}")
    for k in TEXT_KEYS:
        if k in entry:
            text = entry[k]
            break
    else:
        raise ValueError(f"{where}: no caption field (one of {', '.join(TEXT_KEYS)})")
    if not isinstance(text, str):
        raise ValueError(f"{where}: caption must be a string, got {type(text).__name__}")
    source = str(entry.get("source", "file"))
    if not text.strip() and not (source == "none" or source.startswith("fallback")):
        raise ValueError(f"{where}: empty caption (mark it source='none' to ask for no text)")
    return " ".join(text.split()), entry


def load_captions_file(path: str | os.PathLike) -> dict[str, dict]:
    """Reads captions keyed by id -> {id: {"fused", "motion", "appearance", "source"}}.

    Accepted: a JSON object {id: caption | {fused|text|caption|prompt: ...}}, a JSON list of
    objects with "id", or JSONL with one such object a line (what tools/caption.py writes).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: captions file not found")
    raw = path.read_text("utf-8")
    entries: list[tuple[str, Any, str]] = []
    try:
        if path.suffix == ".jsonl":
            for n, line in enumerate(raw.splitlines(), 1):
                if line.strip():
                    obj = json.loads(line)
                    entries.append((obj.get("id") if isinstance(obj, dict) else None, obj, f"{path}:{n}"))
        else:
            data = json.loads(raw)
            if isinstance(data, dict):
                entries = [(k, v, f"{path}: entry {k!r}") for k, v in data.items()]
            elif isinstance(data, list):
                entries = [(o.get("id") if isinstance(o, dict) else None, o, f"{path}: item {i}")
                           for i, o in enumerate(data)]
            else:
                raise ValueError(f"{path}: expected a JSON object or list, got {type(data).__name__}")
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    out: dict[str, dict] = {}
    for key, obj, where in entries:
        if not isinstance(key, str) or not key:
            raise ValueError(f"{where}: missing a string 'id'")
        if key in out:
            raise ValueError(f"{where}: duplicate id {key!r}")
        fused, entry = _fused_of(obj, where)
        out[key] = {"fused": fused, "motion": str(entry.get("motion", "")),
                    "appearance": str(entry.get("appearance", "")),
                    "source": str(entry.get("source", "file"))}
    if not out:
        raise ValueError(f"{path}: no captions in the file")
    return out


def caption_items(items: Sequence[CaptionItem], mode: str, *, captioner: Any = None,
                  captions: dict[str, dict] | None = None, on_error: str = "fail",
                  workers: int = 1, frames_dir: str | os.PathLike | None = None,
                  progress: bool = True) -> tuple[list[CaptionRecord], CaptionReport]:
    """Fused captions for `items` by the chosen path -> (records in item order, report).

    on_error="fail": the first missing / refused caption raises ValueError naming the item;
    on_error="fallback": that item gets the null prompt, counted in report.fallbacks (but a refused
    API key or an unknown model stops the run: those are not about one item).
    workers: gemini requests in flight at once (threads; rate limits are retried with backoff).
    frames_dir: where an item without an image gets its video's first frame (a PNG) to describe
    the appearance from (training clips: the reference is a frame of the clip); counted.
    """
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
    if workers < 1:
        raise ValueError(f"workers: expected >= 1, got {workers}")
    if on_error not in ("fail", "fallback"):
        raise ValueError(f"on_error: expected 'fail' or 'fallback', got {on_error!r}")
    ids = [it.id for it in items]
    if len(set(ids)) != len(ids):
        dup = [k for k, v in collections.Counter(ids).items() if v > 1][:3]
        raise ValueError(f"items: duplicate ids {dup}")
    report = CaptionReport(mode=mode, total=len(items))
    records: list[CaptionRecord] = []
    if mode == "none":
        return [CaptionRecord(it.id, "", "none") for it in items], report
    if mode == "file":
        if captions is None:
            raise ValueError("captions: mode 'file' needs the loaded captions file")
        missing = [i for i in ids if i not in captions]
        if missing and on_error == "fail":
            raise ValueError(f"captions: {len(missing)} of {len(ids)} items have no caption "
                             f"(first: {', '.join(map(repr, missing[:3]))})")
        for it in items:
            c = captions.get(it.id)
            if c is None:
                report.fallbacks.append((it.id, "missing"))
                records.append(CaptionRecord(it.id, "", "fallback:missing"))
                continue
            src = c["source"]
            if src.startswith("fallback"):
                report.fallbacks.append((it.id, src.split(":", 1)[-1]))
            elif src != "none":
                report.captioned += 1
                src = "file"
            records.append(CaptionRecord(it.id, c["fused"], src, c["motion"], c["appearance"]))
        return records, report
    # gemini
    from dreamactor_jax.text.client import FATAL_REASONS, GeminiError
    if captioner is None:
        raise ValueError("captioner: mode 'gemini' needs a GeminiCaptioner")
    report.model, report.prompt_version = captioner.cfg.model, prompts.PROMPT_VERSION
    for it in items:
        if not it.video:
            raise ValueError(f"item {it.id!r}: gemini captions need a video")
        if not it.image and frames_dir is None:
            raise ValueError(f"item {it.id!r}: gemini captions need an image (or frames_dir to take "
                             "the video's first frame)")
    if frames_dir is not None:
        fixed = []
        for it in items:
            if not it.image:
                it = dataclasses.replace(it, image=first_frame_png(it.video, frames_dir))
                report.image_from_video += 1
            fixed.append(it)
        items = fixed

    def one(it: CaptionItem) -> CaptionRecord:
        try:
            out = captioner.caption(it.video, it.image)
        except GeminiError as e:
            if on_error == "fail" or e.reason in FATAL_REASONS:
                raise ValueError(f"item {it.id!r}: {e}") from None
            return CaptionRecord(it.id, "", f"fallback:{e.reason}")
        return CaptionRecord(it.id, out["fused"], "gemini", out["motion"], out["appearance"])

    from tqdm.auto import tqdm
    bar = tqdm(total=len(items), desc="captions (gemini)", unit="item", disable=not progress)
    if workers <= 1:
        for it in items:
            records.append(one(it))
            bar.update()
    else:  # requests in flight at once; results kept in item order
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(workers) as pool:
            futures = [pool.submit(one, it) for it in items]
            try:
                for f in futures:
                    records.append(f.result())
                    bar.update()
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
    bar.close()
    for r in records:
        if r.source.startswith("fallback:"):
            report.fallbacks.append((r.id, r.source.split(":", 1)[1]))
        else:
            report.captioned += 1
    report.cache_hits = int(captioner.stats["cache_hits"])
    report.requests = int(captioner.stats["requests"])
    report.tokens = {k: int(captioner.stats[f"{k}_tokens"]) for k in ("input", "output", "thought")
                     if captioner.stats[f"{k}_tokens"]}
    return records, report


def write_captions_jsonl(path: str | os.PathLike, records: Iterable[CaptionRecord]) -> None:
    """One JSON object a line (id, fused, source, motion, appearance), written atomically."""
    lines = [json.dumps(r.to_json(), ensure_ascii=False) for r in records]
    write_text_atomic(path, "\n".join(lines) + "\n")


def first_frame_png(video: str | os.PathLike, folder: str | os.PathLike) -> str:
    """The video's first frame as `folder/<content hash>.png` (written once, atomically)."""
    from dreamactor_jax.media import read_video
    from dreamactor_jax.text.cache import sha256_file
    from dreamactor_jax.utils import atomic_path
    from PIL import Image
    if not os.path.isfile(video):
        raise FileNotFoundError(f"{video}: video not found")
    out = Path(folder) / f"{sha256_file(video)[:24]}.png"
    if not out.is_file():
        frame = read_video(video, num_frames=1)[0]
        with atomic_path(out) as tmp:
            Image.fromarray(frame).save(tmp, format="PNG")
    return str(out)


def load_items(path: str | os.PathLike) -> list[CaptionItem]:
    """A manifest of items: JSON list or JSONL of {"id", "video", "image"}; relative paths are
    resolved against the manifest's folder. The training manifest of tools/preprocess.py is
    accepted too: "reference" stands for "image", and the id defaults, as there, to the video path
    without its suffix (so captions and embeddings are keyed like the training clips)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: manifest not found")
    raw = path.read_text("utf-8")
    try:
        objs = ([json.loads(l) for l in raw.splitlines() if l.strip()] if path.suffix == ".jsonl"
                else json.loads(raw))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(objs, list):
        raise ValueError(f"{path}: expected a list of items")
    items = []
    for n, o in enumerate(objs):
        if not isinstance(o, dict):
            raise ValueError(f"{path}: item {n} is not an object")
        if "image" not in o and "reference" in o:
            o = {**o, "image": o["reference"]}
        key = o.get("id")
        if not key and isinstance(o.get("video"), str):
            key = str(Path(o["video"]).with_suffix(""))
        if not isinstance(key, str) or not key:
            raise ValueError(f"{path}: item {n} needs a string 'id' or a 'video' path")
        res = {}
        for k in ("video", "image"):
            v = o.get(k)
            if v is not None and not isinstance(v, str):
                raise ValueError(f"{path}: item {key!r}: {k} must be a path string")
            res[k] = None if not v else str(path.parent / v) if not os.path.isabs(v) else v
        items.append(CaptionItem(key, **res))
    if not items:
        raise ValueError(f"{path}: no items")
    return items
