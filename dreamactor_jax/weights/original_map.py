"""Names of the original (Tencent) HunyuanVideo release -> diffusers names, one tensor at a time.

The original release fuses some projections that diffusers keeps apart:
- `*_attn_qkv` / `self_attn_qkv` [3h, h] -> `to_q`, `to_k`, `to_v` (or `add_{q,k,v}_proj`);
- `single_blocks.N.linear1` [3h + mlp, h] -> `attn.to_q/k/v` and `proj_mlp`;
- `final_layer.adaLN_modulation.1` gives (shift, scale) where diffusers' `norm_out.linear`
  gives (scale, shift): the two halves swap.
Every diffusers tensor is therefore a `Piece` of one original tensor: a block of leading rows,
maybe with its halves swapped. `OriginalView` presents an original checkpoint under diffusers
names, reading only the rows each piece needs. The table follows diffusers'
`scripts/convert_hunyuan_video_to_diffusers.py`; the VAE's names are the same in both formats.

HunyuanVideo-1.5's release (`tencent/HunyuanVideo-1.5`, `transformer/<type>/*.safetensors`, recognised
by its `cond_type_embedding`) keeps the dual blocks' q, k, v apart (`img_attn_q`, ...), names its
timestep embedder `time_embed` in diffusers (and MeanFlow's `time_r_in`), and adds the glyph
(`byt5_in`) and image (`vision_in`) embedders; the refiner and the final layer fuse and swap as
above (diffusers' `scripts/convert_hunyuan_video1_5_to_diffusers.py`). Its VAE has names of its own
(`encoder.down.N.block.M`, `mid.block_1`, `mid.attn_1.q`): `vae15_name`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from dreamactor_jax.weights.safetensors_io import TensorInfo, TensorSource


@dataclass(frozen=True)
class Piece:
    """A diffusers tensor = rows [r0, r1) of original tensor `src` (all rows if None)."""

    src: str
    rows: tuple[int, int] | None = None
    swap_halves: bool = False  # (a, b) -> (b, a) along the first axis


# Plain renames inside a block, original suffix -> diffusers suffix (before .weight/.bias).
_DOUBLE = {
    "img_mod.linear": "norm1.linear",
    "txt_mod.linear": "norm1_context.linear",
    "img_attn_q_norm": "attn.norm_q",
    "img_attn_k_norm": "attn.norm_k",
    "txt_attn_q_norm": "attn.norm_added_q",
    "txt_attn_k_norm": "attn.norm_added_k",
    "img_attn_proj": "attn.to_out.0",
    "txt_attn_proj": "attn.to_add_out",
    "img_mlp.fc1": "ff.net.0.proj",
    "img_mlp.fc2": "ff.net.2",
    "txt_mlp.fc1": "ff_context.net.0.proj",
    "txt_mlp.fc2": "ff_context.net.2",
    # HunyuanVideo-1.5 keeps q, k, v apart
    "img_attn_q": "attn.to_q",
    "img_attn_k": "attn.to_k",
    "img_attn_v": "attn.to_v",
    "txt_attn_q": "attn.add_q_proj",
    "txt_attn_k": "attn.add_k_proj",
    "txt_attn_v": "attn.add_v_proj",
}
_DOUBLE_QKV = {
    "img_attn_qkv": ("attn.to_q", "attn.to_k", "attn.to_v"),
    "txt_attn_qkv": ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"),
}
_SINGLE = {
    "linear2": "proj_out",
    "q_norm": "attn.norm_q",
    "k_norm": "attn.norm_k",
    "modulation.linear": "norm.linear",
}
_REFINER = {
    "norm1": "norm1",
    "norm2": "norm2",
    "self_attn_proj": "attn.to_out.0",
    "mlp.fc1": "ff.net.0.proj",
    "mlp.fc2": "ff.net.2",
    "adaLN_modulation.1": "norm_out.linear",
}
_TOP = {
    "img_in.proj": "x_embedder.proj",
    "time_in.mlp.0": "time_text_embed.timestep_embedder.linear_1",
    "time_in.mlp.2": "time_text_embed.timestep_embedder.linear_2",
    "guidance_in.mlp.0": "time_text_embed.guidance_embedder.linear_1",
    "guidance_in.mlp.2": "time_text_embed.guidance_embedder.linear_2",
    "vector_in.in_layer": "time_text_embed.text_embedder.linear_1",
    "vector_in.out_layer": "time_text_embed.text_embedder.linear_2",
    "txt_in.input_embedder": "context_embedder.proj_in",
    "txt_in.t_embedder.mlp.0": "context_embedder.time_text_embed.timestep_embedder.linear_1",
    "txt_in.t_embedder.mlp.2": "context_embedder.time_text_embed.timestep_embedder.linear_2",
    "txt_in.c_embedder.linear_1": "context_embedder.time_text_embed.text_embedder.linear_1",
    "txt_in.c_embedder.linear_2": "context_embedder.time_text_embed.text_embedder.linear_2",
    "final_layer.linear": "proj_out",
}
_TOP15 = {  # HunyuanVideo-1.5: these replace or add to _TOP
    "time_in.mlp.0": "time_embed.timestep_embedder.linear_1",
    "time_in.mlp.2": "time_embed.timestep_embedder.linear_2",
    "time_r_in.mlp.0": "time_embed.timestep_embedder_r.linear_1",
    "time_r_in.mlp.2": "time_embed.timestep_embedder_r.linear_2",
    "byt5_in.layernorm": "context_embedder_2.norm",
    "byt5_in.fc1": "context_embedder_2.linear_1",
    "byt5_in.fc2": "context_embedder_2.linear_2",
    "byt5_in.fc3": "context_embedder_2.linear_3",
    "vision_in.proj.0": "image_embedder.norm_in",
    "vision_in.proj.1": "image_embedder.linear_1",
    "vision_in.proj.3": "image_embedder.linear_2",
    "vision_in.proj.4": "image_embedder.norm_out",
    "cond_type_embedding": "cond_type_embed",
}
_HV15_MARK = "cond_type_embedding.weight"
_KEY = re.compile(r"^(?P<stem>.+)\.(?P<leaf>weight|bias)$")
_BLOCK = re.compile(r"^(?P<group>double_blocks|single_blocks|txt_in\.individual_token_refiner\.blocks)\.(?P<i>\d+)\.(?P<rest>.+)$")
_GROUPS = {
    "double_blocks": "transformer_blocks",
    "single_blocks": "single_transformer_blocks",
    "txt_in.individual_token_refiner.blocks": "context_embedder.token_refiner.refiner_blocks",
}


def _split_rows(src: str, sizes: list[int]) -> list[Piece]:
    out, r = [], 0
    for s in sizes:
        out.append(Piece(src, (r, r + s)))
        r += s
    return out


def transformer_pieces(shapes: Mapping[str, tuple[int, ...]]) -> tuple[dict[str, Piece], list[str]]:
    """Maps original transformer names to diffusers names.

    `shapes` holds every original tensor's shape (the splits need the row counts). Returns
    (diffusers name -> Piece, original names no rule knows). Each original tensor's rows are
    covered exactly once by the pieces made from it.
    """
    if "img_in.proj.weight" not in shapes:
        raise ValueError("original checkpoint: no 'img_in.proj.weight'; not a HunyuanVideo transformer")
    hidden = int(shapes["img_in.proj.weight"][0])
    top = {**_TOP, **_TOP15} if _HV15_MARK in shapes else _TOP
    pieces: dict[str, Piece] = {}
    unknown: list[str] = []
    for key, shape in shapes.items():
        m = _KEY.match(key)
        if m is None:
            unknown.append(key)
            continue
        stem, leaf = m["stem"], m["leaf"]
        rows = int(shape[0]) if shape else 0
        new: dict[str, Piece] = {}
        if stem in top:
            new[f"{top[stem]}.{leaf}"] = Piece(key)
        elif stem == "final_layer.adaLN_modulation.1":
            if rows % 2:
                raise ValueError(f"original checkpoint: {key} has {rows} rows; expected an even number")
            new[f"norm_out.linear.{leaf}"] = Piece(key, None, swap_halves=True)
        elif (b := _BLOCK.match(stem)) is not None:
            group, i, rest = b["group"], b["i"], b["rest"]
            prefix = f"{_GROUPS[group]}.{i}"
            table = {"double_blocks": _DOUBLE, "single_blocks": _SINGLE}.get(group, _REFINER)
            if rest in table:
                new[f"{prefix}.{table[rest]}.{leaf}"] = Piece(key)
            elif (group == "double_blocks" and rest in _DOUBLE_QKV) or (group != "double_blocks" and rest in ("self_attn_qkv",)):
                names = _DOUBLE_QKV[rest] if group == "double_blocks" else ("attn.to_q", "attn.to_k", "attn.to_v")
                if rows % 3:
                    raise ValueError(f"original checkpoint: {key} has {rows} rows; expected 3 equal parts (q, k, v)")
                for name, piece in zip(names, _split_rows(key, [rows // 3] * 3)):
                    new[f"{prefix}.{name}.{leaf}"] = piece
            elif group == "single_blocks" and rest == "linear1":
                if rows <= 3 * hidden:
                    raise ValueError(f"original checkpoint: {key} has {rows} rows; expected 3 x {hidden} + mlp")
                names = ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp")
                for name, piece in zip(names, _split_rows(key, [hidden] * 3 + [rows - 3 * hidden])):
                    new[f"{prefix}.{name}.{leaf}"] = piece
        if not new:
            unknown.append(key)
        for k, p in new.items():
            if k in pieces:
                raise ValueError(f"original checkpoint: {key} and {pieces[k].src} both map to {k}")
            pieces[k] = p
    return pieces, sorted(unknown)


VAE15_ORIGINAL = re.compile(r"^(encoder|decoder)\.(down|up)\.\d+\.|^(encoder|decoder)\.mid\.")
_VAE15_RULES = (  # the 1.5 release's VAE names -> diffusers' (scripts/convert_hunyuan_video1_5_to_diffusers.py)
    (re.compile(r"^encoder\.down\.(\d+)\.block\.(\d+)\."), r"encoder.down_blocks.\1.resnets.\2."),
    (re.compile(r"^encoder\.down\.(\d+)\.downsample\."), r"encoder.down_blocks.\1.downsamplers.0."),
    (re.compile(r"^decoder\.up\.(\d+)\.block\.(\d+)\."), r"decoder.up_blocks.\1.resnets.\2."),
    (re.compile(r"^decoder\.up\.(\d+)\.upsample\."), r"decoder.up_blocks.\1.upsamplers.0."),
    (re.compile(r"^(encoder|decoder)\.mid\.block_([12])\."), lambda m: f"{m[1]}.mid_block.resnets.{int(m[2]) - 1}."),
    (re.compile(r"^(encoder|decoder)\.mid\.attn_1\.([qkv])\."), r"\1.mid_block.attentions.0.to_\2."),
    (re.compile(r"^(encoder|decoder)\.mid\.attn_1\."), r"\1.mid_block.attentions.0."),
)


def vae15_name(key: str) -> str:
    """A HunyuanVideo-1.5 release VAE name -> diffusers' (names that need no change pass through)."""
    for pattern, repl in _VAE15_RULES:
        new, n = pattern.subn(repl, key, count=1)
        if n:
            return new
    return key


