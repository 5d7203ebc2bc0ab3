"""The exported LoRA loaded into diffusers (PEFT) against the project's forward: the rehearsal's last stage.

    python benchmarks/rehearsal_peft.py --run RUN --base CKPT/transformer --diffusers HF/transformer \
        --lora lora.safetensors --device cuda --dtype bf16 --json peft.json

The same small input (2 latent frames of 8x8, 16 text tokens, 10 valid) goes through
  * the project's MMDiT (`models.mmdit.forward`) on the converted base, with the run's adapter
    unmerged (and without it), in JAX;
  * diffusers' `HunyuanVideoTransformer3DModel` from the diffusers folder, with the exported file
    loaded by `load_lora_adapter(..., prefix="transformer")` (PEFT), and with the adapter disabled.
The base-vs-base error is the floor (bf16 noise on a GPU, fp32 rounding on CPU); the adapter
check passes when the with-adapter error stays within twice that floor (plus 1e-3 in bf16, 1e-5 in
fp32). A few training steps barely move LoRA B (it starts at zero), so the adapter's effect can
sit below bf16 noise: the same comparison is repeated with every B multiplied by one factor in
both implementations (`boost`, chosen to give B an RMS of 6e-3): the same mapping, now visible.
When B is exactly zero (one step at the warm-up's lr 0), no factor helps: both sides then get the
same seeded random B of that RMS (diffusers' through the exporter's mapping; `boost` = "random").
A missing diffusers folder of a random base (`--size`) is remade from its seed and checked
against the converted weights.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dreamactor_jax.utils import cli_main, write_text_atomic  # noqa: E402


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def inputs(mcfg, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    mask = np.zeros((1, 16), np.int32)
    mask[:, :10] = 1
    return {"x": rng.standard_normal((1, 2, 8, 8, mcfg.in_channels)).astype(np.float32),
            "t": np.array([500.0], np.float32),
            "text": rng.standard_normal((1, 16, mcfg.text_embed_dim)).astype(np.float32),
            "mask": mask, "pooled": rng.standard_normal((1, mcfg.pooled_projection_dim)).astype(np.float32)}


def jax_outputs(base: str, run: str, dtype: str, inp: dict) -> tuple[dict, float, object]:
    """{"base", "lora", "boost"} outputs of the project's forward, the boost factor, the params."""
    import jax
    import jax.numpy as jnp

    from dreamactor_jax import run_folder
    from dreamactor_jax.models import mmdit
    from dreamactor_jax.weights.checkpoint import load_config, load_params

    # XLA attention: at 48 tokens the kernel does not matter, the adapter's mapping does
    mcfg = load_config(base, dtype=dtype, param_dtype=dtype, attention_impl="xla")
    params = load_params(base, dtype=jnp.dtype(dtype))
    with run_folder.open_run(run) as ck:
        _, lcfg = ck.architecture()
        lora = ck.read_lora()
    bs = [np.asarray(x, np.float32) for p, x in jax.tree_util.tree_flatten_with_path(lora)[0]
          if getattr(p[-1], "key", None) == "b"]
    rms = float(np.sqrt(np.mean(np.concatenate([b.ravel() for b in bs]) ** 2)) * lcfg.scale)
    if rms == 0.0:  # B exactly zero (e.g. one step at warm-up lr 0): no factor shows the mapping; a seeded B does
        rng = np.random.default_rng(0)
        boost = "random"
        boosted = jax.tree_util.tree_map_with_path(
            lambda p, x: jnp.asarray(rng.standard_normal(x.shape) * 6e-3 / lcfg.scale, x.dtype)
            if getattr(p[-1], "key", None) == "b" else x, lora)
    else:
        boost = float(np.clip(6e-3 / max(rms, 1e-12), 1.0, 1e6))
        boosted = jax.tree_util.tree_map_with_path(
            lambda p, x: x * boost if getattr(p[-1], "key", None) == "b" else x, lora)
    opts = {"xla_backend_optimization_level": 0} if jax.default_backend() == "cpu" else None  # tiny CPU runs
    fwd = jax.jit(lambda prm, lo: mmdit.forward(prm, mcfg, jnp.asarray(inp["x"]), inp["t"], jnp.asarray(inp["text"]),
                                                inp["mask"], jnp.asarray(inp["pooled"]), lora=lo, lora_cfg=lcfg),
                  compiler_options=opts)
    zero = jax.tree_util.tree_map_with_path(lambda p, x: x * 0 if getattr(p[-1], "key", None) == "b" else x, lora)
    out = {"base": fwd(params, zero), "lora": fwd(params, lora)}  # B = 0: exactly the base, one compilation
    out["boost"] = out["lora"] if boost == 1.0 else fwd(params, boosted)
    peft_b = None
    if boost == "random":  # the seeded B in diffusers' names, through the exporter's own mapping
        from dreamactor_jax.weights.lora_export import lora_to_peft

        peft_b = {k: v for k, v in lora_to_peft(boosted, mcfg, lcfg, prefix="").items() if ".lora_B." in k}
    return {k: np.asarray(v, np.float32) for k, v in out.items()}, boost, (params, mcfg, peft_b)


