"""One pseudo-pair unit on disk: a folder that appears complete or not at all.

    <output>/<unit id>/
        source.mp4      V_src: the source segment (the model's fps, panel size) -> the training target
        generated.mp4   V_o = M_pose(P_src, I_o): the pose model's output      -> the training driving video
        reference.png   I_o: the reference it animated (panel size)
        pose.mp4        P_src rendered OpenPose-style (what the pose model saw)
        unit.json       metadata: source and segment, reference and identity, seeds, the pose
                        checkpoint's fingerprint, pose statistics, sampler settings
        scores.json     added by the filter: Video-Bench scores per scorer (tools/filter_pairs.py)

A unit is written into a temporary folder next to its final place and renamed when every file is
in it (`utils.atomic_path`), so a reader (a resumed run, the filter, another host) sees a unit
folder only when it is complete. Leftover temporary folders of an interrupted run are removed by
`clean_partial`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Iterable

import numpy as np

from dreamactor_jax.utils import atomic_path, write_text_atomic

UNIT_FILE = "unit.json"
SOURCE, GENERATED, REFERENCE, POSE, SCORES = "source.mp4", "generated.mp4", "reference.png", "pose.mp4", "scores.json"
FORMAT = 1


def _unit_file(name: str) -> property:
    """The read-only attribute of a `Unit`: the path of its file `name`."""
    return property(lambda unit: unit.dir / name, doc=f"The unit's {name}.")


@dataclasses.dataclass(frozen=True)
class Unit:
    """A complete unit folder and its metadata."""

    id: str
    dir: Path
    meta: dict

    source = _unit_file(SOURCE)
    generated = _unit_file(GENERATED)
    reference = _unit_file(REFERENCE)
    pose = _unit_file(POSE)


def is_complete(root: str | os.PathLike, unit_id: str) -> bool:
    return (Path(root) / unit_id / UNIT_FILE).is_file()


def write_unit(root: str | os.PathLike, unit_id: str, *, source: np.ndarray, generated: np.ndarray,
               reference: np.ndarray, pose: np.ndarray, fps: float, meta: dict) -> Path | None:
    """Writes a unit atomically; uint8 videos [T, H, W, 3] of one length, image [H, W, 3].

    Returns its folder, or None when another process finished the same unit first.
    """
    from PIL import Image

    from dreamactor_jax import media

    n = len(source)
    if not (len(generated) == len(pose) == n) or reference.ndim != 3:
        raise ValueError(f"unit {unit_id}: source {source.shape}, generated {generated.shape}, pose "
                         f"{pose.shape} must be videos of one length and reference {reference.shape} an image")
    final = Path(root) / unit_id
    try:
        with atomic_path(final, suffix="") as tmp:
            tmp.mkdir()
            media.write_video(tmp / SOURCE, source, fps)
            media.write_video(tmp / GENERATED, generated, fps)
            media.write_video(tmp / POSE, pose, fps)
            Image.fromarray(np.ascontiguousarray(reference)).save(tmp / REFERENCE)
            (tmp / UNIT_FILE).write_text(json.dumps({"format": FORMAT, "unit_id": unit_id, **meta}, indent=1))
    except OSError:
        if is_complete(root, unit_id):  # a concurrent writer of the same unit won the rename
            return None
        raise
    return final


def read_unit(folder: str | os.PathLike) -> Unit:
    folder = Path(folder)
    try:
        meta = json.loads((folder / UNIT_FILE).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"unit {folder}: unreadable {UNIT_FILE} ({e})") from None
    return Unit(folder.name, folder, meta)


def list_units(root: str | os.PathLike) -> list[Unit]:
    """The complete units under `root`, sorted by id."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"--units {root}: no such folder")
    return [read_unit(p) for p in sorted(root.iterdir())
            if p.is_dir() and not p.name.startswith(".") and (p / UNIT_FILE).is_file()]


def clean_partial(root: str | os.PathLike, unit_ids: Iterable[str]) -> int:
    """Removes the temporary folders that interrupted writes of these units left; returns how many.

    Only the given units' leftovers go, so hosts working on other shards of one output are untouched.
    """
    root = Path(root)
    n = 0
    for uid in unit_ids:
        for tmp in root.glob(f".{uid}.*.tmp"):
            shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
            n += 1
    return n


def read_scores(unit: Unit) -> dict:
    """{scorer name: {"scores": {dimension: value}, "mean": float}} saved for this unit ({} if none)."""
    p = unit.dir / SCORES
    if not p.is_file():
        return {}
    try:
        data = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}  # a damaged cache is rescored, not fatal
    return data if isinstance(data, dict) else {}


def write_scores(unit: Unit, scores: dict) -> None:
    write_text_atomic(unit.dir / SCORES, json.dumps(scores, indent=1, sort_keys=True))
