"""docs/tpu.md's on-paper TPU table is what benchmarks/tpu_estimate.py computes, and its inputs hold:
the project's FLOP count, the memory model against the three measured full-model steps, meshes the
trainer accepts."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import tpu_estimate as est  # noqa: E402


@pytest.fixture(scope="module")
def rows():
    return est.rows()


def test_doc_table_is_the_script_output(rows):
    doc = (ROOT / "docs" / "tpu.md").read_text().splitlines()
    head = est.table(rows).splitlines()[0]
    start = doc.index(head)
    end = next(i for i in range(start, len(doc)) if not doc[i].startswith("|"))
    assert "\n".join(doc[start:end]) == est.table(rows), "re-run python benchmarks/tpu_estimate.py into docs/tpu.md"
    assert "ESTIMATE" in "\n".join(doc)


def test_flops_and_step_time_arithmetic(rows):
    d, n = 3072, 40_816
    linear, attn, lora = 60 * 24 * d * d * n, 60 * 4 * n * n * d, 6 * 471_859_200 * (n - 256)
    assert est.clip_flops(n) == pytest.approx(2 * linear + 3.5 * attn + lora, rel=1e-12)
    r = next(r for r in rows if r.slice == "v5p-8" and r.frames == 49)
    assert r.step_s_high == pytest.approx(est.clip_flops(n) * r.global_batch / r.chips / (459e12 * 0.5), abs=0.01)
    assert r.step_s_low == pytest.approx(r.step_s_high * 5 / 3, abs=0.02)


def test_memory_model_matches_the_measured_steps():
    for name, (model, measured) in est.memory_model_check().items():
        assert abs(model - measured) <= 0.5, (name, model, measured)


def test_meshes_are_ones_the_trainer_takes(rows):
    for r in rows:
        mesh = dict(kv.split("=") for kv in r.mesh.split())
        mesh = {k: int(v) for k, v in mesh.items()}
        seq = mesh.get("sequence", 1)
        assert r.chips == mesh.get("data", 1) * mesh.get("fsdp", 1) * seq, r
        assert est.HEADS % seq == 0  # Ulysses, not the ring
        assert r.global_batch % (mesh.get("data", 1) * mesh.get("fsdp", 1)) == 0  # trainer's batch rule
        slices = 2 if r.slice.startswith("2 x") else 1
        assert mesh.get("data", 1) % slices == 0  # data spans the slices
        assert r.fits == (r.mem_gb * 1e9 <= est.CHIPS[r.chip]["hbm"] * est.HBM_USABLE)
    assert sum(not r.fits for r in rows) == 1  # v6e-8 at 121 frames
