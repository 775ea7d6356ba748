"""The node's parameters: one table of names, types, defaults, checks and live-changeability.

`NodeParams.from_values(dict)` validates everything at start; `check_change(name, value)`
validates one live change. Errors are `ParameterError` naming the parameter and the value.
The README's parameter table is written from `PARAMETERS` (see `markdown_table`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

DEVICES = ("auto", "cuda", "cpu")
PRECISIONS = ("float32", "float16", "bfloat16")
TRANSPORTS = ("raw", "compressed")
RELIABILITIES = ("best_effort", "reliable")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


class ParameterError(ValueError):
    """A parameter value is invalid; the message names the parameter and the value."""


@dataclass(frozen=True)
class Spec:
    name: str
    default: Any
    live: bool
    doc: str


PARAMETERS: tuple[Spec, ...] = (
    Spec("checkpoint", "", False,
         "model checkpoint file; empty = the model shipped in the package"),
    Spec("device", "auto", False, "auto (CUDA when available), cuda, cuda:N or cpu"),
    Spec("precision", "float32", False, "float32, float16 or bfloat16 (half types need CUDA)"),
    Spec("cameras", ["cam0"], False,
         "camera names; camera c reads `c/image` (or `c/image/compressed`) and publishes "
         "`c/instances`, `c/labels`, `c/overlay` (remap them)"),
    Spec("transport", "raw", False,
         "raw (sensor_msgs/Image) or compressed (sensor_msgs/CompressedImage)"),
    Spec("input_reliability", "best_effort", False, "input QoS: best_effort or reliable"),
    Spec("input_depth", 1, False, "input QoS history depth (newest frame wins)"),
    Spec("score_threshold", 0.5, True, "publish instances with score >= this"),
    Spec("max_instances", 50, True, "publish at most this many instances per frame"),
    Spec("keep_seconds", 5.0, True, "forget a track unseen this long (header-stamp time)"),
    Spec("max_gap_s", 5.0, True,
         "a camera whose stamps jump forward more than this forgets its tracks "
         "(ids go on counting)"),
    Spec("class_filter", [""], True, "class names to publish; [''] or [] = all"),
    Spec("publish_labels", True, True, "publish `c/labels` (track id per pixel)"),
    Spec("publish_overlay", True, True, "publish `c/overlay` (only computed when subscribed)"),
)
SPECS = {s.name: s for s in PARAMETERS}


@dataclass
class NodeParams:
    """Validated parameter values."""

    checkpoint: str = ""
    device: str = "auto"
    precision: str = "float32"
    cameras: list[str] = field(default_factory=lambda: ["cam0"])
    transport: str = "raw"
    input_reliability: str = "best_effort"
    input_depth: int = 1
    score_threshold: float = 0.5
    max_instances: int = 50
    keep_seconds: float = 5.0
    max_gap_s: float = 5.0
    class_filter: list[str] = field(default_factory=list)
    publish_labels: bool = True
    publish_overlay: bool = True

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> NodeParams:
        """Validate every value (missing ones take their defaults)."""
        unknown = sorted(set(values) - set(SPECS))
        if unknown:
            raise ParameterError(f"unknown parameter(s) {unknown}")
        merged = {s.name: values.get(s.name, s.default) for s in PARAMETERS}
        return cls(**{name: check_value(name, value) for name, value in merged.items()})


def check_value(name: str, value: Any) -> Any:
    """Validate and normalise one parameter value; raise ParameterError naming it."""
    def fail(expected: str) -> ParameterError:
        return ParameterError(f"parameter {name} = {value!r}: must be {expected}")

    if name == "checkpoint":
        if not isinstance(value, str):
            raise fail("a file path (string)")
        return value
    if name == "device":
        if not isinstance(value, str) or not (value in DEVICES or re.fullmatch(r"cuda:\d+",
                                                                               value)):
            raise fail("auto, cuda, cuda:N or cpu")
        return value
    if name in ("precision", "transport", "input_reliability"):
        choices = {"precision": PRECISIONS, "transport": TRANSPORTS,
                   "input_reliability": RELIABILITIES}[name]
        if value not in choices:
            raise fail(f"one of {', '.join(choices)}")
        return value
    if name == "cameras":
        if not isinstance(value, (list, tuple)) or not value:
            raise fail("a non-empty list of camera names")
        names = list(value)
        for cam in names:
            if not isinstance(cam, str) or not _NAME.match(cam):
                raise fail(f"names of letters, digits and _ starting with a letter "
                           f"(bad: {cam!r})")
        if len(set(names)) != len(names):
            raise fail("unique names")
        return names
    if name in ("input_depth", "max_instances"):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise fail("an integer >= 1")
        return value
    if name == "score_threshold":
        if not _number(value) or not 0.0 <= value <= 1.0:
            raise fail("a number in [0, 1]")
        return float(value)
    if name in ("keep_seconds", "max_gap_s"):
        if not _number(value) or not math.isfinite(value) or value <= 0:
            raise fail("a number of seconds > 0")
        return float(value)
    if name == "class_filter":
        if not isinstance(value, (list, tuple)) or not all(isinstance(c, str) for c in value):
            raise fail("a list of class names")
        return [c for c in value if c]
    if name in ("publish_labels", "publish_overlay"):
        if not isinstance(value, bool):
            raise fail("true or false")
        return value
    raise ParameterError(f"unknown parameter {name}")


def check_change(name: str, value: Any) -> Any:
    """Validate a change made while the node runs; only live parameters may change."""
    spec = SPECS.get(name)
    if spec is None:
        raise ParameterError(f"unknown parameter {name}")
    if not spec.live:
        raise ParameterError(f"parameter {name} cannot change while the node runs "
                             "(restart the node with the new value)")
    return check_value(name, value)


def markdown_table() -> str:
    """The README's parameter table."""
    rows = ["| parameter | default | live | meaning |", "|---|---|---|---|"]
    for s in PARAMETERS:
        rows.append(f"| `{s.name}` | `{s.default!r}` | {'yes' if s.live else 'no'} | {s.doc} |")
    return "\n".join(rows)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
