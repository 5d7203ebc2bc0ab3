"""Makes a RANDOM base (I2V-33ch transformer + VAE) as a converted checkpoint: smoke tests and rehearsals.

    python tools/make_random_base.py ckpt/tiny                 # tiny, CPU, seconds
    python tools/make_random_base.py /scratch/full --size full --device cuda --dtype bf16
    python tools/make_random_base.py ckpt/tiny-hv15 --backbone hv15   # HunyuanVideo-1.5 (configs/pose_hv15.py)

Builds diffusers' `HunyuanVideoTransformer3DModel` (the I2V-33ch config: 33 input channels,
latent_concat) and `AutoencoderKLHunyuanVideo` with random weights (PyTorch's default
initialisation, seeded), saves them as diffusers folders (safetensors) under OUT/diffusers/, and
converts them with the project's converter (`tools/convert_weights.py`'s code) into
OUT/transformer and OUT/vae, which `launch/train.py --config.base_checkpoint=OUT/transformer
--config.preprocess.vae_checkpoint=OUT/vae` and `launch/sample.py` take like real weights.
`--size tiny` is the `tiny-i2v-33ch` backbone of `configs/pose.py:tiny` with a small 16-channel
VAE; `--size full` the published shapes (12.8B + 246M parameters: make them on a GPU, in bf16).
`--no-diffusers` deletes the diffusers folders once converted; `--no-convert` stops after writing
them (to convert with tools/convert_weights.py, as with downloaded weights). The weights mean nothing: what they
animate is noise. Needs torch and diffusers (`pip install -e ".[test]"`).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dreamactor_jax.utils import cli_main  # noqa: E402

SIZES = {"tiny": ("tiny-i2v-33ch", "tiny"), "full": ("i2v-33ch", "hunyuan")}
# --backbone hv15: HunyuanVideo-1.5's transformer and VAE (AutoencoderKLHunyuanVideo15)
SIZES_HV15 = {"tiny": ("tiny-hv15", "tiny15"), "full": ("hv15", "hunyuan15")}


def vae_kwargs(name: str, latent_channels: int) -> dict:
    """diffusers VAE arguments of the project's VAE config `name` (AutoencoderKLHunyuanVideo, or
    ...HunyuanVideo15 for the '*15' names)."""
    from dreamactor_jax.models.vae import VAEConfig

    if name.endswith("15"):
        from dreamactor_jax.models.vae15 import VAE15Config

        c = VAE15Config.named(name, latent_channels=latent_channels)
        return dict(latent_channels=c.latent_channels, block_out_channels=tuple(c.block_out_channels),
                    layers_per_block=c.layers_per_block)
    c = VAEConfig.named(name, latent_channels=latent_channels)
    n = len(c.block_out_channels)
    return dict(latent_channels=c.latent_channels, block_out_channels=tuple(c.block_out_channels),
                down_block_types=("HunyuanVideoDownBlock3D",) * n, up_block_types=("HunyuanVideoUpBlock3D",) * n,
                layers_per_block=c.layers_per_block, norm_num_groups=c.norm_num_groups)


def build(size: str, seed: int = 0, device: str = "cpu", dtype: str = "fp32", backbone: str = "hv"):
    """(transformer, vae): diffusers modules with seeded random weights, made directly on `device`."""
    import diffusers
    import torch

    from dreamactor_jax.models.config import MMDiTConfig

    mname, vname = (SIZES_HV15 if backbone == "hv15" else SIZES)[size]
    mcfg = MMDiTConfig.named(mname)
    tdt = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    previous = torch.get_default_dtype()
    torch.set_default_dtype(tdt)  # weights are created in the output dtype: no fp32 copy of 12.8B
    try:
        with torch.device(device), torch.no_grad():
            torch.manual_seed(seed)
            transformer = getattr(diffusers, mcfg.diffusers_class)(**mcfg.to_diffusers_config()).eval()
            torch.manual_seed(seed + 1)
            vae_cls = diffusers.AutoencoderKLHunyuanVideo15 if vname.endswith("15") else diffusers.AutoencoderKLHunyuanVideo
            vae = vae_cls(**vae_kwargs(vname, mcfg.out_channels)).eval()
    finally:
        torch.set_default_dtype(previous)
    return transformer, vae


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", help="output folder (gets transformer/, vae/ and diffusers/)")
    p.add_argument("--size", default="tiny", choices=sorted(SIZES), help="tiny (CPU smoke runs) or full")
    p.add_argument("--backbone", default="hv", choices=("hv", "hv15"),
                   help="hv: HunyuanVideo I2V-33ch (configs/pose.py); hv15: HunyuanVideo-1.5 (configs/pose_hv15.py)")
    p.add_argument("--device", default="cpu", help="torch device the weights are made on (cuda for full)")
    p.add_argument("--dtype", default=None, choices=("fp32", "bf16"), help="default: fp32 tiny, bf16 full")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-diffusers", action="store_true", help="delete the diffusers folders once converted")
    p.add_argument("--no-convert", action="store_true", help="only write the diffusers folders")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    args = p.parse_args(argv)
    out = Path(args.out)
    dtype = args.dtype or ("fp32" if args.size == "tiny" else "bf16")
    if args.no_convert and args.no_diffusers:
        raise ValueError("--no-convert with --no-diffusers would leave nothing")
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise FileExistsError(f"{out}: exists and is not empty (--overwrite to replace it)")
    try:
        import diffusers
        import torch
        del diffusers  # checked here: a one-line error rather than a traceback later
    except ImportError as e:
        raise ValueError(f"make_random_base needs torch and diffusers ({e}); pip install -e '.[test]'") from None
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {args.device}: no CUDA device here")

    from dreamactor_jax.weights.convert import convert

    timings = {}
    t0 = time.time()
    transformer, vae = build(args.size, args.seed, args.device, dtype, args.backbone)
    timings["build_s"] = round(time.time() - t0, 1)
    hf = out / "diffusers"
    t0 = time.time()
    transformer.save_pretrained(hf / "transformer", safe_serialization=True, max_shard_size="5GB")
    vae.save_pretrained(hf / "vae", safe_serialization=True)
    n_params = sum(p.numel() for p in transformer.parameters()), sum(p.numel() for p in vae.parameters())
    del transformer, vae
    if args.device.startswith("cuda"):
        torch.cuda.empty_cache()
    timings["save_s"] = round(time.time() - t0, 1)
    if args.no_convert:
        print(json.dumps({"out": str(out), "size": args.size, "dtype": dtype, "transformer_params": n_params[0],
                          "vae_params": n_params[1], "diffusers": str(hf), **timings}))
        return 0
    t0 = time.time()
    convert(hf / "transformer", out / "transformer", dtype=dtype, overwrite=args.overwrite)
    timings["convert_transformer_s"] = round(time.time() - t0, 1)
    t0 = time.time()
    convert(hf / "vae", out / "vae", dtype="fp32", overwrite=args.overwrite)
    timings["convert_vae_s"] = round(time.time() - t0, 1)
    if args.no_diffusers:
        shutil.rmtree(hf)
    print(json.dumps({"out": str(out), "size": args.size, "dtype": dtype, "transformer_params": n_params[0],
                      "vae_params": n_params[1], "transformer": str(out / "transformer"), "vae": str(out / "vae"),
                      "diffusers": None if args.no_diffusers else str(hf), **timings}))
    print(f"random base in {out}: train with --config.base_checkpoint={out / 'transformer'} "
          f"--config.preprocess.vae_checkpoint={out / 'vae'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    cli_main(main)
