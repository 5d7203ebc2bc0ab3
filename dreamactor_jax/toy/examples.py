"""Toy inputs for launch/sample.py and the web page: a reference image and driving videos from held-out cases.

    python -m dreamactor_jax.toy.examples --out toy_inputs --cases 0,1,2

writes, per case i, `case{i}/ref.png` (the reference character X, 32x32), `case{i}/pose.mp4` (the
driver's skeleton video, box-normalised onto X as the shipped pose model expects), `case{i}/driving.mp4`
(the driver's RGB video, for an end-to-end model) and `case{i}/target.mp4` (X performing the motion:
the exact answer). Videos are lossless RGB H.264 at the model's own size, so what sample.py reads is
exactly what the toy evaluation feeds the model (a yuv420p mp4 at 32x32 would smear every colour).
The shipped model's examples are `dreamactor_jax/toy/pretrained/examples/`.
"""

from __future__ import annotations

import argparse
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np

from dreamactor_jax.utils import atomic_path, cli_main


def write_lossless(path: str | Path, frames: np.ndarray, fps: float) -> None:
    """uint8 [T, H, W, 3] -> lossless RGB H.264 (libx264rgb, crf 0) mp4, written atomically."""
    import av

    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[1] % 2 or frames.shape[2] % 2:
        raise ValueError(f"write_lossless {path}: expected uint8 [T, H, W, 3] with even H and W, got "
                         f"{frames.dtype} {list(frames.shape)}")
    with atomic_path(path) as tmp:
        with av.open(str(tmp), "w", format="mp4") as c:
            s = c.add_stream("libx264rgb", rate=Fraction(fps).limit_denominator(1000))
            s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "rgb24"
            s.options = {"crf": "0"}
            for f in frames:
                for p in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                    c.mux(p)
            for p in s.encode():
                c.mux(p)


def write_case(out: Path, case, c) -> dict[str, Path]:
    """The four files of one held-out case under `out`; returns their paths by name."""
    from PIL import Image

    from dreamactor_jax.toy.evaluate import motion_inputs
    from dreamactor_jax.toy.world import WorldConfig

    wcfg = WorldConfig(**dict(c.world))
    out.mkdir(parents=True, exist_ok=True)
    paths = {"ref": out / "ref.png", "pose": out / "pose.mp4", "driving": out / "driving.mp4", "target": out / "target.mp4"}
    with atomic_path(paths["ref"]) as tmp:
        Image.fromarray(case.reference).save(tmp, format="PNG")
    write_lossless(paths["pose"], motion_inputs([case], c)[0], wcfg.fps)
    write_lossless(paths["driving"], case.driving.video, wcfg.fps)
    write_lossless(paths["target"], case.target.video, wcfg.fps)
    return paths


def main(argv=None) -> int:
    from dreamactor_jax.toy import shipped
    from dreamactor_jax.toy.world import WorldConfig, heldout_cases

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="output folder (one subfolder per case)")
    ap.add_argument("--cases", default="0", help="held-out case indices, comma separated")
    ap.add_argument("--model", default=str(shipped.SHIPPED), help="the packed toy model whose world to use")
    a = ap.parse_args(argv)
    try:
        idx = sorted({int(x) for x in a.cases.split(",") if x.strip()})
    except ValueError:
        raise ValueError(f"--cases {a.cases}: expected comma-separated integers") from None
    if not idx or min(idx) < 0:
        raise ValueError(f"--cases {a.cases}: expected non-negative case indices")
    from dreamactor_jax.sampling import packed

    c = shipped.toy_config(packed.read_info(a.model))
    cases = heldout_cases(max(idx) + 1, WorldConfig(**dict(c.world)))
    for i in idx:
        paths = write_case(Path(a.out) / f"case{i}", cases[i], c)
        print(f"case {i}: " + ", ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    cli_main(main, sys.argv[1:])
