"""The bench manifest: parsing, tags, one-line validation errors, the shipped example, pairing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dreamactor_jax.eval.manifest import Driving, Reference, load_bench, pick_pairs, record_lines

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT.parent / "shared" / "assets"
EXAMPLE = ROOT / "benchmarks" / "awbench_example.jsonl"

GOOD = [
    {"type": "bench", "name": "mini"},
    {"type": "driving", "id": "d1", "path": "videos/d1.mp4", "subject": "human", "region": "full", "camera": "static",
     "tags": {"age": "child"}},
    {"type": "driving", "id": "d2", "pose": "videos/d2_kps.mp4", "subject": "human", "region": "face",
     "camera": "moving", "persons": 2},
    {"type": "reference", "id": "r1", "path": "refs/r1.png", "subject": "human", "region": "full"},
    {"type": "reference", "id": "cat", "path": "/abs/cat.png", "subject": "non-human", "region": "upper",
     "tags": {"kind": "animal"}},
    {"type": "pair", "driving": "d1", "reference": "r1", "ground_truth": "driving", "seed": 3, "text_id": "p1"},
    {"type": "pairs", "drivings": ["d2"], "references": "*"},
]


def write(tmp_path, records, extra_lines=()):
    p = tmp_path / "bench.jsonl"
    p.write_text("\n".join(["# a comment", ""] + [json.dumps(r) for r in records] + list(extra_lines)) + "\n")
    return p


def test_parses_records_tags_and_paths(tmp_path):
    bench = load_bench(write(tmp_path, GOOD))
    assert bench.name == "mini"
    assert [p.id for p in bench.pairs] == ["d1__r1", "d2__r1", "d2__cat"]
    d1, d2 = bench.drivings["d1"], bench.drivings["d2"]
    assert d1.path == tmp_path / "videos/d1.mp4" and d1.pose is None
    assert d2.path is None and d2.pose == tmp_path / "videos/d2_kps.mp4" and d2.persons == 2
    assert bench.references["cat"].path == Path("/abs/cat.png")
    p = bench.pairs[0]
    assert (p.seed, p.text_id) == (3, "p1") and bench.ground_truth(p) == d1.path
    tags = bench.tags(bench.pairs[2])
    assert tags["pair kind"] == "human -> non-human" and tags["driving persons"] == "2+"
    assert tags["body region"] == "face" and tags["camera"] == "moving" and tags["reference kind"] == "animal"
    assert bench.tags(p)["driving age"] == "child"
    # --root replaces the manifest's folder as the base of relative paths
    (tmp_path / "elsewhere").mkdir()
    moved = load_bench(write(tmp_path, GOOD), tmp_path / "elsewhere")
    assert moved.drivings["d1"].path == tmp_path / "elsewhere/videos/d1.mp4"
    assert len(bench.missing_files()) == 4  # nothing exists: counted, not an error


@pytest.mark.parametrize("change,needle", [
    (lambda r: r[1].update(region="torso"), "line 4: 'region' must be one of face/upper/full, got 'torso'"),
    (lambda r: r[1].update(subject="robot"), "'subject' must be one of human/non-human"),
    (lambda r: r[1].update(camera=None), "'camera' must be one of static/moving"),
    (lambda r: r[1].update(persons=0), "'persons' must be an integer >= 1"),
    (lambda r: r[1].pop("path"), "needs 'path' (a video) or 'pose'"),
    (lambda r: r[1].update(colour="red"), "unknown field(s) colour for a driving"),
    (lambda r: r[2].update(id="d1"), "driving id 'd1' is defined twice"),
    (lambda r: r[5].update(reference="nobody"), "reference 'nobody' is not defined above this line"),
    (lambda r: r[5].update(seed=-1), "'seed' must be an integer >= 0"),
    (lambda r: r[5].update(id="../escape"), "pair id '../escape' must be letters"),
    (lambda r: r[6].update(drivings=[]), "'drivings' must be \"*\" or a non-empty list"),
    (lambda r: r[3].update(tags=["a"]), "'tags' must be an object"),
    (lambda r: r[0].update(version=9), "format version 9 is newer"),
    (lambda r: r.insert(1, {"type": "sample"}), "'type' must be one of bench/driving/reference/pair/pairs"),
    (lambda r: r.append(r[5]), "pair id 'd1__r1' appears twice"),
    (lambda r: r.append(r.pop(0)), "the bench record must come first"),
])
def test_bad_manifests_are_one_line_errors(tmp_path, change, needle):
    recs = json.loads(json.dumps(GOOD))
    change(recs)
    with pytest.raises(ValueError) as e:
        load_bench(write(tmp_path, recs))
    msg = str(e.value)
    assert needle in msg and "\n" not in msg and "bench.jsonl" in msg, msg


def test_not_json_and_empty_manifests(tmp_path):
    with pytest.raises(ValueError, match=r"line 10: not JSON"):
        load_bench(write(tmp_path, GOOD, ["{oops"]))
    with pytest.raises(ValueError, match="expected a JSON object, got list"):
        load_bench(write(tmp_path, GOOD, ["[1, 2]"]))
    with pytest.raises(ValueError, match="defines no pairs"):
        load_bench(write(tmp_path, GOOD[:5]))
    with pytest.raises(FileNotFoundError, match="no such manifest"):
        load_bench(tmp_path / "nope.jsonl")
    with pytest.raises(FileNotFoundError, match="--root"):
        load_bench(write(tmp_path, GOOD), tmp_path / "no_such_root")


def test_shipped_example_is_valid_and_covers_the_tags():
    bench = load_bench(EXAMPLE, ASSETS if ASSETS.is_dir() else None)  # the structure holds without the assets
    assert len(bench.pairs) == 8 and len(bench.drivings) == 4 and len(bench.references) == 7
    kinds = {bench.tags(p)["pair kind"] for p in bench.pairs}
    regions = {bench.drivings[p.driving].region for p in bench.pairs}
    assert kinds == {"human -> human", "human -> non-human"} and regions == {"face", "upper", "full"}
    assert {d.camera for d in bench.drivings.values()} == {"static", "moving"}
    assert bench.drivings["kps"].path is None and bench.drivings["kps"].pose.name == "anyone-video-2_kps.mp4"
    if ASSETS.is_dir():
        assert bench.missing_files() == []


def test_pick_pairs_balances_reference_subjects_and_round_trips(tmp_path):
    drv = [Driving(f"d{i}", tmp_path / f"d{i}.mp4", "human", "full", "static") for i in range(6)]
    refs = [Reference(f"h{i}", tmp_path / f"h{i}.png", "human", "full") for i in range(4)] + \
           [Reference(f"n{i}", tmp_path / f"n{i}.png", "non-human", "full") for i in range(2)]
    pairs = pick_pairs(drv, refs, per_driving=2, seed=1)
    assert len(pairs) == 12 and len({p.id for p in pairs}) == 12
    subj = [("n" if p.reference.startswith("n") else "h") for p in pairs]
    assert subj.count("n") == 6 and subj.count("h") == 6  # alternates between the two groups
    uses = {r.id: sum(p.reference == r.id for p in pairs) for r in refs}
    for g in "hn":  # within a group, every reference is used about equally often
        used = [v for k, v in uses.items() if k.startswith(g)]
        assert max(used) - min(used) <= 1, uses
    assert pick_pairs(drv, refs, 2, seed=1) == pairs  # deterministic
    path = tmp_path / "built.jsonl"
    path.write_text("\n".join(record_lines(drv, refs, pairs, name="built", root=tmp_path)) + "\n")
    bench = load_bench(path)
    assert bench.name == "built" and [p.id for p in bench.pairs] == [p.id for p in pairs]
    assert bench.drivings["d0"].path == tmp_path / "d0.mp4"
    assert '"d0.mp4"' in path.read_text()  # written relative to root
