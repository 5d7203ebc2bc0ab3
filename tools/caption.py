"""Fused text captions (paper section 3.3) for (driving video, reference image) pairs -> JSONL.

    python tools/caption.py OUT.jsonl (--manifest ITEMS.jsonl | --video V --image I [--id ID])
        (--gemini | --captions FILE | --no-text) [--model gemini-2.5-pro] [--cache DIR]
        [--on-error fail|fallback] [--max-video-seconds 120] [--workers 4]
        [--video-fps F] [--motion-seconds S]

The text path is always explicit: --gemini asks the Gemini API (key from GEMINI_API_KEY or
GOOGLE_API_KEY; answers cached under --cache, keyed by content hash, prompt version and model, so
a second run makes no request), --captions reads user captions keyed by id (JSON or JSONL), and
--no-text writes the empty prompt for every item. ITEMS is a JSON list or JSONL of
{"id", "video", "image"} (paths relative to the manifest; tools/preprocess.py's manifest works too:
"reference" is the image, the id defaults to the video path without suffix, and an item without
an image has its appearance described from the video's first frame). OUT gets one line per item:
{"id", "fused", "source", "motion", "appearance"}; a one-line JSON report goes to stdout and
OUT.report.json. With --on-error fallback a refused / empty answer or a missing caption gives that
item the empty prompt with source "fallback:<reason>" and is counted in the report.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dreamactor_jax.utils import cli_main, write_text_atomic  # noqa: E402

DEFAULT_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "dreamactor_jax", "captions")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", help="output captions .jsonl")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--manifest", help="JSON list / JSONL of {id, video, image}")
    src.add_argument("--video", help="one driving video (with --image)")
    p.add_argument("--image", help="the reference image (with --video)")
    p.add_argument("--id", default=None, help="id of the single pair (default: the video's stem)")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--gemini", action="store_true", help="caption with the Gemini API")
    mode.add_argument("--captions", metavar="FILE", help="user-supplied captions keyed by id")
    mode.add_argument("--no-text", action="store_true", help="no text: the empty prompt for all items")
    p.add_argument("--model", default="gemini-2.5-pro", help="Gemini model name")
    p.add_argument("--cache", default=DEFAULT_CACHE, help="caption cache folder")
    p.add_argument("--on-error", default="fail", choices=["fail", "fallback"])
    p.add_argument("--max-video-seconds", type=float, default=120.0)
    p.add_argument("--workers", type=int, default=4, help="gemini requests in flight at once")
    p.add_argument("--video-fps", type=float, default=None,
                   help="frames per second Gemini samples from the video (API default: 1)")
    p.add_argument("--motion-seconds", type=float, default=None,
                   help="send only the first N seconds of each video (the motion prompt reads 5)")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")

    from dreamactor_jax.text.captions import (CaptionItem, caption_items, load_captions_file,
                                              load_items, write_captions_jsonl)
    if args.manifest:
        if args.image or args.id:
            raise ValueError("--image/--id: only with --video (the manifest names its items)")
        items = load_items(args.manifest)
    else:
        if not args.image:
            raise ValueError("--image: required with --video")
        items = [CaptionItem(args.id or Path(args.video).stem, args.video, args.image)]
    kw: dict = {"on_error": args.on_error, "progress": not args.quiet}
    if args.gemini:
        from dreamactor_jax.text.cache import CaptionCache
        from dreamactor_jax.text.client import GeminiCaptioner, GeminiConfig
        cfg = GeminiConfig(model=args.model, max_video_seconds=args.max_video_seconds,
                           video_fps=args.video_fps, motion_seconds=args.motion_seconds)
        records, report = caption_items(items, "gemini", captioner=GeminiCaptioner(
            cfg, cache=CaptionCache(args.cache)), workers=args.workers,
            frames_dir=os.path.join(args.cache, "frames"), **kw)
    elif args.captions:
        records, report = caption_items(items, "file", captions=load_captions_file(args.captions), **kw)
    else:
        records, report = caption_items(items, "none", **kw)
    write_captions_jsonl(args.out, records)
    rep = report.as_dict() | {"out": str(args.out)}
    write_text_atomic(str(args.out) + ".report.json", json.dumps(rep, indent=1) + "\n")
    print(report.summary(), file=sys.stderr)
    print(json.dumps(rep))
    return 0


if __name__ == "__main__":
    cli_main(main)
