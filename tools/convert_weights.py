"""Convert published HunyuanVideo / HunyuanVideo-1.5 PyTorch weights to this project's Orbax params folder.

    python tools/convert_weights.py SRC OUT [--variant t2v|i2v-16ch|i2v-33ch|hv15|hv15-meanflow] [--dtype bf16|fp32]
        [--widen-33ch] [--format auto|diffusers|original] [--model auto|transformer|vae] [--overwrite]

SRC is a diffusers folder (config.json + one safetensors file or an index of shards, e.g. the
`transformer/` or `vae/` folder of a pipeline; `HunyuanVideoTransformer3DModel` or
`HunyuanVideo15Transformer3DModel`) or the original release: one file (`.safetensors`, or `.pt`
read with torch.load(weights_only=True)), or the HunyuanVideo-1.5 release's `transformer/<type>/` or
`vae/` folder (its own names; its own config.json is not read, so name the variant). OUT gets `config.json` and
`params/` (read back with `dreamactor_jax.weights.checkpoint.load_params`). Tensors are read and
written one leaf at a time, so the 12.8B transformer converts within a few GB of memory.
`--widen-33ch` turns a T2V transformer into the 33-channel in-context input (noise, condition
latent, mask), the new input channels of the patch embedding starting at zero.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dreamactor_jax.utils import cli_main  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("src", help="diffusers folder or original-release file")
    p.add_argument("out", help="output folder (must not exist unless --overwrite)")
    p.add_argument("--variant", default=None, help="transformer: t2v, i2v-16ch, i2v-33ch, hv15, hv15-meanflow (or tiny-*); vae: hunyuan")
    p.add_argument("--dtype", default="bf16", choices=["bf16", "fp32"], help="dtype of the written params")
    p.add_argument("--widen-33ch", action="store_true", help="widen a T2V transformer to 33 input channels")
    p.add_argument("--format", default="auto", choices=["auto", "diffusers", "original"])
    p.add_argument("--model", default="auto", choices=["auto", "transformer", "vae"])
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.add_argument("--quiet", action="store_true", help="no per-leaf progress on stderr")
    args = p.parse_args(argv)

    from dreamactor_jax.weights.convert import convert

    log = None if args.quiet else (lambda s: print(s, file=sys.stderr, flush=True))
    summary = convert(
        args.src,
        args.out,
        fmt=args.format,
        model=args.model,
        variant=args.variant,
        dtype=args.dtype,
        widen=args.widen_33ch,
        overwrite=args.overwrite,
        log=log,
    )
    summary.pop("config", None)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    cli_main(main)
