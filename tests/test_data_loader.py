"""The Grain loader: shape buckets, seeded order, per-process slices, exact resume from iterator state."""

import numpy as np
import pytest

from dreamactor_jax.data.loader import epoch_plan, make_dataset
from dreamactor_jax.data.synthetic import write_synthetic_shards

SHAPES = [(2, 3, 4), (1, 2, 4), (2, 2, 6)]


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("shards")
    write_synthetic_shards(d, SHAPES, clips_per_shape=5, shards=3, seed=1)
    return d


def _take(it, n):
    return [next(it) for _ in range(n)]


def test_batches_share_one_shape_and_cover_every_bucket(shard_dir):
    it = iter(make_dataset(shard_dir, global_batch=2, seed=0))
    batches = _take(it, 12)  # 6 batches per epoch (2 per shape), two epochs
    shapes = [b["target"].shape for b in batches]
    assert all(s[0] == 2 for s in shapes)
    assert {s[1:4] for s in shapes} == set(SHAPES)
    for b in batches:
        assert b["canvas"].shape == b["target"].shape and b["mask"].shape[-1] == 1
    first, second = [np.concatenate([b["index"] for b in batches[k:k + 6]]) for k in (0, 6)]
    assert len(set(first)) == 12 and not np.array_equal(first, second)  # reshuffled per epoch


def test_seed_fixes_the_order(shard_dir):
    a = [b["index"].tolist() for b in _take(iter(make_dataset(shard_dir, global_batch=2, seed=3)), 8)]
    b = [b["index"].tolist() for b in _take(iter(make_dataset(shard_dir, global_batch=2, seed=3)), 8)]
    c = [b["index"].tolist() for b in _take(iter(make_dataset(shard_dir, global_batch=2, seed=4)), 8)]
    assert a == b and a != c


def test_resume_from_state_continues_exactly(shard_dir):
    ds = make_dataset(shard_dir, global_batch=2, seed=0)
    straight = [b["index"].tolist() for b in _take(iter(ds), 10)]
    it = iter(make_dataset(shard_dir, global_batch=2, seed=0))
    head = [b["index"].tolist() for b in _take(it, 4)]
    state = it.get_state()
    it2 = iter(make_dataset(shard_dir, global_batch=2, seed=0))
    it2.set_state(state)
    tail = [b["index"].tolist() for b in _take(it2, 6)]
    assert head + tail == straight


def test_processes_split_each_global_batch(shard_dir):
    full = _take(iter(make_dataset(shard_dir, global_batch=4, seed=0, shuffle=True)), 3)
    parts = [_take(iter(make_dataset(shard_dir, global_batch=4, seed=0, process_index=p,
                                     process_count=2)), 3) for p in range(2)]
    for k in range(3):
        got = np.concatenate([parts[0][k]["index"], parts[1][k]["index"]])
        np.testing.assert_array_equal(got, full[k]["index"])
        np.testing.assert_array_equal(parts[1][k]["target"], full[k]["target"][2:])


def test_bad_arguments(shard_dir):
    with pytest.raises(ValueError, match="multiple of the process count"):
        make_dataset(shard_dir, global_batch=3, seed=0, process_count=2)
    with pytest.raises(ValueError, match="no latent shape has that many"):
        make_dataset(shard_dir, global_batch=6, seed=0)
    with pytest.raises(FileNotFoundError):
        make_dataset(shard_dir / "nope", global_batch=2, seed=0)


def test_epoch_plan_drops_only_partial_batches():
    shapes = [(1, 1, 2)] * 5 + [(2, 1, 2)] * 2
    plan = epoch_plan(shapes, 2, seed=0, epoch=0)
    assert len(plan) == 3 and all(len({shapes[i] for i in b}) == 1 for b in plan)
