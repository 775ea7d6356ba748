"""The spvis ROS 2 node: camera images in, instance masks with persistent track ids out.

A lifecycle node (rclpy.lifecycle), managed by hand (``ros2 lifecycle set``), by nav2's
lifecycle manager, or by itself (``autostart``, the default, so ``ros2 run`` just works):

- construction: parameters are declared from `spvis_ros.params` (read-only start-up ones with
  their descriptors) and checked; a bad value stops the process with exit status 2;
- configure: loads the model onto its device, creates the publishers, services and the
  diagnostics timer (a bad checkpoint or device fails the transition; with autostart the
  process then exits with status 2);
- activate: subscribes to the cameras and starts the inference worker; publishes the latched
  ``class_names`` and ``label_info``;
- deactivate: unsubscribes and stops the worker (nothing more is published; tracker states are
  kept);
- cleanup: destroys publishers and services and frees the model (and the GPU memory it held);
- shutdown: all of the above from any state; the process then exits with status 0.

Threads: the executor runs subscriptions, services, parameter changes, transitions and
diagnostics; it never waits on the model. Each subscription callback only hands its message to
its camera's `Stream` (newest frame wins, replaced frames are counted as dropped). One worker
thread takes pending frames round-robin across cameras, converts them, runs `model.step` with
that camera's own `TrackerState` and the `TrackSettings` built from the parameters, and
publishes. Header stamps drive time; outputs carry the input header. No exception ends the
worker: one nothing expected (a bug) costs its frame, is logged with the camera and stamp,
counted in diagnostics, and resets only that camera's tracks (ids go on).

On rclpy without ``add_pre_set_parameters_callback`` (Humble) the node says so once at start;
an integer for a double parameter is then refused by rclpy at run time (docs/ros.md).

    ros2 run spvis_ros spvis_node --ros-args -p cameras:="[front]" \\
        -r front/image_raw:=/cam/image_raw
"""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import rclpy
import torch
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from spvis_msgs.msg import InstanceArray
from std_msgs.msg import String
from std_srvs.srv import SetBool, Trigger
from vision_msgs.msg import Detection2DArray, LabelInfo

from spvis_model.checkpoint import CheckpointError
from spvis_model.devices import resolve_device
from spvis_model.export.runtime import BackendError
from spvis_model.model import SPVIS
from spvis_model.ops import with_cuda
from spvis_model.tracker.settings import TrackSettings
from spvis_model.weights import default_checkpoint, demo_notice
from spvis_ros import messages
from spvis_ros.dds import use_default_profile
from spvis_ros.diagnostics import camera_statuses
from spvis_ros.image_conversion import ImageConversionError, labels_to_image, rgb_to_image
from spvis_ros.params import (
    PARAMETERS,
    SPECS,
    NodeParams,
    ParameterError,
    check_change,
    check_value,
    coerce_override,
    descriptor,
    unknown_parameter_warning,
)
from spvis_ros.streams import Stream
from spvis_ros.transports import DEFAULT_BASE_TOPIC, by_name

EXIT_BAD_START = 2
# Logged once at start where rclpy has no add_pre_set_parameters_callback (Iron added it; Humble's
# rclpy has only the on-set callbacks).
NO_PRE_SET_NOTE = (
    "spvis: this rclpy has no pre-set parameter callbacks (ROS 2 Humble): live changes still go "
    "through the node's checks, but an integer given for a double parameter is refused by "
    "rclpy (write 1.0, not 1), and a value of the wrong type is refused with rclpy's message "
    "only")
SUCCESS = TransitionCallbackReturn.SUCCESS
FAILURE = TransitionCallbackReturn.FAILURE


class StartupError(RuntimeError):
    """The node cannot start (bad parameter, checkpoint, device); the message says why."""


@dataclasses.dataclass
class _Job:
    """One decoded camera frame on its way through the worker.

    Attributes:
        rgb: (H, W, 3) uint8 frame; stamp: header stamp in seconds; params / settings: the
            parameter values and tracker settings taken when the frame was decoded.
    """

    stream: Stream
    msg: Any
    received: float
    rgb: Any
    stamp: float
    params: NodeParams
    settings: TrackSettings | None


