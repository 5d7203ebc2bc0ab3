"""The text-embeddings file: what `tools/encode_text.py` writes and training / sampling read.

One safetensors file (no torch needed to read it):
  text [N, L, D] float32      LLaMA hidden states (L = 256 for T2V; image tokens + text for I2V)
  text_mask [N, L] int32      1 for real tokens, right padded
  pooled [N, 768] float32     CLIP-L pooled output
  null_text [1, L, D], null_text_mask [1, L], null_pooled [1, 768]   the empty prompt (for CFG)
  text_2 [N, G, 1472], text_2_mask [N, G], null_text_2, null_text_2_mask   HunyuanVideo-1.5 only: the
    ByT5 glyph tokens (`text.hv15.glyph_embeddings`); there `text` is Qwen2.5-VL's (width 3584) and
    `pooled` has width 0
metadata: ids (JSON list of N keys), prompts (JSON list), text_source (gemini / file / none / ...),
and the encoder settings (mode, model, crop_start, ...).

`zero_text` is the text input for runs without any text encoder (preprocessing without
`--text_embeddings`, `launch/sample.py --no-text`): one valid all-zero token and a zero pooled
vector. It carries no text at all, but it is not the encoded empty prompt the backbone was
pretrained with (`tools/encode_text.py --no-text` makes that one, from the local text encoders).
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

from dreamactor_jax.utils import atomic_path


@dataclasses.dataclass
class TextEmbeddings:
    """A batch of backbone text inputs (numpy)."""
    text: np.ndarray        # [N, L, D] float32
    text_mask: np.ndarray   # [N, L] int32
    pooled: np.ndarray      # [N, P] float32
    text_2: np.ndarray | None = None       # [N, G, D_glyph] float32 (HunyuanVideo-1.5 glyph tokens)
    text_2_mask: np.ndarray | None = None  # [N, G] int32

    def __post_init__(self):
        n = self.text.shape[0]
        if self.text.ndim != 3 or self.text_mask.shape != self.text.shape[:2] \
                or self.pooled.ndim != 2 or self.pooled.shape[0] != n:
            raise ValueError(f"embeddings: inconsistent shapes text {self.text.shape}, "
                             f"text_mask {self.text_mask.shape}, pooled {self.pooled.shape}")
        if (self.text_2 is None) != (self.text_2_mask is None) or self.text_2 is not None and (
                self.text_2.ndim != 3 or self.text_2.shape[0] != n or self.text_2_mask.shape != self.text_2.shape[:2]):
            raise ValueError("embeddings: text_2 / text_2_mask must come together as [N, G, D] / [N, G]")

    def glyph(self) -> dict:
        """{"text_2", "text_2_mask"} when the glyph tokens are present, else {}."""
        return {} if self.text_2 is None else {"text_2": self.text_2, "text_2_mask": self.text_2_mask}

    def __len__(self) -> int:
        return self.text.shape[0]

    def take(self, index) -> "TextEmbeddings":
        """Rows `index` (an int keeps the batch axis)."""
        index = [index] if isinstance(index, (int, np.integer)) else index
        return TextEmbeddings(self.text[index], self.text_mask[index], self.pooled[index],
                              **{k: v[index] for k, v in self.glyph().items()})

    @staticmethod
    def concat(parts: list["TextEmbeddings"]) -> "TextEmbeddings":
        glyph = {k: np.concatenate([p.glyph()[k] for p in parts]) for k in parts[0].glyph()}
        return TextEmbeddings(np.concatenate([p.text for p in parts]),
                              np.concatenate([p.text_mask for p in parts]),
                              np.concatenate([p.pooled for p in parts]), **glyph)


def zero_text(text_dim: int, pooled_dim: int) -> TextEmbeddings:
    """No text, without text encoders: one valid zero token (the backbone's masked mean needs one) and
    a zero pooled vector, batch 1."""
    return TextEmbeddings(np.zeros((1, 1, text_dim), np.float32), np.ones((1, 1), np.int32),
                          np.zeros((1, pooled_dim), np.float32))


def save_text_embeddings(path: str | os.PathLike, emb: TextEmbeddings, ids: list[str],
                         *, null: TextEmbeddings | None = None, prompts: list[str] | None = None,
                         meta: dict | None = None) -> None:
    """Writes the embeddings file atomically (safetensors)."""
    from safetensors.numpy import save_file
    if len(ids) != len(emb):
        raise ValueError(f"ids: {len(ids)} ids for {len(emb)} embeddings")
    if len(set(ids)) != len(ids):
        raise ValueError("ids: duplicate ids")
    if prompts is not None and len(prompts) != len(ids):
        raise ValueError(f"prompts: {len(prompts)} prompts for {len(ids)} ids")
    tensors = {"text": emb.text.astype(np.float32), "text_mask": emb.text_mask.astype(np.int32),
               "pooled": emb.pooled.astype(np.float32)}
    tensors.update(_glyph_tensors(emb))
    if null is not None:
        if null.text.shape[1:] != emb.text.shape[1:] or (null.text_2 is None) != (emb.text_2 is None):
            raise ValueError(f"null: text shape {null.text.shape} (glyph {null.text_2 is not None}) does not "
                             f"match {emb.text.shape} (glyph {emb.text_2 is not None})")
        tensors.update(null_text=null.text.astype(np.float32),
                       null_text_mask=null.text_mask.astype(np.int32),
                       null_pooled=null.pooled.astype(np.float32), **_glyph_tensors(null, "null_"))
    metadata = {"ids": json.dumps(list(ids), ensure_ascii=False), "format": "dreamactor-text-v1"}
    if prompts is not None:
        metadata["prompts"] = json.dumps(list(prompts), ensure_ascii=False)
    for k, v in (meta or {}).items():
        metadata[k] = v if isinstance(v, str) else json.dumps(v)
    with atomic_path(path, suffix=".safetensors") as tmp:
        save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(tmp), metadata=metadata)


def _glyph_tensors(emb: TextEmbeddings, prefix: str = "") -> dict:
    dtypes = {"text_2": np.float32, "text_2_mask": np.int32}
    return {prefix + k: v.astype(dtypes[k]) for k, v in emb.glyph().items()}


def _emb(t: dict, prefix: str = "") -> TextEmbeddings:
    return TextEmbeddings(t[prefix + "text"], t[prefix + "text_mask"], t[prefix + "pooled"],
                          t.get(prefix + "text_2"), t.get(prefix + "text_2_mask"))


def load_text_embeddings(path: str | os.PathLike) -> dict:
    """Reads an embeddings file: {"emb": TextEmbeddings, "null": TextEmbeddings | None,
    "ids": [...], "index": {id: row}, "prompts": [...] | None, "meta": {str: str}}."""
    from safetensors import safe_open
    from safetensors.numpy import load_file
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: text embeddings file not found")
    try:
        with safe_open(str(path), framework="np") as f:
            meta = dict(f.metadata() or {})
    except Exception as e:  # noqa: BLE001 - safetensors raises SafetensorError / OSError variants
        msg = (str(e).strip().splitlines() or [type(e).__name__])[0][:120]
        raise ValueError(f"{path}: not a text embeddings file (not safetensors: {msg}); make one with "
                         "tools/encode_text.py") from None
    if meta.get("format") != "dreamactor-text-v1":
        raise ValueError(f"{path}: not a dreamactor text embeddings file (format {meta.get('format')!r}); "
                         "make one with tools/encode_text.py")
    try:
        t = load_file(str(path))
        emb = _emb(t)
        null = _emb(t, "null_") if "null_text" in t else None
        ids = json.loads(meta.pop("ids"))
        prompts = json.loads(meta.pop("prompts")) if "prompts" in meta else None
    except Exception as e:  # noqa: BLE001 - a cut or edited file fails in many ways; one line for the user
        raise ValueError(f"{path}: damaged text embeddings file ({str(e).splitlines()[0][:120]})") from None
    if len(ids) != len(emb):
        raise ValueError(f"{path}: damaged text embeddings file ({len(ids)} ids for {len(emb)} rows)")
    return {"emb": emb, "null": null, "ids": ids, "index": {k: i for i, k in enumerate(ids)},
            "prompts": prompts, "meta": meta}
