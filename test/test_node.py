"""The spvis node as users run it: a separate process, real topics over loopback.

The node runs the briefly trained tiny model (conftest `trained_tiny`) on the synthetic crossing
clip; a driver node in the test process publishes frames and checks what comes back.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from synthetic_clip import crossing_clip

sys.path.insert(0, str(Path(__file__).parent / "ros_helpers"))
from node_harness import Driver, NodeProcess, decode_masks, rgb_image, unique_domain

pytestmark = pytest.mark.ros

STARTED = "spvis: tiny model"


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


@pytest.fixture(scope="module")
def checkpoint(trained_tiny, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    trained_tiny.save(path)
    return path


@pytest.fixture(scope="module")
def running(checkpoint, tmp_path_factory):
    """One node with two cameras, reliable input (lock-step test traffic), use_sim_time, and a
    driver."""
    domain = unique_domain()
    node = NodeProcess(domain, tmp_path_factory.mktemp("node") / "node.log", {
        "checkpoint": str(checkpoint), "cameras": "[cam0,cam1]",
        "input_reliability": "reliable", "input_depth": "10", "score_threshold": "0.3",
        "max_gap_s": "10.0",
        # Simulated time with no /clock publisher: header stamps alone must drive tracking.
        "use_sim_time": "true"})
    node.wait_for_log(STARTED)
    driver = Driver(domain, ["cam0", "cam1"])
    driver.wait_connected()
    yield node, driver
    driver.close()
    assert node.stop() == 0, node.log()


def track_ids(driver: Driver, camera: str, frames, masks, t0: float, dt: float) -> list[list]:
    """Send frames; per frame, the id of the best-matching output instance for each object."""
    ids = []
    for t, (frame, gt) in enumerate(zip(frames, masks, strict=True)):
        out = driver.send(camera, rgb_image(frame, t0 + dt * t, frame_id=f"{camera}_optical"))
        assert out is not None, f"{camera}: no output for frame {t}"
        assert out.header.frame_id == f"{camera}_optical"
        assert (out.width, out.height) == (frame.shape[1], frame.shape[0])
        decoded = decode_masks(out)
        row = []
        for k in range(2):
            best = max(decoded, key=lambda i: iou(decoded[i], gt[k]), default=None)
            good = best is not None and iou(decoded[best], gt[k]) >= 0.5
            row.append(best if good else None)
        ids.append(row)
    return ids


def test_ids_persist_at_2fps_through_the_crossing_with_input_header(running):
    _, driver = running
    frames, masks = crossing_clip()
    ids = track_ids(driver, "cam0", frames, masks, t0=100.0, dt=0.5)  # 2 fps
    for k in range(2):
        seen = {row[k] for row in ids if row[k] is not None}
        assert len(seen) == 1, f"object {k} had ids {seen}: {ids}"
        assert sum(row[k] is not None for row in ids) >= 16  # found on most frames
    assert ids[0][0] != ids[0][1]


def test_backward_jump_resets_only_that_camera(running):
    _, driver = running
    frames, masks = crossing_clip(frames=6, seed=3)
    a0 = track_ids(driver, "cam0", frames, masks, t0=200.0, dt=0.5)
    b0 = track_ids(driver, "cam1", frames, masks, t0=200.0, dt=0.5)
    # cam0 loops back in time (a bag restarting): fresh ids there, cam1 keeps its own.
    a1 = track_ids(driver, "cam0", frames, masks, t0=150.0, dt=0.5)
    b1 = track_ids(driver, "cam1", frames, masks, t0=203.0, dt=0.5)
    assert {a0[-1][0], a0[-1][1]}.isdisjoint({a1[0][0], a1[0][1]})
    assert b1[0] == b0[-1]
    assert None not in a1[0] and None not in b1[0]


def test_bad_images_are_dropped_with_a_log_and_node_keeps_running(running):
    node, driver = running
    frame = crossing_clip(frames=1)[0][0]
    bad = rgb_image(frame, 300.0)
    bad.encoding = "weird16"
    assert driver.send("cam0", bad, timeout=3.0) is None
    empty = rgb_image(frame[:0], 301.0)
    assert driver.send("cam0", empty, timeout=3.0) is None
    short = rgb_image(frame, 302.0)
    short.data = bytes(short.data)[:100]
    assert driver.send("cam0", short, timeout=3.0) is None
    assert driver.send("cam0", rgb_image(frame, 303.0)) is not None
    assert driver.send("cam1", rgb_image(frame, 303.0)) is not None
    log = node.log()
    assert log.count("camera cam0: dropped frame") >= 3, log
    assert "weird16" in log


def test_reset_and_enable_services(running):
    from std_srvs.srv import SetBool, Trigger

    _, driver = running
    frames, masks = crossing_clip(frames=3, seed=5)
    before = track_ids(driver, "cam1", frames, masks, t0=400.0, dt=0.5)
    res = driver.call(Trigger, "/cam1/reset", Trigger.Request())
    assert res.success and "cam1" in res.message
    after = track_ids(driver, "cam1", frames, masks, t0=402.0, dt=0.5)
    assert set(before[-1]).isdisjoint(after[0])
    res = driver.call(SetBool, "/spvis/enable", SetBool.Request(data=False))
    assert res.success and "disabled" in res.message
    assert driver.send("cam1", rgb_image(frames[0], 404.0), timeout=3.0) is None
    res = driver.call(SetBool, "/spvis/enable", SetBool.Request(data=True))
    assert driver.send("cam1", rgb_image(frames[0], 404.5)) is not None
    res = driver.call(Trigger, "/spvis/reset", Trigger.Request())
    assert res.success and "cam0" in res.message and "cam1" in res.message


def test_live_parameter_changes_are_validated(running):
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters

    _, driver = running

    def set_param(name, value):
        if isinstance(value, float):
            pv = ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value)
        else:
            pv = ParameterValue(type=ParameterType.PARAMETER_STRING_ARRAY,
                                string_array_value=value)
        req = SetParameters.Request(parameters=[Parameter(name=name, value=pv)])
        return driver.call(SetParameters, "/spvis/set_parameters", req).results[0]

    frame = crossing_clip(frames=1)[0][0]
    assert len(driver.send("cam0", rgb_image(frame, 500.0)).instances) == 2
    bad = set_param("score_threshold", 1.5)
    assert not bad.successful and "score_threshold = 1.5" in bad.reason
    frozen = set_param("cameras", ["x"])
    assert not frozen.successful and "cannot change while the node runs" in frozen.reason
    assert set_param("score_threshold", 1.0).successful  # nothing scores 1.0
    assert len(driver.send("cam0", rgb_image(frame, 500.5)).instances) == 0
    assert set_param("score_threshold", 0.3).successful
    assert set_param("class_filter", ["square"]).successful
    out = driver.send("cam0", rgb_image(frame, 501.0))
    assert [i.class_name for i in out.instances] == ["square"]
    assert set_param("class_filter", [""]).successful


@pytest.mark.parametrize("params,message", [
    ({"score_threshold": "2.0"}, "parameter score_threshold = 2.0: must be a number in [0, 1]"),
    ({"cameras": "[cam0,cam0]"}, "must be unique names"),
    ({"device": "tpu"}, "parameter device = 'tpu'"),
    ({"checkpoint": "/nonexistent/model.pt"}, "checkpoint /nonexistent/model.pt: no such file"),
])
def test_bad_start_parameters_stop_the_node_with_a_clear_error(checkpoint, tmp_path, params,
                                                              message):
    full = {"checkpoint": str(checkpoint), **params}
    node = NodeProcess(unique_domain(), tmp_path / "node.log", full)
    code = node.proc.wait(timeout=60)
    assert code == 2
    assert message in node.log(), node.log()
