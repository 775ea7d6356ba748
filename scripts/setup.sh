#!/usr/bin/env bash
# One set-up entry point (make setup): creates .venv, installs torch, the Python tools, the ROS 2
# wheels and the spvis_msgs messages, and builds+installs this project (editable, with the
# compiled op). Idempotent: each step keeps a stamp of its inputs and is skipped while they are
# unchanged, so a second run takes seconds. Prints one line per step.
#
# Environment:
#   VENV=.venv            where the environment goes
#   PYTHON=python3        interpreter for a new venv (3.11 or 3.12: the ROS wheels exist for those)
#   TORCH_SPEC=torch==2.13.0   what to install when the venv has no torch yet (an existing torch,
#                         e.g. a CUDA build you installed, is kept)
#   SPVIS_WITH_CUDA=0|1   force the CUDA kernels off/on (default: on when torch has CUDA and nvcc)
#   SPVIS_SKIP_ROS=1      skip the ROS 2 wheels and messages (model-only machines)
#   SPVIS_SKIP_MEDIA=1    do not apt-get install opencv-doc (its real videos feed the training
#                         data and the false-positive test)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${VENV:-$ROOT/.venv}"
log() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }
hash_of() { cat "$@" | sha256sum | cut -d' ' -f1; }
stamp_ok() { [[ -f "$1" && "$(cat "$1")" == "$2" ]]; }
t0=$SECONDS

# 1. venv
if [[ ! -x "$VENV/bin/python" ]]; then
    log "1/5 venv: creating $VENV with ${PYTHON:-python3}"
    "${PYTHON:-python3}" -m venv "$VENV" || die "could not create $VENV"
else
    log "1/5 venv: $VENV exists"
fi
PY="$VENV/bin/python"
STATE="$VENV/spvis-setup"
mkdir -p "$STATE"

# 2. torch + python tools
PIP_KEY="$(printf '%s\n' "${TORCH_SPEC:-torch==2.13.0}" | cat - requirements.txt requirements-dev.txt | sha256sum | cut -d' ' -f1)"
torch_version() { "$PY" -c 'import importlib.metadata as m; print(m.version("torch"))' 2>/dev/null; }
if stamp_ok "$STATE/pip.stamp" "$PIP_KEY" && torch_version >/dev/null; then
    log "2/5 pip: torch $(torch_version) and dev tools up to date"
else
    if torch_version >/dev/null; then
        log "2/5 pip: keeping torch $(torch_version), installing requirements.txt + requirements-dev.txt"
        "$PY" -m pip install -q -r requirements.txt -r requirements-dev.txt >"$STATE/pip.log" 2>&1 \
            || { tail -20 "$STATE/pip.log" >&2; die "pip install -r requirements-dev.txt failed"; }
    else
        log "2/5 pip: installing ${TORCH_SPEC:-torch==2.13.0}, requirements.txt and requirements-dev.txt"
        "$PY" -m pip install -q "${TORCH_SPEC:-torch==2.13.0}" -r requirements.txt -r requirements-dev.txt \
            >"$STATE/pip.log" 2>&1 \
            || { tail -20 "$STATE/pip.log" >&2; die "pip install of torch / requirements-dev.txt failed"; }
    fi
    echo "$PIP_KEY" >"$STATE/pip.stamp"
fi

# 2b. real footage for training data and the false-positive test (Debian's opencv-doc:
# vtest.avi, Megamind.avi, the sample photos; spvis_model/data/real_media.py)
OPENCV_DOC=/usr/share/doc/opencv-doc/examples/data/vtest.avi
if [[ -f "$OPENCV_DOC" ]]; then
    log "2/5 media: opencv-doc present"
elif [[ "${SPVIS_SKIP_MEDIA:-0}" == "1" ]]; then
    log "2/5 media: skipped (SPVIS_SKIP_MEDIA=1): real-video tests will fail"
else
    log "2/5 media: installing Debian's opencv-doc (real videos and photos, ~96 MB)"
    { apt-get install -y -q opencv-doc >/dev/null 2>&1 || \
      { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q opencv-doc >/dev/null 2>&1; }; } \
        || log "2/5 media: WARNING: could not install opencv-doc; real-video tests will fail"
fi

# 3. ROS 2 wheels + the interface packages (vision_msgs from ros_deps/, spvis_msgs from msg/)
if [[ "${SPVIS_SKIP_ROS:-0}" == "1" ]]; then
    log "3/5 ros: skipped (SPVIS_SKIP_ROS=1)"
else
    log "3/5 ros: scripts/setup_ros.sh"
    bash scripts/setup_ros.sh "$VENV" | sed 's/^/        /'
fi

# 4. the project, editable, with the compiled op
TORCH_VER="$(torch_version)"
EXT_KEY="$( { echo "$TORCH_VER ${SPVIS_WITH_CUDA:-auto} ${TORCH_CUDA_ARCH_LIST:-}";
              find csrc -type f -print0 | LC_ALL=C sort -z | xargs -0 cat; cat setup.py pyproject.toml
              find spvis_model spvis_ros -name __init__.py | LC_ALL=C sort; } \
            | sha256sum | cut -d' ' -f1)"
if stamp_ok "$STATE/ext.stamp" "$EXT_KEY" && compgen -G "spvis_model/_C*.so" >/dev/null; then
    log "4/5 build: spvis_model._C up to date"
else
    log "4/5 build: pip install -e . (compiles csrc/ against torch $TORCH_VER; ~1 min on 2 cores)"
    "$PY" -m pip install -q -e . --no-build-isolation --no-deps >"$STATE/build.log" 2>&1 \
        || { tail -40 "$STATE/build.log" >&2; die "building the extension failed (log: $STATE/build.log)"; }
    grep '^spvis:' "$STATE/build.log" | sed 's/^/        /' || true
    echo "$EXT_KEY" >"$STATE/ext.stamp"
fi

# 5. check
INFO="$("$VENV/bin/spvis" info --short)" || die "spvis_model._C does not import after the build: $INFO"
log "5/5 ok: $INFO ($((SECONDS - t0)) s)"
