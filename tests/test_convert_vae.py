"""The VAE through the converter: a tiny random diffusers VAE folder and its original-format file."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")
safetensors_torch = pytest.importorskip("safetensors.torch")

from dreamactor_jax.models.vae import VAEConfig  # noqa: E402
from dreamactor_jax.weights import checkpoint, vae_map  # noqa: E402
from dreamactor_jax.weights.convert import convert  # noqa: E402
from convert_testlib import flat_params  # noqa: E402


def _tiny_vae(cfg: VAEConfig, seed: int = 0):
    torch.manual_seed(seed)
    n = len(cfg.block_out_channels)
    model = diffusers.AutoencoderKLHunyuanVideo(
        in_channels=cfg.in_channels,
        out_channels=cfg.out_channels,
        latent_channels=cfg.latent_channels,
        block_out_channels=cfg.block_out_channels,
        down_block_types=("HunyuanVideoDownBlock3D",) * n,
        up_block_types=("HunyuanVideoUpBlock3D",) * n,
        layers_per_block=cfg.layers_per_block,
        norm_num_groups=cfg.norm_num_groups,
        scaling_factor=cfg.scaling_factor,
    )
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p))
    return model


def test_vae_folder_and_original_file(tmp_path):
    cfg = VAEConfig.named("tiny")
    model = _tiny_vae(cfg)
    model.save_pretrained(tmp_path / "vae", max_shard_size="20KB")
    assert len(list((tmp_path / "vae").glob("*.safetensors"))) >= 2
    summary = convert(tmp_path / "vae", tmp_path / "out", dtype="fp32")
    assert summary["model"] == "vae"
    assert checkpoint.load_config(tmp_path / "out") == cfg
    got = dict(flat_params(checkpoint.load_params(tmp_path / "out")))
    sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    want = dict(flat_params(vae_map.params_from_state_dict(cfg, sd)))
    assert sorted(got) == sorted(want)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg="/".join(k))

    # the original release's VAE file: the same names behind a "vae." prefix, in a .pt
    torch.save({"state_dict": {f"vae.{k}": v for k, v in model.state_dict().items()}}, tmp_path / "pytorch_model.pt")
    with pytest.raises(ValueError, match="does not fit the vae config"):  # no config.json: full size assumed
        convert(tmp_path / "pytorch_model.pt", tmp_path / "o1")
    convert(tmp_path / "pytorch_model.pt", tmp_path / "o2", variant="tiny", dtype="fp32")
    got2 = dict(flat_params(checkpoint.load_params(tmp_path / "o2")))
    for k in want:
        np.testing.assert_array_equal(got2[k], want[k], err_msg="/".join(k))
    with pytest.raises(ValueError, match="widen"):
        convert(tmp_path / "vae", tmp_path / "o3", widen=True)
    with pytest.raises(ValueError, match="holds a vae"):
        convert(tmp_path / "vae", tmp_path / "o4", model="transformer")
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o3").exists()
