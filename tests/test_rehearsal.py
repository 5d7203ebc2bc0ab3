"""benchmarks/rehearsal.py --tiny: every stage of the full-size GPU rehearsal, on CPU at tiny sizes,
so the GPU call is known to work before it is made (and the record it writes has what it should)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT.parent / "shared" / "assets"

pytestmark = [pytest.mark.slow, pytest.mark.assets]


@pytest.mark.skipif(not ASSETS.is_dir(), reason="../shared/assets not present (the rehearsal's real videos)")
def test_tiny_rehearsal_runs_every_stage(tmp_path):
    for mod in ("torch", "diffusers", "peft", "mediapipe"):
        pytest.importorskip(mod)
    work, out = tmp_path / "work", tmp_path / "out"
    r = subprocess.run([sys.executable, "benchmarks/rehearsal.py", "--tiny", "--workdir", str(work), "--out", str(out),
                        "--deadline", "900"], cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    rec = json.loads((out / "rehearsal.json").read_text())
    steps = {s["stage"] + "/" + s["step"]: s for s in rec["steps"]}
    assert [s["stage"] for s in rec["steps"]] == ["inputs", "models", "convert", "convert", "preprocess", "train",
                                                  "resume", "sample", "export", "peft"]
    assert all(s["rc"] == 0 for s in rec["steps"]) and rec["not_run"] == []
    assert all(s["peak_host_gib"] > 0 for s in rec["steps"] if "peak_host_gib" in s)
    # real videos, both orientations: 32x64 landscape panels (latent 3x4x16) and 64x32 portrait (3x8x8)
    assert rec["latent_shapes"] == {"3x4x16": 1, "3x8x8": 3}
    assert all(int(f.split("/")[0]) > 0 for f in rec["inputs"]["person_found"].values())
    assert "done: step 2" in " ".join(steps["train/2 steps"]["tail"])
    assert "resumed from 2" in " ".join(steps["resume/one more step"]["tail"])
    sample = " ".join(steps["sample/two segments, CFG, 2 steps"]["tail"])
    assert "2 segment(s)" in sample
    assert rec["peft"]["pass"] and rec["peft"]["err_lora"] < 1e-5 < rec["peft"]["effect_lora"]
    assert (out / "sample_frames.png").is_file() and (out / "rehearsal.log").stat().st_size > 0
    assert "NOT RUN" not in r.stdout and "total" in r.stdout.splitlines()[-1]
    # a later call runs a chosen stage on what the first one left; without the diffusers folder (a
    # machine short of disk) the peft stage remakes the random base from its seed and checks it
    import shutil

    shutil.rmtree(work / "hf" / "diffusers" / "transformer")
    r = subprocess.run([sys.executable, "benchmarks/rehearsal.py", "--tiny", "--workdir", str(work), "--out",
                        str(tmp_path / "out2"), "--stages", "peft"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    peft = json.loads((tmp_path / "out2" / "peft.json").read_text())
    assert peft["pass"] and peft["diffusers_model"].startswith("remade from its seed")
    # an adapter with B exactly zero (one step at the warm-up's lr 0, as a 1-step GPU rehearsal makes):
    # no factor shows the mapping, so both sides get the same seeded B (diffusers' through the exporter)
    zero_b_peft(work, tmp_path / "peft_zero.json")


def zero_b_peft(work: Path, json_out: Path) -> None:
    import importlib.util

    import jax

    from dreamactor_jax import run_folder

    spec = importlib.util.spec_from_file_location("rehearsal_peft", ROOT / "benchmarks" / "rehearsal_peft.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    real = run_folder.open_run

    class ZeroB:
        def __init__(self, ck):
            self.ck = ck

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self.ck.__exit__(*exc)

        def architecture(self):
            return self.ck.architecture()

        def read_lora(self):
            return jax.tree_util.tree_map_with_path(
                lambda p, x: x * 0 if getattr(p[-1], "key", None) == "b" else x, self.ck.read_lora())

    from dreamactor_jax.weights.checkpoint import load_config
    from dreamactor_jax.weights.lora_export import lora_to_peft, save_peft

    with ZeroB(real(work / "run").__enter__()) as ck:  # the zero-B adapter, exported as a user would
        _, lcfg = ck.architecture()
        save_peft(json_out.with_suffix(".safetensors"),
                  lora_to_peft(ck.read_lora(), load_config(work / "ckpt" / "transformer"), lcfg))
    run_folder.open_run = lambda path: ZeroB(real(path).__enter__())
    try:
        rc = mod.main(["--run", str(work / "run"), "--base", str(work / "ckpt" / "transformer"), "--diffusers",
                       str(work / "hf" / "diffusers" / "transformer"), "--lora", str(json_out.with_suffix(".safetensors")),
                       "--size", "tiny", "--json", str(json_out)])
    finally:
        run_folder.open_run = real
    res = json.loads(json_out.read_text())
    assert rc == 0 and res["pass"] and res["boost"] == "random", res
    assert res["effect_lora"] == 0.0 and res["effect_boost"] > 1e-3 and res["err_boost"] < 1e-5
