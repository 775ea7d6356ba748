"""The spvis ROS 2 node: camera images in, instance masks with persistent track ids out.

Threads: the executor runs subscriptions, services, parameter changes and diagnostics; it never
waits on the model. Each subscription callback only hands its message to its camera's `Stream`
(newest frame wins, replaced frames are counted as dropped). One worker thread takes pending
frames round-robin across cameras, converts them, runs `model.step` with that camera's own
`TrackerState`, and publishes. Header stamps drive time; outputs carry the input header.

    ros2 run spvis_ros spvis_node --ros-args -p cameras:="[front]" -r front/image:=/cam/image_raw
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import sys
import threading
import time
from pathlib import Path
from typing import Any

import rclpy
import torch
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from spvis_msgs.msg import InstanceArray
from std_msgs.msg import String
from std_srvs.srv import SetBool, Trigger

from spvis_model.checkpoint import CheckpointError
from spvis_model.model import SPVIS
from spvis_model.ops import with_cuda
from spvis_model.weights import default_checkpoint, demo_notice
from spvis_ros import messages
from spvis_ros.dds import use_default_profile
from spvis_ros.image_conversion import (
    ImageConversionError,
    compressed_to_rgb,
    image_to_rgb,
    labels_to_image,
    rgb_to_image,
)
from spvis_ros.params import PARAMETERS, NodeParams, ParameterError, check_change
from spvis_ros.streams import Stream


class StartupError(RuntimeError):
    """The node cannot start (bad parameter, checkpoint, device); the message says why."""


class SpvisNode(Node):
    """See the module docstring. Parameters: spvis_ros.params.PARAMETERS."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("spvis", **kwargs)
        # Set first: rclpy may destroy a node whose construction failed half way.
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._worker: threading.Thread | None = None
        for spec in PARAMETERS:
            self.declare_parameter(spec.name, spec.default,
                                   ParameterDescriptor(description=spec.doc))
        try:
            self.params = NodeParams.from_values(
                {s.name: self.get_parameter(s.name).value for s in PARAMETERS})
        except ParameterError as exc:
            raise StartupError(str(exc)) from exc
        self.model = self._load_model()
        self.enabled = True
        self._lock = threading.Lock()
        self.streams = {name: Stream(name) for name in self.params.cameras}
        self._setup_io()
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._worker = threading.Thread(target=self._work, name="spvis-inference", daemon=True)
        self._worker.start()
        self.get_logger().info(
            f"spvis: {self.model.cfg.name} model ({len(self.model.class_names)} classes) on "
            f"{self.device} in {self.model.precision}, MSDeformAttn kernels "
            f"{'CPU+CUDA' if with_cuda() else 'CPU'}; cameras {self.params.cameras} "
            f"({self.params.transport}, input QoS {self.params.input_reliability} depth "
            f"{self.params.input_depth})")
        notice = demo_notice(self.model)
        if notice:
            self.get_logger().warning(f"spvis: {notice}")

    # --- start-up ------------------------------------------------------------------------------
    def _load_model(self) -> SPVIS:
        p = self.params
        if p.device == "auto":
            self.device = "cuda" if torch.cuda.is_available() else "cpu"
        else:
            self.device = p.device
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise StartupError(f"parameter device = {p.device!r}: torch sees no CUDA device "
                               "(use device:=cpu or auto)")
        if self.device.startswith("cuda") and not with_cuda():
            raise StartupError(f"parameter device = {p.device!r}: spvis_model._C was built "
                               "without CUDA kernels; rebuild it on this machine")
        try:
            path = Path(p.checkpoint) if p.checkpoint else default_checkpoint()
            model = SPVIS.from_checkpoint(path, device=self.device)
            model.set_precision(p.precision)
        except (CheckpointError, FileNotFoundError, ValueError) as exc:
            raise StartupError(f"parameter checkpoint = {p.checkpoint!r}: {exc}") from exc
        self.track_settings = dataclasses.replace(model.default_settings(),
                                                  keep_seconds=p.keep_seconds)
        return model

    def _setup_io(self) -> None:
        p = self.params
        reliability = (ReliabilityPolicy.BEST_EFFORT if p.input_reliability == "best_effort"
                       else ReliabilityPolicy.RELIABLE)
        qos_in = QoSProfile(depth=p.input_depth, reliability=reliability)
        qos_out = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.pubs: dict[str, dict[str, Any]] = {}
        for name, stream in self.streams.items():
            if p.transport == "compressed":
                self.create_subscription(CompressedImage, f"{name}/image/compressed",
                                         lambda msg, s=stream: self._on_image(s, msg), qos_in)
            else:
                self.create_subscription(Image, f"{name}/image",
                                         lambda msg, s=stream: self._on_image(s, msg), qos_in)
            self.pubs[name] = {
                "instances": self.create_publisher(InstanceArray, f"{name}/instances", qos_out),
                "labels": self.create_publisher(Image, f"{name}/labels", qos_out),
                "overlay": self.create_publisher(Image, f"{name}/overlay", qos_out),
            }
            self.create_service(Trigger, f"{name}/reset",
                                lambda req, res, s=stream: self._on_reset(req, res, [s]))
        self.class_names_pub = self.create_publisher(String, "class_names", latched)
        self.class_names_pub.publish(String(data=json.dumps(self.model.class_names)))
        self.create_service(Trigger, "~/reset",
                            lambda req, res: self._on_reset(req, res, list(self.streams.values())))
        self.create_service(SetBool, "~/enable", self._on_enable)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(1.0, self._publish_diagnostics)

    # --- executor-side callbacks (never wait on the model) -------------------------------------
    def _on_image(self, stream: Stream, msg: Image | CompressedImage) -> None:
        if not self.enabled:
            return
        stream.offer(msg)
        self._wake.set()

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response,
                  streams: list[Stream]) -> Trigger.Response:
        del request
        for s in streams:
            s.reset_requested = True
        response.success = True
        response.message = f"tracker state reset for {[s.name for s in streams]}"
        self.get_logger().info(response.message)
        return response

    def _on_enable(self, request: SetBool.Request, response: SetBool.Response
                   ) -> SetBool.Response:
        self.enabled = bool(request.data)
        response.success = True
        response.message = "processing enabled" if self.enabled else "processing disabled"
        self.get_logger().info(response.message)
        return response

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        updates = {}
        for param in params:
            if param.name == "use_sim_time":
                continue
            try:
                updates[param.name] = check_change(param.name, param.value)
            except ParameterError as exc:
                self.get_logger().error(str(exc))
                return SetParametersResult(successful=False, reason=str(exc))
        with self._lock:
            for name, value in updates.items():
                setattr(self.params, name, value)
                if name == "keep_seconds":
                    self.track_settings = dataclasses.replace(self.track_settings,
                                                              keep_seconds=value)
        return SetParametersResult(successful=True)

    # --- the worker ----------------------------------------------------------------------------
    def _work(self) -> None:
        order = list(self.streams.values())
        turn = 0
        while not self._stop.is_set():
            self._wake.clear()  # before looking: a frame offered after this sets it again
            for k in range(len(order)):
                stream = order[(turn + k) % len(order)]
                pending = stream.take()
                if pending is not None:
                    turn = (turn + k + 1) % len(order)
                    self._process(stream, pending.msg, pending.received)
                    break
            else:
                self._wake.wait(0.5)

    def _process(self, stream: Stream, msg: Image | CompressedImage, received: float) -> None:
        log = self.get_logger()
        stamp = messages.time_to_seconds(msg.header.stamp)
        try:
            rgb = compressed_to_rgb(msg) if isinstance(msg, CompressedImage) else image_to_rgb(msg)
        except ImageConversionError as exc:
            stream.stats.rejected += 1
            log.error(f"camera {stream.name}: dropped frame at stamp {stamp:.3f}: {exc}")
            return
        with self._lock:
            p = NodeParams(**vars(self.params))
            settings = self.track_settings
        reason = stream.check_time(stamp, p.max_gap_s)
        if stream.state is None:
            stream.state = self.model.init_state()
        elif reason is not None:
            log.info(f"camera {stream.name}: tracks reset ({reason}); ids continue from "
                     f"{int(stream.state.next_id)}")
            stream.state = stream.state.reset()
        try:
            stream.state, inst = self.model.step(stream.state, rgb, stamp, settings)
        except (ValueError, RuntimeError) as exc:
            stream.stats.rejected += 1
            stream.state = stream.state.reset()
            log.error(f"camera {stream.name}: frame at stamp {stamp:.3f} failed, tracks reset: "
                      f"{type(exc).__name__}: {exc}")
            return
        stream.last_stamp = stamp
        index = messages.select(inst, p.score_threshold, p.max_instances, p.class_filter)
        pubs = self.pubs[stream.name]
        pubs["instances"].publish(messages.instance_array(inst, index, msg.header))
        if p.publish_labels and pubs["labels"].get_subscription_count() > 0:
            pubs["labels"].publish(labels_to_image(messages.label_image(inst, index), msg.header))
        if p.publish_overlay and pubs["overlay"].get_subscription_count() > 0:
            pubs["overlay"].publish(rgb_to_image(messages.overlay(rgb, inst, index), msg.header))
        now = time.monotonic()
        stream.stats.processed += 1
        stream.stats.latencies.append(now - received)
        stream.stats.done_times.append(now)
        stream.stats.live_tracks = stream.state.num_live()

    # --- diagnostics ---------------------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        now = time.monotonic()
        if self.device.startswith("cuda"):
            memory_mb = torch.cuda.memory_allocated(torch.device(self.device)) / 2**20
        else:
            memory_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        for name, s in self.streams.items():
            st = s.stats
            values = {"frame_rate_hz": f"{st.frame_rate(now):.2f}",
                      "latency_ms": f"{st.latency_ms():.1f}", "processed": str(st.processed),
                      "dropped": str(st.dropped), "rejected": str(st.rejected),
                      "resets": str(st.resets), "live_tracks": str(st.live_tracks),
                      "device": self.device, "device_memory_mb": f"{memory_mb:.1f}",
                      "enabled": str(self.enabled)}
            arr.status.append(DiagnosticStatus(
                level=DiagnosticStatus.OK if self.enabled else DiagnosticStatus.WARN,
                name=f"spvis: camera {name}", hardware_id=self.device,
                message="running" if self.enabled else "disabled",
                values=[KeyValue(key=k, value=v) for k, v in values.items()]))
        self.diag_pub.publish(arr)

    def destroy_node(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._worker is not None:
            self._worker.join(timeout=5.0)
        super().destroy_node()


def main(argv: list[str] | None = None) -> int:
    """Console script `spvis_node` (also `ros2 run spvis_ros spvis_node`)."""
    # The shared-memory profile must be in place before DDS starts: the node publishes overlay
    # and label images as large as its input (docs/ros.md). A user's own profile is kept.
    use_default_profile()
    rclpy.init(args=argv if argv is not None else sys.argv)
    try:
        node = SpvisNode()
    except StartupError as exc:
        print(f"spvis_node: cannot start: {exc}", file=sys.stderr, flush=True)
        rclpy.try_shutdown()
        return 2
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