def diffusers_model(folder: Path, size: str | None, device: str, dtype: str, params, mcfg):
    import torch

    tdt = {"bfloat16": torch.bfloat16, "float32": torch.float32}[dtype]
    if folder.is_dir():
        import diffusers

        return diffusers.HunyuanVideoTransformer3DModel.from_pretrained(str(folder), torch_dtype=tdt).to(device), "folder"
    if not size:
        raise FileNotFoundError(f"--diffusers {folder}: no such folder (give --size to remake a random base)")
    import importlib.util

    from dreamactor_jax.weights.diffusers_map import torch_to_flax

    spec = importlib.util.spec_from_file_location("mrb", ROOT / "tools" / "make_random_base.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    model, _ = mod.build(size, 0, device, "bf16" if dtype == "bfloat16" else "fp32")
    for key in ("x_embedder.proj.weight", "transformer_blocks.0.ff.net.2.weight", "proj_out.weight"):
        m = torch_to_flax(key, dict(model.named_parameters())[key])
        want = params
        for name in m.path:
            want = want[name]
        want = np.asarray(want[m.layer] if m.layer is not None else want, np.float32)
        if not np.array_equal(want, m.array.astype(np.float32)):
            raise ValueError(f"remade random base differs from the converted one at {key}; keep the diffusers folder")
    return model, "remade from its seed (matches the converted weights)"


def torch_forward(model, inp: dict, device: str):
    import torch

    dt = next(model.parameters()).dtype
    t = lambda a, d=dt: torch.from_numpy(a).to(device, d)  # noqa: E731
    with torch.no_grad():
        out = model(hidden_states=t(inp["x"]).permute(0, 4, 1, 2, 3), timestep=t(inp["t"], torch.float32),
                    encoder_hidden_states=t(inp["text"]), encoder_attention_mask=t(inp["mask"], torch.int64),
                    pooled_projections=t(inp["pooled"]), return_dict=False)[0]
    return out.permute(0, 2, 3, 4, 1).float().cpu().numpy()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True, help="the training workdir")
    p.add_argument("--base", required=True, help="the converted transformer")
    p.add_argument("--diffusers", required=True, help="the diffusers transformer folder it was converted from")
    p.add_argument("--lora", required=True, help="tools/export_lora.py's file")
    p.add_argument("--size", choices=("tiny", "full"), help="a random base: remake the folder if it is gone")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="fp32", choices=("fp32", "bf16"))
    p.add_argument("--json", help="write the result here")
    args = p.parse_args(argv)
    dtype = {"fp32": "float32", "bf16": "bfloat16"}[args.dtype]
    import jax

    from dreamactor_jax.weights.checkpoint import load_config

    inp = inputs(load_config(args.base))
    jx, boost, (params, mcfg, peft_b) = jax_outputs(args.base, args.run, dtype, inp)
    model, origin = diffusers_model(Path(args.diffusers), args.size, args.device, dtype, params, mcfg)
    del params
    jax.clear_caches()
    th = {"base": torch_forward(model, inp, args.device)}
    model.load_lora_adapter(args.lora, prefix="transformer", adapter_name="dreamactor")
    th["lora"] = torch_forward(model, inp, args.device)
    if boost == 1.0:
        th["boost"] = th["lora"]
    else:
        import torch

        with torch.no_grad():
            for name, prm in model.named_parameters():
                if "lora_B" not in name:
                    continue
                if peft_b is None:
                    prm.mul_(boost)
                else:  # "blocks.0.ff.net.2.lora_B.dreamactor.weight" -> the exporter's "blocks.0.ff.net.2.lora_B.weight"
                    prm.copy_(torch.from_numpy(peft_b.pop(name.replace(".dreamactor.", "."))))
        if peft_b:
            raise ValueError(f"{len(peft_b)} exported B matrices have no diffusers parameter, e.g. {next(iter(peft_b))}")
        th["boost"] = torch_forward(model, inp, args.device)
    floor = rel_err(jx["base"], th["base"])
    slack = 1e-3 if dtype == "bfloat16" else 1e-5
    res = {"dtype": dtype, "device": args.device, "diffusers_model": origin, "boost": boost,
           "err_base": floor, "err_lora": rel_err(jx["lora"], th["lora"]), "err_boost": rel_err(jx["boost"], th["boost"]),
           "effect_lora": rel_err(jx["lora"], jx["base"]), "effect_boost": rel_err(jx["boost"], jx["base"])}
    res["pass"] = bool(res["err_lora"] <= 2 * floor + slack and res["err_boost"] <= 2 * floor + slack
                       and res["effect_boost"] > 5 * res["err_boost"])
    if args.json:
        write_text_atomic(args.json, json.dumps(res, indent=1))
    print(json.dumps(res))
    return 0 if res["pass"] else 1


if __name__ == "__main__":
    cli_main(main)
