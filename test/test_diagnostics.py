"""The node's per-camera /diagnostics statuses (spvis_ros.diagnostics), built from streams
without a running node."""

from __future__ import annotations

from spvis_ros.diagnostics import camera_statuses, process_memory
from spvis_ros.streams import ERROR, WARN, Stream


def _values(status) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


def test_one_status_per_camera_named_after_the_node():
    streams = {"front": Stream("front"), "rear": Stream("rear")}
    inputs = {"front": "/front/image_raw", "rear": "/rear/image_raw"}
    rear = streams["rear"].stats
    rear.record_snapshot(99.0)
    rear.received, rear.rejected, rear.last_received = 3, 3, 99.5
    out = camera_statuses("/robot/spvis", streams, inputs, 100.0, stale_s=5.0,
                          lifecycle_state="active", active=True, enabled=True, device="cpu")
    assert [s.name for s in out] == ["/robot/spvis: camera front", "/robot/spvis: camera rear"]
    front, back = out
    assert front.level == bytes([WARN])
    assert front.message == "no input received yet on /front/image_raw"
    assert back.level == bytes([ERROR]) and "all 3 frames" in back.message
    v = _values(back)
    assert v["input_topic"] == "/rear/image_raw" and v["rejected"] == "3"
    assert v["lifecycle_state"] == "active" and v["last_input_age_s"] == "0.5"
    assert v["memory_kind"] == "rss" and front.hardware_id == "cpu"
    assert float(v["device_memory_mb"]) > 10.0
    assert _values(front)["last_input_age_s"] == ""
    # Each call records a snapshot: the window rates have history to work from.
    assert len(streams["front"].stats.history) == 1


def test_inactive_and_disabled_say_so():
    streams = {"cam0": Stream("cam0")}
    out = camera_statuses("/spvis", streams, {"cam0": "/cam0/image_raw"}, 5.0, stale_s=5.0,
                          lifecycle_state="inactive", active=False, enabled=True, device="cpu")
    assert out[0].level == bytes([WARN]) and "inactive" in out[0].message
    out = camera_statuses("/spvis", streams, {"cam0": "/cam0/image_raw"}, 6.0, stale_s=5.0,
                          lifecycle_state="active", active=True, enabled=False, device="cpu")
    assert "disabled" in out[0].message and _values(out[0])["enabled"] == "False"


def test_process_memory_is_the_resident_set_on_the_cpu():
    current, peak = process_memory("cpu")
    assert 10.0 < current <= peak
