"""`spvis export` and the onnxruntime backend: options, refusals (nothing left behind), the
sidecar, onnx.checker on every file written, the plugin node's layout, and the backend's
errors. Parity with eager on real frames and clips: test_export_parity.py."""

from __future__ import annotations

import json
import stat

import numpy as np
import onnx
import pytest
import torch

from spvis_model.cli import main as spvis_main
from spvis_model.config import preset
from spvis_model.export import (
    BACKENDS,
    BackendError,
    ExportError,
    ExportOptions,
    SidecarError,
    export_onnx,
    read_sidecar,
    sidecar_path,
)
from spvis_model.export.exporter import network_size, sample_input
from spvis_model.export.graph import PLUGIN_DOMAIN, PLUGIN_OP, ExportSegmenter
from spvis_model.export.plugin_check import with_reference_plugin
from spvis_model.export.runtime import cpu_session, provider_for
from spvis_model.model import SPVIS

SIZE = (128, 96)  # = conftest.EXPORT_SIZE, the tiny_ckpt / tiny / tiny_onnx fixtures


def leftovers(folder, stem):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(stem))


# --- the graph module ---------------------------------------------------------------------------
@pytest.mark.parametrize("msda", ["grid_sample", "trt_plugin"])
def test_export_graph_equals_the_eager_segmenter(tiny, msda):
    """ExportSegmenter re-states the forward pass; in eager PyTorch it must give the
    segmenter's outputs (the compiled op vs GridSample: float rounding only)."""
    x = sample_input((96, 128), batch=2)
    with torch.no_grad():
        ref = tiny.segmenter(x)
        got = ExportSegmenter(tiny.segmenter, msda).eval()(x)
    expected = [ref.decoder.pred_logits, ref.decoder.pred_masks, ref.decoder.query_embed,
                ref.pixels.mask_features, ref.pixels.memory]
    for g, e in zip(got, expected, strict=True):
        assert g.shape == e.shape
        assert float((g - e).abs().max()) < 1e-4


# --- options and refusals -----------------------------------------------------------------------
@pytest.mark.parametrize(("options", "words"), [
    (ExportOptions(opset=15), ["opset = 15", ">= 16"]),
    (ExportOptions(opset=21), ["opset = 21", "at most opset 20"]),
    (ExportOptions(precision="bfloat16"), ["precision = 'bfloat16'", "float32, float16"]),
    (ExportOptions(msda="deform"), ["msda = 'deform'", "grid_sample, trt_plugin"]),
    (ExportOptions(plugin_version="3"), ["plugin_version = '3'"]),
    (ExportOptions(dynamic=True, verify=False), ["dynamic = True needs verify"]),
    (ExportOptions(size=(0, 480)), ["size = (0, 480)"]),
])
def test_unhonourable_options_are_refused_before_anything_is_written(tiny, tmp_path, options,
                                                                     words):
    with pytest.raises(ExportError) as err:
        export_onnx(tiny, tmp_path / "m.onnx", options)
    for w in words:
        assert w in str(err.value)
    assert leftovers(tmp_path, "m.onnx") == []


def test_bad_output_path_is_refused(tiny, tmp_path):
    with pytest.raises(ExportError, match=r"must end in \.onnx"):
        export_onnx(tiny, tmp_path / "m.pt", ExportOptions(size=SIZE))
    with pytest.raises(ExportError, match="does not exist"):
        export_onnx(tiny, tmp_path / "no" / "m.onnx", ExportOptions(size=SIZE))
    (tmp_path / "dir.onnx").mkdir()
    with pytest.raises(ExportError, match=r"dir\.onnx' is a folder"):
        export_onnx(tiny, tmp_path / "dir.onnx", ExportOptions(size=SIZE))
    (tmp_path / "side.onnx.json").mkdir()  # where the sidecar goes
    with pytest.raises(ExportError, match=r"side\.onnx\.json' is a folder"):
        export_onnx(tiny, tmp_path / "side.onnx", ExportOptions(size=SIZE))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.onnx", "side.onnx.json"]


