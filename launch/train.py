"""Trains the in-context LoRA: `python launch/train.py --config configs/pose.py --workdir runs/pose`.

Overrides: `--config.optim.lr=1e-5` (a mistyped key is an error); a variant: `configs/pose.py:tiny`.
Re-running with the same --workdir resumes from its latest checkpoint (adapter, optimizer, step,
RNG, data position); a resume whose data differ (shards, data seed, batch, augmentation) is refused
unless --config.resume.allow_data_change=True. Several hosts: pass --distributed on a TPU pod or
under SLURM's srun (launch/tpu/train.sh, launch/slurm/train.sbatch), else
--coordinator_address/--num_processes/--process_id (or set JAX's env variables) on each host.
--workdir and --config.data.shards may be gs:// paths.

Exit status: 0 finished (or --stop_after reached); 2 bad input or config (one line on stderr);
3 non-finite loss (the message names the last committed checkpoint); 75 stopped by SIGTERM after
saving a checkpoint (every host stops after the same step; re-run the same command to resume);
130 interrupted (Ctrl-C) after finishing any checkpoint save in flight.
"""

from __future__ import annotations

import logging
import os
import sys

# GPU: JAX takes 75% of the card by default; a training process is alone on its card (SLURM's script too).
os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.95")

from absl import flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "config file (configs/pose.py[:tiny])", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "run folder: checkpoints/, tensorboard/")
_COORD = flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (multi-host)")
_NPROC = flags.DEFINE_integer("num_processes", None, "number of processes (multi-host)")
_PID = flags.DEFINE_integer("process_id", None, "this process's index (multi-host)")
_DIST = flags.DEFINE_bool("distributed", False, "multi-host: jax.distributed.initialize() with no arguments, "
                          "the cluster read from the TPU pod's metadata or SLURM's variables (launch/tpu, launch/slurm)")
_STOP = flags.DEFINE_integer("stop_after", None, "leave after this many steps in total (checkpointed)")
_CPU_DEVICES = flags.DEFINE_integer("cpu_devices", None, "fake this many CPU devices (testing meshes)")


def main(argv) -> int:
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments {argv[1:]}")
    if _CONFIG.value is None:
        raise ValueError("--config: required (e.g. configs/pose.py or configs/pose.py:tiny)")
    if not _WORKDIR.value:
        raise ValueError("--workdir: required (a folder for checkpoints and logs)")
    import jax

    if _CPU_DEVICES.value:
        jax.config.update("jax_num_cpu_devices", _CPU_DEVICES.value)
    if _COORD.value or _NPROC.value:
        if _NPROC.value is None or _PID.value is None or not _COORD.value:
            raise ValueError("--coordinator_address, --num_processes and --process_id go together")
        jax.distributed.initialize(coordinator_address=_COORD.value, num_processes=_NPROC.value,
                                   process_id=_PID.value)
    elif os.environ.get("JAX_COORDINATOR_ADDRESS") or _DIST.value:
        jax.distributed.initialize()

    from dreamactor_jax.train.trainer import EXIT_PREEMPTED, NonFiniteLossError, train

    logging.getLogger("dreamactor_jax").setLevel(logging.INFO)
    logging.getLogger("absl").setLevel(logging.WARNING)  # Orbax's per-save INFO chatter
    try:
        summary = train(_CONFIG.value, _WORKDIR.value, stop_after=_STOP.value)
    except NonFiniteLossError as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("interrupted (the trainer's last line names the last checkpoint)", file=sys.stderr)
        return 130
    if summary["preempted"]:
        if jax.process_index() == 0:
            print(f"preempted: saved step {summary['step']} (resumed from {summary['resumed_from']}); "
                  f"re-run the same command to resume, workdir {_WORKDIR.value}")
        return EXIT_PREEMPTED
    if jax.process_index() == 0:
        losses = summary["losses"]
        first = f"{losses[0]:.5f}" if losses else "-"
        last = f"{losses[-1]:.5f}" if losses else "-"
        print(f"done: step {summary['step']} (resumed from {summary['resumed_from']}), "
              f"loss {first} -> {last}, workdir {_WORKDIR.value}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from dreamactor_jax.utils import absl_main

    absl_main(main)
