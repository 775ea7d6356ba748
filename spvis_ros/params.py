"""The node's parameters: the one table of names, types, defaults, ranges, choices and docs.

Everything that lists parameters reads `PARAMETERS`:

- the node declares each with `descriptor(spec)` (read-only for start-up parameters, ranges for
  numbers, the choices in ``additional_constraints``, so ``ros2 param describe`` shows them),
  validates start-up values with `NodeParams.from_values` and live changes with `check_change`;
- the launch files take their argument defaults, choices and descriptions from here
  (`launch_default`, `parse_text`);
- the README's parameter table is `markdown_table()` (``python -m spvis_ros.params --readme``
  rewrites it; a test checks it is current);
- the tests read the same table.

Defaults that belong to the model come from the model package: ``keep_seconds`` is
``spvis_model.config.TrackerConfig().keep_seconds``.

Errors are `ParameterError`, naming the parameter and its value (long values are shortened).
"""

from __future__ import annotations

import argparse
import difflib
import math
import os
import re
import string
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from spvis_model.config import TrackerConfig
from spvis_ros.transports import TRANSPORT_NAMES

PRECISIONS = ("float32", "float16", "bfloat16")
# spvis_model.export.runtime.BACKENDS (not imported here: the launch files read this table
# without loading torch; a test checks the two agree).
BACKENDS = ("torch", "onnxruntime")
# spvis_model.graphs.MODES (not imported here, as BACKENDS).
CAPTURES = ("eager", "graphs", "compile")
# "checkpoint" + spvis_model.config.REFINE_MODES (a test checks they agree).
MASK_REFINES = ("checkpoint", "none", "guided")
RELIABILITIES = ("best_effort", "reliable")
MASK_ENCODINGS = ("rle", "mono8")
TRANSPORTS = TRANSPORT_NAMES
_DEVICE = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_PREFIX = re.compile(r"^[A-Za-z0-9_/{}.:-]*$")
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")
LONG_VALUE = 80  # characters of a value shown in an error message
# Parameters every rclpy node has; not ours, never "unknown".
STANDARD_PARAMETERS = ("use_sim_time", "start_type_description_service")
KINDS = ("bool", "int", "double", "string", "string_array")


class ParameterError(ValueError):
    """A parameter value is invalid; the message names the parameter and the value."""


@dataclass(frozen=True)
class Spec:
    """One parameter.

    kind: bool, int, double, string or string_array. live: may change while the node runs
    (otherwise it is read-only after start). low/high: inclusive bounds of a number
    (``low_open``: ``low`` itself excluded). choices: the allowed strings. doc: the meaning, one
    sentence (README, descriptors, launch arguments).
    """

    name: str
    kind: str
    default: Any
    live: bool
    doc: str
    choices: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None
    low_open: bool = False

    def constraint_text(self) -> str:
        """The allowed values in words ('' when any value of the type goes)."""
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.low is not None and self.high is not None:
            left = "(" if self.low_open else "["
            return f"{left}{_num(self.low)}, {_num(self.high)}]"
        return ""


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


