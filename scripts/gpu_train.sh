#!/usr/bin/env bash
# Stage 1 on the lent GPU machine, sized to its minutes: one command that, on a fresh CUDA
# machine with only torch (Python 3.12, no package index), builds the extension, generates the
# training data (train_s1_movers4 of configs/eval_sets.yaml with more videos: real-footage
# negatives and people walking across, from the media copy in .whl/media), continues the
# shipped model with configs/train_stage1_gpu.yaml (bf16, 16 clips x 2 frames per step) for
# whatever is left of the deadline (the trainer's time_budget_s fixes the steps after 20 timed
# ones, four checkpoints whatever the speed), and brings back OUT/model_step_*.pt (float16 spvis model
# files, ~12 MiB each), OUT/train.json, OUT/log.csv and OUT/log.txt: at most 7 files.
#
#   bash scripts/gpu_check_prepare.sh        # here, once: .whl/ (pycocotools wheel, media copy)
#   bash scripts/gpu_train.sh OUT             # there: device run with carry [".whl"]
#   bash scripts/gpu_train.sh --dry-run OUT   # any CPU: the same steps, tiny model and data
#
# Then, here: choose among the files on the fresh validation sets (the shipped model's
# calibrations; the old val sets chose the shipped model and flatter it), compare with the
# shipped model's results (paired jackknife), and go on with the recipe of docs/model.md
# ("The shipped demo model"):
#   python bench/gpu_train.py model-config --init spvis_model/weights/spvis_lite0.pt --out ship.yaml
#   python bench/select_checkpoint.py --run OUT --sets val2_heldout,val2_lowfps \
#       --fp-sets val_real_movers,val_real_unseen,val_real --model-config ship.yaml \
#       --baseline spvis_model/weights/spvis_lite0.pt --save-results R --export selected.pt
#   python bench/compare_results.py --reference R/baseline_spvis_lite0.pt \
#       --candidate R/step_XXXXXX --sets val2_heldout,val2_lowfps
#
# Options: --deadline SECONDS for the whole command (default 560: a device command may run
# 600 s), --videos N (default 1000), --size WxH (frame size of the data, default the set's
# 320x240), --max-size PX (the model's input.max_size for training, default the init's),
# --init CKPT (default spvis_model/weights/spvis_lite0.pt), --config YAML, --keep K (model
# files brought back, default 4), --set NAME (the training set of configs/eval_sets.yaml,
# default train_s1_movers4, the stop-30 mix with a new seed; train_s1: without the people;
# train_s1_same: same-class crowds). Exit status 0 when a model file was written.
#
# Environment: PYTHON (default .venv/bin/python where it exists, else python3), SPVIS_WHEELS
# (default .whl), SPVIS_GPU_TRAIN_WORK (work folder, kept; default a temporary one, removed).
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)

DRY=0
DEADLINE=""
OUT=""
VIDEOS=""
SIZE=""
MAX_SIZE=""
INIT=spvis_model/weights/spvis_lite0.pt
CONFIG=configs/train_stage1_gpu.yaml
KEEP=4
SET=train_s1_movers4
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 2; }
need_value() { [ $# -ge 2 ] && [ -n "$2" ] || { echo "gpu_train.sh: $1 needs a value" >&2; exit 2; }; }
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --deadline) need_value "$@"; DEADLINE=$2; shift ;;
    --videos) need_value "$@"; VIDEOS=$2; shift ;;
    --size) need_value "$@"; SIZE=$2; shift ;;
    --max-size) need_value "$@"; MAX_SIZE=$2; shift ;;
    --init) need_value "$@"; INIT=$2; shift ;;
    --config) need_value "$@"; CONFIG=$2; shift ;;
    --keep) need_value "$@"; KEEP=$2; shift ;;
    --set) need_value "$@"; SET=$2; shift ;;
    -h|--help) usage ;;
    -*) echo "gpu_train.sh: unknown option $1" >&2; usage ;;
    *) [ -z "$OUT" ] || { echo "gpu_train.sh: two output folders: $OUT and $1" >&2; exit 2; }
       OUT="$1" ;;
  esac
  shift
