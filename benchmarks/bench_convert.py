"""Peak memory (RSS) and time of converting a synthetic full-size bf16 transformer checkpoint.

    python benchmarks/bench_convert.py --workdir /work/tmp-convert-bench [--layers 20 --single-layers 40]
        [--format diffusers|original] [--keep]

1. writes a diffusers-format folder (config.json, 5 GB safetensors shards with an index) of the
   T2V transformer at full width, tensor by tensor with random finite bf16 values, never holding
   more than one tensor;
2. runs `tools/convert_weights.py` on it in a subprocess, sampling the RSS of that process tree
   every 50 ms (psutil) and reading the kernel's own peak (`ru_maxrss` of the child);
3. checks the output's params metadata (every leaf, full shapes, bf16) without loading it;
4. prints one JSON line and deletes the work folder (unless --keep).
CPU only; run it once, alone, on the 24 GB machine (it is an I/O job: ~26 GB read, ~26 GB written).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import shutil
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHARD_BYTES = 5 * 10**9  # diffusers' max_shard_size="5GB"


def _random_bf16_bits(rng: np.random.Generator, n: int) -> np.ndarray:
    """n random finite bf16 values (as uint16 bits): magnitudes in [2^-8, 2), random signs."""
    bits = rng.integers(0x3B80, 0x4000, size=n, dtype=np.uint16)
    bits |= rng.integers(0, 2, size=n, dtype=np.uint16) << 15
    return bits


def _write_shard(path: Path, items: list[tuple[str, tuple[int, ...]]], rng, block: int = 1 << 26) -> None:
    """One safetensors file, streamed: header first, then each tensor's bytes in blocks."""
    header, off = {}, 0
    for name, shape in items:
        n = math.prod(shape) * 2
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [off, off + n]}
        off += n
    header["__metadata__"] = {"format": "pt"}
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for _, shape in items:
            left = math.prod(shape)
            while left:
                k = min(left, block)
                f.write(_random_bf16_bits(rng, k).tobytes())
                left -= k


def write_synthetic(folder: Path, cfg, seed: int = 0, original: bool = False) -> int:
    """A full-size diffusers (or original-release) checkpoint of `cfg` with random bf16 values."""
    from dreamactor_jax.weights.diffusers_map import expected_torch_shapes

    shapes = expected_torch_shapes(cfg)
    if original:
        sys.path.insert(0, str(ROOT / "tests"))
        from convert_testlib import to_original

        class _S:
            def __init__(self, shape):
                self.shape = tuple(shape)

        fused = to_original({k: _S(s) for k, s in shapes.items()},
                            concat=lambda xs: _S((sum(x.shape[0] for x in xs),) + xs[0].shape[1:]), swap=lambda x: x)
        shapes = {k: v.shape for k, v in fused.items()}
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    shards, cur, cur_bytes = [], [], 0
    for name, shape in shapes.items():
        n = math.prod(shape) * 2
        if cur and cur_bytes + n > SHARD_BYTES:
            shards.append(cur)
            cur, cur_bytes = [], 0
        cur.append((name, shape))
        cur_bytes += n
    shards.append(cur)
    weight_map, total = {}, 0
    for i, items in enumerate(shards):
        fname = f"diffusion_pytorch_model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        _write_shard(folder / fname, items, rng)
        weight_map.update({name: fname for name, _ in items})
        total += sum(math.prod(s) * 2 for _, s in items)
        print(f"wrote {fname} ({len(items)} tensors)", file=sys.stderr, flush=True)
    if original:
        return total  # the original release has no config.json / index
    (folder / "diffusion_pytorch_model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=1))
    config = {"_class_name": "HunyuanVideoTransformer3DModel", **cfg.to_diffusers_config()}
    config["rope_axes_dim"] = list(config["rope_axes_dim"])
    (folder / "config.json").write_text(json.dumps(config, indent=1))
    return total


def _tree_rss(proc) -> int:
    import psutil

    try:
        procs = [proc] + proc.children(recursive=True)
        return sum(p.memory_info().rss for p in procs)
    except psutil.Error:
        return 0


def run_measured(cmd: list[str]) -> dict:
    """Runs `cmd`, sampling its process tree's RSS; returns peak RSS (sampled and kernel), time, rc."""
    import psutil

    t0 = time.time()
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc = psutil.Process(child.pid)
    peak = [0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _tree_rss(proc))
            time.sleep(0.05)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    out, err = child.communicate()
    done.set()
    th.join()
    wall = time.time() - t0
    kernel_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # Linux: KiB
    return {"rc": child.returncode, "seconds": round(wall, 1), "peak_rss_sampled_gib": round(peak[0] / 2**30, 2),
            "peak_rss_kernel_gib": round(kernel_peak / 2**30, 2), "stdout": out.strip()[-2000:], "stderr": err.strip()[-2000:]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", default="/work/tmp-convert-bench")
    p.add_argument("--layers", type=int, default=20)
    p.add_argument("--single-layers", type=int, default=40)
    p.add_argument("--format", default="diffusers", choices=["diffusers", "original"])
    p.add_argument("--keep", action="store_true", help="keep the synthetic checkpoint and output")
    p.add_argument("--tiny", action="store_true", help="the tiny t2v config (CPU smoke run, seconds)")
    args = p.parse_args(argv)

    from dreamactor_jax.models.config import MMDiTConfig

    cfg = MMDiTConfig.named("tiny-t2v" if args.tiny else "t2v", num_layers=args.layers, num_single_layers=args.single_layers)
    work = Path(args.workdir)
    if work.exists():
        raise SystemExit(f"error: {work} exists; remove it first")
    try:
        t0 = time.time()
        src = work / "src"
        nbytes = write_synthetic(src, cfg, original=args.format == "original")
        if args.format == "original":
            src = next(src.glob("*.safetensors")) if len(list(src.glob("*.safetensors"))) == 1 else src
        t_write = time.time() - t0
        out = work / "out"
        cmd = [sys.executable, str(ROOT / "tools" / "convert_weights.py"), str(src), str(out), "--dtype", "bf16", "--quiet"]
        if args.format == "original":
            cmd += ["--variant", "t2v"]
        res = run_measured(cmd)
        if res["rc"] != 0:
            print(json.dumps(res), flush=True)
            return 1
        from dreamactor_jax.weights import checkpoint

        meta = checkpoint.params_metadata(out)
        leaves = [m for m in __import__("jax").tree_util.tree_leaves(meta)]
        params = sum(math.prod(m.shape) for m in leaves)
        assert params == sum(math.prod(s) for s in __import__("dreamactor_jax.weights.diffusers_map", fromlist=["x"]).expected_torch_shapes(cfg).values())
        assert all(str(m.dtype) == "bfloat16" for m in leaves)
        out_bytes = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
        res.pop("stdout")
        res.pop("stderr")
        print(json.dumps({"format": args.format, "layers": [args.layers, args.single_layers], "params": params,
                          "source_gb": round(nbytes / 1e9, 2), "output_gb": round(out_bytes / 1e9, 2),
                          "leaves": len(leaves), "write_source_s": round(t_write, 1), **res}), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
