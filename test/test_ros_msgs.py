"""Tests of the ``spvis_msgs`` interface package (msg/) as built by ``scripts/setup_ros.sh``.

Needs rclpy, rosbags and the built spvis_msgs in the running interpreter (run
``scripts/setup_ros.sh .venv`` first). Without them collecting this module fails, unless
``SPVIS_ALLOW_NO_ROS=1`` is set (as in test/conftest.py), which skips it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

try:
    import rclpy  # noqa: F401  (import check: the ROS runtime must be installed)
    from rclpy.serialization import deserialize_message, serialize_message
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore
    from spvis_msgs.msg import Instance, InstanceArray
except ImportError as exc:
    if os.environ.get("SPVIS_ALLOW_NO_ROS") == "1":
        pytest.skip(f"SPVIS_ALLOW_NO_ROS=1 and {exc}", allow_module_level=True)
    raise ImportError(
        f"{exc}: ROS 2 / spvis_msgs not installed; run scripts/setup_ros.sh .venv "
        "(or set SPVIS_ALLOW_NO_ROS=1 to skip the ROS tests)"
    ) from exc

pytestmark = pytest.mark.ros

REPO_ROOT = Path(__file__).resolve().parents[1]
MSG_DIR = REPO_ROOT / "msg" / "msg"
HELPERS = Path(__file__).resolve().parent / "ros_helpers"

# One DDS domain per test run (pid-derived, 1..101) so parallel runs on one machine do not
# see each other's topics; discovery restricted to this host.
DOMAIN_ID = 1 + os.getpid() % 101
SUBSCRIBER_TIMEOUT_S = 15.0
PROCESS_TIMEOUT_S = 20.0
EXIT_TIMEOUT = 3  # subscriber.py's exit status when nothing arrived

CDR_HEADER = 4  # encapsulation header before the CDR body
PRIMITIVE_SIZES = {
    "boolean": 1, "octet": 1, "char": 1, "int8": 1, "uint8": 1,
    "int16": 2, "uint16": 2, "int32": 4, "uint32": 4, "float": 4,
    "int64": 8, "uint64": 8, "double": 8,
}  # fmt: skip


def _load_sample_module() -> ModuleType:
    """Import test/ros_helpers/sample_msgs.py by path (independent of test package layout)."""
    spec = importlib.util.spec_from_file_location("spvis_sample_msgs", HELPERS / "sample_msgs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


samples = _load_sample_module()


def _cdr_padding(msg: Any) -> set[int]:
    """Byte offsets of the alignment padding in the CDR (v1, little endian) of an rclpy message.

    Computed independently of both serializers from the message's field list: primitives align
    to their size, string and sequence lengths are uint32, strings carry a trailing NUL.
    Offsets include the 4-byte encapsulation header, like ``serialize_message`` output.
    """
    pads: set[int] = set()
    pos = 0

    def align(size: int) -> None:
        nonlocal pos
        while pos % size:
            pads.add(CDR_HEADER + pos)
            pos += 1

    def walk(typ: str, value: Any) -> None:
        nonlocal pos
        if typ in PRIMITIVE_SIZES:
            align(PRIMITIVE_SIZES[typ])
            pos += PRIMITIVE_SIZES[typ]
        elif typ == "string":
            align(4)
            pos += 4 + len(value.encode()) + 1
        elif typ.startswith("sequence<") and "," not in typ:
            align(4)
            pos += 4
            for item in value:
                walk(typ[len("sequence<") : -1], item)
        elif "/" in typ:
            walk_fields(value)
        else:
            raise NotImplementedError(f"CDR layout of {typ!r} not handled by this test")

    def walk_fields(message: Any) -> None:
        for name, field_type in message.get_fields_and_field_types().items():
            walk(field_type, getattr(message, name))

    walk_fields(msg)
    return pads


def _rosbags_typestore() -> Any:
    """A kilted typestore with spvis_msgs registered from msg/msg/*.msg."""
    typestore = get_typestore(Stores.ROS2_KILTED)
    types: dict[str, Any] = {}
    for path in sorted(MSG_DIR.glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"spvis_msgs/msg/{path.stem}"))
    typestore.register(types)
    return typestore


def test_msg_files_match_generated_fields() -> None:
    """The generated Python classes have exactly the documented fields and types."""
    assert Instance.get_fields_and_field_types() == {
        "id": "uint64",
        "class_id": "int32",
        "class_name": "string",
        "score": "float",
        "track_score": "float",
        "visibility": "float",
        "bbox": "sensor_msgs/RegionOfInterest",
        "mask": "sequence<uint8>",
        "mask_rle": "string",
        "first_seen": "builtin_interfaces/Time",
    }
    assert InstanceArray.get_fields_and_field_types() == {
        "header": "std_msgs/Header",
        "width": "uint32",
        "height": "uint32",
        "mask_encoding": "uint8",
        "instances": "sequence<spvis_msgs/Instance>",
    }
    assert (InstanceArray.MASK_MONO8, InstanceArray.MASK_RLE) == (0, 1)


@pytest.mark.parametrize("big_mask", [False, True])
def test_rclpy_serialization_round_trip(big_mask: bool) -> None:
    """(a) InstanceArray with two instances (one with a mask) survives CDR round trip."""
    sample = samples.make_sample(seed=42, big_mask=big_mask)
    msg = samples.to_rclpy(sample)
    # The conversion itself must not lose anything (guards the comparison below).
    assert samples.from_msg(msg) == sample
    data = serialize_message(msg)
    out = deserialize_message(data, InstanceArray)
    assert out == msg
    assert samples.from_msg(out) == sample
    mask = sample["instances"][0]["mask"]
    assert bytes(out.instances[0].mask) == bytes(mask)
    bbox = out.instances[0].bbox
    assert len(out.instances[0].mask) == bbox.height * bbox.width


def test_rosbags_cdr_matches_rclpy() -> None:
    """(b) rosbags, with types registered from msg/msg/*.msg, writes rclpy's CDR bytes.

    Fast CDR (used by rclpy) leaves alignment padding bytes uninitialised, so those offsets
    (computed independently by ``_cdr_padding``) may hold garbage in rclpy's output; every
    other byte must be identical, rosbags must write zeros there, and each library must
    decode the other's bytes to the same message.
    """
    typestore = _rosbags_typestore()
    sample = samples.make_sample(seed=7)
    rclpy_msg = samples.to_rclpy(sample)
    rclpy_bytes = bytes(serialize_message(rclpy_msg))
    rosbags_bytes = bytes(
        typestore.serialize_cdr(samples.to_rosbags(sample, typestore), samples.MSGTYPE)
    )

    assert len(rosbags_bytes) == len(rclpy_bytes)
    padding = _cdr_padding(rclpy_msg)
    assert padding, "sample should exercise alignment padding"
    assert all(rosbags_bytes[i] == 0 for i in padding)
    pairs = enumerate(zip(rclpy_bytes, rosbags_bytes, strict=True))
    differing = [i for i, (a, b) in pairs if a != b]
    assert set(differing) <= padding, f"non-padding bytes differ at offsets {differing}"
    # With padding zeroed, the byte strings are identical.
    zeroed = bytes(0 if i in padding else b for i, b in enumerate(rclpy_bytes))
    assert zeroed == rosbags_bytes

    assert deserialize_message(rosbags_bytes, InstanceArray) == rclpy_msg
    decoded = typestore.deserialize_cdr(rclpy_bytes, samples.MSGTYPE)
    assert samples.from_msg(decoded) == sample


def _ros_env() -> dict[str, str]:
    """Environment for helper processes: private domain, localhost-only discovery.

    With ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` rmw_fastrtps adds its own default transports
    after an XML profile's (FASTDDS_BUILTIN_TRANSPORTS is ignored); see docs/ros.md.
    """
    env = dict(os.environ)
    env["ROS_DOMAIN_ID"] = str(DOMAIN_ID)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env.pop("ROS_STATIC_PEERS", None)
    env.pop("ROS_LOCALHOST_ONLY", None)
    env["RMW_IMPLEMENTATION"] = "rmw_fastrtps_cpp"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _spawn(script: str, *args: str) -> subprocess.Popen[str]:
    """Start ``test/ros_helpers/<script>`` with this interpreter."""
    return subprocess.Popen(
        [sys.executable, str(HELPERS / script), *args],
        cwd=HELPERS,
        env=_ros_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen[str], timeout: float) -> tuple[int, str, str]:
    """Wait for ``proc`` (killing it after ``timeout`` s); return (returncode, stdout, stderr)."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"{proc.args} did not finish within {timeout} s; stderr:\n{err}")
    return proc.returncode, out, err


def _stop(proc: subprocess.Popen[str]) -> str:
    """Terminate a helper process (kill if needed) and return its stderr."""
    if proc.poll() is None:
        proc.terminate()
    try:
        _, err = proc.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return err


@pytest.mark.parametrize("big_mask", [False, True], ids=["small_mask", "60kB_mask"])
def test_two_process_publish_subscribe(big_mask: bool) -> None:
    """(c) A publisher process and a subscriber process exchange InstanceArray on this host."""
    topic = f"/spvis_test_{uuid.uuid4().hex[:12]}/instances"
    seed = int.from_bytes(os.urandom(4), "little")
    expected = samples.make_sample(seed, big_mask=big_mask)
    pub_args = [topic, str(seed), "--duration", str(PROCESS_TIMEOUT_S)]
    if big_mask:
        pub_args.append("--big-mask")
    publisher = _spawn("publisher.py", *pub_args)
    try:
        subscriber = _spawn("subscriber.py", topic, "--timeout", str(SUBSCRIBER_TIMEOUT_S))
        code, out, err = _finish(subscriber, PROCESS_TIMEOUT_S)
    finally:
        pub_err = _stop(publisher)
    assert code == 0, (
        f"subscriber exit {code} (domain {DOMAIN_ID}); stderr:\n{err}\npublisher:\n{pub_err}"
    )
    received = json.loads(out.strip().splitlines()[-1])
    assert received["header"] == expected["header"]
    assert [i["id"] for i in received["instances"]] == [i["id"] for i in expected["instances"]]
    assert received["instances"][0]["mask"] == expected["instances"][0]["mask"]
    assert received == expected


def test_subscriber_on_other_topic_receives_nothing() -> None:
    """(c) The transport check can fail: a subscriber on another topic times out empty."""
    topic = f"/spvis_test_{uuid.uuid4().hex[:12]}/instances"
    publisher = _spawn("publisher.py", topic, "1", "--duration", str(PROCESS_TIMEOUT_S))
    try:
        subscriber = _spawn("subscriber.py", topic + "_other", "--timeout", "2")
        code, out, _ = _finish(subscriber, PROCESS_TIMEOUT_S)
    finally:
        _stop(publisher)
    assert code == EXIT_TIMEOUT
    assert out == ""