class SpvisNode(LifecycleNode):
    """See the module docstring. Parameters: spvis_ros.params.PARAMETERS."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("spvis", **kwargs)
        # Set first: rclpy may destroy a node whose construction failed half way.
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._worker: threading.Thread | None = None
        self._lock = threading.Lock()
        self.model: SPVIS | None = None
        self.device = ""
        self.failure = ""  # why the last configure failed
        self.enabled = True
        self.active = False
        self.pubs: dict[str, dict[str, Any]] = {}
        self._subs: list[Any] = []
        self._spvis_services: list[Any] = []
        self._timer: Any = None
        self.diag_pub: Any = None
        self.params = self._declare_parameters()
        self.streams = {name: Stream(name) for name in self.params.cameras}
        self.inputs = {name: self._input_topic(name) for name in self.params.cameras}
        self.track_settings: TrackSettings | None = None
        if hasattr(self, "add_pre_set_parameters_callback"):
            self.add_pre_set_parameters_callback(self._before_set_parameters)
        else:
            self.get_logger().info(NO_PRE_SET_NOTE)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.get_logger().info(
            f"spvis: node created (unconfigured): cameras {self.params.cameras}, inputs "
            f"{list(self.inputs.values())} ({self.params.transport}), autostart "
            f"{self.params.autostart}")

    # --- parameters ----------------------------------------------------------------------------
    def _declare_parameters(self) -> NodeParams:
        """Declare every parameter with its descriptor; values given at start are checked first
        (with our messages, not rclpy's type errors). Unknown ones are warned about."""
        # The values given with --ros-args / a params file, as rclpy parsed them.
        overrides = dict(getattr(self, "_parameter_overrides", {}))
        values: dict[str, Any] = {}
        for spec in PARAMETERS:
            raw = overrides[spec.name].value if spec.name in overrides else spec.default
            try:
                values[spec.name] = check_value(spec.name, coerce_override(spec.name, raw))
            except ParameterError as exc:
                raise StartupError(str(exc)) from None
        for name in overrides:
            warning = unknown_parameter_warning(name)
            if warning is not None:
                self.get_logger().warning(f"spvis: {warning}")
        for spec in PARAMETERS:
            value = values[spec.name]
            if spec.kind == "string_array" and not value:
                value = [""]  # rclpy cannot type an empty list; [""] means the same here
            self.declare_parameter(spec.name, value, descriptor(spec), ignore_override=True)
        return NodeParams.from_values(values)

    def _before_set_parameters(self, params: list[Parameter]) -> list[Parameter]:
        """Runs before rclpy's own type check: an integer given for a double parameter becomes
        a double (as at start: ``ros2 param set /spvis score_threshold 1`` works), and a value
        that will be refused for its type is logged with our message naming the parameter
        and value (rclpy's reply only says which types differ)."""
        out = []
        for given in params:
            param = given
            if given.name in SPECS:
                value = coerce_override(given.name, given.value)
                if value is not given.value:
                    param = Parameter(given.name, value=value)
                try:
                    check_change(param.name, param.value)
                except ParameterError as exc:
                    self.get_logger().error(str(exc))
            out.append(param)
        return out

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        updates = {}
        for param in params:
            if param.name not in SPECS:
                continue
            try:
                updates[param.name] = check_change(param.name, param.value)
            except ParameterError as exc:  # logged by _before_set_parameters
                return SetParametersResult(successful=False, reason=str(exc))
        with self._lock:
            for name, value in updates.items():
                setattr(self.params, name, value)
            if "keep_seconds" in updates and self.track_settings is not None:
                self.track_settings = dataclasses.replace(
                    self.track_settings, keep_seconds=updates["keep_seconds"])
        if "score_threshold" in updates and self.active:
            self._publish_label_info()
        if "class_filter" in updates:
            self._warn_unknown_classes()
        return SetParametersResult(successful=True)

    def _warn_unknown_classes(self) -> None:
        """Warn about `class_filter` names the loaded model does not have (nothing of them is
        ever published)."""
        model = self.model
        if model is None or not self.params.class_filter:
            return
        unknown = [n for n in self.params.class_filter if n not in model.class_names]
        if unknown:
            self.get_logger().warning(
                f"parameter class_filter = {self.params.class_filter}: the model has no class "
                f"{', '.join(map(repr, unknown))} (its classes: {', '.join(model.class_names)}); "
                "nothing of it will be published")

    def _input_topic(self, camera: str) -> str:
        """The resolved input topic of `camera`: image_transport naming, the transport's suffix
        after the remapped base (``-r cam0/image_raw:=/cam`` -> ``/cam/compressed``)."""
        base = self.resolve_topic_name(f"{camera}/{DEFAULT_BASE_TOPIC}")
        return by_name(self.params.transport).topic(base)

    def lifecycle_state(self) -> str:
        """The current lifecycle state's label (unconfigured, inactive, active, finalized, ...)."""
        return str(self._state_machine.current_state[1])

    # --- lifecycle transitions ----------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Load the model; create publishers, services and the diagnostics timer."""
        try:
            self.model = self._load_model()
        except StartupError as exc:
            self.failure = str(exc)
            self.get_logger().error(f"spvis: configure failed: {exc}")
            return FAILURE
        self._create_outputs()
        model = self.model
        self.get_logger().info(
            f"spvis: {model.cfg.name} model ({len(model.class_names)} classes) on "
            f"{self.device} in {model.precision}, segmenter backend {model.backend} "
            f"(capture {self.params.capture}), masks {model.cfg.tracker.mask_refine}, "
            f"MSDeformAttn kernels {'CPU+CUDA' if with_cuda() else 'CPU'}; cameras "
            f"{self.params.cameras} "
            f"({self.params.transport}, input QoS {self.params.input_reliability} depth "
            f"{self.params.input_depth}); configured")
        notice = demo_notice(model)
        if notice:
            self.get_logger().warning(f"spvis: {notice}")
        self._warn_unknown_classes()
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Activate the publishers, subscribe, start the worker, publish the latched class maps."""
        result = super().on_activate(state)
        if result != SUCCESS:
            return result
        self._subscribe()
        self._stop.clear()
        self._worker = threading.Thread(target=self._work, name="spvis-inference", daemon=True)
        self._worker.start()
        self.active = True
        self._publish_class_maps()
        self.get_logger().info(
            "spvis: active: " + ", ".join(f"camera {c} <- {t}" for c, t in self.inputs.items()))
        return SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Unsubscribe and stop the worker; the publishers stop with the state."""
        self._deactivate()
        self.get_logger().info("spvis: inactive: unsubscribed, nothing is published")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Destroy publishers, services and timer; free the model."""
        self._release()
        self.get_logger().info(f"spvis: cleaned up: model released{self._memory_note()}")
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """From any state: stop, release, then the process ends (see main)."""
        self._deactivate()
        self._release()
        self.get_logger().info(f"spvis: shut down (from {state.label})")
        return SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        """A transition raised: release everything and go back to unconfigured."""
        self.get_logger().error(f"spvis: error in a transition from {state.label}; releasing")
        self._deactivate()
        self._release()
        return SUCCESS

    def _deactivate(self) -> None:
        self.active = False
        for sub in self._subs:
            self.destroy_subscription(sub)
        self._subs = []
        self._stop_worker()
        for stream in self.streams.values():
            stream.clear()

    def _release(self) -> None:
        for pubs in self.pubs.values():
            for pub in pubs.values():
                self.destroy_lifecycle_publisher(pub)
        self.pubs = {}
        for service in self._spvis_services:
            self.destroy_service(service)
        self._spvis_services = []
        if self._timer is not None:
            self.destroy_timer(self._timer)
            self._timer = None
        if self.diag_pub is not None:
            self.destroy_publisher(self.diag_pub)
            self.diag_pub = None
        for stream in self.streams.values():
            if stream.state is not None:  # ids are never reused in a stream, also after this
                stream.next_id = int(stream.state.next_id)
            stream.state = None
            stream.last_stamp = None
        self.model = None
        self.track_settings = None
        gc.collect()
        if self.device.startswith("cuda") and torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _memory_note(self) -> str:
        if self.device.startswith("cuda") and torch.cuda.is_available():
            mb = torch.cuda.memory_allocated(torch.device(self.device)) / 2**20
            return f" (CUDA memory allocated now {mb:.1f} MiB)"
        return ""

    # --- configure / activate ------------------------------------------------------------------
    def _load_model(self) -> SPVIS:
        p = self.params
        try:
            self.device = str(resolve_device(p.device, "parameter device"))
        except ValueError as exc:
            raise StartupError(str(exc)) from exc
        try:
            path = Path(p.checkpoint) if p.checkpoint else default_checkpoint()
            model = SPVIS.from_checkpoint(path, device=self.device, backend=p.backend,
                                          onnx=p.onnx or None)
        except BackendError as exc:
            raise StartupError(f"parameter backend = {p.backend!r}: {exc}") from exc
        except (CheckpointError, FileNotFoundError, ValueError, RuntimeError) as exc:
            raise StartupError(f"parameter checkpoint = {p.checkpoint!r}: {exc}") from exc
        try:
            model.set_precision(p.precision)
        except ValueError as exc:
            raise StartupError(f"parameter precision = {p.precision!r}: {exc}") from exc
        try:
            model.capture(p.capture)  # built per input size on first use (spvis_model.graphs)
        except ValueError as exc:
            raise StartupError(f"parameter capture = {p.capture!r}: {exc}") from exc
        if p.mask_refine != "checkpoint":
            model.cfg.tracker.mask_refine = p.mask_refine
        with self._lock:
            self.track_settings = dataclasses.replace(model.default_settings(),
                                                      keep_seconds=p.keep_seconds)
        return model

    def _create_outputs(self) -> None:
        qos_out = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.pubs = {}
        for name, stream in self.streams.items():
            self.pubs[name] = {
                "instances": self.create_lifecycle_publisher(InstanceArray, f"{name}/instances",
                                                             qos_out),
                "detections": self.create_lifecycle_publisher(Detection2DArray,
                                                              f"{name}/detections", qos_out),
                "labels": self.create_lifecycle_publisher(Image, f"{name}/labels", qos_out),
                "overlay": self.create_lifecycle_publisher(Image, f"{name}/overlay", qos_out),
            }
            self._spvis_services.append(self.create_service(
                Trigger, f"{name}/reset",
                lambda req, res, s=stream: self._on_reset(req, res, [s])))
        self.pubs[""] = {
            "class_names": self.create_lifecycle_publisher(String, "class_names", latched),
            "label_info": self.create_lifecycle_publisher(LabelInfo, "label_info", latched),
        }
        self._spvis_services += [
            self.create_service(Trigger, "~/reset", lambda req, res: self._on_reset(
                req, res, list(self.streams.values()))),
            self.create_service(SetBool, "~/enable", self._on_enable),
        ]
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        # A steady clock: with use_sim_time and no /clock (bag replay driven by header stamps)
        # a ROS-time timer would never fire, and diagnostics would go silent.
        self._timer = self.create_timer(1.0, self._publish_diagnostics,
                                        clock=Clock(clock_type=ClockType.STEADY_TIME))

    def _subscribe(self) -> None:
        p = self.params
        reliability = (ReliabilityPolicy.BEST_EFFORT if p.input_reliability == "best_effort"
                       else ReliabilityPolicy.RELIABLE)
        qos_in = QoSProfile(depth=p.input_depth, reliability=reliability)
        msg_type = by_name(p.transport).message_class()
        self._subs = [
            self.create_subscription(msg_type, self.inputs[name],
                                     lambda msg, s=stream: self._on_image(s, msg), qos_in)
            for name, stream in self.streams.items()]

    def _publish_class_maps(self) -> None:
        assert self.model is not None
        self.pubs[""]["class_names"].publish(String(data=json.dumps(self.model.class_names)))
        self._publish_label_info()

    def _publish_label_info(self) -> None:
        model = self.model
        if model is None or "" not in self.pubs:
            return
        with self._lock:
            threshold = self.params.score_threshold
        self.pubs[""]["label_info"].publish(messages.label_info(
            model.class_names, threshold, self.get_clock().now().to_msg()))

    # --- executor-side callbacks (never wait on the model) -------------------------------------
    def _on_image(self, stream: Stream, msg: Any) -> None:
        if not self.enabled or not self.active:
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

    # --- the worker ----------------------------------------------------------------------------
    def _stop_worker(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._worker is not None:
            self._worker.join(timeout=30.0)
        self._worker = None

    def _work(self) -> None:
        """The inference thread: frames round-robin across cameras (or one batch of every
        camera's newest frame) until stopped. No exception ends it: a frame that fails
        unexpectedly is logged, counted and its camera reset (`_frame_failed`), and the loop
        goes on; one outside any frame is logged and the loop goes on after a short pause."""
        order = list(self.streams.values())
        batched = self.params.batch_cameras and len(order) > 1  # read-only: fixed at start
        turn = 0
        while not self._stop.is_set():
            try:
                turn = self._work_once(order, batched, turn)
            except Exception as exc:  # never let the worker die while the node reports active
                if self._stop.is_set():
                    return
                self.get_logger().error(
                    f"inference worker: unexpected {type(exc).__name__}: {exc}; going on",
                    throttle_duration_sec=5.0)
                self._stop.wait(0.1)

    def _work_once(self, order: list[Stream], batched: bool, turn: int) -> int:
        """One turn of the worker loop; returns the next turn."""
        self._wake.clear()  # before looking: a frame offered after this sets it again
        if batched:
            # The newest frame of every camera that has one, in rotation order.
            taken = []
            for k in range(len(order)):
                stream = order[(turn + k) % len(order)]
                pending = stream.take()
                if pending is not None:
                    taken.append((stream, pending.msg, pending.received))
            if taken:
                self._process_batch(taken)
                return (turn + 1) % len(order)
            self._wake.wait(0.5)
            return turn
        for k in range(len(order)):
            stream = order[(turn + k) % len(order)]
            pending = stream.take()
            if pending is not None:
                self._guarded(stream, pending.msg, self._process, stream, pending.msg,
                              pending.received)
                return (turn + k + 1) % len(order)
        self._wake.wait(0.5)
        return turn

    def _guarded(self, stream: Stream, msg: Any, work: Any, *args: Any) -> Any:
        """``work(*args)`` for one frame of `stream`; an unexpected exception is handled by
        `_frame_failed` (None is returned) instead of ending the worker."""
        try:
            return work(*args)
        except Exception as exc:
            self._frame_failed(stream, msg, exc)
            return None

    def _frame_failed(self, stream: Stream, msg: Any, exc: Exception) -> None:
        """A frame failed with an exception nothing expected (a bug, or e.g. MemoryError):
        log it with the camera, stamp and exception, count it (diagnostics: ``errors``, level
        ERROR), and reset only this camera's tracks (its ids go on counting)."""
        if self._stop.is_set() or not rclpy.ok(context=self.context):
            return  # shutting down: publishers and handles are going away
        try:
            stamp = f"{messages.time_to_seconds(msg.header.stamp):.3f}"
        except Exception:  # the message itself may be what is wrong
            stamp = "?"
        what = f"{type(exc).__name__}: {exc}"
        stream.stats.errors += 1
        stream.stats.last_error = what if len(what) <= 200 else what[:200] + "..."
        note = ""
        if stream.state is not None:
            stream.state = stream.state.reset()
            note = f"; ids continue from {int(stream.state.next_id)}"
        frames = traceback.extract_tb(exc.__traceback__)
        where = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
        self.get_logger().error(
            f"camera {stream.name}: frame at stamp {stamp} failed with an unexpected error, "
            f"tracks reset{note}: {what}{where}")

    def _process(self, stream: Stream, msg: Any, received: float) -> None:
        job = self._prepare(stream, msg, received)
        if job is not None:
            self._step_one(job)

    def _process_batch(self, taken: list[tuple[Stream, Any, float]]) -> None:
        """`batch_cameras`: decode each camera's frame, then one `step_batch` per group of
        frames of one size (a camera alone in its size group steps alone). If a batch fails,
        its cameras are stepped one by one, so that only the failing camera is rejected and
        reset, as without batching."""
        jobs = [job for job in (self._guarded(s, m, self._prepare, s, m, r) for s, m, r in taken)
                if job is not None]
        groups: dict[tuple[int, ...], list[_Job]] = {}
        for job in jobs:
            groups.setdefault(tuple(job.rgb.shape), []).append(job)
        for group in groups.values():
            model = self.model
            if model is None:
                return
            if len(group) == 1:
                self._guarded(group[0].stream, group[0].msg, self._step_one, group[0])
                continue
            try:
                results = model.step_batch([j.stream.state for j in group],
                                           [j.rgb for j in group], [j.stamp for j in group],
                                           [j.settings for j in group])
            except Exception as exc:  # one by one: only the failing camera is reset
                self.get_logger().warning(
                    f"cameras {[j.stream.name for j in group]}: batched step failed "
                    f"({type(exc).__name__}: {exc}); stepping them one by one")
                for job in group:
                    self._guarded(job.stream, job.msg, self._step_one, job)
                continue
            for job, (state, inst) in zip(group, results, strict=True):
                job.stream.state = state
                self._guarded(job.stream, job.msg, self._finish, job, inst)

    def _prepare(self, stream: Stream, msg: Any, received: float) -> _Job | None:
        """Decode a camera's frame and bring its tracker state up to this frame's stamp (reset
        after a jump or a loop); None when the frame is dropped (logged and counted)."""
        log = self.get_logger()
        model = self.model
        if model is None:
            return None
        stamp = messages.time_to_seconds(msg.header.stamp)
        try:
            rgb = by_name(self.params.transport).decode(
                msg, on_decoder_message=lambda text: log.warning(
                    f"camera {stream.name}: frame at stamp {stamp:.3f}: {text}"))
        except ImageConversionError as exc:
            stream.stats.rejected += 1
            log.error(f"camera {stream.name}: dropped frame at stamp {stamp:.3f}: {exc}")
            return None
        with self._lock:
            p = self.params.copy()
            settings = self.track_settings
        reason = stream.check_time(stamp, p.max_gap_s)
        if stream.state is None:
            stream.state = model.init_state(first_id=stream.next_id)
        elif reason is not None:
            log.info(f"camera {stream.name}: tracks reset ({reason}); ids continue from "
                     f"{int(stream.state.next_id)}")
            stream.state = stream.state.reset()
        size = stream.state.frame_size()  # (H, W) the tracks were made on; None after a reset
        if size is not None and size != tuple(rgb.shape[:2]):
            # A camera's resolution changed: the tracks' masks and boxes are normalised to the
            # old frame, and the model refuses the new one on this state (SPVIS.step).
            log.info(f"camera {stream.name}: tracks reset (frame size changed from "
                     f"{size[1]}x{size[0]} to {rgb.shape[1]}x{rgb.shape[0]}); ids continue "
                     f"from {int(stream.state.next_id)}")
            stream.state = stream.state.reset()
            stream.stats.resets += 1
        return _Job(stream, msg, received, rgb, stamp, p, settings)

    def _step_one(self, job: _Job) -> None:
        model = self.model
        if model is None:
            return
        stream = job.stream
        try:
            stream.state, inst = model.step(stream.state, job.rgb, job.stamp, job.settings)
        except (ValueError, RuntimeError) as exc:
            stream.stats.rejected += 1
            stream.state = stream.state.reset()
            self.get_logger().error(
                f"camera {stream.name}: frame at stamp {job.stamp:.3f} failed, tracks reset: "
                f"{type(exc).__name__}: {exc}")
            return
        self._finish(job, inst)

    def _finish(self, job: _Job, inst: Any) -> None:
        """Publish a camera's instances and count the frame."""
        stream = job.stream
        stream.last_stamp = job.stamp
        try:
            self._publish(stream, job.msg.header, job.rgb, inst, job.params)
        except RuntimeError:  # rclpy's RCLError / InvalidHandle: shutting down
            if self._stop.is_set() or not rclpy.ok(context=self.context):
                return
            raise
        now = time.monotonic()
        stream.stats.processed += 1
        stream.stats.latencies.append(now - job.received)
        stream.stats.done_times.append(now)
        stream.stats.live_tracks = stream.state.num_live()

    def _publish(self, stream: Stream, header: Any, rgb: Any, inst: Any, p: NodeParams) -> None:
        index = messages.select(inst, p.score_threshold, p.max_instances, p.class_filter)
        pubs = self.pubs.get(stream.name)
        if pubs is None or not self.active:
            return
        pubs["instances"].publish(messages.instance_array(inst, index, header, p.mask_encoding))
        if p.publish_detections:
            pubs["detections"].publish(messages.detection_array(inst, index, header, stream.name,
                                                                p.id_prefix))
        if p.publish_labels and pubs["labels"].get_subscription_count() > 0:
            pubs["labels"].publish(labels_to_image(messages.label_image(inst, index), header))
        if p.publish_overlay and pubs["overlay"].get_subscription_count() > 0:
            pubs["overlay"].publish(rgb_to_image(messages.overlay(rgb, inst, index), header))

    # --- diagnostics ---------------------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        if self.diag_pub is None:
            return
        with self._lock:
            stale_s = self.params.stale_input_s
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        arr.status = camera_statuses(
            self.get_fully_qualified_name(), self.streams, self.inputs, time.monotonic(),
            stale_s=stale_s, lifecycle_state=self.lifecycle_state(), active=self.active,
            enabled=self.enabled, device=self.device)
        self.diag_pub.publish(arr)

    def destroy_node(self) -> None:
        self.active = False
        self._stop_worker()
        super().destroy_node()


def _spin(node: SpvisNode, executor: SingleThreadedExecutor) -> None:
    """Spin until the node is finalized (lifecycle shutdown) or the context shuts down."""
    while rclpy.ok(context=node.context) and node.lifecycle_state() != "finalized":
        executor.spin_once(timeout_sec=0.2)


class _Interrupts:
    """main()'s SIGINT handler: the first SIGINT stops the node (KeyboardInterrupt), any later
    one, or one after shutdown has begun otherwise, is ignored.

    Ctrl-C on ``ros2 launch`` delivers two: the terminal's, to the whole process group, and
    launch's own a moment later, which lands while the node is cleaning up. Python's default
    handler would raise there (a traceback and exit -2, which the launch reports as a
    failure). Installed before ``rclpy.init``, so that rclpy's own handler (which wakes and
    shuts down the executor) runs first and then calls this one."""

    def __init__(self) -> None:
        self.stopping = False

    def __call__(self, signum: int, frame: Any) -> None:
        del signum, frame
        if not self.stopping:
            self.stopping = True
            raise KeyboardInterrupt


def _ignore_sigint() -> None:
    """SIGINT ignored from here to the process's end. Python's finalization resets a signal
    with a Python handler to the default, so a late SIGINT would kill the exiting process
    (exit -2, a failure for launch); an ignored one stays ignored."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _close(node: SpvisNode | None) -> None:
    """Stop the worker, destroy the node, shut rclpy down; then ignore SIGINT for good."""
    try:
        if node is not None:
            node.destroy_node()
    finally:
        rclpy.try_shutdown()
        _ignore_sigint()


def main(argv: list[str] | None = None) -> int:
    """Console script `spvis_node` (also `ros2 run spvis_ros spvis_node`).

    Exit status: 0 after a shutdown (SIGINT, also a repeated one; SIGTERM; or the lifecycle
    shutdown transition); 2 when it cannot start (bad parameter; with autostart also a bad
    checkpoint or device)."""
    interrupts = _Interrupts()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, interrupts)
    # The shared-memory profile must be in place before DDS starts: the node publishes overlay
    # and label images as large as its input (docs/ros.md). A user's own profile is kept.
    use_default_profile()
    rclpy.init(args=argv if argv is not None else sys.argv)
    try:
        node = SpvisNode()
    except StartupError as exc:
        interrupts.stopping = True
        print(f"spvis_node: cannot start: {exc}", file=sys.stderr, flush=True)
        _close(None)
        return EXIT_BAD_START
    except KeyboardInterrupt:
        _close(None)
        return 0
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    code = 0
    try:
        if node.params.autostart:
            if node.trigger_configure() != SUCCESS:
                print(f"spvis_node: cannot start: {node.failure or 'configure failed'}",
                      file=sys.stderr, flush=True)
                code = EXIT_BAD_START
            elif node.trigger_activate() != SUCCESS:
                print("spvis_node: cannot start: activate failed", file=sys.stderr, flush=True)
                code = EXIT_BAD_START
        if code == 0:
            _spin(node, executor)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        interrupts.stopping = True  # from here on SIGINT is ignored: nothing left to stop
        _close(node)
    return code


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
