"""tools/caption.py and tools/encode_text.py end to end, offline (tiny encoders, no Gemini)."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np
import pytest

from dreamactor_jax.text.store import load_text_embeddings
from test_text_embed import MAXLEN, N_IMG, tiny_dir  # noqa: F401  (module fixture)

ROOT = Path(__file__).resolve().parents[1]


def tool(name):
    spec = importlib.util.spec_from_file_location(f"tool_{name}", ROOT / "tools" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run_cli(name, argv, capsys):
    """Runs a tool as its __main__ does (cli_main); returns (exit code, stdout, stderr)."""
    from dreamactor_jax.utils import cli_main
    with pytest.raises(SystemExit) as ei:
        cli_main(tool(name).main, argv)
    out, err = capsys.readouterr()
    return ei.value.code, out, err


@pytest.fixture
def manifest(tmp_path):
    from PIL import Image
    rng = np.random.default_rng(0)
    rows = []
    for k in ("clip1", "clip2", "clip3"):
        (tmp_path / f"{k}.mp4").write_bytes(os.urandom(64))
        Image.fromarray(rng.integers(0, 256, (20, 16, 4), dtype=np.uint8), "RGBA").save(tmp_path / f"{k}.png")
        rows.append({"id": k, "video": f"{k}.mp4", "image": f"{k}.png"})
    path = tmp_path / "items.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_caption_tool_file_and_none_modes(tmp_path, manifest, capsys):
    caps = tmp_path / "user.json"
    caps.write_text(json.dumps({"clip1": "In the video, a woman dances.", "clip2": "In the video, a cat waves."}))
    code, out, err = run_cli("caption", [str(tmp_path / "c.jsonl"), "--manifest", str(manifest),
                                         "--captions", str(caps)], capsys)
    assert code == 2 and "1 of 3 items have no caption (first: 'clip3')" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "c.jsonl").exists()
    code, out, err = run_cli("caption", [str(tmp_path / "c.jsonl"), "--manifest", str(manifest), "--captions",
                                         str(caps), "--on-error", "fallback", "--quiet"], capsys)
    rep = json.loads(out)
    assert code == 0 and rep["mode"] == "file" and rep["captioned"] == 2 and rep["fallbacks"] == [["clip3", "missing"]]
    assert "FALLBACKS" in err
    lines = [json.loads(l) for l in (tmp_path / "c.jsonl").read_text().splitlines()]
    assert [(l["id"], l["source"]) for l in lines] == [("clip1", "file"), ("clip2", "file"), ("clip3", "fallback:missing")]
    assert json.loads((tmp_path / "c.jsonl.report.json").read_text())["fallbacks"] == [["clip3", "missing"]]
    code, out, _ = run_cli("caption", [str(tmp_path / "n.jsonl"), "--manifest", str(manifest), "--no-text",
                                       "--quiet"], capsys)
    assert code == 0 and json.loads(out)["mode"] == "none"


def test_caption_tool_gemini_without_key(tmp_path, manifest, capsys, monkeypatch):
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    code, _, err = run_cli("caption", [str(tmp_path / "g.jsonl"), "--manifest", str(manifest), "--gemini",
                                       "--cache", str(tmp_path / "cache")], capsys)
    assert code == 2 and "GEMINI_API_KEY / GOOGLE_API_KEY: not set" in err
    code, _, err = run_cli("caption", [str(tmp_path / "g.jsonl"), "--video", "x.mp4", "--no-text"], capsys)
    assert code == 2 and "--image: required" in err


def test_encode_text_tool_t2v_and_i2v(tmp_path, manifest, tiny_dir, capsys):  # noqa: F811
    caps = tmp_path / "caps.jsonl"
    caps.write_text(json.dumps({"id": "clip1", "fused": "In the video, a woman dances.", "source": "gemini"}) + "\n"
                    + json.dumps({"id": "clip2", "fused": "", "source": "fallback:refused"}) + "\n")
    out = tmp_path / "emb.safetensors"
    common = ["--crop-start", "auto", "--max-length", str(MAXLEN), "--quiet", "--batch-size", "1"]
    code, stdout, err = run_cli("encode_text", [str(out), "--captions", str(caps), "--model-path",
                                                str(tiny_dir / "t2v"), *common], capsys)
    assert code == 0, err
    got = load_text_embeddings(out)
    assert got["ids"] == ["clip1", "clip2"] and got["emb"].text.shape == (2, MAXLEN, 32)
    assert json.loads(got["meta"]["text_source"]) == {"gemini": 1, "fallback:refused": 1}
    assert json.loads(got["meta"]["hidden_state"]) == -3
    # the fallback row is the null prompt, bit for bit
    np.testing.assert_array_equal(got["emb"].text[1], got["null"].text[0])
    assert got["emb"].text_mask[0].sum() > got["null"].text_mask[0].sum()
    # i2v: images from the manifest; image slots first
    out2 = tmp_path / "emb_i2v.safetensors"
    code, stdout, err = run_cli("encode_text", [str(out2), "--captions", str(caps), "--mode", "i2v",
                                                "--manifest", str(manifest), "--model-path",
                                                str(tiny_dir / "i2v"), *common], capsys)
    assert code == 0, err
    got2 = load_text_embeddings(out2)
    assert got2["emb"].text.shape == (2, N_IMG // 2 + MAXLEN - 4, 32)
    assert got2["null"].text.shape == (1, N_IMG // 2 + MAXLEN - 4, 32)
    # a new prompt for sampling
    out3 = tmp_path / "prompt.safetensors"
    code, stdout, _ = run_cli("encode_text", [str(out3), "--prompt", "a man waves", "--model-path",
                                              str(tiny_dir / "t2v"), *common], capsys)
    assert code == 0 and load_text_embeddings(out3)["ids"] == ["prompt"]
    code, _, err = run_cli("encode_text", [str(out3), "--prompt", " ", "--model-path", str(tiny_dir / "t2v")],
                           capsys)
    assert code == 2 and "--no-text" in err
    code, _, err = run_cli("encode_text", [str(out3), "--no-text", "--mode", "i2v", "--model-path",
                                           str(tiny_dir / "i2v")], capsys)
    assert code == 2 and "needs the reference images" in err


def test_caption_tool_gemini_cached_second_run(tmp_path, capsys, monkeypatch):
    """--gemini end to end with a fake transport: the second run answers from the cache."""
    from dreamactor_jax.media import write_video
    from dreamactor_jax.text import client as client_mod
    from test_text_client import APPEAR, FUSED, MOTION, FakeClient, recorded
    rng = np.random.default_rng(1)
    write_video(tmp_path / "d.mp4", np.repeat(rng.integers(0, 255, (1, 32, 32, 3), dtype=np.uint8), 9, 0), fps=8)
    (tmp_path / "m.jsonl").write_text('{"video": "d.mp4"}\n')  # preprocess-style row: no image, no id
    fakes = [FakeClient([recorded(MOTION), recorded(APPEAR), recorded(FUSED)], states=("ACTIVE",)),
             FakeClient([], states=())]
    monkeypatch.setenv("GEMINI_API_KEY", "k-test-secret")
    monkeypatch.setattr(client_mod, "make_genai_client", lambda cfg, key: fakes.pop(0))
    argv = [str(tmp_path / "c.jsonl"), "--manifest", str(tmp_path / "m.jsonl"), "--gemini",
            "--cache", str(tmp_path / "cache"), "--quiet", "--workers", "1"]
    code, out, err = run_cli("caption", argv, capsys)
    rep = json.loads(out)
    assert code == 0, err
    assert rep["requests"] == 3 and rep["image_from_video"] == 1 and rep["tokens"]["input"] == 3600
    (line,) = [json.loads(l) for l in (tmp_path / "c.jsonl").read_text().splitlines()]
    assert (line["id"], line["fused"], line["source"]) == ("d", FUSED, "gemini")
    code, out, err = run_cli("caption", argv, capsys)
    rep = json.loads(out)
    assert code == 0 and rep["requests"] == 0 and rep["cache_hits"] == 3
    assert "k-test-secret" not in (tmp_path / "c.jsonl.report.json").read_text()
