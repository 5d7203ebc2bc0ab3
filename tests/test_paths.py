"""Cloud-storage paths (dreamactor_jax.utils): gs:// outputs through etils.epath, atomic writes.

The stand-in for Google Cloud Storage is fsspec's in-memory filesystem registered under the `gs`
protocol (what etils.epath resolves gs:// to when TensorFlow is absent), so every call goes
through the same epath code as on a TPU VM, with no network. Like GCS it has no atomic rename:
atomicity there comes from uploading a finished local file in one write. Orbax checkpoints on
gs:// go through tensorstore's own GCS driver, which no local stand-in reaches; the checkpoint
manager is checked here with a `file://` path (the same path handling).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from dreamactor_jax import utils


@pytest.fixture
def fake_gcs(monkeypatch):
    """gs:// served from memory for the duration of one test; yields that filesystem."""
    import importlib

    import fsspec
    from etils.epath import backend
    from fsspec.implementations.memory import MemoryFileSystem

    class FakeGCS(MemoryFileSystem):
        protocol = ("gs", "gcs")
        store: dict = {}
        pseudo_dirs = [""]

        @classmethod
        def _strip_protocol(cls, path):
            path = str(path)
            for p in ("gs://", "gcs://"):
                path = path.removeprefix(p)
            path = path.strip("/")
            return "/" + path if path else ""

    monkeypatch.setenv("EPATH_USE_TF", "false")  # epath would pick TensorFlow's gfile (real GCS) if installed
    registry = importlib.import_module("fsspec.registry")._registry
    saved = {p: registry.get(p) for p in ("gs", "gcs")}
    for p in ("gs", "gcs"):
        fsspec.register_implementation(p, FakeGCS, clobber=True)
    backend.fsspec_backend._get_filesystem.cache_clear()
    try:
        yield FakeGCS()
    finally:
        for p, cls in saved.items():
            if cls is None:
                registry.pop(p, None)
            else:
                registry[p] = cls
        backend.fsspec_backend._get_filesystem.cache_clear()
        FakeGCS.store.clear()


def test_path_kinds(tmp_path, monkeypatch):
    from pathlib import Path

    assert utils.is_remote("gs://b/x") and utils.is_remote("s3://b/x") and not utils.is_remote("/tmp/x")
    assert utils.as_path(f"file://{tmp_path}/a") == tmp_path / "a"
    assert isinstance(utils.as_path("runs/x"), Path)  # local paths stay pathlib paths
    assert str(utils.as_path("gs://bucket/run/x.json")) == "gs://bucket/run/x.json"  # not gs:/bucket
    monkeypatch.chdir(tmp_path)
    assert utils.resolve_path("runs") == tmp_path / "runs"
    assert str(utils.resolve_path("gs://bucket/run")) == "gs://bucket/run"


def test_atomic_writes_to_gs(fake_gcs):
    utils.write_text_atomic("gs://bucket/run/log.json", '{"a": 1}')
    assert fake_gcs.cat_file("gs://bucket/run/log.json") == b'{"a": 1}'
    assert json.loads(utils.as_path("gs://bucket/run/log.json").read_text()) == {"a": 1}
    # a writer that fails leaves the old object untouched and uploads nothing
    with pytest.raises(RuntimeError):
        with utils.atomic_path("gs://bucket/run/log.json") as tmp:
            tmp.write_text('{"a": 2, "half')
            raise RuntimeError("writer died")
    assert fake_gcs.cat_file("gs://bucket/run/log.json") == b'{"a": 1}'
    with pytest.raises(RuntimeError):
        with utils.atomic_path("gs://bucket/run/new.bin") as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("writer died")
    assert not fake_gcs.exists("gs://bucket/run/new.bin")
    # writers that sniff the extension get it on the local temporary
    with utils.atomic_path("gs://bucket/out/clip.mp4", suffix=".mp4") as tmp:
        assert tmp.suffix == ".mp4" and not utils.is_remote(tmp)
        tmp.write_bytes(b"\x00\x01video")
    assert fake_gcs.cat_file("gs://bucket/out/clip.mp4") == b"\x00\x01video"
    with pytest.raises(ValueError, match="a folder cannot be written atomically to an object store"):
        with utils.atomic_path("gs://bucket/prior", suffix="") as tmp:
            tmp.mkdir()
            (tmp / "a.txt").write_text("x")
    assert not fake_gcs.exists("gs://bucket/prior") and fake_gcs.find("gs://bucket/prior") == []
    with pytest.raises(FileNotFoundError, match="produced no file"):
        with utils.atomic_path("gs://bucket/nothing.txt"):
            pass


