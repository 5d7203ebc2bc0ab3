"""On-paper step time, MFU and memory of the full 12.8B I2V-33ch LoRA step on TPU v5p / v6e slices.

    python benchmarks/tpu_estimate.py            # the tables of docs/tpu.md (markdown)
    python benchmarks/tpu_estimate.py --json     # the same rows as JSON

An ESTIMATE, not a measurement (no TPU has run this project). Inputs, all printed in docs/tpu.md:
- FLOPs: the project's count, `benchmarks/bench_train.py:train_flops` (model FLOPs of one clip-step:
  forward + backward to activations + LoRA; remat recompute not counted), as docs/benchmarks.md.
- Chips: published bf16 peak and HBM per chip (cloud.google.com/tpu/docs/v5p, /v6e).
- Efficiency: two MFU assumptions, not measured on TPU: 30% (maxdiffusion's published Wan 2.1 14B
  training figure on v5p, 135.9 TFLOP/s per chip = 29.6% of 459) and 50% (what this project's JAX
  step reaches on NVIDIA: 54.4% on H100 at 49 frames, 53.3% on H200 at 100k tokens).
- Memory per chip: the base and adapter state sharded exactly as `sharding.RULES` shard them on the
  mesh, plus per clip on the chip the full-remat saved block inputs (60 blocks x tokens x 3072 bf16)
  and one block's working set per token, fitted to the measured one-H200 100,696-token step and
  checked against the two other measured full-model steps (`memory_model_check`).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

GB, GIB = 1e9, 2**30
CHIPS = {  # published: bf16 peak FLOP/s and HBM bytes per chip
    "v5p": {"peak": 459e12, "hbm": 95 * GB, "source": "https://cloud.google.com/tpu/docs/v5p"},
    "v6e": {"peak": 918e12, "hbm": 32 * GB, "source": "https://cloud.google.com/tpu/docs/v6e"},
}
MFU_LOW, MFU_HIGH = 0.30, 0.50
HBM_USABLE = 0.90  # leave 10% for XLA's own buffers and fragmentation
HEADS = 24  # Ulysses needs the sequence axis size to divide the heads
TOKENS = {49: 13 * 30 * 104 + 256, 121: 31 * 30 * 104 + 256}  # 480x832 panel in-context + 256 text
PAPER_CLIPS = 50_000 * 2  # the paper's recipe: 50,000 steps at batch 2

# measured full 12.8B steps (docs/benchmarks.md): (tokens, mesh, clips per device, peak GiB)
MEASURED = {
    "h200_1gpu_100k": (100_696, {"sequence": 1, "fsdp": 1}, 1, 83.9),  # the fit point
    "h200_2gpu_seq2_100k": (100_696, {"sequence": 2, "fsdp": 1}, 1, 57.3),
    "h100_1gpu_49f": (41_340 + 256, {"sequence": 1, "fsdp": 1}, 1, 52.5),
}


@dataclass
class Row:
    chip: str
    slice: str
    chips: int
    frames: int
    tokens: int
    mesh: str
    global_batch: int
    mem_gb: float
    fits: bool
    tflop_per_clip: float
    step_s_low: float  # at MFU_LOW
    step_s_high: float  # at MFU_HIGH
    clips_per_hour_high: float
    paper_recipe_hours: tuple  # (at MFU_HIGH, at MFU_LOW)


def _model():
    from dreamactor_jax.models import lora as lora_lib
    from dreamactor_jax.models.config import MMDiTConfig

    return MMDiTConfig.named("i2v-33ch"), lora_lib.LoRAConfig(rank=256, alpha=256.0)


def state_bytes_per_chip(mesh: dict) -> tuple[float, float]:
    """(frozen bf16 base, LoRA fp32 params + grads + AdamW moments) bytes on one chip of `mesh`."""
    import jax

    from dreamactor_jax import sharding

    sizes = {a: mesh.get(a, 1) for a in sharding.MESH_AXES}

    class _Shape:  # logical_to_spec only reads mesh.shape
        shape = sizes

    def per_chip(shapes, axes, bytes_per):
        total = 0
        is_axes = lambda x: isinstance(x, tuple) and all(a is None or isinstance(a, str) for a in x)
        for shp, ax in zip(jax.tree_util.tree_leaves(shapes), jax.tree_util.tree_leaves(axes, is_leaf=is_axes)):
            spec = sharding.logical_to_spec(ax, sharding.RULES, _Shape)
            n = 1
            for dim, s in zip(shp.shape, tuple(spec) + (None,) * (len(shp.shape) - len(spec))):
                names = () if s is None else ((s,) if isinstance(s, str) else s)
                n *= -(-dim // math.prod(sizes[a] for a in names))
            total += n * bytes_per
        return total

    base, base_axes, lora, lora_axes = _shapes()
    return per_chip(base, base_axes, 2), per_chip(lora, lora_axes, 16)


@functools.lru_cache(maxsize=1)
def _shapes():
    """(base shapes, base axes, LoRA shapes, LoRA axes) of the full model, without memory."""
    import jax

    from dreamactor_jax.models import lora as lora_lib
    from dreamactor_jax.models import mmdit

    mcfg, lcfg = _model()
    return (jax.eval_shape(lambda: mmdit.init_params(mcfg, jax.random.key(0))), mmdit.param_axes(mcfg),
            jax.eval_shape(lambda: lora_lib.init_lora(mcfg, lcfg, jax.random.key(0))), lora_lib.lora_axes(mcfg, lcfg))


def activation_bytes_per_token() -> tuple[float, float]:
    """(saved block inputs, working set) bytes per token on a chip, the second fitted to MEASURED."""
    mcfg, _ = _model()
    saved = (mcfg.num_layers + mcfg.num_single_layers) * mcfg.hidden_size * 2
    n, mesh, clips, peak = MEASURED["h200_1gpu_100k"]
    base, lora = state_bytes_per_chip(mesh)
    working = (peak * GIB - base - lora) / (clips * n) - saved
    return saved, working


def memory_per_chip(tokens: int, mesh: dict, clips_per_chip: int) -> float:
    base, lora = state_bytes_per_chip(mesh)
    saved, working = activation_bytes_per_token()
    return base + lora + clips_per_chip * (tokens / mesh.get("sequence", 1)) * (saved + working)


def memory_model_check() -> dict:
    """Model vs measured peak (GiB) for each measured full-model step."""
    return {k: (round(memory_per_chip(n, mesh, c) / GIB, 1), peak) for k, (n, mesh, c, peak) in MEASURED.items()}


def clip_flops(tokens: int) -> float:
    from bench_train import train_flops

    mcfg, lcfg = _model()
    return train_flops(mcfg, lcfg, tokens - 256, 256)


def plan(chip: str, chips: int, tokens: int, slices: int = 1) -> tuple[dict, int, float]:
    """The mesh for one slice size: the smallest sequence axis (dividing the 24 heads) and then the
    smallest fsdp axis whose per-chip memory fits; one clip per sequence group (global batch =
    chips / sequence); data takes the rest, and spans the slices when there are several. When no
    mesh fits, the one with the least memory per chip (the row says it does not fit)."""
    hbm = CHIPS[chip]["hbm"] * HBM_USABLE
    best = None
    for seq in (s for s in (1, 2, 3, 4, 6, 8, 12, 24) if chips % s == 0):
        groups = chips // seq
        for fsdp in (f for f in (1, 2, 4, 8, 16, 32, 64) if groups % f == 0 and (groups // f) % slices == 0):
            mesh = {"data": groups // fsdp, "fsdp": fsdp, "sequence": seq, "tensor": 1}
            mem = memory_per_chip(tokens, mesh, 1)
            if mem <= hbm:
                return mesh, groups, mem
            if best is None or mem < best[2]:
                best = (mesh, groups, mem)
    return best


SLICES = {
    "v5p": [("v5p-8", 4, 1), ("v5p-32", 16, 1), ("v5p-128", 64, 1), ("2 x v5p-128", 128, 2)],
    "v6e": [("v6e-8", 8, 1), ("v6e-32", 32, 1), ("v6e-256", 256, 1), ("2 x v6e-256", 512, 2)],
}


def rows() -> list[Row]:
    out = []
    for frames, tokens in TOKENS.items():
        f = clip_flops(tokens)
        for chip, sizes in SLICES.items():
            peak = CHIPS[chip]["peak"]
            for name, chips, slices in sizes:
                mesh, batch, mem = plan(chip, chips, tokens, slices)
                per_chip = f * batch / chips
                lo, hi = per_chip / (peak * MFU_LOW), per_chip / (peak * MFU_HIGH)
                mesh_s = " ".join(f"{k}={v}" for k, v in mesh.items() if v > 1) or "data=1"
                out.append(Row(chip, name, chips, frames, tokens, mesh_s, batch, round(mem / GB, 1),
                               mem <= CHIPS[chip]["hbm"] * HBM_USABLE, round(f / 1e12),
                               round(lo, 2), round(hi, 2), round(3600 * batch / hi),
                               (round(PAPER_CLIPS / batch * hi / 3600, 1), round(PAPER_CLIPS / batch * lo / 3600, 1))))
    return out


def table(rs: list[Row]) -> str:
    head = ("| chip | slice | chips | frames | tokens/clip | mesh | clips/step | GB/chip (of HBM) | step s at 50% / 30% MFU "
            "| clips/hour at 50% | paper's 100k clips, hours at 50% / 30% |")
    lines = [head, "|" + "---|" * 11]
    for r in rs:
        lines.append(f"| {r.chip} | {r.slice} | {r.chips} | {r.frames} | {r.tokens:,} | {r.mesh} | {r.global_batch} | "
                     f"{r.mem_gb:.1f} ({CHIPS[r.chip]['hbm'] / GB:.0f}){'' if r.fits else ' **does not fit**'} | "
                     f"{r.step_s_high:.1f} / {r.step_s_low:.1f} | "
                     f"{r.clips_per_hour_high:,.0f} | {r.paper_recipe_hours[0]:,.1f} / {r.paper_recipe_hours[1]:,.1f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", action="store_true", help="rows as JSON instead of markdown")
    args = p.parse_args(argv)
    rs = rows()
    if args.json:
        print(json.dumps({"rows": [asdict(r) for r in rs], "memory_model_check": memory_model_check(),
                          "clip_tflop": {k: clip_flops(v) / 1e12 for k, v in TOKENS.items()}}, indent=1))
    else:
        print(table(rs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
