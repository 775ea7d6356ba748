"""Export of the deployment architectures for 640x480 frames passes onnx.checker: lite0, r50 and
Swin-T (random weights: the graph does not depend on them), in the standard-op form (what
onnxruntime and TensorRT both take). Numerical parity is test_export_parity.py's job (lite0,
tiny); verification is skipped here to keep the r50 / Swin exports at one trace each."""

from __future__ import annotations

import onnx
import pytest
import torch

from spvis_model.config import preset
from spvis_model.export import ExportOptions, export_onnx
from spvis_model.model import SPVIS


@pytest.mark.parametrize("name", ["lite0", "r50", "swin-t"])
def test_export_at_640x480_passes_the_checker(name, tmp_path):
    torch.manual_seed(0)
    model = SPVIS(preset(name), pretrained_backbone=False).eval()
    result = export_onnx(model, tmp_path / f"{name}.onnx",
                         ExportOptions(size=(640, 480), verify=False))
    proto = onnx.load(str(result.onnx_path))
    onnx.checker.check_model(proto, full_check=True)
    assert result.sidecar.input_shape == ["batch", 3, 480, 640]
    dims = [d.dim_value or d.dim_param for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, 480, 640]
    assert {n.domain for n in proto.graph.node} == {""}
    assert sum(n.op_type == "GridSample" for n in proto.graph.node) == \
        3 * model.cfg.pixel_decoder.num_encoder_layers  # one per level and encoder layer
    out = {o.name: [d.dim_value or d.dim_param for d in o.type.tensor_type.shape.dim]
           for o in proto.graph.output}
    n = model.cfg.segmenter.num_queries
    assert out["pred_logits"] == ["batch", n, model.cfg.num_classes + 1]
    assert out["pred_masks"] == ["batch", n, 120, 160]
    assert out["memory"] == ["batch", 15 * 20 + 30 * 40 + 60 * 80,
                             model.cfg.pixel_decoder.conv_dim]