def test_cli_onnx_path_a_folder_exits_2_with_one_line(tiny_ckpt, tmp_path, capsys):
    (tmp_path / "dir.onnx").mkdir()
    assert spvis_main(["export", str(tiny_ckpt), "--onnx", str(tmp_path / "dir.onnx")]) == 2
    err = capsys.readouterr().err
    assert "is a folder" in err and err.count("\n") == 1


def test_dynamic_size_a_backbone_freezes_is_refused_and_nothing_is_left(tmp_path):
    """lite0's SAME padding reads the traced size as Python ints: a dynamic graph would crop
    other sizes. Verification at a second size finds that and the export refuses."""
    cfg = preset("lite0")
    cfg.input.max_size = 128
    model = SPVIS(cfg, pretrained_backbone=False).eval()
    with pytest.raises(ExportError) as err:
        export_onnx(model, tmp_path / "lite0.onnx", ExportOptions(size=SIZE, dynamic=True))
    text = str(err.value)
    assert "dynamic = True cannot be honoured for lite0" in text
    assert "--size" in text
    assert leftovers(tmp_path, "lite0") == []


def test_exporter_failure_on_a_model_is_an_export_error(tmp_path):
    """Swin at a tiny input: the TorchScript exporter fails inside; the user gets one error
    naming the model and size, and no file."""
    cfg = preset("swin-t")
    cfg.input.max_size = 128
    model = SPVIS(cfg, pretrained_backbone=False).eval()
    with pytest.raises(ExportError, match=r"could not export the swin-t segmenter .* 128x96"):
        export_onnx(model, tmp_path / "swin.onnx", ExportOptions(size=SIZE, verify=False))
    assert leftovers(tmp_path, "swin") == []


# --- what is written ----------------------------------------------------------------------------
def test_written_file_passes_the_checker_and_the_sidecar_says_what_it_is(tiny, tiny_onnx):
    proto = onnx.load(str(tiny_onnx))
    onnx.checker.check_model(proto, full_check=True)
    assert [i.name for i in proto.graph.input] == ["images"]
    assert [o.name for o in proto.graph.output] == ["pred_logits", "pred_masks", "query_embed",
                                                    "mask_features", "memory"]
    assert {n.domain for n in proto.graph.node} == {""}
    assert "GridSample" in {n.op_type for n in proto.graph.node}
    assert next(o.version for o in proto.opset_import if o.domain == "") == 17
    side = read_sidecar(sidecar_path(tiny_onnx))
    assert side.input_shape == ["batch", 3, 96, 128]
    assert side.network_size == (96, 128)
    assert side.class_names == tiny.class_names
    assert side.tracker == tiny.cfg.to_dict()["tracker"]
    assert side.preprocess["max_size"] == 128 and side.preprocess["pad_to"] == 32
    assert side.preprocess["pixel_mean"] == pytest.approx(tiny.pixel_mean.flatten().tolist())
    assert side.outputs["pred_masks"] == ["batch", 16, 24, 32]
    assert side.outputs["memory"] == ["batch", 12 + 48 + 192, 64]
    assert side.msda == "grid_sample" and side.plugin == {}
    raw = json.loads(sidecar_path(tiny_onnx).read_text())
    assert raw["format"] == "spvis-onnx"
    # Readable like the sidecar (the temporary file it was renamed from was 0600).
    mode = stat.S_IMODE(tiny_onnx.stat().st_mode)
    assert mode == stat.S_IMODE(sidecar_path(tiny_onnx).stat().st_mode)


def test_float16_graph_computes_in_float16_with_float32_ends(tiny, tmp_path):
    result = export_onnx(tiny, tmp_path / "t16.onnx", ExportOptions(size=SIZE,
                                                                     precision="float16"))
    proto = onnx.load(str(result.onnx_path))
    onnx.checker.check_model(proto, full_check=True)
    f16 = onnx.TensorProto.FLOAT16
    weights = [i for i in proto.graph.initializer if len(i.dims) >= 2]
    assert weights and all(i.data_type == f16 for i in weights)
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert all(o.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
               for o in proto.graph.output)
    assert result.sidecar.precision == "float16"
    assert result.verified  # onnxruntime ran it against the float32 eager model
    diffs = result.verified["128x96, batch 2"]
    # The encoder in float16 stays close; the decoder's masked attention may flip a few
    # borderline pixels (see VERIFY_TOL).
    assert diffs["memory"] < 0.02 and diffs["mask_features"] < 0.02, diffs
    assert max(diffs.values()) < 0.25, diffs