done
[ -n "$OUT" ] || { echo "gpu_train.sh: give the output folder (e.g. \$OUT)" >&2; usage; }
for pair in "deadline:$DEADLINE" "videos:$VIDEOS" "max-size:$MAX_SIZE" "keep:$KEEP"; do
  v=${pair#*:}
  [ -z "$v" ] || [[ "$v" =~ ^[0-9]+$ ]] || { echo "gpu_train.sh: --${pair%%:*} $v: want a whole number" >&2; exit 2; }
done
[ -z "$SIZE" ] || [[ "$SIZE" =~ ^[0-9]+x[0-9]+$ ]] || { echo "gpu_train.sh: --size $SIZE: want WIDTHxHEIGHT" >&2; exit 2; }
[ -f "$CONFIG" ] || { echo "gpu_train.sh: --config $CONFIG: no such file" >&2; exit 2; }

if [ "$DRY" = 1 ]; then
  : "${DEADLINE:=300}" "${VIDEOS:=4}"
  DATA_EXTRA=(--frames 6 --size "${SIZE:-160x120}")
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
else
  : "${DEADLINE:=560}" "${VIDEOS:=1000}"
  DATA_EXTRA=()
  [ -z "$SIZE" ] || DATA_EXTRA=(--size "$SIZE")
fi

if [ -n "${PYTHON:-}" ]; then PY=$PYTHON
elif [ -x .venv/bin/python ]; then PY=$REPO/.venv/bin/python
else PY=python3; fi
WHEELS=${SPVIS_WHEELS:-.whl}
mkdir -p "$OUT" || exit 2
OUT=$(cd "$OUT" && pwd)
rm -f "$OUT"/model_step_*.pt "$OUT/train.json" "$OUT/log.csv" "$OUT/log.txt"
if [ -n "${SPVIS_GPU_TRAIN_WORK:-}" ]; then
  WORK=$SPVIS_GPU_TRAIN_WORK; mkdir -p "$WORK"
else
  WORK=$(mktemp -d /tmp/spvis-gpu-train.XXXXXX); trap 'rm -rf "$WORK"' EXIT
fi
START=$(date +%s)
NPROC=$(nproc 2>/dev/null || echo 2)
LOG="$OUT/log.txt"
: >"$LOG"
clock() { local s=$(( $(date +%s) - START )); printf '%02d:%02d' $((s / 60)) $((s % 60)); }
say() { echo "[gpu-train $(clock)] $*" | tee -a "$LOG"; }
left() { echo $(( START + DEADLINE - $(date +%s) )); }
# step NAME SECONDS CMD...: run CMD under timeout, its output into log.txt; fail loudly.
step() {
  local name=$1 secs=$2; shift 2
  [ "$secs" -gt 5 ] || { say "$name: no time left (${secs} s)"; return 1; }
  say "$name: start (at most ${secs} s)"
  local t0; t0=$(date +%s)
  timeout --kill-after=10 "$secs" "$@" 2>&1 | tee -a "$LOG" | tail -n 4
  local rc=${PIPESTATUS[0]}
  say "$name: exit $rc after $(( $(date +%s) - t0 )) s"
  printf '{"step_%s": {"exit": %d, "seconds": %d}}\n' "$name" "$rc" "$(( $(date +%s) - t0 ))" >"$WORK/step_$name.json"
  return "$rc"
}

say "spvis GPU training$([ "$DRY" = 1 ] && echo ' (dry run on the CPU)'): deadline ${DEADLINE} s, python $PY, output $OUT"
if [ -z "${SPVIS_MEDIA_DIR:-}" ] && [ -d "$WHEELS/media" ]; then
  export SPVIS_MEDIA_DIR=$(cd "$WHEELS/media" && pwd)
  say "real footage from the media copy $SPVIS_MEDIA_DIR"
fi

# 1. environment and extension: the GPU check's env and build parts (wheels into its site/).
CHECK_ARGS=(--only env,build --deadline $(( DEADLINE / 2 )))
[ "$DRY" = 1 ] && CHECK_ARGS=(--dry-run "${CHECK_ARGS[@]}")
step setup $(( $(left) - 60 )) env SPVIS_GPU_CHECK_WORK="$WORK/check" PYTHON="$PY" \
  bash scripts/gpu_check.sh "${CHECK_ARGS[@]}" "$WORK/check_out"
build=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["status"])' "$WORK/check/status/build.json" 2>/dev/null || echo "not run")
[ "$build" = passed ] || { say "the extension did not build ($build): stopping (log.txt has the set-up log)"; exit 1; }
export PYTHONPATH="$REPO:$WORK/check/site${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 MPLBACKEND=Agg

