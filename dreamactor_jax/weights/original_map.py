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
        if stem in _TOP:
            new[f"{_TOP[stem]}.{leaf}"] = Piece(key)
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


def vae_pieces(shapes: Mapping[str, tuple[int, ...]]) -> tuple[dict[str, Piece], list[str]]:
    """The original VAE uses diffusers' names, sometimes behind a `vae.` prefix."""
    keys = list(shapes)
    strip = all(k.startswith("vae.") for k in keys)
    return {(k[4:] if strip else k): Piece(k) for k in keys}, []


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
