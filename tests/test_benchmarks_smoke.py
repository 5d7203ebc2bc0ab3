"""Every benchmark that runs a model, at tiny sizes on CPU, as its own process (`--tiny`), so a
refactor that breaks one fails here and not on the GPU machine. XLA's backend optimisation is off
in these children (compiles dominate a tiny run; the numbers printed are not measurements).

Not here: `rehearsal.py` (its own test, tests/test_rehearsal.py), `rehearsal_peft.py` (run by the
rehearsal's last stage), `tpu_estimate.py` (no model; tests/test_tpu_estimate.py), `rehearsal_inputs.py`
(a module of rehearsal.py), the shell script (`toy_ship.sh`: it runs the toy recipe's one-GPU commands,
whose `ci` variant the toy tests run), and the parts that need torch on
CUDA (bench_vae's check and diffusers timings, bench_blocks' / bench_sample's diffusers side).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # ~140 s of CPU in all (12 processes; ~60 s wall on 2 idle cores)
FAST_COMPILE = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"


# (script, arguments, fake CPU devices): all started at once by the fixture below (the compiles of a
# tiny run are single-threaded, so two cores run two at a time), each test then checks its own.
RUNS = {
    "sample": ("bench_sample.py", ["--tiny", "--frames", "5", "--iters", "1", "--no-torch", "--json", "{tmp}/sample.json"], 1),
    "sample_fp8": ("bench_sample.py", ["--tiny", "--frames", "5", "--iters", "1", "--no-torch", "--no-vae", "--fp8",
                                       "--json", "{tmp}/sample_fp8.json"], 1),
    "train": ("bench_train.py", ["--tiny", "--steps", "1", "--remat", "save_attention*2,full"], 1),
    "blocks": ("bench_blocks.py", ["--tiny", "--json", "{tmp}/blocks.json"], 1),
    "vae": ("bench_vae.py", ["--tiny"], 1),
    "convert": ("bench_convert.py", ["--tiny", "--layers", "1", "--single-layers", "1", "--workdir", "{tmp}/convert"], 1),
    "scaling": ("bench_scaling.py", ["--tiny", "--meshes", "fsdp=1,sequence=2", "--frames", "5", "--size", "16x16",
                                     "--layers", "1,1", "--steps", "1", "--out", "{tmp}/scaling"], 2),
    "toy_prior": ("bench_toy_prior.py", ["--tiny"], 1),
    "canvas_probe": ("toy_canvas_probe.py", ["--tiny"], 1),
    "influence": ("toy_influence.py", ["--tiny"], 1),
    "step_cache": ("bench_step_cache.py", ["--tiny", "--json", "{tmp}/step_cache.json"], 1),
    "hv15": ("bench_hv15.py", ["--tiny", "--steps", "1", "--json", "{tmp}/hv15.json"], 1),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    procs = {}
    for name, (script, args, devices) in RUNS.items():
        env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_PYTHON_CLIENT_PREALLOCATE="false")
        env["XLA_FLAGS"] = FAST_COMPILE + (f" --xla_force_host_platform_device_count={devices}" if devices > 1 else "")
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        cmd = [sys.executable, f"benchmarks/{script}", *[a.format(tmp=tmp) for a in args]]
        procs[name] = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    done = {}
    for name, p in procs.items():
        try:
            out, err = p.communicate(timeout=600)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
        done[name] = (p.returncode, out, err)
    return tmp, done


def run_bench(runs, name: str) -> str:
    rc, out, err = runs[1][name]
    script, args, _ = RUNS[name]
    assert rc == 0, f"{script} {' '.join(args)}: exit {rc}\n{out[-3000:]}\n{err[-3000:]}"
    return out


def _rows(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_bench_sample_tiny(runs):
    out = run_bench(runs, "sample")
    rows = json.loads((runs[0] / "sample.json").read_text())["rows"]
    assert [r["frames"] for r in rows if "tokens" in r] == [5] and rows[0]["jax_step_s"] > 0
    assert any("vae_decode_frames" in r for r in rows), out  # the VAE part (the one that had rotted)


def test_bench_train_tiny(runs):
    rows = _rows(run_bench(runs, "train"))
    assert rows and all(r["finite"] and r["step_s"] > 0 for r in rows)
    assert rows[0]["remat_plan"] == "save_attention*2,full*2"  # a mixed plan through the real train step


def test_bench_blocks_tiny(runs):
    out = run_bench(runs, "blocks")
    assert "failed" not in out, out
    assert json.loads((runs[0] / "blocks.json").read_text())["args"]["tiny"]


def test_bench_vae_tiny(runs):
    rows = _rows(run_bench(runs, "vae"))
    assert sorted(r["op"] for r in rows if "op" in r) == ["decode", "encode"], rows


def test_bench_convert_tiny(runs):
    rows = _rows(run_bench(runs, "convert"))
    assert rows and rows[0]["rc"] == 0 and rows[0]["params"] > 0


def test_bench_scaling_tiny(runs):
    run_bench(runs, "scaling")
    cases = json.loads((runs[0] / "scaling" / "results.json").read_text())["cases"]
    assert cases and all("error" not in c for c in cases), cases


def test_bench_toy_prior_tiny(runs):
    rows = _rows(run_bench(runs, "toy_prior"))
    assert rows and rows[0]["ms_per_step"] > 0


def test_toy_canvas_probe_tiny(runs):
    out = run_bench(runs, "canvas_probe")
    assert json.loads(out[out.index("{"):])["steps"] == 2


def test_toy_influence_tiny(runs):
    out = run_bench(runs, "influence")
    assert set(json.loads(out[out.index("{"):])["influence"]) == {"spatial", "temporal"}


def test_bench_step_cache_tiny(runs):
    run_bench(runs, "step_cache")
    rows = json.loads((runs[0] / "step_cache.json").read_text())["rows"]
    assert [r["threshold"] for r in rows] == [0.0, 0.1, 1e9]
    assert rows[0]["skipped"] == 0 and rows[0]["kp_err_vs_uncached"] == 0.0 and rows[-1]["skipped"] == 3


def test_bench_sample_fp8_tiny(runs):
    run_bench(runs, "sample_fp8")
    rep = json.loads((runs[0] / "sample_fp8.json").read_text())
    assert rep["fp8"] and rep["rows"][0]["jax_step_s"] > 0


def test_bench_hv15_tiny(runs):
    """HunyuanVideo-1.5 vs diffusers (torch on CPU here): the same-weights check, and both LoRA steps train."""
    run_bench(runs, "hv15")
    res = json.loads((runs[0] / "hv15.json").read_text())
    assert res["check_max_rel_err"] <= 1e-5 and res["video_tokens"] == 2 * 2 * 4
    for name in ("diffusers", "jax"):
        assert len(res[name]["losses"]) == 2 and all(abs(v) < 1e3 for v in res[name]["losses"]), res[name]