def vae_pieces(shapes: Mapping[str, tuple[int, ...]]) -> tuple[dict[str, Piece], list[str]]:
    """The original HunyuanVideo VAE uses diffusers' names, sometimes behind a `vae.` prefix; the 1.5
    release's VAE has its own (`vae15_name`)."""
    keys = list(shapes)
    strip = all(k.startswith("vae.") for k in keys)
    names = {k: (k[4:] if strip else k) for k in keys}
    if any(VAE15_ORIGINAL.match(n) for n in names.values()):
        names = {k: vae15_name(n) for k, n in names.items()}
    return {n: Piece(k) for k, n in names.items()}, []


class OriginalView:
    """An original-format checkpoint seen under diffusers names (a `TensorSource`)."""

    def __init__(self, source: TensorSource, kind: str):
        self.source = source
        shapes = {k: source.info(k).shape for k in source.keys()}
        if kind == "transformer":
            self.pieces, self.unknown = transformer_pieces(shapes)
        elif kind == "vae":
            self.pieces, self.unknown = vae_pieces(shapes)
        else:
            raise ValueError(f"model kind: expected 'transformer' or 'vae', got {kind!r}")

    def keys(self) -> list[str]:
        return list(self.pieces)

    def info(self, key: str) -> TensorInfo:
        p = self.pieces[key]
        src = self.source.info(p.src)
        shape = src.shape
        if p.rows is not None:
            shape = (p.rows[1] - p.rows[0],) + shape[1:]
        return TensorInfo(shape, src.dtype, src.file, src.offset)

    def read(self, key: str, rows: tuple[int, int] | None = None) -> np.ndarray:
        p = self.pieces[key]
        if p.swap_halves:
            n = self.source.info(p.src).shape[0]
            a = self.source.read(p.src, (n // 2, n))
            b = self.source.read(p.src, (0, n // 2))
            out = np.concatenate([a, b], axis=0)
            return out if rows is None else out[rows[0] : rows[1]]
        if p.rows is None and rows is None:
            return self.source.read(p.src)
        base = p.rows or (0, self.source.info(p.src).shape[0])
        if rows is not None:
            base = (base[0] + rows[0], base[0] + rows[1])
        return self.source.read(p.src, base)
