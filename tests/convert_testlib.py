"""Helpers for the conversion tests: tiny random diffusers models and the original-format inverse.

`to_original` rebuilds an original (Tencent) HunyuanVideo state dict from a diffusers one. It is
written here independently of `dreamactor_jax.weights.original_map` (fusing instead of splitting),
so a round trip through both checks the converter's table rather than repeating it.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

from dreamactor_jax.models.config import MMDiTConfig  # noqa: E402
from dreamactor_jax.weights.safetensors_io import TensorInfo  # noqa: E402


def tiny_transformer(cfg: MMDiTConfig, seed: int = 0, *, matrices: bool = True):
    """diffusers HunyuanVideoTransformer3DModel with every tensor random: norm weights around 1,
    biases around 0, and (`matrices`) weight matrices redrawn at 1/sqrt(fan-in) (else diffusers' init)."""
    torch.manual_seed(seed)
    return randomize(diffusers.HunyuanVideoTransformer3DModel(**cfg.to_diffusers_config()).eval(), matrices=matrices)


def randomize(model, *, matrices: bool = True):
    """Every tensor of a torch model redrawn in place (after `torch.manual_seed`): norm weights around 1,
    biases around 0, and (`matrices`) weight matrices at 1/sqrt(fan-in). Returns the model."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1 and "norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.2 * torch.randn_like(p))
            elif p.ndim == 1:
                p.copy_(0.05 * torch.randn_like(p))
            elif matrices:
                p.copy_(torch.randn_like(p) / np.sqrt(max(int(np.prod(p.shape[1:])), 1)))
    return model


def make_inputs(cfg: MMDiTConfig, seed: int = 1, frames: int = 3, height: int = 4, width: int = 6, text_len: int = 5):
    """Random channels-last model inputs, batch 2 with uneven text padding.

    Timestep and guidance are kept small: the fp32 sinusoid of t * freq is computed by XLA and by
    torch with different sin/cos/exp roundings, which alone moves the output by ~2e-5 relative at
    t = 500..6000 on these random weights, more than the 1e-5 the conversion is held to.
    """
    rng = np.random.default_rng(seed)
    b = 2
    mask = np.zeros((b, text_len), np.int64)
    mask[0, :] = 1
    mask[1, :2] = 1
    return dict(
        x=rng.standard_normal((b, frames, height, width, cfg.in_channels)).astype(np.float32),
        timestep=np.array([50.0, 20.0], np.float32),
        text=rng.standard_normal((b, text_len, cfg.text_embed_dim)).astype(np.float32),
        text_mask=mask,
        pooled=rng.standard_normal((b, cfg.pooled_projection_dim)).astype(np.float32),
        guidance=np.array([100.0, 200.0], np.float32) if cfg.guidance_embeds else None,
    )


def torch_forward(model, inp) -> np.ndarray:
    """The diffusers forward on channels-last inputs; returns channels-last output."""
    streams = {"pooled_projections": inp["pooled"]}
    if inp["guidance"] is not None:
        streams["guidance"] = inp["guidance"]
    return channels_last_forward(model, inp, **streams).numpy()


def channels_last_forward(model, inp, **streams):
    """A diffusers transformer's forward on `inp`'s channels-last latents `x`, its `timestep`, `text`
    and `text_mask`, and the model's other inputs `streams` (numpy arrays or None); the channels-last
    torch output."""
    t = lambda a: None if a is None else torch.from_numpy(np.asarray(a))
    with torch.no_grad():
        out = model(
            hidden_states=t(inp["x"]).permute(0, 4, 1, 2, 3),
            timestep=t(inp["timestep"]),
            encoder_hidden_states=t(inp["text"]),
            encoder_attention_mask=t(inp["text_mask"]),
            return_dict=False,
            **{k: t(v) for k, v in streams.items()},
        )[0]
    return out.permute(0, 2, 3, 4, 1)


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


# ----------------------------------------------------------------------------- original format

# diffusers suffix inside a dual block -> original suffix (plain renames)
_DUAL = {
    "norm1.linear": "img_mod.linear",
    "norm1_context.linear": "txt_mod.linear",
    "attn.norm_q": "img_attn_q_norm",
    "attn.norm_k": "img_attn_k_norm",
    "attn.norm_added_q": "txt_attn_q_norm",
    "attn.norm_added_k": "txt_attn_k_norm",
    "attn.to_out.0": "img_attn_proj",
    "attn.to_add_out": "txt_attn_proj",
    "ff.net.0.proj": "img_mlp.fc1",
    "ff.net.2": "img_mlp.fc2",
    "ff_context.net.0.proj": "txt_mlp.fc1",
    "ff_context.net.2": "txt_mlp.fc2",
}
_TOP = {
    "x_embedder.proj": "img_in.proj",
    "time_text_embed.timestep_embedder.linear_1": "time_in.mlp.0",
    "time_text_embed.timestep_embedder.linear_2": "time_in.mlp.2",
    "time_text_embed.guidance_embedder.linear_1": "guidance_in.mlp.0",
    "time_text_embed.guidance_embedder.linear_2": "guidance_in.mlp.2",
    "time_text_embed.text_embedder.linear_1": "vector_in.in_layer",
    "time_text_embed.text_embedder.linear_2": "vector_in.out_layer",
    "context_embedder.proj_in": "txt_in.input_embedder",
    "context_embedder.time_text_embed.timestep_embedder.linear_1": "txt_in.t_embedder.mlp.0",
    "context_embedder.time_text_embed.timestep_embedder.linear_2": "txt_in.t_embedder.mlp.2",
    "context_embedder.time_text_embed.text_embedder.linear_1": "txt_in.c_embedder.linear_1",
    "context_embedder.time_text_embed.text_embedder.linear_2": "txt_in.c_embedder.linear_2",
    "proj_out": "final_layer.linear",
}
_REFINER = {
    "norm1": "norm1",
    "norm2": "norm2",
    "attn.to_out.0": "self_attn_proj",
    "ff.net.0.proj": "mlp.fc1",
    "ff.net.2": "mlp.fc2",
    "norm_out.linear": "adaLN_modulation.1",
}


def _swap(a):
    first, second = np.split(a, 2, axis=0)
    return np.concatenate([second, first], axis=0)


_TOP15 = {  # HunyuanVideo-1.5's top-level names (diffusers' scripts/convert_hunyuan_video1_5_to_diffusers.py)
    "time_embed.timestep_embedder.linear_1": "time_in.mlp.0",
    "time_embed.timestep_embedder.linear_2": "time_in.mlp.2",
    "time_embed.timestep_embedder_r.linear_1": "time_r_in.mlp.0",
    "time_embed.timestep_embedder_r.linear_2": "time_r_in.mlp.2",
    "context_embedder_2.norm": "byt5_in.layernorm",
    "context_embedder_2.linear_1": "byt5_in.fc1",
    "context_embedder_2.linear_2": "byt5_in.fc2",
    "context_embedder_2.linear_3": "byt5_in.fc3",
    "image_embedder.norm_in": "vision_in.proj.0",
    "image_embedder.linear_1": "vision_in.proj.1",
    "image_embedder.linear_2": "vision_in.proj.3",
    "image_embedder.norm_out": "vision_in.proj.4",
    "cond_type_embed": "cond_type_embedding",
}


def to_original_hv15(sd: dict) -> dict:
    """diffusers `HunyuanVideo15Transformer3DModel` state dict -> the 1.5 release's names: dual-block
    q, k, v stay apart; the refiner's fuse; the final modulation's halves swap."""
    sd = dict(sd)
    out: dict = {}
    dual_qkv = {"attn.to_q": "img_attn_q", "attn.to_k": "img_attn_k", "attn.to_v": "img_attn_v",
                "attn.add_q_proj": "txt_attn_q", "attn.add_k_proj": "txt_attn_k", "attn.add_v_proj": "txt_attn_v"}
    for key, i, stem, leaf in _block_keys(sd, "transformer_blocks"):
        out[f"double_blocks.{i}.{dual_qkv.get(stem) or _DUAL[stem]}.{leaf}"] = sd.pop(key)
    for key in list(sd):
        stem, leaf = key.rsplit(".", 1)
        if stem in _TOP15:
            out[f"{_TOP15[stem]}.{leaf}"] = sd.pop(key)
    return {**out, **to_original(sd)}


def _block_keys(sd: dict, blocks: str):
    """(key, block index, stem, leaf) of each `{blocks}.{i}.{stem}.{weight|bias}` key, skipping the keys
    gone from `sd` meanwhile (a fusion pops its block's siblings)."""
    pattern = re.compile(re.escape(blocks) + r"\.(\d+)\.(.+)\.(weight|bias)$")
    for key in [k for k in sd if k.startswith(blocks + ".")]:
        if key in sd:
            yield (key, *pattern.match(key).groups())


def to_original(sd: dict, concat=lambda xs: np.concatenate(xs, axis=0), swap=_swap) -> dict:
    """diffusers transformer state dict -> the original release's names and fusions.

    `concat` (fuse along rows) and `swap` (exchange the two row halves) default to numpy; pass
    shape-only versions to map a full-size model's shapes without memory.
    """
    sd = dict(sd)
    out: dict = {}

    def fuse(new_key: str, parts: list[str]) -> None:
        out[new_key] = concat([sd.pop(p) for p in parts])

    for key, i, stem, leaf in _block_keys(sd, "transformer_blocks"):
        pre = f"transformer_blocks.{i}"
        if stem in ("attn.to_q", "attn.to_k", "attn.to_v"):
            fuse(f"double_blocks.{i}.img_attn_qkv.{leaf}", [f"{pre}.attn.to_{c}.{leaf}" for c in "qkv"])
        elif stem in ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"):
            fuse(f"double_blocks.{i}.txt_attn_qkv.{leaf}", [f"{pre}.attn.add_{c}_proj.{leaf}" for c in "qkv"])
        else:
            out[f"double_blocks.{i}.{_DUAL[stem]}.{leaf}"] = sd.pop(key)
    for key, i, stem, leaf in _block_keys(sd, "single_transformer_blocks"):
        pre = f"single_transformer_blocks.{i}"
        if stem in ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"):
            fuse(f"single_blocks.{i}.linear1.{leaf}", [f"{pre}.attn.to_{c}.{leaf}" for c in "qkv"] + [f"{pre}.proj_mlp.{leaf}"])
        else:
            name = {"proj_out": "linear2", "attn.norm_q": "q_norm", "attn.norm_k": "k_norm", "norm.linear": "modulation.linear"}[stem]
            out[f"single_blocks.{i}.{name}.{leaf}"] = sd.pop(key)
    for key, i, stem, leaf in _block_keys(sd, "context_embedder.token_refiner.refiner_blocks"):
        pre = f"context_embedder.token_refiner.refiner_blocks.{i}"
        new = f"txt_in.individual_token_refiner.blocks.{i}"
        if stem in ("attn.to_q", "attn.to_k", "attn.to_v"):
            fuse(f"{new}.self_attn_qkv.{leaf}", [f"{pre}.attn.to_{c}.{leaf}" for c in "qkv"])
        else:
            out[f"{new}.{_REFINER[stem]}.{leaf}"] = sd.pop(key)
    for key in list(sd):
        stem, leaf = key.rsplit(".", 1)
        if stem == "norm_out.linear":  # diffusers (scale, shift) -> original (shift, scale)
            out[f"final_layer.adaLN_modulation.1.{leaf}"] = swap(sd.pop(key))
        else:
            out[f"{_TOP[stem]}.{leaf}"] = sd.pop(key)
    assert not sd, sorted(sd)
    return out


def state_dict_numpy(model) -> dict[str, np.ndarray]:
    return {k: v.detach().float().numpy().copy() for k, v in model.state_dict().items()}


@dataclasses.dataclass
class DictSource:
    """A TensorSource over an in-memory dict of numpy arrays."""

    arrays: dict

    def keys(self):
        return list(self.arrays)

    def info(self, k):
        return TensorInfo(tuple(self.arrays[k].shape), self.arrays[k].dtype)

    def read(self, k, rows=None):
        a = self.arrays[k]
        return a.copy() if rows is None else a[rows[0] : rows[1]].copy()


class ShapeSource(DictSource):
    """A TensorSource that knows shapes only (float32 stand-ins that take no memory): for checks
    that never read, such as the coverage of a full-size model."""

    def __init__(self, shapes: dict):
        super().__init__({k: np.broadcast_to(np.float32(0), s) for k, s in shapes.items()})

    def read(self, k, rows=None):  # pragma: no cover - must not be called
        raise AssertionError("no reads in a shapes-only test")


def flat_params(tree, prefix=()):
    """(path, numpy array) for every leaf of a nested-dict params tree."""
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from flat_params(v, prefix + (k,))
    else:
        yield prefix, np.asarray(tree)
