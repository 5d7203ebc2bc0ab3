"""Issue 24, text: optional and offline-safe. No tool may reach the network here (sockets are
blocked), a missing encoder is one line at once, bad embeddings files are one-line errors, and
the zero text (no encoder at all) runs through the backbone."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import numpy as np
import pytest

from cli_testlib import run_tool

from dreamactor_jax.text.store import TextEmbeddings, load_text_embeddings, save_text_embeddings, zero_text


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """An empty Hugging Face cache and no network: any connection attempt fails the test."""
    import huggingface_hub.constants as hc

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf_home" / "hub"))
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hf_home" / "hub"))  # read once at import
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    def no_network(*a, **k):
        raise AssertionError("a tool tried to reach the network")
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    return tmp_path


def _run(tool: str, argv, capsys) -> tuple[int, str]:
    return run_tool(f"tools/{tool}.py", argv), capsys.readouterr().err


@pytest.mark.parametrize("mode,repo", [("t2v", "hunyuanvideo-community/HunyuanVideo:"),
                                       ("i2v", "hunyuanvideo-community/HunyuanVideo-I2V:")])
def test_encode_text_no_text_never_touches_the_network(offline, capsys, mode, repo):
    args = [offline / "null.safetensors", "--no-text", "--mode", mode]
    if mode == "i2v":
        from PIL import Image
        Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(offline / "ref.png")
        args += ["--image", offline / "ref.png"]
    t0 = time.time()
    code, err = _run("encode_text", args, capsys)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and time.time() - t0 < 20, err
    assert repo.rstrip(":") in lines[0] and "not on this machine" in lines[0] and "zero text" in lines[0]
    assert not (offline / "null.safetensors").exists()


def test_local_model_path(offline, monkeypatch):
    from dreamactor_jax.text.embed import default_model_path, local_model_path

    assert default_model_path("t2v").endswith("/HunyuanVideo") and default_model_path("i2v").endswith("-I2V")
    (offline / "enc").mkdir()
    assert local_model_path(str(offline / "enc"), "t2v") == str(offline / "enc")
    with pytest.raises(ValueError, match="no such folder"):
        local_model_path(str(offline / "missing"), "t2v")
    with pytest.raises(ValueError, match="HunyuanVideo-I2V: not on this machine"):
        local_model_path(None, "i2v")
    assert local_model_path(None, "t2v", allow_download=True) == "hunyuanvideo-community/HunyuanVideo"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="HF_HUB_OFFLINE is set"):
        local_model_path(None, "t2v", allow_download=True)
    # a snapshot in the cache is found without the network
    snap = offline / "hf_home" / "hub" / "models--org--enc" / "snapshots" / "abc"
    snap.mkdir(parents=True)
    (snap / "model_index.json").write_text("{}")
    (snap.parents[1] / "refs").mkdir()
    (snap.parents[1] / "refs" / "main").write_text("abc")
    assert Path(local_model_path("org/enc", "t2v")) == snap


def test_bad_embeddings_files_are_one_line_errors(tmp_path):
    (tmp_path / "junk.safetensors").write_bytes(b"\x00\x01 not a safetensors file at all" * 10)
    with pytest.raises(ValueError, match="junk.safetensors: not a text embeddings file") as e:
        load_text_embeddings(tmp_path / "junk.safetensors")
    assert "\n" not in str(e.value)
    from safetensors.numpy import save_file
    save_file({"x": np.zeros(3, np.float32)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="not a dreamactor text embeddings file"):
        load_text_embeddings(tmp_path / "other.safetensors")
    rng = np.random.default_rng(0)
    emb = TextEmbeddings(rng.normal(size=(2, 4, 8)).astype(np.float32), np.ones((2, 4), np.int32),
                         rng.normal(size=(2, 6)).astype(np.float32))
    save_text_embeddings(tmp_path / "ok.safetensors", emb, ["a", "b"])
    data = (tmp_path / "ok.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) - 40])
    with pytest.raises(ValueError, match="cut.safetensors"):
        load_text_embeddings(tmp_path / "cut.safetensors")


def test_zero_text_runs_through_the_backbone():
    """The zero text (one valid zero token) gives a finite output that differs from a real text's."""
    import jax
    import jax.numpy as jnp

    from dreamactor_jax.models import mmdit
    from dreamactor_jax.models.config import MMDiTConfig

    cfg = MMDiTConfig.named("tiny-i2v-33ch", attention_impl="xla")
    params = mmdit.init_params_numpy(cfg, seed=0, bias_std=0.05)
    z = zero_text(cfg.text_embed_dim, cfg.pooled_projection_dim)
    assert z.text.shape == (1, 1, 32) and z.text_mask.tolist() == [[1]] and not z.text.any() and not z.pooled.any()
    x = jnp.asarray(np.random.default_rng(1).normal(size=(1, 2, 4, 4, 33)).astype(np.float32))
    fwd = jax.jit(lambda text, pooled: mmdit.forward(params, cfg, x, jnp.array([300.0]), text, z.text_mask, pooled),
                  compiler_options={"xla_backend_optimization_level": 0})
    out = fwd(jnp.asarray(z.text), jnp.asarray(z.pooled))
    other = fwd(jnp.ones((1, 1, 32)), jnp.ones((1, 24)))
    assert np.isfinite(np.asarray(out)).all() and float(jnp.abs(out - other).max()) > 1e-4
