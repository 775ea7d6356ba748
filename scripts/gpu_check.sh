#!/usr/bin/env bash
# The CUDA check: one command for a fresh CUDA machine that has only torch (Python 3.12, no
# package index). In at most 9 minutes it builds the extension for the local GPU, runs every
# cuda-marked test, bench/model.py (all presets, float32/float16/bfloat16, the whole step eager
# and captured), the node-equivalent per-frame path (one camera and 4 batched), host syncs per
# step, a short AMP bf16 training of stage 1 and stage 2 under torchrun with NCCL (world size 1),
# bench/msda.py and, where onnxruntime has CUDA, bench/export.py; then writes OUT/report.md,
# OUT/results.json (every raw result) and OUT/log.txt (see docs/benchmarks.md, "GPU check").
#
#   bash scripts/gpu_check_prepare.sh          # here, once: the wheels into .whl/
#   bash scripts/gpu_check.sh OUT               # there (device run with carry [".whl"])
#   bash scripts/gpu_check.sh --dry-run OUT     # any CPU machine: the same parts, tiny sizes
#   make gpu-check [DRY=1] [OUT=dir]
#
# Options: --only PART[,PART...] runs those parts (and env/build, which the others need);
# --budget PART=SECONDS changes one part's time budget; --deadline SECONDS the whole run's
# (default 540; dry run 480). Each part runs under `timeout` with its budget, cut to what is
# left before the deadline; a part that fails or times out does not stop the others, and the
# report in OUT is rewritten after every part. Exit status: 0 when no part failed or timed out.
#
# Environment: PYTHON (default .venv/bin/python where it exists, else python3); SPVIS_WHEELS
# (default .whl); SPVIS_GPU_CHECK_WORK (the work folder; default a new temporary one, removed
# at the end).
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)

DRY=0
ONLY=""
DEADLINE=""
OUT=""
declare -A BUDGET=([env]=60 [build]=240 [cuda-tests]=150 [model]=150 [capture]=120
                   [node-path]=90 [syncs]=60 [train]=150 [msda]=60 [export]=90)
PARTS=(env build cuda-tests model capture node-path syncs train msda export)
usage() { sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --only) ONLY="$2"; shift ;;
    --budget)
      [[ "$2" =~ ^([a-z-]+)=([0-9]+)$ ]] || { echo "gpu_check.sh: --budget $2: want PART=SECONDS" >&2; exit 2; }
      [ -n "${BUDGET[${BASH_REMATCH[1]}]+x}" ] || { echo "gpu_check.sh: --budget: no part ${BASH_REMATCH[1]} (parts: ${PARTS[*]})" >&2; exit 2; }
      BUDGET[${BASH_REMATCH[1]}]=${BASH_REMATCH[2]}; shift ;;
    --deadline) DEADLINE="$2"; shift ;;
    -h|--help) usage ;;
    -*) echo "gpu_check.sh: unknown option $1" >&2; usage ;;
    *) [ -z "$OUT" ] || { echo "gpu_check.sh: two output folders: $OUT and $1" >&2; exit 2; }
       OUT="$1" ;;
  esac
  shift
done
[ -n "$OUT" ] || { echo "gpu_check.sh: give the output folder (e.g. \$OUT)" >&2; usage; }
if [ -n "$ONLY" ]; then
  for p in ${ONLY//,/ }; do
    [ -n "${BUDGET[$p]+x}" ] || { echo "gpu_check.sh: --only: no part $p (parts: ${PARTS[*]})" >&2; exit 2; }
  done
  keep=()
  for p in "${PARTS[@]}"; do
    case ",$ONLY,env,build," in *",$p,"*) keep+=("$p") ;; esac
  done
  PARTS=("${keep[@]}")
fi
[ -n "$DEADLINE" ] || DEADLINE=$([ "$DRY" = 1 ] && echo 480 || echo 540)
RESERVE=8   # seconds kept for the last report

if [ -n "${PYTHON:-}" ]; then PY=$PYTHON
elif [ -x .venv/bin/python ]; then PY=$REPO/.venv/bin/python
else PY=python3; fi
WHEELS=${SPVIS_WHEELS:-.whl}
mkdir -p "$OUT" || exit 2
OUT=$(cd "$OUT" && pwd)
if [ -n "${SPVIS_GPU_CHECK_WORK:-}" ]; then
  WORK=$SPVIS_GPU_CHECK_WORK; mkdir -p "$WORK"
