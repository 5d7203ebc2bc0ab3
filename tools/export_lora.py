"""Export a trained adapter as a PEFT safetensors file that diffusers loads into HunyuanVideo.

    python tools/export_lora.py RUN_DIR OUT.safetensors [--step N] [--dtype fp32|bf16] [--overwrite]

RUN_DIR is a training workdir, its `checkpoints/` folder or one `checkpoints/<step>` folder
(latest step by default). Load the result with
`HunyuanVideoTransformer3DModel.load_lora_adapter(OUT, prefix="transformer")` or
`HunyuanVideoPipeline.load_lora_weights(OUT)`. The LoRA scale alpha/rank is folded into
`lora_B`, and the MLP-only adapter of the single blocks' `proj_out` becomes an exact LoRA on the
whole `proj_out` (zero over the attention input columns).
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
    p.add_argument("src", help="training workdir, its checkpoints/ folder, or checkpoints/<step>")
    p.add_argument("out", help="output .safetensors file")
    p.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--prefix", default="transformer", help="key prefix (diffusers: 'transformer')")
    p.add_argument("--overwrite", action="store_true")
    args = p.parse_args(argv)

    from dreamactor_jax.weights.lora_export import export_lora

    summary = export_lora(args.src, args.out, step=args.step, dtype=args.dtype, prefix=args.prefix, overwrite=args.overwrite)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    cli_main(main)
