"""The JSON file written beside an exported segmenter (``model.onnx`` -> ``model.onnx.json``).

It says what the graph is (input and output shapes, MSDeformAttn form, opset, precision), how
frames must be prepared for it (`preprocess_spec`: every step of `SPVIS.preprocess`, enough to
reproduce it without PyTorch), and what runs after it outside the graph (the tracker's
configuration and the class names), plus the SHA-256 of the segmenter weights it was exported
from, so that a runtime pairs it with the right checkpoint (`segmenter_checksum`). Read with
`read_sidecar`, which checks every field and names the bad one and its value.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from spvis_model.atomic import atomic_write
from spvis_model.checkpoint import weights_checksum
from spvis_model.export.graph import GRAPH_DTYPES, MSDA_FORMS, OUTPUT_NAMES

FORMAT = "spvis-onnx"
FORMAT_VERSION = 1
#: The graph input's height and width are padded to multiples of this.
PAD_TO = 32
#: How the antialiased resize weighs input pixels (the sidecar's preprocess.resize.filter).
AA_FILTER = (
    "per axis, separably: s = input size / output size; output pixel i has its centre at "
    "c = (i + 0.5) * s in input coordinates; input pixel j gets weight "
    "max(0, 1 - |j + 0.5 - c| / max(s, 1)) (a triangle whose half-width grows with the shrink "
    "factor), weights normalised to sum 1 per output pixel (PyTorch's "
    "F.interpolate(mode='bilinear', antialias=True); PIL's BILINEAR resample, computed in "
    "float). Without antialias: bilinear at half-pixel centres, c - 0.5 clamped to the image "
    "(align_corners=False; cv2.INTER_LINEAR)")


class SidecarError(ValueError):
    """The sidecar is missing, unreadable or inconsistent; the message names the file and field."""


def sidecar_path(onnx_path: str | Path) -> Path:
    """``model.onnx`` -> ``model.onnx.json``."""
    p = Path(onnx_path)
    return p.with_name(p.name + ".json")


def segmenter_checksum(model: torch.nn.Module) -> str:
    """SHA-256 of the weights inside the exported graph: the model's ``segmenter.*`` state in
    float32 (equal after a float16 checkpoint round trip, since loading casts back)."""
    state = {k: v.float() if v.is_floating_point() else v
             for k, v in model.state_dict().items() if k.startswith("segmenter.")}
    return weights_checksum(state)


@dataclass
class Sidecar:
    """Everything a runtime needs beside the graph.

    Attributes:
        onnx_file: the graph's file name (same folder).
        onnx_sha256: SHA-256 of that file.
        segmenter_sha256: `segmenter_checksum` of the model it was exported from.
        model_name: the config's name (tiny, lite0, r50, ...).
        frame_size: [width, height] of the camera frames the export was sized for (--size).
        input_shape: [B, 3, H, W] of the graph input; "batch", "height", "width" where dynamic.
        dynamic: H and W are dynamic (multiples of 32).
        opset: the default-domain opset.
        precision: "float32" or "float16" (what the graph computes in; its input and outputs
            are float32 either way).
        msda: "grid_sample" or "trt_plugin".
        plugin: for trt_plugin: {"op_type", "domain", "plugin_version", "plugin_namespace"}.
        outputs: output name -> shape (as input_shape, symbolic names where dynamic).
        preprocess: `preprocess_spec`: the model's `InputConfig` fields with the effective
            mean / std, and every step's details ("steps", "resize", "normalise", "pad",
            "pad_to", "layout", "dtype").
        class_names: the K class names (index k of the K+1 logits; K is "no object").
        tracker: the `TrackerConfig` fields (the tracker runs in PyTorch after the graph).
        model_config: the full `ModelConfig` as a dict.
        exporter: versions of spvis, torch, onnx used.
    """

    onnx_file: str
    onnx_sha256: str
    segmenter_sha256: str
    model_name: str
    frame_size: list[int]
    input_shape: list[Any]
    dynamic: bool
    opset: int
    precision: str
    msda: str
    plugin: dict[str, str]
    outputs: dict[str, list[Any]]
    preprocess: dict[str, Any]
    class_names: list[str]
    tracker: dict[str, Any]
    model_config: dict[str, Any]
    exporter: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, "format_version": FORMAT_VERSION, **asdict(self)},
                          indent=2)

    def write(self, path: str | Path) -> None:
        """Write atomically (a temporary file of its own, renamed; removed on any error)."""
        data = (self.to_json() + "\n").encode()
        atomic_write(path, lambda f: f.write(data))

    @property
    def network_size(self) -> tuple[int, int] | None:
        """(H, W) of the graph input, None when dynamic (`read_sidecar` checked both)."""
        if self.dynamic:
            return None
        return int(self.input_shape[2]), int(self.input_shape[3])


def preprocess_spec(model: torch.nn.Module) -> dict[str, Any]:
    """The sidecar's ``preprocess``: how `SPVIS.preprocess` turns an H x W x 3 uint8 RGB frame
    into the graph's (1, 3, Hp, Wp) float32 input, step by step ("steps"), in enough detail to
    do it without PyTorch (docs/export.md, "The sidecar"; tested against numpy).

    Besides the `InputConfig` fields (``max_size``, ``min_size``, ``channel_order``;
    ``pixel_mean`` / ``pixel_std`` are the effective values, 0..255 scale, in the network's
    channel order) it holds ``resize`` (rule, size formula and rounding, bilinear,
    align_corners, when it is antialiased and the filter), ``normalise``, ``pad`` (bottom /
    right, after normalisation, value 0.0: the mean colour, not black), ``pad_to``, ``layout``
    and ``dtype``.
    """
    inp = model.cfg.input
    longer_side = inp.min_size <= 0
    size = ("scale = max_size / max(H, W); rows = max(1, round(H * scale)); "
            "cols = max(1, round(W * scale))" if longer_side else
            "scale = min_size / min(H, W); h, w = H * scale, W * scale; if max(h, w) > "
            "max_size: h, w = h * max_size / max(h, w), w * max_size / max(h, w); "
            "rows = max(1, floor(h + 0.5)); cols = max(1, floor(w + 0.5))")
    return {
        "max_size": inp.max_size,
        "min_size": inp.min_size,
        "pixel_mean": model.pixel_mean.flatten().tolist(),
        "pixel_std": model.pixel_std.flatten().tolist(),
        "channel_order": inp.channel_order,
        "frames": "RGB uint8",
        "input_range": "0..255 before normalisation",
        "steps": ["channel_order", "resize", "normalise", "pad"],
        "channel_order_step": ("frames are RGB; for channel_order 'bgr' reverse the channels "
                               "first (pixel_mean / pixel_std are in channel_order)"),
        "resize": {
            "rule": "longer_side" if longer_side else "shortest_edge",
            "size": size,
            "rounding": "half_to_even" if longer_side else "half_up",
            "arithmetic": "float64 (H, W, scale), then rounded to integers",
            "keeps_aspect": True,
            "when": "(rows, cols) != (H, W); otherwise the frame is used as it is",
            "mode": "bilinear",
            "align_corners": False,
            "antialias": "when_shrinking",
            "antialias_when": "rows < H or cols < W (both axes filtered then)",
            "filter": AA_FILTER,
            "values": "float32 on the 0..255 scale, not rounded or clipped after resizing",
        },
        "normalise": "(x - pixel_mean) / pixel_std per channel, float32",
        "pad": {"to_multiple_of": PAD_TO, "where": "bottom_right", "after": "normalise",
                "value": 0.0},
        "pad_to": PAD_TO,
        "layout": "NCHW",
        "dtype": "float32",
    }


_TYPES: dict[str, type | tuple[type, ...]] = {
    "onnx_file": str, "onnx_sha256": str, "segmenter_sha256": str, "model_name": str,
    "frame_size": list, "input_shape": list, "dynamic": bool, "opset": int, "precision": str,
    "msda": str, "plugin": dict, "outputs": dict, "preprocess": dict, "class_names": list,
    "tracker": dict, "model_config": dict, "exporter": dict,
}


def read_sidecar(path: str | Path) -> Sidecar:
    """Read and check a sidecar file; raise SidecarError naming the file and the field."""
    path = Path(path)
    if not path.is_file():
        raise SidecarError(f"sidecar {path}: no such file (`spvis export` writes it beside the "
                           ".onnx file; both are needed)")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SidecarError(f"sidecar {path}: not readable JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise SidecarError(f"sidecar {path}: top level is {type(data).__name__}, expected an "
                           "object")
    if data.get("format") != FORMAT:
        raise SidecarError(f"sidecar {path}: field 'format' = {data.get('format')!r}, expected "
                           f"{FORMAT!r}")
    if data.get("format_version") != FORMAT_VERSION:
        raise SidecarError(f"sidecar {path}: field 'format_version' = "
                           f"{data.get('format_version')!r}, this spvis reads {FORMAT_VERSION}")
    values = {}
    for name, kind in _TYPES.items():
        if name not in data:
            raise SidecarError(f"sidecar {path}: field {name!r} is missing")
        value = data[name]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise SidecarError(f"sidecar {path}: field {name!r} = {str(value)[:80]!r} must be "
                               f"a {getattr(kind, '__name__', kind)}")
        values[name] = value
    _check_values(path, values)
    return Sidecar(**values)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _check_values(path: Path, v: dict[str, Any]) -> None:
    """The values `read_sidecar`'s type checks cannot see: shapes, names, the preprocessing the
    runtime compares and uses. SidecarError naming the field and its value."""
    def bad(name: str, value: Any, why: str) -> SidecarError:
        return SidecarError(f"sidecar {path}: field {name!r} = {str(value)[:120]}: {why}")

    shape, dynamic = v["input_shape"], v["dynamic"]
    if len(shape) != 4 or shape[0] != "batch" or shape[1] != 3:
        raise bad("input_shape", shape, "must be ['batch', 3, H, W]")
    if dynamic:
        if _is_int(shape[2]) or _is_int(shape[3]):
            raise bad("input_shape", shape, "H and W must be names (e.g. 'height', 'width') "
                      "when dynamic is true")
    elif not all(_is_int(d) and d > 0 and d % PAD_TO == 0 for d in shape[2:]):
        raise bad("input_shape", shape, f"H and W must be positive integers, multiples of "
                  f"{PAD_TO}, when dynamic is false")
    frame = v["frame_size"]
    if len(frame) != 2 or not all(_is_int(d) and d > 0 for d in frame):
        raise bad("frame_size", frame, "must be [width, height], positive integers")
    if v["precision"] not in GRAPH_DTYPES:
        raise bad("precision", repr(v["precision"]), f"must be one of {', '.join(GRAPH_DTYPES)}")
    if v["msda"] not in MSDA_FORMS:
        raise bad("msda", repr(v["msda"]), f"must be one of {', '.join(MSDA_FORMS)}")
    if v["opset"] < 1:
        raise bad("opset", v["opset"], "must be a positive integer")
    if sorted(v["outputs"]) != sorted(OUTPUT_NAMES):
        raise bad("outputs", sorted(v["outputs"]), f"must name {', '.join(OUTPUT_NAMES)}")
    pre = v["preprocess"]
    checks: list[tuple[str, Any, str]] = [
        ("max_size", lambda x: _is_int(x) and x >= 1, "must be an integer >= 1"),
        ("min_size", lambda x: _is_int(x) and x >= 0, "must be an integer >= 0"),
        ("channel_order", lambda x: x in ("rgb", "bgr"), "must be 'rgb' or 'bgr'"),
        ("pixel_mean", lambda x: isinstance(x, list) and len(x) == 3
         and all(_is_number(c) for c in x), "must be 3 numbers"),
        ("pixel_std", lambda x: isinstance(x, list) and len(x) == 3
         and all(_is_number(c) and c > 0 for c in x), "must be 3 positive numbers"),
        ("pad_to", lambda x: x == PAD_TO, f"must be {PAD_TO}"),
    ]
    for key, ok, why in checks:
        if key not in pre:
            raise SidecarError(f"sidecar {path}: field 'preprocess.{key}' is missing")
        if not ok(pre[key]):
            raise bad(f"preprocess.{key}", repr(pre[key]), why)