def test_dynamic_graph_runs_other_sizes(tiny, tmp_path):
    result = export_onnx(tiny, tmp_path / "dyn.onnx", ExportOptions(size=SIZE, dynamic=True))
    assert set(result.verified) == {"128x96, batch 2", "160x160, batch 1"}
    assert result.sidecar.input_shape == ["batch", 3, "height", "width"]
    session = cpu_session(str(result.onnx_path))
    x = sample_input((64, 224), seed=5)
    got = session.run(None, {"images": x.numpy()})
    with torch.no_grad():
        ref = tiny.segmenter(x)
    assert got[1].shape == (1, 16, 16, 56)
    assert np.abs(got[1] - ref.decoder.pred_masks.numpy()).max() < 1e-3


def test_plugin_node_matches_tensorrt_plugin_layout(tiny, tmp_path):
    """One MultiscaleDeformableAttnPlugin_TRT node per encoder layer, in domain trt, with the
    plugin's five inputs (value (B,S,M,D), spatial_shapes (L,2) int32, level_start_index (L,)
    int32, sampling_locations (B,Q,M,L,P,2), attention_weights (B,Q,M,L,P)) and its output
    (B,Q,M,D); the plugin's ONNX-parser attributes plugin_version / plugin_namespace."""
    result = export_onnx(tiny, tmp_path / "plugin.onnx",
                         ExportOptions(size=SIZE, msda="trt_plugin"))
    assert result.verified  # ran through the reference body of the plugin
    proto = onnx.load(str(result.onnx_path))
    onnx.checker.check_model(proto, full_check=True)
    assert "GridSample" not in {n.op_type for n in proto.graph.node}
    nodes = [n for n in proto.graph.node if n.op_type == PLUGIN_OP]
    pd = tiny.cfg.pixel_decoder
    assert len(nodes) == pd.num_encoder_layers
    assert {o.domain: o.version for o in proto.opset_import}[PLUGIN_DOMAIN] == 1
    inferred = onnx.shape_inference.infer_shapes(proto)
    types = {v.name: v.type.tensor_type.elem_type for v in
             [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]}
    for node in nodes:
        assert node.domain == PLUGIN_DOMAIN
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert attrs == {"plugin_version": b"1", "plugin_namespace": b""}
        assert len(node.input) == 5 and len(node.output) == 1
    # The actual tensors at each node, batch 2, through the plugin's reference body: shapes,
    # dtypes and the spatial_shapes / level_start_index values.
    probe = with_reference_plugin(proto)
    names = [t for n in nodes for t in (*n.input, *n.output)]
    probe.graph.output.extend(onnx.helper.make_tensor_value_info(t, types[t], None)
                              for t in names)
    x = sample_input((96, 128), batch=2, seed=3)
    got = dict(zip([o.name for o in probe.graph.output],
                   cpu_session(probe.SerializeToString()).run(None, {"images": x.numpy()}),
                   strict=True))
    s = 12 + 48 + 192
    m, d, p = pd.n_heads, pd.conv_dim // pd.n_heads, pd.n_points
    for node in nodes:
        value, shapes, starts, loc, weights = (got[t] for t in node.input)
        assert value.shape == (2, s, m, d) and value.dtype == np.float32
        assert shapes.dtype == np.int32 and shapes.tolist() == [[3, 4], [6, 8], [12, 16]]
        assert starts.dtype == np.int32 and starts.tolist() == [0, 12, 60]
        assert loc.shape == (2, s, m, 3, p, 2) and loc.dtype == np.float32
        assert weights.shape == (2, s, m, 3, p) and weights.dtype == np.float32
        assert np.allclose(weights.sum((-1, -2)), 1.0, atol=1e-5)  # softmax over levels x points
        assert got[node.output[0]].shape == (2, s, m, d)
    side = result.sidecar
    assert side.plugin == {"op_type": PLUGIN_OP, "domain": PLUGIN_DOMAIN, "plugin_version": "1",
                           "plugin_namespace": ""}
    # No runtime here has the plugin: onnxruntime refuses the node itself ...
    with pytest.raises(Exception, match=PLUGIN_OP):
        cpu_session(str(result.onnx_path))
    # ... and runs it through the plugin's documented semantics in standard ops.
    got = cpu_session(with_reference_plugin(proto).SerializeToString()).run(
        None, {"images": x.numpy()})
    with torch.no_grad():
        ref = tiny.segmenter(x)
    assert np.abs(got[0] - ref.decoder.pred_logits.numpy()).max() < 1e-4
    assert np.abs(got[4] - ref.pixels.memory.numpy()).max() < 1e-4


