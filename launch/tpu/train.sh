#!/usr/bin/env bash
# Starts launch/train.py on every worker of a TPU VM slice (or of several slices: Multislice) with
# one command per slice: `gcloud compute tpus tpu-vm ssh NAME --worker=all --command ...`.
#
#   launch/tpu/train.sh --tpu my-v5p-64 --zone us-east5-a -- \
#       --config configs/pose.py --workdir gs://my-bucket/runs/pose \
#       --config.data.shards=gs://my-bucket/shards --config.base_checkpoint=gs://my-bucket/ckpt/base
#   launch/tpu/train.sh --tpu slice-a,slice-b --zone us-east5-a -- ...   # 2 slices over DCN
#   launch/tpu/train.sh --dry-run --tpu my-v5p-64 --zone us-east5-a -- ...  # print, run nothing
#
# Every worker runs `python3 launch/train.py --distributed ARGS` in --repo (the checkout, present on
# each worker, e.g. copied with `gcloud compute tpus tpu-vm scp --worker=all`), inside --venv if it
# exists, and tees its output to LOGS/RUN.slice<S>.worker<W>.log on that worker (one log per host;
# `gcloud ... ssh --worker=all --command 'tail -n 50 LOGS/*.log'` collects them). With --gcs-logs,
# each worker copies its log there when training ends. JAX reads each worker's rank from the TPU
# metadata; with several slices each worker also gets the MEGASCALE_* variables that join the
# slices (coordinator: worker 0 of the first slice), and the mesh puts the slices on its data axis
# (dreamactor_jax.sharding.device_grid). Extra environment for every worker: --env KEY=VALUE
# (repeatable), e.g. --env LIBTPU_INIT_ARGS=... (docs/tpu.md lists the flags worth setting).
set -euo pipefail

usage() {
  sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
  cat <<'EOF'

options:
  --tpu NAME[,NAME...]  TPU VM name(s); several = Multislice (default: $TPU_NAME)
  --zone ZONE           (default: $ZONE)
  --project PROJECT     (default: gcloud's configured project)
  --repo DIR            checkout on the workers (default: ~/dreamactor-jax)
  --venv DIR            virtualenv on the workers, used if present (default: REPO/.venv)
  --logs DIR            log folder on each worker (default: ~/dreamactor-logs)
  --gcs-logs URI        also copy each worker's log there at the end (gs://...)
  --run NAME            run name used in log file names (default: train-<date>)
  --env KEY=VALUE       exported on every worker (repeatable)
  --dry-run             print the commands instead of running them
  -h, --help            this text
everything after -- goes to launch/train.py (--distributed is added)
EOF
}

die() { echo "error: $*" >&2; exit 2; }
# a command as one copy-pasteable line; each argument single-quoted when it needs quoting
show() {
  local out="" a
  for a in "$@"; do
    if [[ "$a" =~ ^[A-Za-z0-9_./:=,@%+-]+$ ]]; then out+="$a "; else out+="'${a//\'/\'\\\'\'}' "; fi
  done
  echo "${out% }"
}

tpus="${TPU_NAME:-}"
zone="${ZONE:-}"
project=""
# shellcheck disable=SC2088  # a ~/ folder is expanded on the workers, not here
repo='~/dreamactor-jax'
venv=""
# shellcheck disable=SC2088
logs='~/dreamactor-logs'
gcs_logs=""
run="train-$(date +%Y%m%d-%H%M%S)"
dry_run=0
envs=()

while [[ $# -gt 0 ]]; do
  case "$1" in
    --tpu) tpus="${2:?--tpu needs a value}"; shift 2 ;;
    --zone) zone="${2:?--zone needs a value}"; shift 2 ;;
    --project) project="${2:?--project needs a value}"; shift 2 ;;
    --repo) repo="${2:?--repo needs a value}"; shift 2 ;;
    --venv) venv="${2:?--venv needs a value}"; shift 2 ;;
    --logs) logs="${2:?--logs needs a value}"; shift 2 ;;
    --gcs-logs) gcs_logs="${2:?--gcs-logs needs a value}"; shift 2 ;;
    --run) run="${2:?--run needs a value}"; shift 2 ;;
    --env) envs+=("${2:?--env needs KEY=VALUE}"); shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    *) die "unknown option $1 (launch/train.py's flags go after --)" ;;
  esac
