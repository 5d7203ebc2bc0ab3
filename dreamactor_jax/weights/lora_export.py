"""A trained adapter -> a PEFT-format safetensors file that diffusers loads into the transformer.

JAX adapter (`models.lora`): per target `{"a": [L, in, r], "b": [L, r, out]}`, update
`scale * x A B` with `scale = alpha / rank`. PEFT (`lora_A.weight` [r, in], `lora_B.weight`
[out, r]) computes `scaling * lora_B(lora_A(x))`; diffusers, given no alphas, takes
`alpha = rank` per module (scaling 1). So the export folds `scale` into `lora_B`: the file is
exact whatever rank or pattern each module has, and needs no adapter config to load.

A single block's `proj_out` reads `concat[attention output (d), MLP activation (m)]`. The paper's
feed-forward-only adapter acts on the MLP columns only (`proj_out:mlp`, A [L, m, r]); it becomes a
LoRA on the whole `proj_out` whose A is zero over the attention columns. If both parts are
adapted they become one LoRA of rank r_attn + r_mlp with block-diagonal A.

Keys: `transformer.<diffusers module>.lora_A.weight`, the names `load_lora_adapter(...,
prefix="transformer")` and `HunyuanVideoPipeline.load_lora_weights` expect.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import jax
import numpy as np

from dreamactor_jax.utils import atomic_path

DTYPES = {"fp32": np.float32, "float32": np.float32, "bf16": "bfloat16", "bfloat16": "bfloat16"}


def _get(tree: Mapping, path: tuple[str, ...]):
    for name in path:
        tree = tree[name]
    return tree


def _kernel_in_dim(cfg, kernel_path: tuple[str, ...]) -> int:
    from dreamactor_jax.models.mmdit import param_specs

    return int(_get(param_specs(cfg), kernel_path).shape[-2])  # stacked kernel [L, in, out]


def lora_to_peft(lora: Mapping, cfg, lora_cfg, *, prefix: str = "transformer") -> dict[str, np.ndarray]:
    """The adapter pytree as a PEFT state dict (float32 numpy, torch layouts, scale folded into B)."""
    from dreamactor_jax.models import lora as lora_lib

    modules: dict[tuple[str, str], list] = {}  # (stack, diffusers module) -> [(rows, a, b)]
    for name, t in sorted(lora_lib.targets(cfg, lora_cfg).items()):
        stack, module = name.split(".", 1)
        module = module.split(":")[0]
        try:
            ab = _get(lora, t.lora_path)
        except (KeyError, TypeError):
            raise ValueError(f"lora: no adapter at {'/'.join(t.lora_path)} for target {name}") from None
        a, b = np.asarray(ab["a"], np.float32), np.asarray(ab["b"], np.float32)
        if a.ndim != 3 or b.ndim != 3 or a.shape[0] != b.shape[0] or a.shape[2] != b.shape[1]:
            raise ValueError(f"lora[{'/'.join(t.lora_path)}]: a {a.shape} and b {b.shape} are not [L, in, r], [L, r, out]")
        if a.shape[1] != t.rows[1] - t.rows[0]:
            raise ValueError(f"lora[{'/'.join(t.lora_path)}]: a has {a.shape[1]} inputs, target rows {t.rows}")
        modules.setdefault((stack, module), []).append((t.rows, a, b * np.float32(lora_cfg.scale), t.kernel_path))
    out: dict[str, np.ndarray] = {}
    for (stack, module), parts in modules.items():
        n_in = _kernel_in_dim(cfg, parts[0][3])
        layers = parts[0][1].shape[0]
        rank = sum(a.shape[2] for _, a, _, _ in parts)
        n_out = parts[0][2].shape[2]
        for i in range(layers):
            big_a = np.zeros((n_in, rank), np.float32)  # zero over input columns no part adapts
            big_b = np.zeros((rank, n_out), np.float32)
            r0 = 0
            for (lo, hi), a, b, _ in parts:
                r = a.shape[2]
                big_a[lo:hi, r0 : r0 + r] = a[i]
                big_b[r0 : r0 + r] = b[i]
                r0 += r
            key = f"{prefix}.{stack}.{i}.{module}" if prefix else f"{stack}.{i}.{module}"
            out[f"{key}.lora_A.weight"] = np.ascontiguousarray(big_a.T)  # [r, in]
            out[f"{key}.lora_B.weight"] = np.ascontiguousarray(big_b.T)  # [out, r]
    return out


def save_peft(path: str | os.PathLike, tensors: Mapping[str, np.ndarray], dtype: str = "fp32", metadata: Mapping[str, Any] | None = None) -> None:
    """Writes the PEFT state dict as safetensors, atomically."""
    import torch
    from safetensors.torch import save_file

    if dtype not in DTYPES:
        raise ValueError(f"dtype: expected fp32 or bf16, got {dtype!r}")
    tdtype = torch.float32 if DTYPES[dtype] is np.float32 else torch.bfloat16
    sd = {k: torch.from_numpy(np.ascontiguousarray(v, np.float32)).to(tdtype) for k, v in tensors.items()}
    meta = {"format": "pt"}
    if metadata:
        meta["dreamactor"] = json.dumps(metadata, sort_keys=True)
    with atomic_path(path, suffix=".safetensors") as tmp:
        save_file(sd, str(tmp), metadata=meta)


def load_training_lora(path: str | os.PathLike, step: int | None = None):
    """(lora pytree, MMDiTConfig, LoRAConfig, step) from a training checkpoint (`run_folder`)."""
    from dreamactor_jax import run_folder

    if not Path(path).exists():
        raise FileNotFoundError(f"{path}: no such training checkpoint")
    with run_folder.open_run(path, step, what="checkpoint") as run:
        cfg, lora_cfg = run.architecture()
        lora = jax.tree_util.tree_map(np.asarray, run.read_lora())
    return lora, cfg, lora_cfg, run.step


def export_lora(src: str | os.PathLike, out: str | os.PathLike, *, step: int | None = None, dtype: str = "fp32", prefix: str = "transformer", overwrite: bool = False) -> dict:
    """Training checkpoint -> PEFT safetensors file; returns a short summary."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out}: output file exists (pass --overwrite to replace it)")
    if out.suffix != ".safetensors":
        raise ValueError(f"out: expected a .safetensors file name, got {out.name!r}")
    lora, cfg, lora_cfg, step = load_training_lora(src, step)
    tensors = lora_to_peft(lora, cfg, lora_cfg, prefix=prefix)
    meta = {"step": step, "rank": lora_cfg.rank, "alpha": lora_cfg.alpha, "targets": list(lora_cfg.targets), "scale_folded_into_lora_B": True, "model": cfg.to_diffusers_config()}
    save_peft(out, tensors, dtype, meta)
    return {"out": str(out), "step": step, "tensors": len(tensors), "rank": lora_cfg.rank, "alpha": lora_cfg.alpha}
