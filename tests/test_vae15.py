"""The HunyuanVideo-1.5 VAE (`models.vae15`) against diffusers' `AutoencoderKLHunyuanVideo15`:
encode and decode on a tiny random model (fp32, CPU, <= 1e-4 relative), spatial tiling against
diffusers' `enable_tiling`, the conversion tool on a `save_pretrained` folder, and the full-size
parameter list against diffusers' model on the meta device."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

from convert_testlib import rel_err  # noqa: E402
from test_convert import run_tool  # noqa: E402

from dreamactor_jax.models import vae15  # noqa: E402
from dreamactor_jax.models.vae_tiling import Tiling  # noqa: E402
from dreamactor_jax.weights import checkpoint, vae_map  # noqa: E402

TOL = 1e-4
TINY = vae15.VAE15Config.named("tiny15", xla_options=(("xla_backend_optimization_level", 0),))


@functools.lru_cache(maxsize=None)
def reference():
    torch.manual_seed(0)
    m = diffusers.AutoencoderKLHunyuanVideo15(latent_channels=4, block_out_channels=(8, 16, 32, 64, 64),
                                              layers_per_block=1).eval()
    with torch.no_grad():
        for n, p in m.named_parameters():
            if n.endswith("gamma"):
                p.copy_(1 + 0.2 * torch.randn_like(p))
            elif n.endswith("bias"):
                p.copy_(0.05 * torch.randn_like(p))
    return m, vae_map.params_from_state_dict(TINY, m.state_dict())


def _torch_encode(m, x):
    with torch.no_grad():
        d = m.encode(torch.from_numpy(x).permute(0, 4, 1, 2, 3)).latent_dist
    return d.mean.permute(0, 2, 3, 4, 1).numpy(), d.logvar.permute(0, 2, 3, 4, 1).numpy()


def _torch_decode(m, z):
    with torch.no_grad():
        return m.decode(torch.from_numpy(z).permute(0, 4, 1, 2, 3)).sample.permute(0, 2, 3, 4, 1).numpy()


def test_vae15_encode_decode_match_diffusers():
    m, params = reference()
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (1, 9, 48, 64, 3)).astype(np.float32)  # batch 1: diffusers' mid attention
    mean, logvar = vae15.encode(params, TINY, x)                   # mask breaks for batch > 1
    ref_mean, ref_logvar = _torch_encode(m, x)
    assert mean.shape == (1, 3, 3, 4, 4)
    assert rel_err(mean, ref_mean) <= TOL and rel_err(logvar, ref_logvar) <= TOL
    z = rng.standard_normal((1, 3, 3, 4, 4)).astype(np.float32)
    out = vae15.decode(params, TINY, z)
    assert out.shape == (1, 9, 48, 64, 3)
    assert rel_err(out, _torch_decode(m, z)) <= TOL
    # one frame (the reference image) and the scaled-latent helpers
    one = vae15.encode_latents(params, TINY, x[:, :1])
    assert rel_err(one, _torch_encode(m, x[:, :1])[0] * TINY.scaling_factor) <= TOL
    assert rel_err(vae15.decode_latents(params, TINY, one), _torch_decode(m, np.asarray(one) / TINY.scaling_factor)) <= TOL


def test_vae15_mid_attention_frame_by_frame_equals_one_shot():
    """Large inputs run the causal mid-block attention one query frame at a time: the same values."""
    _, params = reference()
    p = params["encoder"]["mid_block"]["attentions_0"]
    x = np.random.default_rng(3).standard_normal((1, 3, 2, 3, 64)).astype(np.float32)
    one = vae15._attention(p, x, one_shot_bytes=1 << 30)
    framewise = vae15._attention(p, x, one_shot_bytes=0)
    assert rel_err(framewise, one) <= 1e-6


@pytest.mark.slow  # 2 x 4 tile shapes compile (~30 s on 2 busy cores)
def test_vae15_spatial_tiling_matches_diffusers():
    m, params = reference()
    rng = np.random.default_rng(1)
    m.enable_tiling(tile_sample_min_height=64, tile_sample_min_width=64, tile_latent_min_height=4,
                    tile_latent_min_width=4, tile_overlap_factor=0.25)
    try:
        tiling = Tiling(framewise_encode=False, framewise_decode=False, spatial=True, min_height=64, min_width=64,
                        stride_height=48, stride_width=48)
        x = rng.uniform(-1, 1, (1, 5, 80, 64, 3)).astype(np.float32)
        mean, _ = vae15.encode(params, TINY, x, tiling=tiling)
        assert rel_err(mean, _torch_encode(m, x)[0]) <= TOL
        z = rng.standard_normal((1, 2, 5, 4, 4)).astype(np.float32)
        assert rel_err(vae15.decode(params, TINY, z, tiling=tiling), _torch_decode(m, z)) <= TOL
    finally:
        m.disable_tiling()


def test_vae15_converts_from_a_diffusers_folder(tmp_path):
    m, params = reference()
    m.save_pretrained(tmp_path / "vae")
    assert run_tool(tmp_path / "vae", tmp_path / "out", "--dtype", "fp32") == 0
    cfg = checkpoint.load_config(tmp_path / "out")
    assert isinstance(cfg, vae15.VAE15Config) and cfg.latent_channels == 4
    assert json.loads((tmp_path / "out" / "config.json").read_text())["_class_name"] == "AutoencoderKLHunyuanVideo15"
    got = checkpoint.load_params(tmp_path / "out")
    x = np.random.default_rng(2).uniform(-1, 1, (1, 5, 32, 32, 3)).astype(np.float32)
    assert rel_err(vae15.encode(got, TINY, x)[0], _torch_encode(m, x)[0]) <= TOL
    with pytest.raises(ValueError, match="video: expected 4k\\+1 frames"):
        vae15.encode(got, TINY, x[:, :4])


def test_vae15_full_size_keys_match_diffusers_meta_model():
    accelerate = pytest.importorskip("accelerate")
    cfg = vae15.VAE15Config.named("hunyuan15")
    with accelerate.init_empty_weights():
        m = diffusers.AutoencoderKLHunyuanVideo15()
    ref = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    assert vae_map.expected_keys(cfg) == ref
    assert vae15.count_params(cfg) == sum(int(np.prod(s)) for s in ref.values())
    assert checkpoint.vae_config_from_dict({"_class_name": "AutoencoderKLHunyuanVideo15", **dict(m.config)}) == cfg


def _to_release_names(key: str) -> str:
    """diffusers' AutoencoderKLHunyuanVideo15 name -> the 1.5 release's (an inverse written apart from
    `original_map.vae15_name`, after diffusers' scripts/convert_hunyuan_video1_5_to_diffusers.py)."""
    import re

    for pat, rep in ((r"^encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.", r"encoder.down.\1.block.\2."),
                     (r"^encoder\.down_blocks\.(\d+)\.downsamplers\.0\.", r"encoder.down.\1.downsample."),
                     (r"^decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.", r"decoder.up.\1.block.\2."),
                     (r"^decoder\.up_blocks\.(\d+)\.upsamplers\.0\.", r"decoder.up.\1.upsample."),
                     (r"^(\w+)\.mid_block\.resnets\.0\.", r"\1.mid.block_1."),
                     (r"^(\w+)\.mid_block\.resnets\.1\.", r"\1.mid.block_2."),
                     (r"^(\w+)\.mid_block\.attentions\.0\.to_([qkv])\.", r"\1.mid.attn_1.\2."),
                     (r"^(\w+)\.mid_block\.attentions\.0\.", r"\1.mid.attn_1.")):
        new, n = re.subn(pat, rep, key)
        if n:
            return new
    return key


def test_vae15_converts_from_the_release_names(tmp_path):
    """The 1.5 release's VAE file (`vae/diffusion_pytorch_model.safetensors`, its own names) is recognised
    and converts to exactly the params of the diffusers folder."""
    from safetensors.torch import save_file

    m, _ = reference()
    m.save_pretrained(tmp_path / "vae")
    assert run_tool(tmp_path / "vae", tmp_path / "ref", "--dtype", "fp32") == 0
    release = {_to_release_names(k): v.contiguous() for k, v in m.state_dict().items()}
    assert "encoder.down.0.block.0.conv1.conv.weight" in release and "decoder.mid.attn_1.q.weight" in release
    assert len(release) == len(m.state_dict())
    save_file(release, str(tmp_path / "release.safetensors"))
    assert run_tool(tmp_path / "release.safetensors", tmp_path / "out", "--variant", "tiny15", "--dtype", "fp32") == 0
    a, b = checkpoint.load_params(tmp_path / "out"), checkpoint.load_params(tmp_path / "ref")
    import jax

    fa, fb = jax.tree_util.tree_flatten_with_path(a)[0], jax.tree_util.tree_flatten_with_path(b)[0]
    assert [p for p, _ in fa] == [p for p, _ in fb]
    for (p, x), (_, y) in zip(fa, fb):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=str(p))
