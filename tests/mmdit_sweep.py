"""Helpers for the MMDiT configuration sweep: random diffusers-accepted configs and inputs, the
diffusers reference in float32 and in float64, and the project's forward in both.

diffusers computes a few things in float32 even inside a float64 model (the timestep sinusoid, the
RoPE tables and their application, RMSNorm's variance); `diffusers_float64()` lifts exactly those
casts (and FP32LayerNorm's), so a float64 model is float64 end to end and serves as the "true"
value the two float32 implementations are measured against.
"""

from __future__ import annotations

import contextlib
import math
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

from dreamactor_jax.models import mmdit  # noqa: E402
from dreamactor_jax.models.config import IMAGE_CONDITION_TYPES, MMDiTConfig  # noqa: E402
from dreamactor_jax.weights import diffusers_map  # noqa: E402

GUIDANCE_RANGE = (1000.0, 10000.0)  # embedded guidance scale 1..10 (x1000; the release's default is 6)


# ----------------------------------------------------------------------------- tolerance


def tolerance(inp: dict) -> float:
    """The fp32 bound of the MMDiT against diffusers for these inputs (see test_mmdit_configs.py):
    1e-5 while timestep and guidance <= 500, else 2e-5 * max(timestep, guidance) / 1000."""
    largest = max(float(np.max(inp["timestep"])), 0.0 if inp.get("guidance") is None else float(np.max(inp["guidance"])))
    return 1e-5 * max(1.0, 2.0 * largest / 1000.0)


# ----------------------------------------------------------------------------- configs and inputs


def random_config(rng: np.random.Generator) -> MMDiTConfig:
    """A small config drawn over everything diffusers' HunyuanVideoTransformer3DModel accepts."""
    heads = int(rng.integers(1, 4))
    rope = [2 * int(rng.integers(0, 5)) for _ in range(3)]
    if sum(rope) == 0:
        rope[2] = 2
    num_layers = int(rng.integers(0, 3))
    qk = [None, "rms_norm", "layer_norm", "fp32_layer_norm"] + (["l2"] if num_layers == 0 else [])
    return MMDiTConfig(
        in_channels=int(rng.integers(1, 9)),
        out_channels=int(rng.integers(1, 9)),
        num_attention_heads=heads,
        attention_head_dim=sum(rope),
        num_layers=num_layers,
        num_single_layers=int(rng.integers(0, 3)),
        num_refiner_layers=int(rng.integers(0, 3)),
        mlp_ratio=float(rng.choice([0.0, 0.5, 1.0, 1.3, 2.0, 2.75, 4.0])),
        patch_size=int(rng.integers(1, 3)),
        patch_size_t=int(rng.integers(1, 3)),
        qk_norm=qk[int(rng.integers(len(qk)))],
        guidance_embeds=bool(rng.integers(2)),
        text_embed_dim=int(rng.integers(1, 33)),
        pooled_projection_dim=int(rng.integers(1, 25)),
        rope_theta=float(rng.choice([256.0, 10000.0])),
        rope_axes_dim=tuple(rope),
        image_condition_type=IMAGE_CONDITION_TYPES[int(rng.integers(3))],
    )


def random_inputs(rng: np.random.Generator, cfg: MMDiTConfig, batch: int = 2, timesteps=None, guidance=None) -> dict:
    """Random channels-last inputs: grid of 1-3 patches per axis, 1-6 text tokens with 1..L valid
    (item 0 always exactly one), timesteps over [0, 1000], guidance over GUIDANCE_RANGE."""
    pt, p = cfg.patch_size_t, cfg.patch_size
    t, h, w = (int(rng.integers(1, 4)) for _ in range(3))
    text_len = int(rng.integers(1, 7))
    valid = [1] + [int(rng.integers(1, text_len + 1)) for _ in range(batch - 1)]
    mask = (np.arange(text_len)[None, :] < np.asarray(valid)[:, None]).astype(np.int64)
    if timesteps is None:
        timesteps = rng.uniform(0, 1000, batch)
    if guidance is None and cfg.guidance_embeds:
        guidance = rng.uniform(*GUIDANCE_RANGE, batch)
    return dict(
        x=rng.standard_normal((batch, t * pt, h * p, w * p, cfg.in_channels)).astype(np.float32),
        timestep=np.asarray(timesteps, np.float32),
        text=rng.standard_normal((batch, text_len, cfg.text_embed_dim)).astype(np.float32),
        text_mask=mask,
        pooled=rng.standard_normal((batch, cfg.pooled_projection_dim)).astype(np.float32),
        guidance=None if not cfg.guidance_embeds else np.asarray(guidance, np.float32),
    )


# ----------------------------------------------------------------------------- the reference


def reference_model(cfg: MMDiTConfig, seed: int = 0):
    """diffusers model with every tensor random (norm weights around 1, biases around 0)."""
    from convert_testlib import tiny_transformer

    return tiny_transformer(cfg, seed)


