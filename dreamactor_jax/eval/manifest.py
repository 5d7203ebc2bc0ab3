"""The benchmark manifest: driving videos, reference images, their tags, and which pairs to run.

One JSON object per line (`#` lines and blank lines are ignored). Four record types:

    {"type": "bench", "name": "awbench-example", "version": 1}                       (optional, first)
    {"type": "driving", "id": "dance", "path": "dance1_right.mp4", "subject": "human",
     "region": "full", "camera": "static", "persons": 1, "tags": {"activity": "dancing"}}
    {"type": "reference", "id": "cup", "path": "cup-character.png", "subject": "non-human",
     "region": "full", "persons": 1, "tags": {"kind": "cartoon"}}
    {"type": "pair", "driving": "dance", "reference": "cup"}
    {"type": "pairs", "drivings": "*", "references": ["cup", "woman"]}              (a cross product)

Drivings: `path` is the raw driving video; `pose` (optional) an already rendered skeleton video
(used by pose checkpoints instead of estimating poses); `keypoints` (optional) a PoseClip JSON of
the driving poses (`tools/extract_pose.py --json`), used by motion fidelity. A driving needs `path`
or `pose`. Tags: `subject` human / non-human, `region` face / upper / full (body region in view),
`camera` static / moving, `persons` >= 1; `tags` holds free string tags (age, activity, ...) that
the report also tabulates. References carry `subject`, `region`, `persons` and `tags`.
Pairs: `id` (default `<driving>__<reference>`), and optionally `ground_truth` (a video of the
reference character performing the driving motion, or "driving" when the driving video itself is
the truth, as in self-reenactment where the reference is its first frame), `seed`, `frames`,
`text_id` (an id of the `--text-embeddings` file handed to the sampler) and `tags`.

Paths are relative to `root` (the `--root` flag) or else to the manifest's folder. A malformed
manifest is a ValueError naming the file, the line and what is wrong; a missing media file is not
(the runner counts it as a skipped case and reports it).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

SUBJECTS = ("human", "non-human")
REGIONS = ("face", "upper", "full")
CAMERAS = ("static", "moving")
FORMAT_VERSION = 1

_FIELDS = {
    "bench": {"type", "name", "version", "description"},
    "driving": {"type", "id", "path", "pose", "keypoints", "subject", "region", "camera", "persons", "tags"},
    "reference": {"type", "id", "path", "subject", "region", "persons", "tags"},
    "pair": {"type", "id", "driving", "reference", "ground_truth", "seed", "frames", "text_id", "tags"},
    "pairs": {"type", "drivings", "references"},
}


@dataclasses.dataclass(frozen=True)
class Driving:
    id: str
    path: Path | None            # the raw driving video
    subject: str
    region: str
    camera: str
    persons: int = 1
    pose: Path | None = None     # an already rendered skeleton video
    keypoints: Path | None = None  # PoseClip JSON of the driving poses
    tags: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Reference:
    id: str
    path: Path
    subject: str
    region: str
    persons: int = 1
    tags: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Pair:
    id: str
    driving: str
    reference: str
    ground_truth: Path | str | None = None  # a path, or "driving"
    seed: int | None = None
    frames: int | None = None
    text_id: str | None = None
    tags: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Bench:
    name: str
    source: Path
    drivings: dict[str, Driving]
    references: dict[str, Reference]
    pairs: tuple[Pair, ...]

    def case(self, pair: Pair) -> tuple[Driving, Reference]:
        return self.drivings[pair.driving], self.references[pair.reference]

    def ground_truth(self, pair: Pair) -> Path | None:
        if pair.ground_truth == "driving":
            return self.drivings[pair.driving].path
        return pair.ground_truth

    def tags(self, pair: Pair) -> dict[str, str]:
        """The tags a pair is tabulated by (report columns -> values), in a stable order."""
        d, r = self.case(pair)
        out = {"driving": d.subject, "body region": d.region, "camera": d.camera,
               "driving persons": "1" if d.persons == 1 else "2+", "reference": r.subject,
               "pair kind": f"{d.subject} -> {r.subject}"}
        for prefix, tags in (("driving ", d.tags), ("reference ", r.tags), ("", pair.tags)):
            for k, v in tags.items():
                out[f"{prefix}{k}"] = str(v)
        return out

    def missing_files(self) -> list[str]:
        """'<what> <id>: <path>' for every media file the manifest names that does not exist."""
        out = []
        for d in self.drivings.values():
            for what, p in (("driving", d.path), ("driving pose", d.pose), ("driving keypoints", d.keypoints)):
                if p is not None and not p.is_file():
                    out.append(f"{what} {d.id}: {p}")
        for r in self.references.values():
            if not r.path.is_file():
                out.append(f"reference {r.id}: {r.path}")
        for p in self.pairs:
            gt = p.ground_truth  # "driving" is checked with the driving
            if isinstance(gt, Path) and not gt.is_file():
                out.append(f"pair {p.id} ground truth: {gt}")
        return out


class _Line:
    """Field access with one-line errors naming the file and line."""

    def __init__(self, where: str, rec: dict):
        self.where, self.rec = where, rec

    def error(self, msg: str) -> ValueError:
        return ValueError(f"{self.where}: {msg}")

    def str(self, key: str, *, required: bool = True) -> str | None:
        v = self.rec.get(key)
        if v is None and not required:
            return None
        if not isinstance(v, str) or not v.strip():
            raise self.error(f"'{key}' must be a non-empty string, got {v!r}")
        return v

    def choice(self, key: str, allowed: tuple[str, ...]) -> str:
        v = self.rec.get(key)
        if v not in allowed:
            raise self.error(f"'{key}' must be one of {'/'.join(allowed)}, got {v!r}")
        return v

    def int(self, key: str, *, default: int | None, minimum: int) -> int | None:
        v = self.rec.get(key, default)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise self.error(f"'{key}' must be an integer >= {minimum}, got {v!r}")
        return v

    def tags(self) -> dict:
        v = self.rec.get("tags", {})
        if not isinstance(v, dict) or not all(isinstance(k, str) and isinstance(x, (str, int, float, bool))
                                              for k, x in v.items()):
            raise self.error(f"'tags' must be an object of string/number values, got {v!r}")
        return {k: str(x) for k, x in v.items()}

    def ids(self, key: str, known: dict, what: str) -> list[str]:
        v = self.rec.get(key)
        if v == "*":
            return list(known)
        if not isinstance(v, list) or not v or not all(isinstance(x, str) for x in v):
            raise self.error(f"'{key}' must be \"*\" or a non-empty list of {what} ids, got {v!r}")
        for x in v:
            if x not in known:
                raise self.error(f"{what} {x!r} is not defined above this line")
        return v


def _resolve(value: str | None, base: Path) -> Path | None:
    if value is None:
        return None
    p = Path(os.path.expanduser(value))
    return p if p.is_absolute() else base / p


def load_bench(path: str | os.PathLike, root: str | os.PathLike | None = None) -> Bench:
    """Reads and validates a manifest; media paths resolve against `root` or the manifest's folder."""
    path = Path(path)
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"--bench {path}: no such manifest") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"--bench {path}: cannot read it ({e})") from None
    base = Path(root) if root is not None else path.parent
    if root is not None and not base.is_dir():
        raise FileNotFoundError(f"--root {base}: no such folder")
    name, drivings, refs, pairs = path.stem, {}, {}, []
    for n, raw in enumerate(text.splitlines(), 1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        where = f"{path} line {n}"
        try:
            rec = json.loads(raw)
        except json.JSONDecodeError as e:
            raise ValueError(f"{where}: not JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(rec, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(rec).__name__}")
        kind = rec.get("type")
        if kind not in _FIELDS:
            raise ValueError(f"{where}: 'type' must be one of {'/'.join(_FIELDS)}, got {kind!r}")
        unknown = sorted(set(rec) - _FIELDS[kind])
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {', '.join(unknown)} for a {kind} "
                             f"(allowed: {', '.join(sorted(_FIELDS[kind] - {'type'}))})")
        ln = _Line(where, rec)
        if kind == "bench":
            if drivings or refs or pairs:
                raise ln.error("the bench record must come first")
            name = ln.str("name")
            version = ln.int("version", default=FORMAT_VERSION, minimum=1)
            if version > FORMAT_VERSION:
                raise ln.error(f"manifest format version {version} is newer than this code reads ({FORMAT_VERSION})")
        elif kind == "driving":
            rid = ln.str("id")
            if rid in drivings:
                raise ln.error(f"driving id {rid!r} is defined twice")
            p, pose = ln.str("path", required=False), ln.str("pose", required=False)
            if p is None and pose is None:
                raise ln.error(f"driving {rid!r} needs 'path' (a video) or 'pose' (a rendered skeleton video)")
            drivings[rid] = Driving(
                rid, _resolve(p, base), ln.choice("subject", SUBJECTS), ln.choice("region", REGIONS),
                ln.choice("camera", CAMERAS), ln.int("persons", default=1, minimum=1), _resolve(pose, base),
                _resolve(ln.str("keypoints", required=False), base), ln.tags())
        elif kind == "reference":
            rid = ln.str("id")
            if rid in refs:
                raise ln.error(f"reference id {rid!r} is defined twice")
            refs[rid] = Reference(rid, _resolve(ln.str("path"), base), ln.choice("subject", SUBJECTS),
                                  ln.choice("region", REGIONS), ln.int("persons", default=1, minimum=1), ln.tags())
        elif kind == "pair":
            d, r = ln.str("driving"), ln.str("reference")
            for what, x, known in (("driving", d, drivings), ("reference", r, refs)):
                if x not in known:
                    raise ln.error(f"{what} {x!r} is not defined above this line")
            gt = ln.str("ground_truth", required=False)
            pairs.append(Pair(ln.str("id", required=False) or f"{d}__{r}", d, r,
                              gt if gt == "driving" else _resolve(gt, base), ln.int("seed", default=None, minimum=0),
                              ln.int("frames", default=None, minimum=1), ln.str("text_id", required=False), ln.tags()))
        else:  # pairs: a cross product
            for d in ln.ids("drivings", drivings, "driving"):
                for r in ln.ids("references", refs, "reference"):
                    pairs.append(Pair(f"{d}__{r}", d, r))
        if pairs and not _safe_id(pairs[-1].id):
            raise ValueError(f"{where}: pair id {pairs[-1].id!r} must be letters, digits, '.', '_' or '-' "
                             "(it names the case's folder)")
    seen = set()
    for p in pairs:
        if p.id in seen:
            raise ValueError(f"{path}: pair id {p.id!r} appears twice")
        seen.add(p.id)
    if not pairs:
        raise ValueError(f"{path}: defines no pairs (add 'pair' or 'pairs' records)")
    return Bench(name, path, drivings, refs, tuple(pairs))


