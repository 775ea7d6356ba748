"""Deployment export: the segmenter to ONNX, and running it through onnxruntime.

- `export_onnx(model, "model.onnx", ExportOptions(...))` (CLI: `spvis export`) writes the graph
  (`graph.ExportSegmenter`: backbone, pixel decoder, transformer decoder, heads) and the JSON
  sidecar (`sidecar.Sidecar`: preprocessing in full (`preprocess_spec`), class names, tracker
  configuration, shapes).
  MSDeformAttn is written as standard ops (GridSample) or as TensorRT's plugin node.
- `SPVIS.from_checkpoint(path, backend="onnxruntime", onnx=...)` runs the graph through
  onnxruntime (`runtime.OnnxRuntimeSegmenter`) with the same tracker.

docs/export.md describes both forms, which runtimes take which, and how to build a TensorRT
engine from the file.
"""

from spvis_model.export.exporter import ExportError, ExportOptions, ExportResult, export_onnx
from spvis_model.export.runtime import BACKENDS, BackendError, OnnxRuntimeSegmenter
from spvis_model.export.sidecar import (
    Sidecar,
    SidecarError,
    preprocess_spec,
    read_sidecar,
    sidecar_path,
)

__all__ = [
    "BACKENDS",
    "BackendError",
    "ExportError",
    "ExportOptions",
    "ExportResult",
    "OnnxRuntimeSegmenter",
    "Sidecar",
    "SidecarError",
    "export_onnx",
    "preprocess_spec",
    "read_sidecar",
    "sidecar_path",
]