else
  WORK=$(mktemp -d /tmp/spvis-gpu-check.XXXXXX); trap 'rm -rf "$WORK"' EXIT
fi
mkdir -p "$WORK/status" "$WORK/logs" "$WORK/raw" "$WORK/site"
rm -f "$WORK"/status/*.json "$OUT/report.md" "$OUT/results.json" "$OUT/log.txt"
START=$(date +%s)

export PYTHONPATH="$REPO:$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 SPVIS_ALLOW_NO_ROS=1 MPLBACKEND=Agg
NPROC=$(nproc 2>/dev/null || echo 2)
if [ "$DRY" = 1 ]; then
  DEV=cpu; export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
else
  DEV=cuda
fi

"$PY" - "$WORK/meta.json" "$DRY" "$START" "$DEADLINE" "${PARTS[@]}" <<'EOF'
import json, sys
path, dry, start, deadline, *parts = sys.argv[1:]
json.dump({"dry_run": dry == "1", "started_unix": float(start), "deadline_s": float(deadline),
           "parts": parts}, open(path, "w"), indent=1)
EOF
[ $? = 0 ] || { echo "gpu_check.sh: $PY does not run" >&2; exit 2; }

clock() { local s=$(( $(date +%s) - START )); printf '%02d:%02d' $((s / 60)) $((s % 60)); }
say() { echo "[gpu-check $(clock)] $*"; }
report() { "$PY" scripts/gpu_check_report.py report "$WORK" "$OUT" >/dev/null 2>&1 || say "(report writing failed)"; }
status_of() { "$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["status"])' "$WORK/status/$1.json" 2>/dev/null || echo "not run"; }
FAILED=0

# run_part NAME FUNCTION [quiet]: FUNCTION runs under `timeout` with the part's budget (cut to
# what is left before the deadline); its output goes to logs/NAME.log and, unless quiet, to the
# console.
run_part() {
  local name=$1 fn=$2 quiet=${3:-}
  local left=$(( START + DEADLINE - RESERVE - $(date +%s) ))
  local budget=${BUDGET[$name]}
  if [ "$left" -lt 15 ]; then
    say "$name: skipped (${left} s left before the ${DEADLINE} s deadline)"
    "$PY" scripts/gpu_check_report.py skip "$WORK" "$name" "no time left before the ${DEADLINE} s deadline"
    report; return
  fi
  [ "$budget" -le "$left" ] || budget=$left
  mkdir -p "$WORK/raw/$name"
  say "$name: start (budget ${budget} s)"
  local t0; t0=$(date +%s.%N)
  local rc
  if [ -z "$quiet" ]; then
    RAW="$WORK/raw/$name" timeout --kill-after=10 "$budget" \
      bash -c "$(declare -f "$fn" say clock); START=$START; $fn" 2>&1 | tee "$WORK/logs/$name.log"
    rc=${PIPESTATUS[0]}
  else
    RAW="$WORK/raw/$name" timeout --kill-after=10 "$budget" \
      bash -c "$(declare -f "$fn" say clock); START=$START; $fn" >"$WORK/logs/$name.log" 2>&1
    rc=$?
    tail -n 3 "$WORK/logs/$name.log"
  fi
  local secs; secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
  "$PY" scripts/gpu_check_report.py finish "$WORK" "$name" "$rc" "$secs" "$budget"
  local st; st=$(status_of "$name")
  say "$name: $st in ${secs} s"
  case "$st" in passed|skipped) ;; *) FAILED=1 ;; esac
  report
}
skip_part() {
  say "$1: skipped ($2)"
  "$PY" scripts/gpu_check_report.py skip "$WORK" "$1" "$2"
  report
}
export PY DEV DRY WORK REPO WHEELS NPROC

# --- the parts (each runs in its own bash under timeout; RAW is its results folder) ------------
part_env() {
  # A wheel or message zip that does not install fails this part, but the others still run
  # (they report what they miss); no CUDA device on a real run stops everything.
  if [ "$DRY" != 1 ]; then
    "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' || {
      echo "torch sees no CUDA device: this is not a CUDA machine (use --dry-run on a CPU)"
      touch "$WORK/no_cuda"; exit 3; }
  fi
  local ok=0
  shopt -s nullglob
  local wheels=("$WHEELS"/*.whl)
  local pyver; pyver=$("$PY" -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')
  if [ ${#wheels[@]} -gt 0 ] && [ "$pyver" = 312 ]; then
    say "installing ${#wheels[@]} wheel(s) from $WHEELS into the work folder (no index)"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target "$WORK/site" "${wheels[@]}" || { say "the wheels did not install"; ok=1; }
  elif [ ${#wheels[@]} -gt 0 ]; then
    say "not installing $WHEELS/*.whl (cp312 wheels; this is Python ${pyver:0:1}.${pyver:1}): using this environment's packages"
  else
    say "no wheels in $WHEELS (bash scripts/gpu_check_prepare.sh makes them): using this environment's packages"
  fi
  if [ -f "$WHEELS/ros_msgs_py.zip" ]; then
    say "unpacking the ROS message classes ($WHEELS/ros_msgs_py.zip)"
    "$PY" -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' \
      "$WHEELS/ros_msgs_py.zip" "$WORK/site" || { say "the message zip did not unpack"; ok=1; }
  fi
  "$PY" scripts/gpu_check_report.py env "$WORK" || exit 1
  cp "$WORK/env.json" "$RAW/env.json"
  return $ok
}

part_build() {
  set -e
  if [ "$DRY" = 1 ]; then
    # CPU kernels only. An extension newer than its sources is kept: build_ext --inplace would
    # compile again and overwrite the file that other processes here may have loaded.
    local so; so=spvis_model/_C$("$PY" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
    if [ -f "$so" ] && [ -z "$(find csrc setup.py -type f -newer "$so")" ]; then
      say "$so is newer than csrc/ and setup.py: kept, not rebuilt"
    else
      SPVIS_WITH_CUDA=0 MAX_JOBS=$NPROC "$PY" setup.py build_ext --inplace
    fi
    "$PY" -c 'from spvis_model.ops import is_built, with_cuda; assert is_built(); print("spvis_model._C built, CUDA kernels:", with_cuda())'
  else
    local arch; arch=$("$PY" -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability())')
    say "building spvis_model._C for compute capability $arch with $NPROC jobs (log: build section of log.txt)"
    TORCH_CUDA_ARCH_LIST=$arch SPVIS_WITH_CUDA=1 MAX_JOBS=$NPROC "$PY" setup.py build_ext --inplace
    "$PY" -c 'from spvis_model.ops import with_cuda; import sys; ok = with_cuda(); print("spvis_model._C built, CUDA kernels:", ok); sys.exit(0 if ok else 1)'
  fi
}

part_cuda_tests() {
  local files; files=$(grep -l -E 'pytest\.mark\.cuda|pytestmark *= *pytest\.mark\.cuda' test/test_*.py | tr '\n' ' ')
  say "cuda-marked tests in: $files"
  # shellcheck disable=SC2086
  "$PY" -m pytest -q -m cuda -p no:cacheprovider --junitxml="$RAW/junit.xml" $files
}

part_model() {
  if [ "$DRY" = 1 ]; then
    "$PY" bench/model.py --device cpu --presets tiny --precision float32 --repeats 2 \
      --size 160x120 --step-frames 4 --stream-frames 5 --json "$RAW/model.json"
  else
    "$PY" bench/model.py --device cuda --presets lite0 r50 swin-l tiny r101 swin-t swin-s swin-b \
      --precision float32 bfloat16 float16 --repeats 10 --step-frames 30 --stream-frames 20 \
      --json "$RAW/model.json"
  fi
}

part_capture() {
  if [ "$DRY" = 1 ]; then
    "$PY" bench/model.py --device cpu --presets tiny --precision float32 --size 160x120 \
      --step-only --step-frames 3 --capture graphs compile --json "$RAW/capture.json"
  else
    "$PY" bench/model.py --device cuda --presets lite0 r50 --precision bfloat16 \
      --step-only --step-frames 60 --capture graphs compile --json "$RAW/capture.json"
  fi
}

part_node_path() {
  if [ "$DRY" = 1 ]; then
    "$PY" bench/node_path.py --device cpu --preset tiny --size 160x120 --frames 4 \
      --cameras 1 4 --capture eager graphs --json "$RAW/node_path.json"
  else
    "$PY" bench/node_path.py --device cuda --checkpoint spvis_model/weights/spvis_lite0.pt \
      --precision bfloat16 --size 640x480 --frames 60 --cameras 1 4 --capture eager graphs \
      --json "$RAW/node_path.json"
  fi
}

part_syncs() {
  local frames=20 dev=cuda extra=(--cuda-debug)
  if [ "$DRY" = 1 ]; then frames=3; dev=cpu; extra=(); fi
  "$PY" bench/tracker_syncs.py --device "$dev" --checkpoint spvis_model/weights/spvis_lite0.pt \
    --frames "$frames" --reference "${extra[@]}" --json "$RAW/syncs.json"
}

part_train() {
  set -e
  local data="$WORK/train_data" runs="$WORK/train_runs"
  rm -rf "$runs"; mkdir -p "$runs"
  local torchrun=("$PY" -m torch.distributed.run --standalone --nproc_per_node 1)
  if [ "$DRY" = 1 ]; then
    "$PY" bench/train_check.py generate --out "$data"
    "${torchrun[@]}" bench/train_check.py amp --stage 1 --data "$data/annotations.json" \
      --out "$runs/stage1" --model-config tiny --steps 3 --workers 0 --json "$RAW/stage1.json"
    "${torchrun[@]}" bench/train_check.py amp --stage 2 --data "$data/annotations.json" \
      --out "$runs/stage2" --init "$runs/stage1/model.pt" --steps 3 --clip-len 4 --workers 0 \
      --json "$RAW/stage2.json"
  else
    "$PY" bench/train_check.py generate --out "$data" --videos 8 --frames 24 --size 320x240
    "${torchrun[@]}" bench/train_check.py amp --stage 1 --data "$data/annotations.json" \
      --out "$runs/stage1" --init spvis_model/weights/spvis_lite0.pt --steps 40 --batch-size 8 \
      --workers 4 --amp bfloat16 --json "$RAW/stage1.json"
    "${torchrun[@]}" bench/train_check.py amp --stage 2 --data "$data/annotations.json" \
      --out "$runs/stage2" --init "$runs/stage1/model.pt" --steps 30 --workers 4 --amp bfloat16 \
      --json "$RAW/stage2.json"
  fi
}

part_msda() {
  if [ "$DRY" = 1 ]; then
    "$PY" bench/msda.py --device cpu --tiny --batch 1 --repeats 2 --json "$RAW/msda.json"
  else
    "$PY" bench/msda.py --device cuda --json "$RAW/msda.json"
  fi
}

part_export() {
  if [ "$DRY" = 1 ]; then
    "$PY" bench/export.py --device cpu --presets tiny --sizes 128 --repeats 2 --json "$RAW/export.json"
  else
    "$PY" bench/export.py --device cuda --presets tiny lite0 --sizes 640 --json "$RAW/export.json"
  fi
}

# --- run ---------------------------------------------------------------------------------------
say "spvis GPU check$([ "$DRY" = 1 ] && echo ' (dry run on the CPU)'): parts ${PARTS[*]}; deadline ${DEADLINE} s; python $PY; output $OUT"
report
for part in "${PARTS[@]}"; do
  case "$part" in
    env) run_part env part_env
         if [ -e "$WORK/no_cuda" ] || [ ! -f "$WORK/env.json" ]; then
           say "no CUDA device, or python/torch broken: nothing else can run"
           for p in "${PARTS[@]:1}"; do skip_part "$p" "the env part failed"; done
           break
         fi ;;
    build) run_part build part_build quiet ;;
    *)
      if [ "$(status_of build)" != passed ]; then
        skip_part "$part" "the extension did not build"; continue
      fi
      if [ "$part" = export ]; then
        why=$("$PY" - "$DRY" <<'EOF'
import sys
try:
    import onnxruntime
except ImportError:
    print("onnxruntime is not installed"); sys.exit()
providers = onnxruntime.get_available_providers()
if sys.argv[1] != "1" and "CUDAExecutionProvider" not in providers:
    print(f"onnxruntime {onnxruntime.__version__} has no CUDAExecutionProvider ({', '.join(providers)})")
EOF
)
        if [ -n "$why" ]; then skip_part export "$why"; continue; fi
      fi
      run_part "$part" "part_${part//-/_}" ;;
  esac
done
report
say "done in $(( $(date +%s) - START )) s: $OUT/report.md"
"$PY" - "$WORK" <<'EOF'
import json, sys
from pathlib import Path
meta = json.loads(Path(sys.argv[1], "meta.json").read_text())
for p in meta["parts"]:
    f = Path(sys.argv[1], "status", f"{p}.json")
    s = json.loads(f.read_text()) if f.is_file() else {"status": "not run", "seconds": 0, "note": ""}
    print(f"  {p:<11} {s['status']:<10} {s['seconds']:>6.0f} s  {s.get('note') or ''}")
EOF
exit $FAILED