def reference_forward(model, inp: dict, dtype=torch.float32) -> np.ndarray:
    """diffusers forward on channels-last inputs in `dtype`; channels-last float64 output."""
    t = lambda a: None if a is None else torch.from_numpy(np.asarray(a)).to(dtype)
    kwargs = {} if inp["guidance"] is None else {"guidance": t(inp["guidance"])}
    with torch.no_grad():
        out = model.to(dtype)(
            hidden_states=t(inp["x"]).permute(0, 4, 1, 2, 3),
            timestep=t(inp["timestep"]),
            encoder_hidden_states=t(inp["text"]),
            encoder_attention_mask=torch.from_numpy(inp["text_mask"]),
            pooled_projections=t(inp["pooled"]),
            return_dict=False,
            **kwargs,
        )[0]
    model.to(torch.float32)
    return out.permute(0, 2, 3, 4, 1).double().numpy()


def _timestep_embedding64(timesteps, embedding_dim, flip_sin_to_cos=False, downscale_freq_shift=1, scale=1, max_period=10000):
    half = embedding_dim // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float64) / (half - downscale_freq_shift)
    emb = scale * timesteps[:, None].double() * torch.exp(exponent)[None, :]
    emb = torch.cat([torch.sin(emb), torch.cos(emb)], dim=-1)
    if flip_sin_to_cos:
        emb = torch.cat([emb[:, half:], emb[:, :half]], dim=-1)
    return emb


def _rope_table64(dim, pos, theta=10000.0, use_real=True, **_):
    freqs = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
    ang = torch.outer(pos.double(), freqs)
    return ang.cos().repeat_interleave(2, dim=1), ang.sin().repeat_interleave(2, dim=1)


def _apply_rope64(x, freqs_cis, use_real=True, use_real_unbind_dim=-1, sequence_dim=2):
    cos, sin = freqs_cis
    cos, sin = ((c[None, :, None, :] if sequence_dim == 1 else c[None, None]) for c in (cos, sin))
    real, imag = x.reshape(*x.shape[:-1], -1, 2).unbind(-1)
    rotated = torch.stack([-imag, real], dim=-1).flatten(3)
    return (x.double() * cos + rotated.double() * sin).to(x.dtype)


def _rms_norm64(self, x):
    x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
    return x * self.weight if self.weight is not None else x


def _fp32_layer_norm64(self, x):
    return torch.nn.functional.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)


@contextlib.contextmanager
def diffusers_float64():
    """Lifts diffusers' hard-coded float32 casts (sinusoid, RoPE, RMSNorm variance, FP32LayerNorm)."""
    from diffusers.models import embeddings, normalization
    from diffusers.models.transformers import transformer_hunyuan_video as hv

    with mock.patch.object(embeddings, "get_timestep_embedding", _timestep_embedding64), \
            mock.patch.object(hv, "get_1d_rotary_pos_embed", _rope_table64), \
            mock.patch.object(embeddings, "apply_rotary_emb", _apply_rope64), \
            mock.patch.object(normalization.RMSNorm, "forward", _rms_norm64), \
            mock.patch.object(normalization.FP32LayerNorm, "forward", _fp32_layer_norm64):
        yield


# ----------------------------------------------------------------------------- the project


def _attention64(q, k, v, *, kv_lengths=None, mask=None, impl="auto"):
    """Softmax attention with a float64 softmax (jax.nn.dot_product_attention's is float32 always)."""
    s = jnp.einsum("bqnd,bknd->bnqk", q, k) / math.sqrt(q.shape[-1])
    if kv_lengths is not None:
        mask = (jnp.arange(k.shape[1])[None, :] < kv_lengths[:, None])[:, None, None, :]
    if mask is not None:
        s = jnp.where(mask, s, -jnp.inf)
    return jnp.einsum("bnqk,bknd->bqnd", jax.nn.softmax(s, axis=-1), v)


@contextlib.contextmanager
def project_float64():
    """jax x64 on, and the attention softmax in float64 (the only float32 step left in the forward)."""
    from dreamactor_jax.models import attention

    with jax.enable_x64(True), mock.patch.object(attention, "local_attention", _attention64):
        yield


def project_params(model, cfg: MMDiTConfig) -> dict:
    return diffusers_map.state_dict_to_params({k: v.double().numpy() for k, v in model.state_dict().items()}, cfg, np.float64)


_forward = jax.jit(mmdit.forward, static_argnums=1)


def project_forward(params: dict, cfg: MMDiTConfig, inp: dict, dtype: str = "float32") -> np.ndarray:
    """The Flax forward in `dtype` ("float64" inside `project_float64()`); float64 output."""
    np_dtype = np.float64 if dtype == "float64" else np.float32
    cast = lambda a: None if a is None else jnp.asarray(np.asarray(a, np_dtype))
    p = jax.tree_util.tree_map(cast, params)
    out = _forward(p, cfg.replace(dtype=dtype, param_dtype=dtype), cast(inp["x"]), cast(inp["timestep"]),
                   cast(inp["text"]), jnp.asarray(inp["text_mask"]), cast(inp["pooled"]), cast(inp["guidance"]))
    return np.asarray(out, np.float64)


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))
