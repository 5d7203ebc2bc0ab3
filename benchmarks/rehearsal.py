"""Dress rehearsal of the real-data path at full size: every README step, as a user runs it, timed.

    python benchmarks/rehearsal.py --prepare .carry_rehearsal            # CPU: inputs + keypoints (mediapipe)
    XLA_PYTHON_CLIENT_PREALLOCATE=false python benchmarks/rehearsal.py --inputs .carry_rehearsal \
        --workdir /tmp/rehearsal --out $OUT                              # one GPU (H200: ~10-13 min)
    python benchmarks/rehearsal.py --tiny --workdir /tmp/r --out /tmp/r/out   # CPU, tiny sizes, ~1-2 min
    python benchmarks/rehearsal.py --transformer HY-I2V/transformer --vae HY-I2V/vae ...   # real weights

Stages (each a subprocess running the project's own command; `--stages` picks some, and a stage
whose outputs exist from an earlier call in the same `--workdir` need not be rerun):
  inputs      real videos from ../shared/assets (portrait dance videos, a talking head, and a
              landscape video made by padding a portrait one), a reference image, keypoints files
              and the rendered driving pose video (tools/extract_pose.py; on a machine without
              mediapipe they come from `--inputs`, made by `--prepare` elsewhere), and a text
              embeddings file of the backbone's widths (random: the 8B text encoders are not here)
  models      random diffusers HunyuanVideo-I2V transformer (33 ch) + VAE (tools/make_random_base.py
              --no-convert: made on the GPU in bf16, saved as safetensors); skipped with --transformer/--vae
  convert     tools/convert_weights.py on both folders
  preprocess  tools/preprocess.py --config configs/pose.py at 49 frames: panels follow each video's
              orientation (480x832 landscape, 832x480 portrait), VAE tiled from free memory
  train       launch/train.py --config configs/pose.py, 2 steps (batch 2, rank 256), then
  resume      the same command to step 3 (resumes from the checkpoint)
  sample      launch/sample.py on a 127-frame driving pose video (two 121-frame segments), CFG x5,
              only `--sample-steps` (2) denoising steps: a rehearsal of the path, not a good video
  export      tools/export_lora.py
  peft        benchmarks/rehearsal_peft.py: the exported LoRA in diffusers' HunyuanVideoTransformer3DModel
              (PEFT) against the project's forward on a small input (bf16 on GPU, fp32 on CPU)

Every step's wall time, exit code, peak GPU memory (NVML / nvidia-smi, whole device) and peak host
memory (RSS of the process tree) go to OUT/rehearsal.json (rewritten after each step) and its log
to OUT/rehearsal.log; the closing table says what ran and what did not, and why. `--deadline S`
starts no step after S seconds and stops a running one at S + 30, so a bounded call still returns
its record. `--tiny` runs every stage with the tiny configs on CPU (tests/test_rehearsal.py).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from rehearsal_inputs import prepare_inputs, write_text_file  # noqa: E402
from dreamactor_jax.utils import cli_main, write_text_atomic  # noqa: E402

STAGES = ("inputs", "models", "convert", "preprocess", "train", "resume", "sample", "export", "peft")
GIB = 2 ** 30


def _children_cpu() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


class Monitor:
    """Samples the peak GPU memory in use (whole device) and the peak RSS of a process tree."""

    def __init__(self, pid: int):
        self.pid, self.gpu, self.host, self._stop = pid, None, 0, threading.Event()
        self._nvml = self._gpu_reader()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @staticmethod
    def _gpu_reader():
        try:
            import pynvml

            pynvml.nvmlInit()
            h = pynvml.nvmlDeviceGetHandleByIndex(0)
            return lambda: pynvml.nvmlDeviceGetMemoryInfo(h).used
        except Exception:  # noqa: BLE001 - no NVML: nvidia-smi, or no GPU at all
            if shutil.which("nvidia-smi") is None:
                return None

            def smi():
                out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                                     capture_output=True, text=True, timeout=5).stdout
                return int(out.split()[0]) * 2 ** 20
            return smi

    def _run(self):
        import psutil

        while not self._stop.is_set():
            try:
                p = psutil.Process(self.pid)
                self.host = max(self.host, sum(q.memory_info().rss for q in [p] + p.children(recursive=True)))
            except (psutil.Error, OSError):
                pass
            if self._nvml is not None:
                try:
                    self.gpu = max(self.gpu or 0, self._nvml())
                except Exception:  # noqa: BLE001
                    pass
            self._stop.wait(0.2)

    def stop(self) -> tuple[float | None, float]:
        self._stop.set()
        self._thread.join()
        return (None if self.gpu is None else self.gpu / GIB), self.host / GIB


class Rehearsal:
    """Runs steps, records them, and says what ran."""

    def __init__(self, out: Path, deadline: float | None):
        self.out, self.deadline, self.t0 = out, deadline, time.time()
        out.mkdir(parents=True, exist_ok=True)
        self.log = open(out / "rehearsal.log", "a", buffering=1)
        self.record = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "steps": [], "not_run": []}

    def say(self, line: str) -> None:
        print(line, flush=True)
        self.log.write(line + "\n")

    def save(self) -> None:
        self.record["elapsed_s"] = round(time.time() - self.t0, 1)
        write_text_atomic(self.out / "rehearsal.json", json.dumps(self.record, indent=1))

    def skip(self, stage: str, why: str) -> None:
        self.record["not_run"].append({"stage": stage, "why": why})
        self.say(f"[{stage}] NOT RUN: {why}")
        self.save()

    def run(self, stage: str, name: str, cmd: list[str], env: dict | None = None) -> bool:
        left = None if self.deadline is None else self.deadline - (time.time() - self.t0)
        if left is not None and left <= 0:
            self.skip(f"{stage}/{name}", "deadline reached before it started")
            return False
        self.say(f"[{stage}/{name}] $ {' '.join(map(str, cmd))}")
        t0, cpu0 = time.time(), _children_cpu()
        proc = subprocess.Popen([str(c) for c in cmd], cwd=ROOT, env={**os.environ, **(env or {})},
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
        mon = Monitor(proc.pid)
        tail: list[str] = []
        killer = None if left is None else threading.Timer(left + 30, proc.kill)
        if killer:
            killer.start()
        for line in proc.stdout:
            self.log.write(f"    {line}")
            if "\r" not in line and line.strip():
                tail = (tail + [line.rstrip()])[-12:]
        rc = proc.wait()
        if killer:
            killer.cancel()
        gpu, host = mon.stop()
        step = {"stage": stage, "step": name, "cmd": " ".join(map(str, cmd)), "rc": rc,
                "seconds": round(time.time() - t0, 1), "cpu_seconds": round(_children_cpu() - cpu0, 1),
                "peak_gpu_gib": None if gpu is None else round(gpu, 2),
                "peak_host_gib": round(host, 2), "tail": tail[-6:]}
        self.record["steps"].append(step)
        self.save()
        mem = f"GPU {gpu:.1f} GiB, " if gpu is not None else ""
        self.say(f"[{stage}/{name}] rc {rc} in {step['seconds']} s ({mem}host {host:.1f} GiB)"
                 + ("" if rc == 0 else "\n    " + "\n    ".join(tail)))
        return rc == 0

    def summary(self) -> None:
        self.say("\nstep                                 rc  seconds  CPU s  peak GPU GiB  peak host GiB")
        for s in self.record["steps"]:
            g = "-" if s.get("peak_gpu_gib") is None else f"{s['peak_gpu_gib']:.1f}"
            h = "-" if s.get("peak_host_gib") is None else f"{s['peak_host_gib']:.1f}"
            c = "-" if s.get("cpu_seconds") is None else f"{s['cpu_seconds']:.0f}"
            self.say(f"{s['stage'] + '/' + s['step']:36s} {s['rc']:>3}  {s.get('seconds', 0):>7.1f}  {c:>5}  "
                     f"{g:>12}  {h:>13}")
        for n in self.record["not_run"]:
            self.say(f"NOT RUN {n['stage']}: {n['why']}")
        self.say(f"total {time.time() - self.t0:.0f} s; record: {self.out / 'rehearsal.json'}")


def _frames_png(video: Path, png: Path) -> None:
    """Three frames (first, middle, last) of a video, one above the other, at most 1024 px wide."""
    import numpy as np
    from PIL import Image

    from dreamactor_jax import media

    v = media.read_video(video)
    grid = np.concatenate([v[0], v[len(v) // 2], v[-1]], axis=0)
    im = Image.fromarray(grid)
    if im.width > 1024:
        im = im.resize((1024, round(im.height * 1024 / im.width)))
    im.save(png)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", default="/tmp/dreamactor-rehearsal", help="where everything is made (kept)")
    p.add_argument("--out", help="rehearsal.json, rehearsal.log and sample frames (default: WORKDIR/out)")
    p.add_argument("--tiny", action="store_true", help="tiny configs on CPU: every stage in about a minute")
    p.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated subset of {','.join(STAGES)}")
    p.add_argument("--inputs", help="a folder made by --prepare (used when mediapipe is not installed)")
    p.add_argument("--assets", default=str(ROOT.parent / "shared" / "assets"), help="the real test assets")
    p.add_argument("--prepare", metavar="DIR", help="only make the inputs into DIR (to carry to a GPU machine)")
    p.add_argument("--transformer", help="a real diffusers HunyuanVideo-I2V transformer folder (skips 'models')")
    p.add_argument("--vae", help="a real diffusers AutoencoderKLHunyuanVideo folder (with --transformer)")
    p.add_argument("--text-embeddings", help="a real tools/encode_text.py file with the video ids and 'prompt'")
    p.add_argument("--hf-dir", default="auto", help="where the random diffusers folders go (auto: full size in "
                   "/dev/shm when it has room, removed after the peft stage; else WORKDIR/hf)")
    p.add_argument("--train-steps", type=int, default=2, help="steps of the first run (the resume adds one)")
    p.add_argument("--sample-steps", type=int, default=2, help="denoising steps per segment")
    p.add_argument("--deadline", type=float, help="seconds: start no step after it")
    p.add_argument("--train-data", default="shards", choices=("shards", "synthetic"),
                   help="what train/resume read: the preprocess stage's shards, or synthetic shards of the "
                        "portrait clip's latent shape (13x104x120; a bounded call that skips preprocess)")
    p.add_argument("--no-compile-cache", action="store_true", help="no JAX persistent compilation cache "
                   "(by default WORKDIR/jax_cache: the resume reuses the training step's compilation)")
    return p.parse_args(argv)


def _machine() -> dict:
    from importlib import metadata

    info = {"python": sys.version.split()[0]}
    for pkg in ("jax", "jaxlib", "torch", "diffusers", "peft", "orbax-checkpoint"):
        try:
            info[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    if shutil.which("nvidia-smi"):
        info["gpus"] = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True).stdout.strip()
    info["cpus"] = os.cpu_count()
    return info


def _hf_dir(args, work: Path, need_gib: float) -> Path:
    """Where the random diffusers folders go: 26 GB at full size, written once and read twice (convert,
    peft), so RAM (/dev/shm) when it has room saves disk and time."""
    if args.hf_dir != "auto":
        return Path(args.hf_dir)
    shm = Path("/dev/shm")
    if not args.tiny and shm.is_dir() and shutil.disk_usage(shm).free > need_gib * 1.15 * GIB:
        import zlib

        return shm / f"dreamactor-rehearsal-{zlib.crc32(str(work.resolve()).encode()):08x}"  # same in every call
    return work / "hf"


def main(argv=None) -> int:
    args = parse_args(argv)
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    bad = [s for s in stages if s not in STAGES]
    if bad:
        raise ValueError(f"--stages: unknown {bad}; choose from {','.join(STAGES)}")
    if bool(args.transformer) != bool(args.vae):
        raise ValueError("--transformer and --vae go together (real diffusers folders)")
    if args.prepare:
        info = prepare_inputs(Path(args.assets), Path(args.prepare), tiny=args.tiny)
        print(json.dumps(info))
        return 0
    work = Path(args.workdir).absolute()
    out = Path(args.out or work / "out").absolute()
    r = Rehearsal(out, args.deadline)
    py = sys.executable
    tiny = args.tiny
    r.record.update(mode="tiny (CPU)" if tiny else "full size", workdir=str(work),
                    real_weights=bool(args.transformer), stages=stages, machine=_machine())
    hf = Path(args.transformer).parent if args.transformer else _hf_dir(args, work, 0.01 if tiny else 27)
    hf_t = Path(args.transformer) if args.transformer else hf / "diffusers" / "transformer"
    hf_v = Path(args.vae) if args.vae else hf / "diffusers" / "vae"
    ck_t, ck_v, shards, run = work / "ckpt" / "transformer", work / "ckpt" / "vae", work / "shards", work / "run"
    inp = work / "inputs"
    config = "configs/pose.py:tiny" if tiny else "configs/pose.py"
    frames = 9 if tiny else 49
    pre = [f"--config.preprocess.min_frames={frames}", f"--config.preprocess.max_frames={frames}",
           f"--config.preprocess.vae_checkpoint={ck_v}"]
    if tiny:
        pre += ["--config.preprocess.height=32", "--config.preprocess.width=64"]
    have = lambda *ps: all(Path(p).exists() for p in ps)  # noqa: E731

    def stage(name: str, needs: tuple = (), produces: tuple = ()) -> bool:
        """Whether to run `name` now: chosen, and its prerequisites exist."""
        if name not in stages:
            if produces and not have(*produces):
                r.record["not_run"].append({"stage": name, "why": "not selected (--stages)"})
            return False
        missing = [str(p) for p in needs if not Path(p).exists()]
        if missing:
            r.skip(name, f"needs {', '.join(missing)} (an earlier stage did not run or failed)")
            return False
        return True

    env = {"PYTHONUNBUFFERED": "1", "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
    if not args.no_compile_cache:
        env.update(JAX_COMPILATION_CACHE_DIR=str(work / "jax_cache"), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="1")
    r.record["env"] = env
    if stage("inputs"):
        t0 = time.time()
        try:
            info = prepare_inputs(Path(args.assets), inp, tiny=tiny, prepared=args.inputs)
            from dreamactor_jax.models.config import MMDiTConfig

            write_text_file(inp / "text.safetensors", MMDiTConfig.named("tiny-i2v-33ch" if tiny else "i2v-33ch"),
                            info["ids"], real=args.text_embeddings)
            r.record["steps"].append({"stage": "inputs", "step": "prepare", "rc": 0,
                                      "seconds": round(time.time() - t0, 1), "info": info})
            r.record["inputs"] = info
            r.say(f"[inputs] {json.dumps(info)}")
        except (ValueError, FileNotFoundError, ImportError) as e:
            r.record["steps"].append({"stage": "inputs", "step": "prepare", "rc": 2,
                                      "seconds": round(time.time() - t0, 1), "error": str(e)})
            r.say(f"[inputs] FAILED: {e}")
        r.save()
    if not args.transformer and stage("models", produces=(hf_t,)):
        dev = ["--device", "cpu"] if tiny else ["--device", "cuda", "--dtype", "bf16"]
        r.run("models", "random diffusers folders",
              [py, "tools/make_random_base.py", hf, "--size", "tiny" if tiny else "full", "--no-convert",
               "--overwrite", *dev], env)
    if stage("convert", needs=(hf_t, hf_v)):
        dt = "fp32" if tiny else "bf16"
        r.run("convert", "transformer", [py, "tools/convert_weights.py", hf_t, ck_t, "--dtype", dt,
                                         "--overwrite", "--quiet"], env)
        r.run("convert", "vae", [py, "tools/convert_weights.py", hf_v, ck_v, "--dtype", "fp32", "--overwrite",
                                 "--quiet"], env)
        free = shutil.disk_usage(work).free / GIB
        if not args.transformer and not tiny and not str(hf).startswith("/dev/shm/") and free < 45 and ck_t.exists():
            shutil.rmtree(hf_t, ignore_errors=True)  # the peft stage remakes it from its seed
            r.say(f"[convert] {free:.0f} GiB of disk left: removed {hf_t} (peft remakes it from its seed)")
    if stage("preprocess", needs=(inp / "manifest.jsonl", ck_v)):
        shutil.rmtree(shards, ignore_errors=True)
        r.run("preprocess", f"{frames} frames, both orientations",
              [py, "tools/preprocess.py", f"--config={config}", f"--input={inp / 'manifest.jsonl'}",
               f"--output={shards}", f"--text_embeddings={inp / 'text.safetensors'}", *pre], env)
    import importlib.util

    extra = []
    if importlib.util.find_spec("tensorboardX") is None:  # not on the GPU image; the logs are in the record
        extra = ["--config.train.tensorboard=False"]
        if {"train", "resume"} & set(stages):
            r.say("[train] tensorboardX is not installed here: --config.train.tensorboard=False")
    if args.train_data == "synthetic":  # same latent shape as a preprocessed 49-frame 832x480 clip
        data_args = ["--config.data.synthetic=True", "--config.data.synthetic_clips=2",
                     f"--config.data.synthetic_shapes={'4x8x16' if tiny else '13x104x120'}"]
        data_needs: tuple = ()
    else:
        data_args, data_needs = [f"--config.data.shards={shards}", "--config.data.synthetic=False"], (shards,)
    r.record["train_data"] = args.train_data
    train = [py, "launch/train.py", f"--config={config}", f"--workdir={run}", *extra,
             f"--config.base_checkpoint={ck_t}", f"--config.preprocess.vae_checkpoint={ck_v}",
             *data_args, "--config.train.log_every=1",
             "--config.train.checkpoint_every=1000", "--config.train.keep=1"]
    if not tiny:  # one GPU: the recipe's batch 2 as two micro-batches of one clip (README step 4)
        train.append("--config.train.grad_accum=2")
    if stage("train", needs=(ck_t, ck_v, *data_needs)):
        shutil.rmtree(run, ignore_errors=True)
        r.run("train", f"{args.train_steps} steps", train + [f"--config.train.steps={args.train_steps}"], env)
    if stage("resume", needs=(run / "checkpoints" / str(args.train_steps),)):
        r.run("resume", "one more step", train + [f"--config.train.steps={args.train_steps + 1}"], env)
    samples = work / "samples"
    if "preprocess" in stages and shards.is_dir():
        from dreamactor_jax.data.shards import list_shards, read_sidecar

        counts: dict[str, int] = {}
        for sh in list_shards(shards):
            for rec in read_sidecar(sh):
                k = "x".join(map(str, rec["shape"]))
                counts[k] = counts.get(k, 0) + 1
        r.record["latent_shapes"] = counts  # T'xH'x2W': 13x60x208 = 480x832 panels, 13x104x120 = 832x480
        r.save()
    if stage("sample", needs=(run / "checkpoints", inp / "driver_pose.mp4", inp / "ref.png")):
        size = ["--height", "64", "--width", "32", "--segment-frames", "9", "--overlap", "5", "--frames", "13",
                "--fps", "8"] if tiny else ["--height", "832", "--width", "480", "--fps", "30"]
        r.run("sample", f"two segments, CFG, {args.sample_steps} steps",
              [py, "launch/sample.py", "--checkpoint", run, "--ref", inp / "ref.png", "--pose",
               inp / "driver_pose.mp4", "-o", samples / "sample.mp4", "--side-by-side", samples / "side_by_side.mp4",
               "--text-embeddings", inp / "text.safetensors", "--text-id", "prompt", "--guidance-scale", "5",
               "--steps", str(args.sample_steps), "--quiet", *size], env)
        if (samples / "side_by_side.mp4").is_file():
            _frames_png(samples / "side_by_side.mp4", out / "sample_frames.png")
    lora = work / "lora.safetensors"
    if stage("export", needs=(run / "checkpoints",)):
        r.run("export", "PEFT safetensors", [py, "tools/export_lora.py", run, lora, "--overwrite"], env)
    if stage("peft", needs=(lora, ck_t)):
        dev = ["--device", "cpu", "--dtype", "fp32"] if tiny else ["--device", "cuda", "--dtype", "bf16"]
        r.run("peft", "diffusers + PEFT vs the project",
              [py, "benchmarks/rehearsal_peft.py", "--run", run, "--base", ck_t, "--diffusers", hf_t,
               "--lora", lora, "--json", out / "peft.json", *dev,
               *([] if args.transformer else ["--size", "tiny" if tiny else "full"])], env)
        if (out / "peft.json").is_file():
            r.record["peft"] = json.loads((out / "peft.json").read_text())
        if not args.transformer and str(hf).startswith("/dev/shm/"):
            shutil.rmtree(hf, ignore_errors=True)  # 26 GB of RAM; the peft stage was its last reader
            r.say(f"[peft] removed {hf}")
    r.summary()
    r.save()
    failed = [s for s in r.record["steps"] if s.get("rc") not in (0, None)]
    return 1 if failed else 0


if __name__ == "__main__":
    cli_main(main)