def _safe_id(s: str) -> bool:
    return bool(s) and s not in (".", "..") and all(c.isalnum() or c in "._-" for c in s)


def record_lines(drivings: list[Driving], references: list[Reference], pairs: list[Pair], *,
                 name: str, root: str | os.PathLike | None = None) -> list[str]:
    """Manifest lines for the given entries (paths written relative to `root` where they are under it)."""
    def rel(p):
        if p is None or isinstance(p, str):
            return p
        if root is not None:
            try:
                return str(Path(p).relative_to(root))
            except ValueError:
                pass
        return str(p)

    def clean(d: dict[str, Any]) -> str:
        return json.dumps({k: v for k, v in d.items() if v not in (None, {}, [])}, ensure_ascii=False)

    lines = [clean({"type": "bench", "name": name, "version": FORMAT_VERSION})]
    for d in drivings:
        lines.append(clean({"type": "driving", "id": d.id, "path": rel(d.path), "pose": rel(d.pose),
                            "keypoints": rel(d.keypoints), "subject": d.subject, "region": d.region,
                            "camera": d.camera, "persons": d.persons, "tags": d.tags}))
    for r in references:
        lines.append(clean({"type": "reference", "id": r.id, "path": rel(r.path), "subject": r.subject,
                            "region": r.region, "persons": r.persons, "tags": r.tags}))
    for p in pairs:
        lines.append(clean({"type": "pair", "id": p.id, "driving": p.driving, "reference": p.reference,
                            "ground_truth": rel(p.ground_truth), "seed": p.seed, "frames": p.frames,
                            "text_id": p.text_id, "tags": p.tags}))
    return lines


