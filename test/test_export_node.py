"""The node with backend:=onnxruntime, as a user runs it: export the checkpoint, start the real
node process on it, play the crossing clip, and get the same instances (ids, classes, scores,
masks) as the torch backend gives for the same frames; the log says which execution provider
runs; a backend that cannot run stops the node naming the parameter."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from synthetic_clip import crossing_clip

sys.path.insert(0, str(Path(__file__).parent / "ros_helpers"))
from node_harness import Driver, NodeProcess, decode_masks, rgb_image, unique_domain

from spvis_model.cli import main as spvis_main

pytestmark = pytest.mark.ros

STARTED = "spvis: active"


@pytest.fixture(scope="module")
def exported(trained_tiny, tmp_path_factory) -> Path:
    """A checkpoint and `spvis export`'s file beside it (the default the node looks for)."""
    folder = tmp_path_factory.mktemp("export_node")
    ckpt = folder / "tiny.pt"
    trained_tiny.save(ckpt)
    assert spvis_main(["export", str(ckpt), "--onnx", str(ckpt.with_suffix(".onnx")),
                       "--size", "96x64"]) == 0
    return ckpt


def play(ckpt: Path, log: Path, backend: str) -> tuple[list, str]:
    """Start a node with `backend`, send the clip at 2 fps, return per frame
    [(id, class, score, mask)] and the node's log."""
    domain = unique_domain()
    node = NodeProcess(domain, log, {"checkpoint": str(ckpt), "backend": backend,
                                     "device": "cpu", "input_reliability": "reliable",
                                     "input_depth": "10", "score_threshold": "0.3"})
    try:
        node.wait_for_log(STARTED, timeout=90)
        driver = Driver(domain, ["cam0"])
        try:
            driver.wait_connected()
            frames, _ = crossing_clip(frames=20)
            rows = []
            for t, frame in enumerate(frames):
                out = driver.send("cam0", rgb_image(frame, 10.0 + 0.5 * t))
                assert out is not None, f"{backend}: no output for frame {t}"
                masks = decode_masks(out)
                rows.append([(int(i.id), int(i.class_id), float(i.score), masks[int(i.id)])
                             for i in out.instances])
        finally:
            driver.close()
    finally:
        code = node.stop()
    text = node.log()
    assert code == 0, text
    return rows, text


def test_onnxruntime_node_publishes_the_same_instances(exported, tmp_path):
    torch_rows, _ = play(exported, tmp_path / "torch.log", "torch")
    ort_rows, log = play(exported, tmp_path / "ort.log", "onnxruntime")
    assert "segmenter backend onnxruntime" in log and "CPUExecutionProvider" in log, log
    assert "tiny.onnx: grid_sample, float32, 96x64" in log, log
    seen = set()
    for t, (a, b) in enumerate(zip(torch_rows, ort_rows, strict=True)):
        assert [(i, c) for i, c, _, _ in a] == [(i, c) for i, c, _, _ in b], f"frame {t}"
        for (_, _, sa, ma), (_, _, sb, mb) in zip(a, b, strict=True):
            assert abs(sa - sb) < 1e-4
            assert (ma != mb).mean() <= 1e-3
        seen.update(i for i, _, _, _ in a)
    assert len(seen) >= 2, torch_rows


def test_missing_export_stops_the_node_naming_the_parameter(exported, tmp_path):
    node = NodeProcess(unique_domain(), tmp_path / "node.log", {
        "checkpoint": str(exported), "backend": "onnxruntime", "device": "cpu",
        "onnx": str(tmp_path / "missing.onnx")})
    code = node.proc.wait(timeout=90)
    log = node.log()
    assert code == 2, log
    assert "Traceback" not in log, log
    assert "spvis_node: cannot start:" in log, log
    assert "parameter backend = 'onnxruntime': onnx = " in log and "no such file" in log, log


def test_unknown_backend_is_refused_at_start(exported, tmp_path):
    node = NodeProcess(unique_domain(), tmp_path / "node.log", {
        "checkpoint": str(exported), "backend": "tensorrt"})
    code = node.proc.wait(timeout=90)
    log = node.log()
    assert code == 2, log
    assert "parameter backend = 'tensorrt': must be one of torch, onnxruntime" in log, log
