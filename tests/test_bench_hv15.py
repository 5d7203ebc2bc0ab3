"""benchmarks/bench_train.py's CPU smoke mode on the second backbone (the GPU figures for HunyuanVideo-1.5
are not measured yet: this keeps the benchmark runnable)."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # one compile of the tiny train step and its init (~20-40 s on 2 busy cores)
def test_bench_train_tiny_hv15_runs():
    spec = importlib.util.spec_from_file_location("bench_train", ROOT / "benchmarks" / "bench_train.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rows = mod.run(argparse.Namespace(model="hv15", part="blocks", steps=1, tiny=True, json=None, remat=None))["rows"]
    (row,) = rows
    assert row["model"] == "hunyuan_video15" and row["blocks"] == "2+0" and row["fits"]
    assert row["video_tokens"] == 3 * 2 * 4  # 9 frames of a 32x32 panel: 16x VAE, canvas 2W, patch 1
    assert np.isfinite(row["losses"]).all() and row["params_lora"] == 2 * 2 * (32 + 128) * 4
