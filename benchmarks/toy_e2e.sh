#!/usr/bin/env bash
# The toy end-to-end study (issue 16 part 4) on one GPU: runs the config's `e2e.command`
# (configs/toy_pose.py, E2E_COMMAND) on the shipped toy model, which writes the model folder again with
# the e2e adapter. From the repository root (or a copy of it) on the GPU machine:
#   OUT=/some/dir bash benchmarks/toy_e2e.sh     # $OUT/e2e (metrics, grid, log) and $OUT/pack
# The pack's files that equal the shipped ones (base, pose adapter) are removed from $OUT/pack after
# the byte comparison, so only what is new comes back (the device returns 8 files at most).
set -uo pipefail
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
OUT_DIR=${OUT:-runs/toy_e2e}
mkdir -p "$OUT_DIR"
CMD=$(python3 -c "import importlib.util as u, sys; s = u.spec_from_file_location('c', 'configs/toy_pose.py'); \
m = u.module_from_spec(s); s.loader.exec_module(m); print(m.E2E_COMMAND.format(out=sys.argv[1]))" "$OUT_DIR") || exit 1
nvidia-smi -L 2>/dev/null
echo "$CMD"
start=$(date +%s)
${CMD/#python /python3 } 2>&1 | grep -v -i "warn"
echo "wall $(( $(date +%s) - start ))s"
for f in "$OUT_DIR"/pack/base-*.safetensors "$OUT_DIR"/pack/adapter-pose.safetensors; do
  [ -f "$f" ] && cmp -s "$f" "dreamactor_jax/toy/pretrained/$(basename "$f")" && rm "$f" && echo "same as shipped: $(basename "$f")"
done
ls -la "$OUT_DIR"/pack
