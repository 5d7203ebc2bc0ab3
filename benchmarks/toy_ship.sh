#!/usr/bin/env bash
# The shipped toy model's commands on one GPU (the toy recipe, dreamactor_jax/toy/recipe.py):
#   OUT=/some/dir bash benchmarks/toy_ship.sh ship   # SHIP_COMMAND (issue 18): $OUT/pack (packed model + card.json)
#                                                   # and $OUT/run, then the report
#   OUT=/some/dir bash benchmarks/toy_ship.sh e2e    # E2E_COMMAND (issue 16 part 4) on the shipped model:
#                                                   # $OUT/e2e (metrics, grid, log) and $OUT/pack with the e2e adapter
# From the repository root (or a copy of it) on the GPU machine, with the project's missing packages
# (ml_collections) on PYTHONPATH. Set TOY_COMMIT to the code's commit when the copy has no .git (the
# card records it). `e2e` removes the pack's files that equal the shipped ones (base, pose adapter)
# after the byte comparison, so only what is new comes back (the device returns 8 files at most).
set -uo pipefail
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
WHAT=${1:-ship}
if [ "$WHAT" = -h ] || [ "$WHAT" = --help ]; then sed -n "2,/^set /p" "$0" | grep "^#" | cut -c3-; exit 0; fi
case "$WHAT" in ship) NAME=SHIP_COMMAND ;; e2e) NAME=E2E_COMMAND ;; *) echo "usage: toy_ship.sh ship|e2e" >&2; exit 2 ;; esac
OUT_DIR=${OUT:-runs/toy_$WHAT}
mkdir -p "$OUT_DIR"
CMD=$(python3 -c "import sys; from dreamactor_jax.toy import recipe; print(getattr(recipe, sys.argv[1]).format(out=sys.argv[2]))" \
  "$NAME" "$OUT_DIR") || exit 1
nvidia-smi -L 2>/dev/null
echo "$CMD"
start=$(date +%s)
${CMD/#python /python3 } 2>&1 | grep -v -i "warn"
echo "wall $(( $(date +%s) - start ))s"
if [ "$WHAT" = ship ]; then
  python3 -m dreamactor_jax.toy.report "$OUT_DIR/run/metrics.json"
else
  for f in "$OUT_DIR"/pack/base-*.safetensors "$OUT_DIR"/pack/adapter-pose.safetensors; do
    [ -f "$f" ] && cmp -s "$f" "dreamactor_jax/toy/pretrained/$(basename "$f")" && rm "$f" && echo "same as shipped: $(basename "$f")"
  done
  ls -la "$OUT_DIR"/pack
fi
