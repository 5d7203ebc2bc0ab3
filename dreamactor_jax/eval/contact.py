"""Contact sheets: one PNG per case, the reference, driving frames and generated frames at a glance.

Layout (rows of thumbnails `height` pixels high, labelled):
    reference | driving  t0 ... t5
              | generated t0 ... t5
with the same six instants in both rows (evenly spread over the generated video; driving frames
centre-cropped to the output's aspect, as the sampler crops them), plus a line of scores.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageDraw

from dreamactor_jax.utils import atomic_path

LABEL_H = 14
BG = (24, 24, 24)
FG = (235, 235, 235)


def _thumb(img: np.ndarray, height: int) -> Image.Image:
    h, w = img.shape[:2]
    return Image.fromarray(np.ascontiguousarray(img)).resize((max(1, round(w * height / h)), height),
                                                             Image.Resampling.BILINEAR)


def _row(frames: list[np.ndarray], height: int, labels: list[str]) -> Image.Image:
    thumbs = [_thumb(f, height) for f in frames]
    w = sum(t.width for t in thumbs) + 2 * (len(thumbs) - 1)
    row = Image.new("RGB", (w, height + LABEL_H), BG)
    d = ImageDraw.Draw(row)
    x = 0
    for t, lab in zip(thumbs, labels):
        row.paste(t, (x, LABEL_H))
        d.text((x + 2, 1), lab, fill=FG)
        x += t.width + 2
    return row


def _crop_to(img: np.ndarray, aspect: float) -> np.ndarray:
    """Centre crop to width / height = aspect (what the sampler's default `crop` fit shows the model)."""
    h, w = img.shape[:2]
    if abs(w / h - aspect) < 0.02:
        return img
    if w / h > aspect:
        nw = max(1, round(h * aspect))
        return img[:, (w - nw) // 2:(w - nw) // 2 + nw]
    nh = max(1, round(w / aspect))
    return img[(h - nh) // 2:(h - nh) // 2 + nh]


def contact_sheet(reference: np.ndarray | None, driving: np.ndarray | None, generated: np.ndarray,
                  fps: float, *, title: str = "", footer: str = "", n: int = 6, height: int = 128) -> Image.Image:
    """The sheet as a PIL image (`driving` and `generated` uint8 [T, H, W, 3]; either may be None)."""
    idx = np.unique(np.linspace(0, len(generated) - 1, min(n, len(generated))).round().astype(int))
    times = [f"{i / fps:.1f}s" if fps > 0 else f"#{i}" for i in idx]
    rows = []
    if driving is not None:
        d_idx = [min(i, len(driving) - 1) for i in idx]
        aspect = generated.shape[2] / generated.shape[1]
        rows.append(_row([_crop_to(driving[i], aspect) for i in d_idx], height, ["driving " + times[0]] + times[1:]))
    rows.append(_row([generated[i] for i in idx], height, ["generated " + times[0]] + times[1:]))
    left = None
    if reference is not None:
        left = _row([reference], height * len(rows) + LABEL_H * (len(rows) - 1), ["reference"])
    width = (left.width + 4 if left else 0) + max(r.width for r in rows)
    top = LABEL_H + 4 if title else 0
    bottom = LABEL_H + 4 if footer else 0
    sheet = Image.new("RGB", (width, top + sum(r.height for r in rows) + bottom), BG)
    d = ImageDraw.Draw(sheet)
    if title:
        d.text((2, 2), title, fill=FG)
    x0 = 0
    if left:
        sheet.paste(left, (0, top))
        x0 = left.width + 4
    y = top
    for r in rows:
        sheet.paste(r, (x0, y))
        y += r.height
    if footer:
        d.text((2, y + 2), footer, fill=FG)
    return sheet


def save_png(image: Image.Image, path: str | os.PathLike) -> None:
    with atomic_path(path, suffix=".png") as tmp:
        image.save(tmp, "PNG", optimize=True)
