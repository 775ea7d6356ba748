"""Drive a real spvis node process from a test: start it, publish frames, collect outputs.

The node runs in its own process (`python -m spvis_ros.node`); the test process hosts a driver
node in its own rclpy context. Both use ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST and a
ROS_DOMAIN_ID unique to the test run, so nothing leaves the machine or meets another run.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from spvis_msgs.msg import InstanceArray

ROOT = Path(__file__).resolve().parents[2]
_domains = itertools.count()


def unique_domain() -> int:
    """A ROS_DOMAIN_ID for one test: distinct per process and per call (1..200)."""
    return 1 + (os.getpid() * 7 + next(_domains) * 13) % 200


def ros_env(domain: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               PYTHONUNBUFFERED="1", RCUTILS_COLORIZED_OUTPUT="0")
    return env


class NodeProcess:
    """`python -m spvis_ros.node` with the given parameters (and remappings); output (stdout
    and stderr) goes to a log file."""

    def __init__(self, domain: int, log: Path, params: dict[str, str],
                 remaps: dict[str, str] | None = None, env: dict[str, str] | None = None
                 ) -> None:
        args = [sys.executable, "-m", "spvis_ros.node", "--ros-args"]
        for k, v in params.items():
            args += ["-p", f"{k}:={v}"]
        for old, new in (remaps or {}).items():
            args += ["-r", f"{old}:={new}"]
        self.log_path = log
        self._log = open(log, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(args, cwd=ROOT, env={**ros_env(domain), **(env or {})},
                                     stdout=self._log,
                                     stderr=subprocess.STDOUT)

    def log(self) -> str:
        """The node's output so far (also after stop(), which closes the file)."""
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text()

    def wait_for_log(self, needle: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.log():
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"node exited ({self.proc.returncode}):\n{self.log()}")
            time.sleep(0.1)
        raise AssertionError(f"no {needle!r} in the node's log after {timeout} s:\n{self.log()}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._log.close()
        return self.proc.returncode


def rgb_image(rgb: np.ndarray, stamp: float, frame_id: str = "camera") -> Image:
    """A plain rgb8 sensor_msgs/Image (built here, independent of the node's converter)."""
    msg = Image(height=rgb.shape[0], width=rgb.shape[1], encoding="rgb8", is_bigendian=0,
                step=rgb.shape[1] * 3, data=np.ascontiguousarray(rgb).tobytes())
    msg.header.stamp.sec = int(stamp)
    msg.header.stamp.nanosec = round((stamp - int(stamp)) * 1e9)
    msg.header.frame_id = frame_id
    return msg


class Driver:
    """A driver node in the test process: publishes frames, collects InstanceArrays (and, with
    `detections`, vision_msgs Detection2DArrays).

    `topics` maps a camera to the topic its frames go to (default ``/<camera>/image_raw``);
    `compressed` publishes sensor_msgs/CompressedImage instead of Image."""

    def __init__(self, domain: int, cameras: list[str], *, topics: dict[str, str] | None = None,
                 compressed: bool = False, detections: bool = False) -> None:
        from sensor_msgs.msg import CompressedImage

        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain)
        self.node = Node("spvis_test_driver", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        topics = topics or {c: f"/{c}/image_raw" for c in cameras}
        msg_type = CompressedImage if compressed else Image
        self.pubs = {c: self.node.create_publisher(msg_type, topics[c], qos) for c in cameras}
        self.received: dict[str, list[InstanceArray]] = {c: [] for c in cameras}
        self.detections: dict[str, list[Any]] = {c: [] for c in cameras}
        for c in cameras:
            self.node.create_subscription(InstanceArray, f"/{c}/instances",
                                          lambda msg, c=c: self.received[c].append(msg), qos)
            if detections:
                from vision_msgs.msg import Detection2DArray

                self.node.create_subscription(
                    Detection2DArray, f"/{c}/detections",
                    lambda msg, c=c: self.detections[c].append(msg), qos)

    def spin_until(self, done: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if done():
                return True
            self.executor.spin_once(timeout_sec=0.05)
        return done()

    def wait_connected(self, timeout: float = 60.0) -> None:
        ok = self.spin_until(lambda: all(p.get_subscription_count() > 0
                                         for p in self.pubs.values()), timeout)
        assert ok, "the node never subscribed to the camera topics"

    def send(self, camera: str, msg: Any, timeout: float = 30.0) -> InstanceArray | None:
        """Publish `msg` and wait for the InstanceArray with its stamp (None on timeout)."""
        stamp = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        self.pubs[camera].publish(msg)

        def match() -> InstanceArray | None:
            for out in self.received[camera]:
                if (out.header.stamp.sec, out.header.stamp.nanosec) == stamp:
                    return out
            return None

        self.spin_until(lambda: match() is not None, timeout)
        return match()

    def subscribe(self, msg_type: Any, topic: str, qos: QoSProfile | None = None) -> list[Any]:
        """Collect every message of `topic` into the returned list (while spinning)."""
        got: list[Any] = []
        self.node.create_subscription(
            msg_type, topic, got.append,
            qos or QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
        return got

    def change_state(self, label: str, node: str = "/spvis") -> bool:
        """Trigger the lifecycle transition `label` (configure, activate, ...) of `node`."""
        from lifecycle_msgs.srv import ChangeState

        request = ChangeState.Request()
        request.transition.label = label
        return bool(self.call(ChangeState, f"{node}/change_state", request, timeout=60).success)

    def get_state(self, node: str = "/spvis") -> str:
        from lifecycle_msgs.srv import GetState

        return str(self.call(GetState, f"{node}/get_state", GetState.Request()).current_state
                   .label)

    def call(self, srv_type: Any, name: str, request: Any, timeout: float = 20.0) -> Any:
        client = self.node.create_client(srv_type, name)
        assert client.wait_for_service(timeout_sec=timeout), f"no service {name}"
        future = client.call_async(request)
        self.spin_until(future.done, timeout)
        assert future.done(), f"service {name} did not answer"
        return future.result()

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


def decode_masks(arr: InstanceArray) -> dict[int, np.ndarray]:
    """{track id: full-frame bool mask} from an InstanceArray's cropped masks (mono8 or RLE,
    decoded here independently of spvis_ros.masks: mono8 by hand, RLE with pycocotools)."""
    import warnings

    from pycocotools import mask as mask_utils

    out = {}
    for inst in arr.instances:
        m = np.zeros((arr.height, arr.width), bool)
        b = inst.bbox
        if arr.mask_encoding == InstanceArray.MASK_RLE:
            assert len(inst.mask) == 0, "RLE encoding: mask must be empty"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                crop = mask_utils.decode({"size": [b.height, b.width],
                                          "counts": inst.mask_rle.encode()}).astype(bool)
        else:
            assert inst.mask_rle == "", "mono8 encoding: mask_rle must be empty"
            crop = np.frombuffer(bytes(inst.mask), np.uint8).reshape(b.height, b.width) > 0
        m[b.y_offset:b.y_offset + b.height, b.x_offset:b.x_offset + b.width] = crop
        out[int(inst.id)] = m
    return out


def set_parameter(driver: Driver, name: str, value: Any, node: str = "/spvis") -> Any:
    """Set one parameter of the running node through its set_parameters service, typed from
    the Python value (bool, int, float, str, list of str); returns the SetParametersResult."""
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters

    if isinstance(value, bool):
        pv = ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=value)
    elif isinstance(value, int):
        pv = ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=value)
    elif isinstance(value, float):
        pv = ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value)
    elif isinstance(value, str):
        pv = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value)
    else:
        pv = ParameterValue(type=ParameterType.PARAMETER_STRING_ARRAY, string_array_value=value)
    req = SetParameters.Request(parameters=[Parameter(name=name, value=pv)])
    return driver.call(SetParameters, f"{node}/set_parameters", req).results[0]
