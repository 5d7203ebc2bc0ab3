#!/usr/bin/env bash
# The toy-world study on one GPU (issue 9): prior + pose LoRA (2 seeds) + ablations A, D + evaluation.
# On the device machine, from the repo root, with the wheels folder .whl carried:
#   bash benchmarks/toy_gpu.sh          # writes under $OUT (or runs/toy_gpu when OUT is unset)
# TOY_CONFIG (default gpu: a variant with its options, e.g. gpu,layout=temporal) and TOY_ARGS (default
# --study; overrides go here too: --config.lora.steps=2000) pick the run; the demo's own log.txt
# holds everything it prints, so this script writes no other file (the device returns 8 at most).
set -uo pipefail
if [ "${1:-}" = -h ] || [ "${1:-}" = --help ]; then sed -n "2,/^set /p" "$0" | grep "^#" | cut -c3-; exit 0; fi
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site ${WHEELS:-.whl}/ml_collections*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
OUT_DIR=${OUT:-runs/toy_gpu}
mkdir -p "$OUT_DIR"
nvidia-smi -L; python3 -c "import jax; print('jax', jax.__version__, jax.devices())" 2>&1 | grep -v -i warn
start=$(date +%s)
python3 -m dreamactor_jax.toy.demo --out "$OUT_DIR" --train --config "${TOY_CONFIG:-gpu}" ${TOY_ARGS:---study} 2>&1 \
  | grep -v -i "warn"
echo "wall $(( $(date +%s) - start ))s"