PARAMETERS: tuple[Spec, ...] = (
    Spec("autostart", "bool", True, False,
         "configure and activate at start; false: wait in the unconfigured state for lifecycle "
         "transitions (e.g. from nav2's lifecycle manager)"),
    Spec("checkpoint", "string", "", False,
         "model checkpoint file (`~` is expanded); empty = the model shipped in the package"),
    Spec("device", "string", "auto", False, "auto (CUDA when available), cuda, cuda:N or cpu"),
    Spec("precision", "string", "float32", False, "inference precision (half types need CUDA)",
         choices=PRECISIONS),
    Spec("backend", "string", "torch", False,
         "what runs the segmenter: torch (eager PyTorch) or onnxruntime (the file `spvis export` "
         "wrote, see `onnx`; on `device`: cpu = CPUExecutionProvider, cuda = "
         "CUDAExecutionProvider; the tracker stays in PyTorch)", choices=BACKENDS),
    Spec("onnx", "string", "", False,
         "backend onnxruntime: the exported .onnx file, its .json sidecar beside it (`~` is "
         "expanded); empty = the checkpoint's path with .onnx"),
    Spec("cameras", "string_array", ["cam0"], False,
         "camera names; camera c reads `c/image_raw` (plus the transport's suffix) and publishes "
         "`c/instances`, `c/detections`, `c/labels`, `c/overlay`"),
    Spec("capture", "string", "eager", False,
         "backend torch: run the segmenter captured for each camera's input size, as CUDA "
         "graphs (graphs, CUDA only) or torch.compile (compile: reduce-overhead on CUDA; on the "
         "CPU Inductor's C++, which needs a C++ compiler, about 0.8x eager's time after a first "
         "frame that compiles for about a minute), checked against eager when built; a stage "
         "that cannot be captured runs eagerly with a warning",
         choices=CAPTURES),
    Spec("mask_refine", "string", "checkpoint", False,
         "how published masks are made from the model's stride-4 mask logits: checkpoint = as "
         "the checkpoint's tracker.mask_refine says (the shipped model: guided), none = "
         "upsampled and thresholded, guided = refined against the frame by a colour guided "
         "filter (sharper edges; on the CPU a few ms per object)", choices=MASK_REFINES),
    Spec("batch_cameras", "bool", False, False,
         "one segmenter forward over the newest frame of every camera that has one (cameras "
         "with the same image size; each camera's own tracker after it, its ids and state "
         "unchanged); false: one camera at a time, round-robin"),
    Spec("transport", "string", "raw", False,
         "image transport of the input: raw = sensor_msgs/Image on `c/image_raw`, compressed = "
         "sensor_msgs/CompressedImage on `<remapped c/image_raw>/compressed`",
         choices=TRANSPORTS),
    Spec("input_reliability", "string", "best_effort", False, "input QoS reliability",
         choices=RELIABILITIES),
    Spec("input_depth", "int", 1, False, "input QoS history depth (newest frame wins)",
         low=1, high=1000),
    Spec("score_threshold", "double", 0.5, True, "publish instances with score >= this",
         low=0.0, high=1.0),
    Spec("max_instances", "int", 50, True, "publish at most this many instances per frame",
         low=1, high=10000),
    Spec("keep_seconds", "double", float(TrackerConfig().keep_seconds), True,
         "forget a lost track unseen this long (header-stamp seconds; default: the model "
         "package's TrackerConfig)", low=0.0, high=1e9, low_open=True),
    Spec("max_gap_s", "double", 5.0, True,
         "a camera whose stamps jump forward more than this forgets its tracks (ids go on "
         "counting)", low=0.0, high=1e9, low_open=True),
    Spec("class_filter", "string_array", [""], True,
         "class names to publish; [''] or [] = all"),
    Spec("mask_encoding", "string", "rle", True,
         "how `c/instances` carries masks: rle = COCO compressed RLE of the box crop in "
         "`mask_rle` (smaller), mono8 = the box crop as bytes in `mask`", choices=MASK_ENCODINGS),
    Spec("id_prefix", "string", "{camera}/", True,
         "prefix of the string ids in `c/detections` (`{camera}` = the camera name; '' = the bare "
         "track number, unique per camera only)"),
    Spec("publish_detections", "bool", True, True,
         "publish `c/detections` (vision_msgs/Detection2DArray) and `label_info`"),
    Spec("publish_labels", "bool", True, True,
         "publish `c/labels` (track id per pixel; only computed when subscribed)"),
    Spec("publish_overlay", "bool", True, True,
         "publish `c/overlay` (only computed when subscribed)"),
    Spec("stale_input_s", "double", 5.0, True,
         "diagnostics: WARN when a camera's last frame is older than this (wall seconds)",
         low=0.0, high=1e6, low_open=True),
)
SPECS: dict[str, Spec] = {s.name: s for s in PARAMETERS}


@dataclass
class NodeParams:
    """Validated parameter values (one attribute per `PARAMETERS` entry)."""

    autostart: bool
    checkpoint: str
    device: str
    precision: str
    backend: str
    onnx: str
    cameras: list[str]
    capture: str
    mask_refine: str
    batch_cameras: bool
    transport: str
    input_reliability: str
    input_depth: int
    score_threshold: float
    max_instances: int
    keep_seconds: float
    max_gap_s: float
    class_filter: list[str]
    mask_encoding: str
    id_prefix: str
    publish_detections: bool
    publish_labels: bool
    publish_overlay: bool
    stale_input_s: float

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> NodeParams:
        """Validate every value (missing ones take their defaults)."""
        unknown = sorted(set(values) - set(SPECS))
        if unknown:
            raise ParameterError(f"unknown parameter(s) {unknown}")
        merged = {s.name: values.get(s.name, s.default) for s in PARAMETERS}
        return cls(**{name: check_value(name, value) for name, value in merged.items()})

    def copy(self) -> NodeParams:
        return NodeParams(**{f.name: _copy(getattr(self, f.name)) for f in fields(self)})


def _copy(value: Any) -> Any:
    return list(value) if isinstance(value, list) else value


