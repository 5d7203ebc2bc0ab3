#!/usr/bin/env bash
# The shipped toy model (issue 18) on one GPU: runs the config's `ship.command` (configs/toy_pose.py,
# SHIP_COMMAND), then prints the report. From the repository root (or a copy of it) on the GPU machine,
# with the project's missing packages (ml_collections) on PYTHONPATH:
#   OUT=/some/dir bash benchmarks/toy_ship.sh     # writes $OUT/pack (packed model + card.json) and $OUT/run
# Set TOY_COMMIT to the code's commit when the copy has no .git (the card records it).
set -uo pipefail
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
OUT_DIR=${OUT:-runs/toy_ship}
mkdir -p "$OUT_DIR"
CMD=$(python3 -c "import importlib.util as u, sys; s = u.spec_from_file_location('c', 'configs/toy_pose.py'); \
m = u.module_from_spec(s); s.loader.exec_module(m); print(m.SHIP_COMMAND.format(out=sys.argv[1]))" "$OUT_DIR") || exit 1
nvidia-smi -L 2>/dev/null
echo "$CMD"
start=$(date +%s)
${CMD/#python /python3 } 2>&1 | grep -v -i "warn"
echo "wall $(( $(date +%s) - start ))s"
python3 -m dreamactor_jax.toy.report "$OUT_DIR/run/metrics.json"