def test_plugin_version_two_is_written(tiny, tmp_path):
    result = export_onnx(tiny, tmp_path / "p2.onnx", ExportOptions(
        size=SIZE, msda="trt_plugin", plugin_version="2", opset=20, verify=False))
    proto = onnx.load(str(result.onnx_path))
    onnx.checker.check_model(proto, full_check=True)
    versions = {onnx.helper.get_attribute_value(a) for n in proto.graph.node
                if n.op_type == PLUGIN_OP for a in n.attribute if a.name == "plugin_version"}
    assert versions == {b"2"}


# --- the CLI ------------------------------------------------------------------------------------
def test_cli_exports_and_reports(tiny_ckpt, tmp_path, capsys):
    out = tmp_path / "cli.onnx"
    assert spvis_main(["export", str(tiny_ckpt), "--onnx", str(out), "--size", "128x96",
                       "--opset", "18"]) == 0
    text = capsys.readouterr().out
    assert "onnx.checker passed" in text and "verified with onnxruntime at 128x96" in text
    assert out.is_file() and sidecar_path(out).is_file()
    onnx.checker.check_model(onnx.load(str(out)), full_check=True)


def test_cli_refusal_exits_2_with_one_line_and_no_file(tiny_ckpt, tmp_path, capsys):
    out = tmp_path / "bad.onnx"
    assert spvis_main(["export", str(tiny_ckpt), "--onnx", str(out), "--opset", "13"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("spvis export: opset = 13") and err.count("\n") == 1
    assert leftovers(tmp_path, "bad") == []


def test_cli_rejects_a_malformed_size(tiny_ckpt, tmp_path):
    with pytest.raises(SystemExit):
        spvis_main(["export", str(tiny_ckpt), "--onnx", str(tmp_path / "x.onnx"),
                    "--size", "640:480"])


# --- the backend --------------------------------------------------------------------------------
def test_backend_finds_the_file_beside_the_checkpoint_and_says_what_runs(tiny_ckpt, tiny_onnx):
    model = SPVIS.from_checkpoint(tiny_ckpt, backend="onnxruntime")
    assert model.segment_backend is not None
    assert model.backend.startswith("onnxruntime ")
    assert "CPUExecutionProvider" in model.backend and "tiny.onnx" in model.backend
    assert SPVIS.from_checkpoint(tiny_ckpt).backend == "torch"


def test_backend_refuses_a_frame_size_the_static_graph_does_not_take(tiny_ckpt, tiny_onnx):
    model = SPVIS.from_checkpoint(tiny_ckpt, backend="onnxruntime")
    with pytest.raises(ValueError, match=r"do not fit tiny.onnx, exported for 128x96"):
        model.step(model.init_state(), np.zeros((128, 128, 3), np.uint8), 0.0)


def test_backend_errors_name_the_argument(tiny_ckpt, tiny_onnx, tmp_path):
    with pytest.raises(BackendError, match="backend = 'tensorrt'"):
        SPVIS.from_checkpoint(tiny_ckpt, backend="tensorrt")
    with pytest.raises(BackendError, match="only read by backend = 'onnxruntime'"):
        SPVIS.from_checkpoint(tiny_ckpt, onnx=tiny_onnx)
    with pytest.raises(BackendError, match=r"no such file .*spvis export"):
        SPVIS.from_checkpoint(tiny_ckpt, backend="onnxruntime", onnx=tmp_path / "none.onnx")
    # the sidecar is needed
    lonely = tmp_path / "lonely.onnx"
    lonely.write_bytes(tiny_onnx.read_bytes())
    with pytest.raises(BackendError, match=r"sidecar .* no such file"):
        SPVIS.from_checkpoint(tiny_ckpt, backend="onnxruntime", onnx=lonely)
    # a file changed after export
    sidecar_path(lonely).write_text(sidecar_path(tiny_onnx).read_text())
    with open(lonely, "ab") as f:
        f.write(b"\0")
    with pytest.raises(BackendError, match="SHA-256 differs"):
        SPVIS.from_checkpoint(tiny_ckpt, backend="onnxruntime", onnx=lonely)


def test_backend_refuses_an_export_of_other_weights(tiny_onnx, tmp_path):
    torch.manual_seed(1)
    other = tmp_path / "other.pt"
    SPVIS(preset("tiny")).save(other)
    with pytest.raises(BackendError, match="exported from other segmenter weights"):
        SPVIS.from_checkpoint(other, backend="onnxruntime", onnx=tiny_onnx)


def test_backend_refuses_the_plugin_form_and_a_float16_file_on_cpu(tiny, tiny_ckpt, tmp_path):
    plugin = tmp_path / "plugin_form.onnx"
    export_onnx(tiny, plugin, ExportOptions(size=SIZE, msda="trt_plugin", verify=False))
    with pytest.raises(BackendError, match="only TensorRT runs"):
        SPVIS.from_checkpoint(tiny_ckpt, backend="onnxruntime", onnx=plugin)
    half = tmp_path / "half.onnx"
    export_onnx(tiny, half, ExportOptions(size=SIZE, precision="float16", verify=False))
    with pytest.raises(BackendError, match=r"float16, which the onnxruntime backend runs on "
                                           r"CUDA only"):
        SPVIS.from_checkpoint(tiny_ckpt, backend="onnxruntime", onnx=half)


def test_no_provider_falls_back(monkeypatch):
    """A CUDA device needs the CUDA execution provider; without it the backend refuses."""
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(BackendError, match=r"device = 'cuda:1'.*no CUDAExecutionProvider"):
        provider_for(torch.device("cuda", 1))
    assert provider_for(torch.device("cpu")) == ("CPUExecutionProvider", {})


def test_sidecar_reader_names_the_bad_field(tiny_onnx, tmp_path):
    good = json.loads(sidecar_path(tiny_onnx).read_text())
    bad = tmp_path / "x.onnx.json"
    for field, value, words in (("opset", "17", "'opset'"), ("format_version", 9, "reads 1"),
                                ("class_names", None, "'class_names'")):
        data = dict(good)
        if value is None:
            del data[field]
        else:
            data[field] = value
        bad.write_text(json.dumps(data))
        with pytest.raises(SidecarError, match=words):
            read_sidecar(bad)
    bad.write_text("{not json")
    with pytest.raises(SidecarError, match="not readable JSON"):
        read_sidecar(bad)


def test_node_parameter_choices_are_the_model_backends():
    from spvis_ros.params import BACKENDS as NODE_BACKENDS
    from spvis_ros.params import SPECS

    assert NODE_BACKENDS == BACKENDS
    assert SPECS["backend"].choices == BACKENDS and SPECS["backend"].default == "torch"
    assert not SPECS["backend"].live and not SPECS["onnx"].live


def test_network_size_follows_the_resize_rule(tiny):
    assert network_size(tiny, (640, 480)) == (96, 128)
    assert network_size(tiny, (128, 96)) == (96, 128)
