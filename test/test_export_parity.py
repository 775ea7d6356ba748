"""Exported vs eager, for the models users run: tiny (briefly trained, conftest) and lite0 (the
shipped checkpoint).

- On real frames (opencv-doc's street video, photos) and synthetic ones: the onnxruntime
  backend's class logits, mask logits, query embeddings and encoder memory are within
  TOL of the eager segmenter's (float32; measured differences are 1e-6 to 1e-4).
- Over a 20-frame synthetic clip, from a fresh state: the same instances with the same ids,
  labels and first-seen stamps on every frame, scores within 1e-4, masks differing in at most
  0.1% of the pixels (a logit within float rounding of 0 may flip).
- The TensorRT-plugin form of lite0: its plugin nodes and, run through the plugin's reference
  body, the same outputs within TOL.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import pytest
import torch
from synthetic_clip import crossing_clip

from spvis_model.data.real_media import load_media_photo, media_frame
from spvis_model.data.synthetic import generate_video
from spvis_model.data.synthetic import preset as synthetic_preset
from spvis_model.export import ExportOptions, export_onnx
from spvis_model.export.exporter import network_size
from spvis_model.export.graph import PLUGIN_OP
from spvis_model.export.plugin_check import with_reference_plugin
from spvis_model.export.runtime import cpu_session
from spvis_model.model import SPVIS
from spvis_model.weights import default_checkpoint

#: Stated tolerance: max |onnxruntime - eager| of class logits and mask logits (float32).
TOL = 1e-3
OUTPUTS = ("pred_logits", "pred_masks", "query_embed", "mask_features", "memory")


def real_frames() -> list[np.ndarray]:
    return [media_frame("vtest", 0), media_frame("vtest", 120), load_media_photo("aero"),
            load_media_photo("basketball")]


def outputs(seg) -> dict[str, torch.Tensor]:
    d, p = seg.decoder, seg.pixels
    return {"pred_logits": d.pred_logits, "pred_masks": d.pred_masks,
            "query_embed": d.query_embed, "mask_features": p.mask_features, "memory": p.memory}


def assert_segments_match(eager: SPVIS, ort: SPVIS, frames: list[np.ndarray]) -> float:
    worst = 0.0
    with torch.inference_mode():
        for k, frame in enumerate(frames):
            images, _ = eager.preprocess(frame)
            a, b = outputs(eager.segment(images)), outputs(ort.segment(images))
            for name in OUTPUTS:
                assert a[name].shape == b[name].shape, (k, name)
                diff = float((a[name] - b[name]).abs().max())
                assert diff <= TOL, f"frame {k}: {name} differs by {diff}"
                worst = max(worst, diff)
            sa, sb = eager.segment(images).pixels, ort.segment(images).pixels
            assert torch.equal(sa.spatial_shapes, sb.spatial_shapes)
            assert torch.equal(sa.level_start_index, sb.level_start_index)
            assert float((sa.memory_pos - sb.memory_pos).abs().max()) < 1e-5
    return worst


def assert_same_tracks(eager: SPVIS, ort: SPVIS, frames: list[np.ndarray],
                       stamps: list[float]) -> set[int]:
    state_a, state_b = eager.init_state(), ort.init_state()
    ids: set[int] = set()
    for k, (frame, stamp) in enumerate(zip(frames, stamps, strict=True)):
        state_a, a = eager.step(state_a, frame, stamp)
        state_b, b = ort.step(state_b, frame, stamp)
        assert a.ids.tolist() == b.ids.tolist(), f"frame {k}: ids {a.ids} vs {b.ids}"
        assert a.labels.tolist() == b.labels.tolist(), f"frame {k}"
        assert a.label_names == b.label_names
        np.testing.assert_array_equal(a.first_seen, b.first_seen)
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-4)
        np.testing.assert_allclose(a.visibility, b.visibility, atol=1e-4)
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1.0)
        if a.masks.size:
            assert (a.masks != b.masks).mean() <= 1e-3, f"frame {k}"
        assert int(state_a.next_id) == int(state_b.next_id)
        ids.update(a.ids.tolist())
    return ids


# --- tiny ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_pair(trained_tiny, tmp_path_factory):
    """The trained tiny model and the same checkpoint on onnxruntime (a dynamic export: the
    real frames and the clip pad to different sizes)."""
    folder = tmp_path_factory.mktemp("tiny_parity")
    ckpt = folder / "tiny.pt"
    trained_tiny.save(ckpt)
    eager = SPVIS.from_checkpoint(ckpt)
    export_onnx(eager, ckpt.with_suffix(".onnx"), ExportOptions(size=(96, 64), dynamic=True))
    return eager, SPVIS.from_checkpoint(ckpt, backend="onnxruntime")


def test_tiny_segmenter_outputs_match_on_real_frames(tiny_pair):
    eager, ort = tiny_pair
    frames = [*real_frames(), crossing_clip(frames=1)[0][0]]
    worst = assert_segments_match(eager, ort, frames)
    print(f"tiny: max |onnxruntime - eager| over outputs and frames: {worst:.1e}")
    assert worst > 0.0  # GridSample is not the same code: the comparison is real


def test_tiny_same_instances_and_ids_over_the_clip(tiny_pair):
    eager, ort = tiny_pair
    frames, _ = crossing_clip(frames=20)
    ids = assert_same_tracks(eager, ort, frames, [0.5 * t for t in range(20)])
    assert len(ids) >= 2  # the clip's two objects are found (so the test can fail)


# --- lite0 (the shipped model) ------------------------------------------------------------------
@pytest.fixture(scope="module")
def lite0_pair(tmp_path_factory):
    """The shipped lite0 and its export for 4:3 frames (all of these resize to the same
    network size: its input rule, then padding)."""
    folder = tmp_path_factory.mktemp("lite0_parity")
    eager = SPVIS.from_checkpoint(default_checkpoint())
    onnx_path = folder / "lite0_640x480.onnx"
    result = export_onnx(eager, onnx_path, ExportOptions(size=(640, 480)))
    assert result.sidecar.input_shape == ["batch", 3, *network_size(eager, (640, 480))]
    ort = SPVIS.from_checkpoint(default_checkpoint(), backend="onnxruntime", onnx=onnx_path)
    return eager, ort


def test_lite0_segmenter_outputs_match_on_real_frames(lite0_pair):
    eager, ort = lite0_pair
    worst = assert_segments_match(eager, ort, real_frames())
    print(f"lite0: max |onnxruntime - eager| over outputs and frames: {worst:.1e}")
    assert worst > 0.0


def test_lite0_same_instances_and_ids_over_a_synthetic_clip(lite0_pair):
    eager, ort = lite0_pair
    cfg = dataclasses.replace(synthetic_preset("medium"), videos=1, frames=20, seed=424242)
    frames, stamps, _ = generate_video(cfg, 0)
    assert len(frames) == 20
    ids = assert_same_tracks(eager, ort, frames, stamps)
    assert len(ids) >= 2


def test_lite0_plugin_form_layout_and_values(lite0_pair, tmp_path):
    """The plugin form of the shipped model for 640x480 frames: three plugin nodes (one per encoder
    layer) whose inputs the plugin takes, and, run through the plugin's reference body, the
    same outputs as eager within TOL."""
    eager, _ = lite0_pair
    result = export_onnx(eager, tmp_path / "lite0_trt.onnx",
                         ExportOptions(size=(640, 480), msda="trt_plugin", verify=False))
    proto = onnx.load(str(result.onnx_path))
    nodes = [n for n in proto.graph.node if n.op_type == PLUGIN_OP]
    assert len(nodes) == eager.cfg.pixel_decoder.num_encoder_layers == 3
    assert "GridSample" not in {n.op_type for n in proto.graph.node}
    frame = media_frame("vtest", 60)
    images, _ = eager.preprocess(frame)
    got = cpu_session(with_reference_plugin(proto).SerializeToString()).run(
        None, {"images": images.numpy()})
    with torch.inference_mode():
        ref = outputs(eager.segment(images))
    for name, g in zip(OUTPUTS, got, strict=True):
        assert float(np.abs(g - ref[name].numpy()).max()) <= TOL, name