def pick_pairs(drivings: list[Driving], references: list[Reference], per_driving: int = 2, *,
               seed: int = 0, balance: str = "subject") -> list[Pair]:
    """An AWBench-like pairing: each driving gets `per_driving` references, drawn so that each
    reference `balance` value (e.g. human / non-human) is used about equally often, and each
    reference about equally often overall (deterministic for a seed)."""
    import random

    if not drivings or not references:
        raise ValueError("pick_pairs: need at least one driving and one reference")
    rng = random.Random(seed)
    groups: dict[str, list[Reference]] = {}
    for r in references:
        groups.setdefault(getattr(r, balance), []).append(r)
    used = {r.id: 0 for r in references}
    keys = sorted(groups)
    pairs, k = [], 0
    for d in drivings:
        chosen: list[Reference] = []
        for _ in range(min(per_driving, len(references))):
            for _try in range(len(keys)):
                pool = [r for r in groups[keys[k % len(keys)]] if r not in chosen]
                k += 1
                if pool:
                    least = min(used[r.id] for r in pool)
                    r = rng.choice([r for r in pool if used[r.id] == least])
                    chosen.append(r)
                    used[r.id] += 1
                    break
        pairs.extend(Pair(f"{d.id}__{r.id}", d.id, r.id) for r in chosen)
    return pairs
