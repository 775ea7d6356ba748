"""The vision_msgs interface package built here (ros_deps/vision_msgs; not on PyPI) is the real
one on the wire: field lists as documented upstream, and the RIHS01 type hashes that rosidl
generates for ros-perception/vision_msgs 4.1.1 (Jazzy/Kilted), which DDS discovery compares."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

try:
    import vision_msgs.msg as vm
    from rclpy.serialization import deserialize_message, serialize_message
except ImportError as exc:
    if os.environ.get("SPVIS_ALLOW_NO_ROS") == "1":
        pytest.skip(f"SPVIS_ALLOW_NO_ROS=1 and {exc}", allow_module_level=True)
    raise

pytestmark = pytest.mark.ros

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "ros_deps" / "vision_msgs"

# The upstream hashes, as rosidl generated them for the real package (its generated
# *__description.c files of a Jazzy build). Interop needs these exact values.
UPSTREAM_HASHES = {
    "Detection2DArray": "214274120007f4a683866481336b70310268cfa107aebe9d594a6acf75bda968",
    "Detection2D": "0d12b69df5c593b3455b7346fac8205437a7d4bcb09b9e0e0b2dde787ded38ea",
    "LabelInfo": "3d37df4015cdf660cc851c51897f2acd957e1ca6205ba0a99aebffb9406b0783",
    "VisionClass": "1e4a11f0fed50b5623cb8ff26ca0e37952a48a9c074d16f804b44e9164c2037a",
    "BoundingBox2D": "008eacbb0cf8f26e83795547bed013eec3675485ef386ec056d80eaaf1c1ce2f",
    "ObjectHypothesis": "51da43cec11c01957a64d1e05a24acd18aae7745ec30b74348ad5f6d634f7f90",
    "ObjectHypothesisWithPose":
        "41c12344c0396c48b81df12467c192d99b2a0eb1463c5c37194e4223251c80bc",
    "Point2D": "eab0e83f44ab4de92ceaf76dd7d0e7638f2bdd1d16ffbe16c7a136c48e407247",
    "Pose2D": "b0b5d1d7b4c20dd4fcde3ed1d4b289a919290572007d67a97043814db25d3648",
    "Detection3D": "ddd703be132ab0b69d33121f1bb034132bfbb3b0ac5f9fb1516005ba1c8a265b",
    "BoundingBox3D": "bbb73a65c163d7f9bb29009c7bde9f7faa576bd2d23299c4511d19230dab4698",
}
# The same reference build's hashes of the types vision_msgs embeds: they must equal the ones of
# the wheels here, or the vision_msgs hashes could not match either.
UPSTREAM_DEPENDENCY_HASHES = {
    "builtin_interfaces/msg/Time":
        "b106235e25a4c5ed35098aa0a61a3ee9c9b18d197f398b0e4206cea9acf9c197",
    "std_msgs/msg/Header": "f49fb3ae2cf070f793645ff749683ac6b06203e41c891e17701b1cb597ce6a01",
    "geometry_msgs/msg/Point": "6963084842a9b04494d6b2941d11444708d892da2f4b09843b9c43f42a7f6881",
    "geometry_msgs/msg/Pose": "d501954e9476cea2996984e812054b68026ae0bfae789d9a10b23daf35cc90fa",
    "geometry_msgs/msg/PoseWithCovariance":
        "9a7c0fd234b7f45c6098745ecccd773ca1085670e64107135397aee31c02e1bb",
    "geometry_msgs/msg/Quaternion":
        "8a765f66778c8ff7c8ab94afcc590a2ed5325a1d9a076ffff38fbce36f458684",
    "geometry_msgs/msg/Vector3":
        "cc12fe83e4c02719f1ce8070bfd14aecd40f75a96696a67a2a1f37f7dbb0765d",
}
# The documented field lists (vision_msgs 4.1.1), as rosidl's Python classes report them.
FIELDS = {
    "Point2D": {"x": "double", "y": "double"},
    "Pose2D": {"position": "vision_msgs/Point2D", "theta": "double"},
    "BoundingBox2D": {"center": "vision_msgs/Pose2D", "size_x": "double", "size_y": "double"},
    "BoundingBox2DArray": {"header": "std_msgs/Header",
                           "boxes": "sequence<vision_msgs/BoundingBox2D>"},
    "BoundingBox3D": {"center": "geometry_msgs/Pose", "size": "geometry_msgs/Vector3"},
    "BoundingBox3DArray": {"header": "std_msgs/Header",
                           "boxes": "sequence<vision_msgs/BoundingBox3D>"},
    "ObjectHypothesis": {"class_id": "string", "score": "double"},
    "ObjectHypothesisWithPose": {"hypothesis": "vision_msgs/ObjectHypothesis",
                                 "pose": "geometry_msgs/PoseWithCovariance"},
    "Classification": {"header": "std_msgs/Header",
                       "results": "sequence<vision_msgs/ObjectHypothesis>"},
    "Detection2D": {"header": "std_msgs/Header",
                    "results": "sequence<vision_msgs/ObjectHypothesisWithPose>",
                    "bbox": "vision_msgs/BoundingBox2D", "id": "string"},
    "Detection2DArray": {"header": "std_msgs/Header",
                         "detections": "sequence<vision_msgs/Detection2D>"},
    "Detection3D": {"header": "std_msgs/Header",
                    "results": "sequence<vision_msgs/ObjectHypothesisWithPose>",
                    "bbox": "vision_msgs/BoundingBox3D", "id": "string"},
    "Detection3DArray": {"header": "std_msgs/Header",
                         "detections": "sequence<vision_msgs/Detection3D>"},
    "VisionClass": {"class_id": "uint16", "class_name": "string"},
    "LabelInfo": {"header": "std_msgs/Header", "class_map": "sequence<vision_msgs/VisionClass>",
                  "threshold": "float"},
    "VisionInfo": {"header": "std_msgs/Header", "method": "string",
                   "database_location": "string", "database_version": "int32"},
}


def _installed_hash(pkg: str, name: str) -> str:
    description = json.loads((Path(sys.prefix) / "share" / pkg / "msg" / f"{name}.json")
                             .read_text())
    full = f"{pkg}/msg/{name}"
    return next(h["hash_string"] for h in description["type_hashes"] if h["type_name"] == full)


def test_every_msg_file_is_built_and_listed():
    files = {p.stem for p in (PACKAGE / "msg").glob("*.msg")}
    assert files == set(FIELDS)
    cmake = (PACKAGE / "CMakeLists.txt").read_text()
    assert all(f'"msg/{name}.msg"' in cmake for name in files)
    assert (PACKAGE / "COLCON_IGNORE").is_file(), "a robot builds the real vision_msgs"


def test_field_lists_are_the_documented_ones():
    for name, fields in FIELDS.items():
        assert getattr(vm, name).get_fields_and_field_types() == fields, name


def test_type_hashes_equal_upstream():
    for full, expected in UPSTREAM_DEPENDENCY_HASHES.items():
        pkg, _, name = full.split("/")
        assert _installed_hash(pkg, name) == f"RIHS01_{expected}", full
    for name, expected in UPSTREAM_HASHES.items():
        assert _installed_hash("vision_msgs", name) == f"RIHS01_{expected}", name


def test_bag_typestore_has_vision_msgs_with_the_same_hashes():
    from spvis_ros.bag.base import typestore

    store = typestore()
    for name, expected in UPSTREAM_HASHES.items():
        assert store.hash_rihs01(f"vision_msgs/msg/{name}") == f"RIHS01_{expected}", name


def test_cdr_round_trip_rclpy_and_rosbags():
    from spvis_ros.bag.base import deserialize

    det = vm.Detection2D(id="front/17")
    det.bbox.center.position.x, det.bbox.size_y = 12.5, 40.0
    hyp = vm.ObjectHypothesisWithPose()
    hyp.hypothesis.class_id, hyp.hypothesis.score = "3", 0.75
    det.results.append(hyp)
    arr = vm.Detection2DArray(detections=[det])
    arr.header.frame_id = "cam"
    data = serialize_message(arr)
    back = deserialize_message(data, vm.Detection2DArray)
    assert back.detections[0].id == "front/17" and back.detections[0].bbox.size_y == 40.0
    other = deserialize(bytes(data), "vision_msgs/msg/Detection2DArray")
    assert other.detections[0].results[0].hypothesis.class_id == "3"
    assert other.header.frame_id == "cam"
