"""Pseudo-pair planning (dreamactor_jax/e2e/plan.py): segments, references of another identity,
unit ids, shards, and the input folders / manifests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dreamactor_jax.e2e import plan


def _refs(n_ids=5, per_id=3):
    return [plan.Reference(f"r{i}_{j}", Path(f"r{i}_{j}.png"), f"id{i}") for i in range(n_ids) for j in range(per_id)]


def test_segments_cover_every_position_uniformly_and_refuse_short_videos():
    rng = np.random.default_rng(0)
    starts = [plan.choose_segment(30, 9, rng) for _ in range(4000)]
    assert min(starts) == 0 and max(starts) == 21  # every start that leaves 9 frames, no further
    counts = np.bincount(starts, minlength=22)
    assert counts.min() > 0.6 * counts.mean()       # roughly uniform over the 22 positions
    assert plan.choose_segment(9, 9, rng) == 0
    assert plan.choose_segment(8, 9, rng) is None
    with pytest.raises(ValueError, match="segment length"):
        plan.choose_segment(10, 0, rng)


def test_reference_is_never_of_the_source_identity():
    pool = _refs()
    rng = np.random.default_rng(1)
    drawn = [plan.draw_reference(pool, "id2", rng) for _ in range(600)]
    assert all(r.identity != "id2" for r in drawn)
    assert {r.id for r in drawn} == {r.id for r in pool if r.identity != "id2"}  # every other image can be drawn
    assert plan.draw_reference([r for r in pool if r.identity == "id2"], "id2", rng) is None


def test_a_units_draws_depend_only_on_seed_source_and_index():
    pool = _refs()
    src = plan.Source("dance/a", Path("a.mp4"), "dance/a")
    a = [(plan.segment_start(3, src.id, k, 100, 9), plan.unit_reference(3, src, k, pool).id,
          plan.noise_seed(3, src.id, k)) for k in range(6)]
    b = [(plan.segment_start(3, src.id, k, 100, 9), plan.unit_reference(3, src, k, pool).id,
          plan.noise_seed(3, src.id, k)) for k in range(6)]
    assert a == b
    assert len({x[0] for x in a}) > 1 and len({x[2] for x in a}) == 6  # units differ from each other
    assert plan.segment_start(4, src.id, 0, 100, 9) != a[0][0] or plan.noise_seed(4, src.id, 0) != a[0][2]
    # growing the pool leaves the segment and the noise of a unit as they were
    bigger = pool + [plan.Reference("new", Path("new.png"), "new")]
    assert [plan.segment_start(3, src.id, k, 100, 9) for k in range(6)] == [x[0] for x in a]
    assert plan.unit_reference(3, src, 0, bigger) is not None


def test_unit_ids_are_folder_safe_and_distinct():
    ids = [plan.unit_id(s, k) for s in ("a", "dance/a", "dance_a", "x y", "../up", "") for k in (0, 1)]
    assert len(set(ids)) == len(ids)
    assert all("/" not in i and " " not in i and not i.startswith(".") for i in ids)
    assert plan.unit_id("clip7", 2) == "clip7-u002"


def test_shards_are_disjoint_and_complete():
    items = list(range(23))
    parts = [plan.shard(items, i, 4) for i in range(4)]
    assert sorted(sum(parts, [])) == items
    assert max(map(len, parts)) - min(map(len, parts)) <= 1
    assert plan.parse_shard("2/5") == (2, 5) and plan.parse_shard(" 0 / 1 ") == (0, 1)
    for bad in ("5/5", "1", "-1/2", "a/b", ""):
        with pytest.raises(ValueError, match="--shard"):
            plan.parse_shard(bad)


def test_inputs_from_folders_and_manifests(tmp_path):
    vids = tmp_path / "videos"
    (vids / "sub").mkdir(parents=True)
    for name in ("b.mp4", "sub/a.MOV", "notes.txt", ".hidden.mp4"):
        (vids / name).write_bytes(b"x")
    sources, problems = plan.read_sources(vids)
    assert [(s.id, s.identity) for s in sources] == [("b", "b"), ("sub/a", "sub/a")] and problems == []

    refs = tmp_path / "refs"
    (refs / "animal").mkdir(parents=True)
    for name in ("animal/cat.png", "man.JPG"):
        (refs / name).write_bytes(b"x")
    pool, _ = plan.read_references(refs)
    assert [(r.id, r.identity, r.tags) for r in pool] == [("animal/cat", "animal/cat", ("animal",)), ("man", "man", ())]

    m = tmp_path / "refs.jsonl"
    m.write_text("\n".join([json.dumps({"image": "refs/man.JPG", "identity": "alice", "tags": "human"}),
                            "not json", json.dumps({"id": "x"}),
                            json.dumps({"image": "refs/animal/cat.png", "id": "cat", "tags": ["animal", "cat"]})]))
    pool, problems = plan.read_references(m)
    assert [(r.id, r.identity, r.tags, r.path) for r in pool] == [
        ("cat", "cat", ("animal", "cat"), tmp_path / "refs/animal/cat.png"),
        ("refs/man", "alice", ("human",), tmp_path / "refs/man.JPG")]
    assert len(problems) == 2 and "refs.jsonl:2" in problems[0] and "refs.jsonl:3" in problems[1]

    m = tmp_path / "videos.jsonl"
    m.write_text(json.dumps({"video": "videos/b.mp4", "id": "b", "identity": "alice"}) + "\n"
                 + json.dumps({"video": "videos/sub/a.MOV", "id": "b"}) + "\n")
    with pytest.raises(ValueError, match="'b' appears twice"):
        plan.read_sources(m)
    with pytest.raises(FileNotFoundError, match="--references"):
        plan.read_references(tmp_path / "missing")