def test_local_atomic_path_unchanged(tmp_path):
    utils.write_text_atomic(f"file://{tmp_path}/sub/a.txt", "hi")
    assert (tmp_path / "sub" / "a.txt").read_text() == "hi"
    with pytest.raises(RuntimeError):
        with utils.atomic_path(tmp_path / "sub" / "a.txt") as tmp:
            tmp.write_text("half")
            raise RuntimeError
    assert (tmp_path / "sub" / "a.txt").read_text() == "hi" and sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["a.txt"]


def test_shards_on_gs(fake_gcs, tmp_path):
    """Shards written to gs:// are byte-identical to local ones; listing and sidecars work there."""
    pytest.importorskip("array_record")
    from dreamactor_jax.data import shards
    from dreamactor_jax.data.synthetic import synthetic_example

    rng = np.random.default_rng(0)
    ex = [(synthetic_example(rng, (2, 4, 8), channels=4, text_len=3, text_dim=8, pooled_dim=5),
           {"clip_id": f"c{i}"}) for i in range(3)]
    assert shards.write_shard("gs://bucket/shards/shard-00000.array_record", ex) == 3
    shards.write_shard(tmp_path / "shard-00000.array_record", ex)
    assert fake_gcs.cat_file("gs://bucket/shards/shard-00000.array_record") == (tmp_path / "shard-00000.array_record").read_bytes()
    fake_gcs.pipe_file("gs://bucket/shards/shard-00001.array_record", b"unfinished: no sidecar yet")
    with pytest.raises(ValueError, match="shard-00001.array_record: its index shard-00001.json is missing"):
        shards.list_shards("gs://bucket/shards")  # an unfinished shard is an error naming it, on gs:// too
    fake_gcs.rm_file("gs://bucket/shards/shard-00001.array_record")
    found = shards.list_shards("gs://bucket/shards")
    assert [str(p) for p in found] == ["gs://bucket/shards/shard-00000.array_record"]
    assert [r["clip_id"] for r in shards.read_sidecar(found[0])] == ["c0", "c1", "c2"]
    src = shards.ShardSource(found)  # sidecars only; records are read by array_record's own GCS reader
    assert len(src) == 3 and src.shape(2) == (2, 4, 8)


def test_checkpointer_takes_a_uri(tmp_path):
    """The run's checkpoint manager with a file:// URI: saved under the local folder, restored."""
    import jax.numpy as jnp

    from dreamactor_jax.train.checkpoint import Checkpointer

    state = {"step": jnp.asarray(3), "lora": {"a": jnp.arange(6.0).reshape(2, 3)}}
    ck = Checkpointer(f"file://{tmp_path}/run/checkpoints", {"model": "tiny"}, async_save=False)
    assert ck.directory == tmp_path / "run" / "checkpoints"
    ck.save(3, state, force=True)
    ck.wait()
    assert ck.latest_step() == 3 and (tmp_path / "run" / "checkpoints" / "3").is_dir()
    back = ck.restore(state)
    ck.close()
    np.testing.assert_array_equal(np.asarray(back["lora"]["a"]), np.arange(6.0).reshape(2, 3))


def test_video_output_to_gs(fake_gcs, tmp_path):
    """The sampler's --output: write_video encodes locally, then uploads the finished mp4."""
    from dreamactor_jax import media

    frames = np.random.default_rng(0).integers(0, 255, (3, 16, 16, 3), dtype=np.uint8)
    media.write_video("gs://bucket/out/clip.mp4", frames, 8.0)
    media.write_video(tmp_path / "clip.mp4", frames, 8.0)
    data = fake_gcs.cat_file("gs://bucket/out/clip.mp4")
    assert len(data) > 100 and data[4:8] == b"ftyp"
    assert len(data) == (tmp_path / "clip.mp4").stat().st_size