done
train_args=("$@")

[[ -n "$tpus" ]] || die "--tpu: required (or set TPU_NAME)"
[[ -n "$zone" ]] || die "--zone: required (or set ZONE)"
[[ "$run" =~ ^[A-Za-z0-9._-]+$ ]] || die "--run $run: use letters, digits, . _ -"
for kv in ${envs[@]+"${envs[@]}"}; do
  [[ "$kv" =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || die "--env $kv: expected KEY=VALUE"
done
[[ -z "$gcs_logs" || "$gcs_logs" == gs://* ]] || die "--gcs-logs $gcs_logs: expected a gs:// URI"
[[ -n "$venv" ]] || venv="$repo/.venv"
IFS=',' read -r -a slices <<< "$tpus"

gcloud_args=(--zone "$zone")
[[ -z "$project" ]] || gcloud_args+=(--project "$project")

# a folder given as ~/x stays unexpanded here and is expanded by the worker's shell
# shellcheck disable=SC2088,SC2016
remote_dir() { if [[ "$1" == '~/'* ]]; then printf '"$HOME"/%q' "${1#\~/}"; else printf '%q' "$1"; fi; }

coordinator=""
if [[ ${#slices[@]} -gt 1 ]]; then
  describe=(gcloud compute tpus tpu-vm describe "${slices[0]}" "${gcloud_args[@]}"
            --format='value(networkEndpoints[0].ipAddress)')
  if [[ $dry_run -eq 1 ]]; then
    echo "# coordinator of the slices: worker 0 of ${slices[0]}"
    show "${describe[@]}"
    coordinator='<worker-0-ip>'
  else
    coordinator="$("${describe[@]}")"
    [[ -n "$coordinator" ]] || die "no IP address for worker 0 of ${slices[0]}"
  fi
fi

pids=()
for s in "${!slices[@]}"; do
  exports="export PYTHONUNBUFFERED=1"
  for kv in ${envs[@]+"${envs[@]}"}; do
    exports+="; export ${kv%%=*}=$(printf '%q' "${kv#*=}")"
  done
  if [[ ${#slices[@]} -gt 1 ]]; then
    exports+="; export MEGASCALE_COORDINATOR_ADDRESS=$coordinator MEGASCALE_PORT=8081"
    exports+=" MEGASCALE_NUM_SLICES=${#slices[@]} MEGASCALE_SLICE_ID=$s"
  fi
  # shellcheck disable=SC2016  # evaluated on the worker
  worker='$(curl -sf -H Metadata-Flavor:Google http://metadata.google.internal/computeMetadata/v1/instance/attributes/agent-worker-number || hostname)'
  log="$(remote_dir "$logs")/$run.slice$s.worker\$W.log"
  remote="set -o pipefail; cd $(remote_dir "$repo") && { [ ! -f $(remote_dir "$venv")/bin/activate ] || . $(remote_dir "$venv")/bin/activate; }"
  remote+=" && $exports && W=$worker && mkdir -p $(remote_dir "$logs")"
  remote+=" && python3 launch/train.py --distributed"
  if [[ ${#train_args[@]} -gt 0 ]]; then remote+=" $(printf '%q ' "${train_args[@]}")"; fi
  remote+=" 2>&1 | tee $log; rc=\$?"
  if [[ -n "$gcs_logs" ]]; then remote+="; gcloud storage cp $log $(printf '%q' "${gcs_logs%/}/") || true"; fi
  remote+="; exit \$rc"
  cmd=(gcloud compute tpus tpu-vm ssh "${slices[$s]}" "${gcloud_args[@]}" --worker=all --command "$remote")
  if [[ $dry_run -eq 1 ]]; then
    echo "# slice $s of ${#slices[@]}: every worker of ${slices[$s]}"
    show "${cmd[@]}"
  else
    "${cmd[@]}" &
    pids+=("$!")
  fi
done

rc=0
for p in ${pids[@]+"${pids[@]}"}; do wait "$p" || rc=$?; done
exit "$rc"
