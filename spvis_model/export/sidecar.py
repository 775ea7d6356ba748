"""The JSON file written beside an exported segmenter (``model.onnx`` -> ``model.onnx.json``).

It says what the graph is (input and output shapes, MSDeformAttn form, opset, precision), how
frames must be prepared for it (the resize rule, mean/std, channel order, padding), and what
runs after it outside the graph (the tracker's configuration and the class names), plus the
SHA-256 of the segmenter weights it was exported from, so that a runtime pairs it with the right
checkpoint (`segmenter_checksum`). Read with `read_sidecar`, which checks every field and names
the bad one.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from spvis_model.checkpoint import weights_checksum

FORMAT = "spvis-onnx"
FORMAT_VERSION = 1


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
        preprocess: the model's `InputConfig` fields plus "pad_to": 32, "layout": "NCHW".
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
        """Write atomically (temp file + rename)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self.to_json() + "\n")
        os.replace(tmp, path)

    @property
    def network_size(self) -> tuple[int, int] | None:
        """(H, W) of the graph input, None when dynamic."""
        if self.dynamic:
            return None
        return int(self.input_shape[2]), int(self.input_shape[3])


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
    return Sidecar(**values)
