"""Running the TensorRT-plugin form where TensorRT is not: a body of standard ONNX ops for the
custom node, written from the plugin's documented semantics.

TensorRT's ``MultiscaleDeformableAttnPlugin_TRT`` takes value (N, S, M, D), spatial_shapes
(L, 2) int32 rows (H_l, W_l), level_start_index (L,) int32, sampling_locations
(N, Lq, M, L, P, 2) normalised (x, y) and attention_weights (N, Lq, M, L, P), and gives
(N, Lq, M, D): per head, the bilinear samples of each level (zero outside, pixel
``loc * size - 0.5``) weighted and summed over levels and points.

`with_reference_plugin` returns a copy of a model in which that op type has a model-local ONNX
function doing exactly this with GridSample. onnxruntime inlines local functions, so the
plugin-form graph runs and can be compared with the eager segmenter: that checks the node's
inputs (order, layout, dtypes, the int32 shapes) without TensorRT. It is a check, never what the
deployment runs (`spvis_model.export.runtime` refuses plugin-form files).

This body is written independently of `graph.msda_grid_sample` (ONNX ops, from the plugin's
inputs only), so the two check each other.
"""

from __future__ import annotations

from typing import Any

from spvis_model.export.graph import PLUGIN_DOMAIN, PLUGIN_OP
from spvis_model.modeling.pixel_decoder import ENCODER_FEATURES


def reference_plugin_function(opset: int, num_levels: int = len(ENCODER_FEATURES)) -> Any:
    """The plugin as an onnx.FunctionProto (domain ``trt``) for `num_levels` levels."""
    from onnx import TensorProto, helper

    nodes: list[Any] = []
    counter = [0]

    def op(kind: str, *inputs: str, **attrs: Any) -> str:
        counter[0] += 1
        out = f"t{counter[0]}_{kind.lower()}"
        nodes.append(helper.make_node(kind, list(inputs), [out], **attrs))
        return out

    def ints(*values: int) -> str:
        return op("Constant", value=helper.make_tensor("c", TensorProto.INT64, [len(values)],
                                                       list(values)))

    def part(shape: str, i: int) -> str:  # element i of a shape, as a 1-D tensor
        return op("Slice", shape, ints(i), ints(i + 1))

    value, shapes, starts, locations, weights = ("value", "spatial_shapes",
                                                 "level_start_index", "sampling_locations",
                                                 "attention_weights")
    shapes64 = op("Cast", shapes, to=TensorProto.INT64)
    starts64 = op("Cast", starts, to=TensorProto.INT64)
    vshape, lshape = op("Shape", value), op("Shape", locations)
    n, m, d = part(vshape, 0), part(vshape, 2), part(vshape, 3)
    q, p = part(lshape, 1), part(lshape, 4)
    nm = op("Mul", n, m)
    two = op("CastLike", op("Constant", value=helper.make_tensor("two", TensorProto.FLOAT, [],
                                                                 [2.0])), locations)
    one = op("CastLike", op("Constant", value=helper.make_tensor("one", TensorProto.FLOAT, [],
                                                                 [1.0])), locations)
    grids = op("Sub", op("Mul", locations, two), one)
    value_t = op("Transpose", value, perm=[0, 2, 3, 1])  # (N, M, D, S)
    mode = "linear" if opset >= 20 else "bilinear"
    terms = []
    for lvl in range(num_levels):
        row = op("Reshape", op("Slice", shapes64, ints(lvl), ints(lvl + 1)), ints(2))
        h, w = part(row, 0), part(row, 1)
        start = op("Slice", starts64, ints(lvl), ints(lvl + 1))
        end = op("Add", start, op("Mul", h, w))
        v = op("Slice", value_t, start, end, ints(3))  # (N, M, D, h*w)
        v = op("Reshape", v, op("Concat", nm, d, h, w, axis=0))  # (N*M, D, h, w)
        index = op("Constant", value=helper.make_tensor("l", TensorProto.INT64, [], [lvl]))
        g = op("Gather", grids, index, axis=3)  # (N, Q, M, P, 2)
        g = op("Transpose", g, perm=[0, 2, 1, 3, 4])
        g = op("Reshape", g, op("Concat", nm, q, p, ints(2), axis=0))  # (N*M, Q, P, 2)
        sampled = op("GridSample", v, g, mode=mode, padding_mode="zeros", align_corners=0)
        wl = op("Transpose", op("Gather", weights, index, axis=3), perm=[0, 2, 1, 3])
        wl = op("Reshape", wl, op("Concat", nm, ints(1), q, p, axis=0))  # (N*M, 1, Q, P)
        terms.append(op("ReduceSum", op("Mul", sampled, wl), ints(-1), keepdims=0))
    total = op("Sum", *terms)  # (N*M, D, Q)
    total = op("Reshape", total, op("Concat", n, m, d, q, axis=0))
    nodes.append(helper.make_node("Transpose", [total], ["output"], perm=[0, 3, 1, 2]))
    return helper.make_function(
        PLUGIN_DOMAIN, PLUGIN_OP, [value, shapes, starts, locations, weights], ["output"], nodes,
        [helper.make_opsetid("", opset)], attributes=["plugin_version", "plugin_namespace"])


def with_reference_plugin(model: Any) -> Any:
    """A copy of `model` (onnx.ModelProto) whose plugin nodes run as `reference_plugin_function`."""
    import onnx

    out = onnx.ModelProto()
    out.CopyFrom(model)
    opset = next(o.version for o in out.opset_import if o.domain in ("", "ai.onnx"))
    out.functions.append(reference_plugin_function(opset))
    return out