def show(value: Any, limit: int = LONG_VALUE) -> str:
    """``repr(value)``, shortened to about ``limit`` characters (a 1 MB string stays short)."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"


def check_value(name: str, value: Any) -> Any:
    """Validate and normalise one parameter value; raise ParameterError naming it."""
    spec = SPECS.get(name)
    if spec is None:
        raise ParameterError(f"unknown parameter {name}{_did_you_mean(name)}")

    def fail(expected: str) -> ParameterError:
        return ParameterError(f"parameter {name} = {show(value)}: must be {expected}")

    if spec.kind == "bool":
        if not isinstance(value, bool):
            raise fail("true or false")
        return value
    if spec.kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail(f"an integer in {spec.constraint_text()}")
        if not spec.low <= value <= spec.high:  # type: ignore[operator]
            raise fail(f"an integer in {spec.constraint_text()}")
        return value
    if spec.kind == "double":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and \
            math.isfinite(value)
        if ok:
            low_ok = value > spec.low if spec.low_open else value >= spec.low  # type: ignore
            ok = low_ok and value <= spec.high  # type: ignore[operator]
        if not ok:
            unit = " of seconds" if name.endswith(("_s", "seconds")) else ""
            raise fail(f"a finite number{unit} in {spec.constraint_text()}")
        return float(value)
    if spec.kind == "string":
        if not isinstance(value, str):
            raise fail("a string" + (f": {spec.constraint_text()}" if spec.choices else ""))
        if spec.choices and value not in spec.choices:
            raise fail(spec.constraint_text())
        return _check_string(spec, value, fail)
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise fail("a list of strings, e.g. [a, b]")
    return _check_list(spec, list(value), fail)


def _check_string(spec: Spec, value: str, fail: Any) -> str:
    if spec.name == "device" and not _DEVICE.match(value):
        raise fail("auto, cuda, cuda:N or cpu")
    if spec.name in ("checkpoint", "onnx"):
        return os.path.expanduser(value.strip()) if value.strip() else ""
    if spec.name == "id_prefix":
        if not _PREFIX.match(value):
            raise fail("letters, digits and _ / . : - { } (e.g. '{camera}/')")
        if not _only_camera_placeholder(value):
            raise fail("a prefix whose only placeholder is a plain {camera} (no format spec, "
                       "conversion or attribute: each camera's ids must stay distinct)")
    return value


def _only_camera_placeholder(value: str) -> bool:
    """Every replacement field of `value` is exactly ``{camera}``: ``{camera:.1}`` (cam0 and
    cam1 -> c), ``{camera!r}``, ``{camera.upper}`` and ``{0}`` are refused."""
    try:
        fields = list(string.Formatter().parse(value))
    except ValueError:
        return False
    return all(name is None or (name == "camera" and not spec and conv is None)
               for _, name, spec, conv in fields)


def _check_list(spec: Spec, names: list[str], fail: Any) -> list[str]:
    if spec.name == "cameras":
        if not names:
            raise fail("a non-empty list of camera names")
        for cam in names:
            if not _NAME.match(cam):
                raise fail(f"names of letters, digits and _ starting with a letter "
                           f"(bad: {show(cam)})")
        if len(set(names)) != len(names):
            raise fail("unique names")
        return names
    if spec.name == "class_filter":
        return [c for c in names if c]
    return names


def check_change(name: str, value: Any) -> Any:
    """Validate a change made while the node runs; only live parameters may change."""
    spec = SPECS.get(name)
    if spec is None:
        raise ParameterError(f"unknown parameter {name}{_did_you_mean(name)}")
    if not spec.live:
        raise ParameterError(f"parameter {name} cannot change while the node runs "
                             "(restart the node with the new value)")
    return check_value(name, value)


def coerce_override(name: str, value: Any) -> Any:
    """A start-up value as the ROS argument parser typed it -> the value to validate.

    ``-p score_threshold:=1`` arrives as an integer: doubles accept integers. ``-p
    class_filter:=[]`` arrives with no type (None): lists read it as []."""
    spec = SPECS[name]
    if spec.kind == "double" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if spec.kind == "string_array" and value is None:
        return []
    return value


def unknown_parameter_warning(name: str) -> str | None:
    """A warning for a parameter given to the node that it does not have (None if it has it).

    ``qos_overrides.*`` (rclpy's QoS overriding) is not supported: the node's QoS is fixed by
    its own parameters, so such a value would silently do nothing."""
    if name in SPECS or name in STANDARD_PARAMETERS:
        return None
    if name.startswith("qos_overrides."):
        return (f"parameter {name!r} ignored: this node does not take QoS overrides; its "
                "input QoS is set by input_reliability and input_depth, its outputs are "
                "reliable with depth 10 (class_names and label_info transient local)")
    return f"unknown parameter {name!r} ignored{_did_you_mean(name)}"


def _did_you_mean(name: str) -> str:
    close = difflib.get_close_matches(name, list(SPECS), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else f" (known: {', '.join(SPECS)})"


def descriptor(spec: Spec) -> Any:
    """The rcl_interfaces ParameterDescriptor of `spec`: type, description, constraints,
    read-only for start-up parameters, range for numbers."""
    from rcl_interfaces.msg import (
        FloatingPointRange,
        IntegerRange,
        ParameterDescriptor,
        ParameterType,
    )

    types = {"bool": ParameterType.PARAMETER_BOOL, "int": ParameterType.PARAMETER_INTEGER,
             "double": ParameterType.PARAMETER_DOUBLE, "string": ParameterType.PARAMETER_STRING,
             "string_array": ParameterType.PARAMETER_STRING_ARRAY}
    desc = ParameterDescriptor(name=spec.name, type=types[spec.kind], description=spec.doc,
                               additional_constraints=spec.constraint_text(),
                               read_only=not spec.live)
    if spec.kind == "int" and spec.low is not None and spec.high is not None:
        desc.integer_range = [IntegerRange(from_value=int(spec.low), to_value=int(spec.high),
                                           step=1)]
    if spec.kind == "double" and spec.low is not None and spec.high is not None:
        desc.floating_point_range = [FloatingPointRange(from_value=float(spec.low),
                                                        to_value=float(spec.high), step=0.0)]
    return desc


def launch_default(name: str) -> str:
    """The default of parameter `name` as a launch argument string."""
    spec = SPECS[name]
    value = spec.default
    if spec.kind == "bool":
        return "true" if value else "false"
    if spec.kind == "string_array":
        return ",".join(value)
    return str(value)


def parse_text(name: str, text: str, *, what: str = "launch argument") -> Any:
    """A launch argument string -> the checked parameter value (lists are comma-separated).

    Raises ParameterError naming the argument and its text."""
    spec = SPECS[name]
    raw = text.strip()

    def fail(expected: str) -> ParameterError:
        return ParameterError(f"{what} {name}={show(text)}: must be {expected}")

    value: Any = raw
    if spec.kind == "bool":
        if raw.lower() not in _TRUE + _FALSE:
            raise fail("true or false")
        value = raw.lower() in _TRUE
    elif spec.kind == "int":
        try:
            value = int(raw)
        except ValueError:
            raise fail(f"an integer in {spec.constraint_text()}") from None
    elif spec.kind == "double":
        try:
            value = float(raw)
        except ValueError:
            raise fail(f"a number in {spec.constraint_text()}") from None
    elif spec.kind == "string_array":
        items = [item.strip() for item in raw.split(",")]
        if raw and any(not item for item in items):
            raise fail("a comma-separated list without empty entries")
        value = items if raw else []
    try:
        return check_value(name, value)
    except ParameterError as exc:
        detail = str(exc).split(": must be ", 1)[-1]
        raise fail(detail) from None


def markdown_table() -> str:
    """The README's parameter table."""
    rows = ["| parameter | type | default | allowed | live | meaning |",
            "|---|---|---|---|---|---|"]
    for s in PARAMETERS:
        allowed = s.constraint_text().replace("one of ", "")
        rows.append(f"| `{s.name}` | {s.kind} | `{s.default!r}` | {allowed} | "
                    f"{'yes' if s.live else 'no'} | {s.doc} |")
    return "\n".join(rows)


README_BEGIN = "<!-- parameters: generated by `python -m spvis_ros.params --readme` -->"
README_END = "<!-- parameters: end -->"


def readme_with_table(text: str) -> str:
    """`text` (the README) with the block between the markers replaced by `markdown_table()`.

    Raises ValueError when the markers are missing."""
    start = text.find(README_BEGIN)
    end = text.find(README_END)
    if start < 0 or end < start:
        raise ValueError(f"README has no {README_BEGIN!r} ... {README_END!r} block")
    return (text[:start + len(README_BEGIN)] + "\n\n" + markdown_table() + "\n\n"
            + text[end:])


def main(argv: list[str] | None = None) -> int:
    """``python -m spvis_ros.params``: print the table, or rewrite the README's (--readme)."""
    parser = argparse.ArgumentParser(description="the node's parameter table")
    parser.add_argument("--readme", type=Path, nargs="?", const=Path(__file__).resolve()
                        .parents[1] / "README.md", help="rewrite this README's table")
    args = parser.parse_args(argv)
    if args.readme is None:
        print(markdown_table())
        return 0
    old = args.readme.read_text()
    new = readme_with_table(old)
    if new != old:
        args.readme.write_text(new)
    print(f"{args.readme}: parameter table {'rewritten' if new != old else 'up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
