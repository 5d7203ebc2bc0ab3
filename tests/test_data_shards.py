"""Record schema, atomic shard writing and the random-access source (clear errors on corruption)."""

import json

import ml_dtypes
import numpy as np
import pytest

from dreamactor_jax.data import shards as S
from dreamactor_jax.data.synthetic import synthetic_example, write_synthetic_shards


def _example(seed=0, shape=(2, 3, 4)):
    return synthetic_example(np.random.default_rng(seed), shape)


def test_encode_decode_roundtrip_keeps_values_dtypes_and_meta():
    ex = _example()
    ex["text"] = ex["text"].astype(ml_dtypes.bfloat16)
    meta = {"clip_id": "a/b#3", "fps": 24.0, "caption": "a person waves"}
    arrays, got_meta = S.decode_example(S.encode_example(ex, meta))
    assert got_meta == meta
    assert set(arrays) == set(ex)
    for k in ex:
        assert arrays[k].dtype == ex[k].dtype and arrays[k].shape == ex[k].shape
        np.testing.assert_array_equal(arrays[k], ex[k])


def test_bad_example_and_bad_record_raise_clear_errors():
    ex = _example()
    bad = dict(ex, canvas=ex["canvas"][:, :, :2])
    with pytest.raises(ValueError, match="canvas shape"):
        S.encode_example(bad)
    with pytest.raises(ValueError, match="missing arrays"):
        S.encode_example({k: v for k, v in ex.items() if k != "mask"})
    data = S.encode_example(ex)
    with pytest.raises(ValueError, match="bad magic"):
        S.decode_example(b"XXXX" + data[4:], "rec7")
    with pytest.raises(ValueError, match="truncated"):
        S.decode_example(data[:-5], "rec7")
    header_v2 = data.replace(b'"schema_version": 1', b'"schema_version": 9')
    with pytest.raises(ValueError, match="schema version 9"):
        S.decode_example(header_v2)


def test_write_and_read_shards(tmp_path):
    paths = write_synthetic_shards(tmp_path, [(2, 3, 4), (1, 2, 4)], clips_per_shape=3, shards=2)
    assert S.list_shards(tmp_path) == sorted(paths)
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind
    src = S.ShardSource(paths)
    assert len(src) == 6
    ids = set()
    for i in range(len(src)):
        arrays, meta = src[i]
        assert arrays["target"].shape[:3] == src.shape(i)
        ids.add(meta["clip_id"])
    assert len(ids) == 6
    with pytest.raises(IndexError):
        src[6]


def test_shard_without_sidecar_is_an_error_naming_it(tmp_path):
    (p,) = write_synthetic_shards(tmp_path, [(2, 3, 4)], clips_per_shape=2, shards=1)
    assert S.list_shards(tmp_path) == [p]
    (tmp_path / ".writer-tmp.array_record").write_bytes(b"x")  # hidden temporaries are ignored
    assert S.list_shards(tmp_path) == [p]
    index = S.sidecar_path(p)
    saved = index.read_bytes()
    index.unlink()
    with pytest.raises(ValueError, match=rf"shard {p}: its index {index.name} is missing"):
        S.list_shards(tmp_path)
    index.write_bytes(saved)
    p.rename(tmp_path / "elsewhere.bin")
    with pytest.raises(ValueError, match=rf"shard index {index}: its shard {p.name} is missing"):
        S.list_shards(tmp_path)


def test_partial_shard_set_is_an_error_naming_the_missing_shard(tmp_path):
    paths = write_synthetic_shards(tmp_path, [(2, 3, 4)], clips_per_shape=3, shards=3)
    assert S.list_shards(tmp_path) == paths
    paths[1].unlink()
    S.sidecar_path(paths[1]).unlink()
    with pytest.raises(ValueError, match=r"synthetic-\*-of-00003 is incomplete: 1 of 3 shards missing, "
                                         r"e.g. synthetic-00001-of-00003.array_record"):
        S.list_shards(tmp_path)


def test_shard_fingerprint_sees_names_sizes_and_contents(tmp_path):
    a = write_synthetic_shards(tmp_path / "a", [(2, 3, 4)], clips_per_shape=2, shards=2, seed=0)
    b = write_synthetic_shards(tmp_path / "b", [(2, 3, 4)], clips_per_shape=2, shards=2, seed=0)
    c = write_synthetic_shards(tmp_path / "c", [(2, 2, 4)], clips_per_shape=2, shards=2, seed=0)
    fa = S.shard_fingerprint(a)
    assert fa == S.shard_fingerprint(b)  # the same data in another folder: the same fingerprint
    assert [f["records"] for f in fa] == [1, 1] and all(f["bytes"] > 0 for f in fa)
    assert S.shard_fingerprint(c) != fa
    assert S.shard_fingerprint(a[:1]) != fa


@pytest.mark.parametrize("how", ["garbage", "truncate"])
def test_corrupt_shard_error_names_the_file(tmp_path, how):
    (p,) = write_synthetic_shards(tmp_path, [(2, 3, 4)], clips_per_shape=3, shards=1)
    data = bytearray(p.read_bytes())
    if how == "garbage":
        rng = np.random.default_rng(0)
        data[64:-64] = rng.integers(0, 256, len(data) - 128, dtype=np.uint8).tobytes()
    else:
        data = data[: len(data) // 2]
    p.write_bytes(bytes(data))
    src = S.ShardSource([p])
    with pytest.raises(ValueError, match=str(p.name)):
        for i in range(len(src)):
            src[i]


def test_sidecar_of_another_schema_version_is_refused(tmp_path):
    (p,) = write_synthetic_shards(tmp_path, [(2, 3, 4)], clips_per_shape=1, shards=1)
    side = S.sidecar_path(p)
    info = json.loads(side.read_text())
    info["schema_version"] = 0
    side.write_text(json.dumps(info))
    with pytest.raises(ValueError, match="schema version 0"):
        S.ShardSource([p])