# 2. data
step data $(( $(left) - 60 )) "$PY" bench/gpu_train.py data --set "$SET" --videos "$VIDEOS" \
  "${DATA_EXTRA[@]}" --jobs "$NPROC" --out "$WORK/data" --json "$WORK/data.json" || exit 1

# 3. the run's config and model config
MODEL_ARGS=(--init "$INIT" --out "$WORK/model.yaml")
[ -z "$MAX_SIZE" ] || MODEL_ARGS+=(--max-size "$MAX_SIZE")
if [ "$DRY" = 1 ]; then
  "$PY" - "$CONFIG" "$WORK/train.yaml" <<'EOF' || exit 1
import sys, yaml
cfg = yaml.safe_load(open(sys.argv[1]))
cfg.update(batch_size=2, num_workers=0, device="cpu", amp=False, warmup_steps=2,
           budget_probe_steps=4, task_options={"num_points": 256}, init=None)
yaml.safe_dump(cfg, open(sys.argv[2], "w"), sort_keys=False)
EOF
  MODEL=tiny
  INIT_ARGS=()
else
  cp "$CONFIG" "$WORK/train.yaml"
  "$PY" bench/gpu_train.py model-config "${MODEL_ARGS[@]}" 2>&1 | tee -a "$LOG" || exit 1
  MODEL=$WORK/model.yaml
  INIT_ARGS=(--init "$INIT")
fi

# 4. train for what is left (start-up before the loop ~30 s, export ~30 s after it)
BUDGET=$(( $(left) - 75 ))
[ "$DRY" = 1 ] && BUDGET=$(( BUDGET > 20 ? 20 : BUDGET ))
say "training budget ${BUDGET} s (the loop; steps fixed after the probe steps)"
step train $(( BUDGET + 60 )) "$PY" -m spvis_model.cli train --config "$WORK/train.yaml" \
  --data "$WORK/data/annotations.json" --model-config "$MODEL" "${INIT_ARGS[@]}" \
  --out "$WORK/run" --time-budget "$BUDGET" --no-progress
train_rc=$?
[ "$train_rc" = 0 ] || say "training exited $train_rc: exporting the checkpoints it wrote"

# 5. bring back model files, the log and a summary
"$PY" - "$WORK/env.json" "$DRY" "$DEADLINE" "$(( $(date +%s) - START ))" <<'EOF'
import json, platform, sys
import torch
cuda = torch.cuda.is_available()
json.dump({"machine": {"gpu": torch.cuda.get_device_name(0) if cuda else None,
                       "torch": torch.__version__, "python": platform.python_version(),
                       "cpus": __import__("os").cpu_count()},
           "dry_run": sys.argv[2] == "1", "deadline_s": int(sys.argv[3]),
           "seconds_before_export": int(sys.argv[4])}, open(sys.argv[1], "w"))
EOF
step export $(( $(left) > 20 ? $(left) : 20 )) "$PY" bench/gpu_train.py export --run "$WORK/run" \
  --out "$OUT" --keep "$KEEP" --json "$WORK/env.json" "$WORK/data.json" "$WORK"/step_*.json
export_rc=$?
say "done in $(( $(date +%s) - START )) s: $(ls "$OUT" | tr '\n' ' ')"
[ "$export_rc" = 0 ] && exit 0
exit 1
