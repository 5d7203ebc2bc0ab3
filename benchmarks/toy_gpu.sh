#!/usr/bin/env bash
# The toy-world study on one GPU (issue 9): prior + pose LoRA (2 seeds) + ablations + evaluation.
# Run on the device machine from the repo root, with the wheels in .whl carried:
#   bash benchmarks/toy_gpu.sh            (writes under $OUT, or runs/toy_gpu when OUT is unset)
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/ml_collections*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
OUT_DIR=${OUT:-runs/toy_gpu}
mkdir -p "$OUT_DIR"
nvidia-smi -L | tee "$OUT_DIR/device.txt"
python3 -c "import jax; print(jax.__version__, jax.devices())" | tee -a "$OUT_DIR/device.txt"
/usr/bin/time -v python3 -m dreamactor_jax.toy.demo --out "$OUT_DIR" --config "${TOY_CONFIG:-gpu}" ${TOY_ARGS:---study} \
  2> >(grep -v -i "warn" >&2)
