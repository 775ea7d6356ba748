"""The node's ROS-free parts: the parameter table, validation, and the per-camera stream rules
and health."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from spvis_model.config import TrackerConfig
from spvis_ros.params import (
    PARAMETERS,
    README_BEGIN,
    README_END,
    SPECS,
    NodeParams,
    ParameterError,
    check_change,
    check_value,
    coerce_override,
    descriptor,
    markdown_table,
    parse_text,
    readme_with_table,
    unknown_parameter_warning,
)
from spvis_ros.streams import ERROR, OK, WARN, Stream, assess_health
from spvis_ros.transports import TRANSPORTS, by_msgtype, by_name

ROOT = Path(__file__).resolve().parents[1]


def test_defaults_validate_and_keep_seconds_comes_from_the_model_package():
    p = NodeParams.from_values({})
    assert p.cameras == ["cam0"] and p.class_filter == [] and p.device == "auto"
    assert p.keep_seconds == float(TrackerConfig().keep_seconds)
    assert SPECS["keep_seconds"].default == float(TrackerConfig().keep_seconds)
    assert p.autostart is True and p.mask_encoding == "rle"


def test_node_params_has_one_field_per_parameter():
    assert [f.name for f in dataclasses.fields(NodeParams)] == [s.name for s in PARAMETERS]
    for spec in PARAMETERS:
        assert check_value(spec.name, spec.default) is not None or spec.kind == "string"


@pytest.mark.parametrize("name,value,message", [
    ("score_threshold", 1.5, "parameter score_threshold = 1.5: must be a finite number in [0, 1]"),
    ("score_threshold", True, "parameter score_threshold = True"),
    ("score_threshold", "abc", "parameter score_threshold = 'abc': must be a finite number"),
    ("max_instances", 0, "parameter max_instances = 0: must be an integer in [1, 10000]"),
    ("input_depth", 1.5, "parameter input_depth = 1.5: must be an integer in [1, 1000]"),
    ("keep_seconds", -2.0, "parameter keep_seconds = -2.0: must be a finite number of seconds "
                           "in (0, 1000000000]"),
    ("max_gap_s", float("inf"), "parameter max_gap_s = inf"),
    ("device", "gpu", "parameter device = 'gpu': must be auto, cuda, cuda:N or cpu"),
    ("precision", "int8", "parameter precision = 'int8': must be one of float32, float16"),
    ("transport", "theora", "parameter transport = 'theora': must be one of raw, compressed"),
    ("input_reliability", "sometimes", "parameter input_reliability = 'sometimes'"),
    ("cameras", [], "parameter cameras = []: must be a non-empty list"),
    ("cameras", "front", "parameter cameras = 'front': must be a list of strings"),
    ("cameras", ["front", "front"], "must be unique names"),
    ("cameras", ["front/left"], "bad: 'front/left'"),
    ("class_filter", [1, 2], "parameter class_filter = [1, 2]"),
    ("publish_overlay", "yes", "parameter publish_overlay = 'yes': must be true or false"),
    ("publish_labels", "maybe", "parameter publish_labels = 'maybe': must be true or false"),
    ("mask_encoding", "png", "parameter mask_encoding = 'png': must be one of rle, mono8"),
    ("id_prefix", "{robot}/", "parameter id_prefix = '{robot}/': must be a prefix whose only"),
    ("id_prefix", "a b", "parameter id_prefix = 'a b': must be letters"),
    # A format spec or attribute would make cameras share ids (cam0, cam1 -> 'c').
    ("id_prefix", "{camera:.1}/", "id_prefix = '{camera:.1}/': must be a prefix whose only"),
    ("id_prefix", "{camera:5}/", "id_prefix = '{camera:5}/': must be a prefix whose only"),
    ("id_prefix", "{camera.__class__}/", "must be a prefix whose only placeholder is a plain"),
    ("id_prefix", "{0}/", "parameter id_prefix = '{0}/': must be a prefix whose only"),
])
def test_bad_values_name_parameter_and_value(name, value, message):
    with pytest.raises(ParameterError, match=re.escape(message)):
        NodeParams.from_values({name: value})


def test_a_huge_value_gives_a_short_message():
    with pytest.raises(ParameterError) as info:
        check_value("precision", "x" * 1_000_000)
    assert len(str(info.value)) < 300 and "1000002 characters" in str(info.value)


def test_checkpoint_home_is_expanded():
    assert check_value("checkpoint", "~/m.pt") != "~/m.pt"
    assert check_value("checkpoint", "~/m.pt").endswith("/m.pt")
    assert check_value("checkpoint", "") == ""


def test_overrides_as_ros_types_them():
    # -p score_threshold:=1 is an integer; -p class_filter:=[] has no type (None).
    assert check_value("score_threshold", coerce_override("score_threshold", 1)) == 1.0
    assert check_value("class_filter", coerce_override("class_filter", None)) == []
    with pytest.raises(ParameterError, match=r"cameras = \[\]"):
        check_value("cameras", coerce_override("cameras", None))
    assert coerce_override("input_depth", 1.5) == 1.5  # no silent rounding: refused later


def test_unknown_parameters_are_named_with_the_closest_known_one():
    assert unknown_parameter_warning("score_treshold") == (
        "unknown parameter 'score_treshold' ignored (did you mean score_threshold?)")
    assert "known:" in unknown_parameter_warning("zzz")
    assert unknown_parameter_warning("use_sim_time") is None
    assert unknown_parameter_warning("keep_seconds") is None
    # rclpy's QoS overrides are not supported: said, not silently ignored.
    qos = unknown_parameter_warning("qos_overrides./cam0/image_raw.subscription.depth")
    assert qos is not None and "does not take QoS overrides" in qos
    assert "input_reliability and input_depth" in qos
    with pytest.raises(ParameterError, match=r"unknown parameter bogus \(known: "):
        check_change("bogus", 1)


def test_live_changes():
    assert check_change("score_threshold", 0.7) == 0.7
    assert check_change("class_filter", ["", "disk"]) == ["disk"]
    assert check_change("mask_encoding", "mono8") == "mono8"
    with pytest.raises(ParameterError, match="cameras cannot change while the node runs"):
        check_change("cameras", ["a"])
    with pytest.raises(ParameterError, match=r"unknown parameter\(s\) \['bogus'\]"):
        NodeParams.from_values({"bogus": 1})


def test_descriptors_carry_read_only_ranges_and_choices():
    from rcl_interfaces.msg import ParameterType

    for spec in PARAMETERS:
        d = descriptor(spec)
        assert d.name == spec.name and d.description == spec.doc
        assert d.read_only == (not spec.live), spec.name
        assert d.additional_constraints == spec.constraint_text()
    d = descriptor(SPECS["score_threshold"])
    assert d.type == ParameterType.PARAMETER_DOUBLE
    assert (d.floating_point_range[0].from_value, d.floating_point_range[0].to_value) == (0, 1)
    d = descriptor(SPECS["input_depth"])
    assert (d.integer_range[0].from_value, d.integer_range[0].to_value) == (1, 1000)
    assert descriptor(SPECS["transport"]).additional_constraints == "one of raw, compressed"
    assert descriptor(SPECS["cameras"]).type == ParameterType.PARAMETER_STRING_ARRAY
    # The default must lie in its own range.
    keep = descriptor(SPECS["keep_seconds"]).floating_point_range[0]
    assert keep.from_value < SPECS["keep_seconds"].default <= keep.to_value


def test_launch_text_parsing():
    assert parse_text("score_threshold", "0.25") == 0.25
    assert parse_text("autostart", "False") is False
    assert parse_text("cameras", " a, b") == ["a", "b"]
    assert parse_text("input_depth", "3") == 3
    with pytest.raises(ParameterError, match="launch argument input_depth='x'"):
        parse_text("input_depth", "x")


def test_transport_table_is_what_parameters_and_topics_use():
    assert SPECS["transport"].choices == tuple(TRANSPORTS)
    assert by_name("compressed").topic("/cam/image_raw") == "/cam/image_raw/compressed"
    assert by_name("raw").topic("/cam/image_raw") == "/cam/image_raw"
    assert by_msgtype("sensor_msgs/msg/CompressedImage").name == "compressed"
    with pytest.raises(ValueError, match="must be one of raw, compressed"):
        by_name("theora")
    with pytest.raises(ValueError, match="not an image type"):
        by_msgtype("std_msgs/msg/String")


def test_markdown_table_lists_every_parameter():
    table = markdown_table()
    for spec in PARAMETERS:
        assert f"| `{spec.name}` |" in table
        assert f"`{spec.default!r}`" in table


def test_readme_parameter_table_is_current():
    readme = (ROOT / "README.md").read_text()
    assert README_BEGIN in readme and README_END in readme
    assert readme_with_table(readme) == readme, (
        "README's parameter table is out of date: run `.venv/bin/python -m spvis_ros.params "
        "--readme`")


def test_stream_newest_frame_wins_and_counts_drops():
    s = Stream("cam0")
    s.offer("a")
    s.offer("b")
    s.offer("c")
    assert s.take().msg == "c" and s.take() is None
    assert s.stats.dropped == 2 and s.stats.received == 3


def test_stream_time_rules():
    s = Stream("cam0")
    assert s.check_time(10.0, max_gap_s=5.0) is None
    s.last_stamp = 10.0
    assert s.check_time(12.0, max_gap_s=5.0) is None
    assert "time went backwards (10.000 -> 9.000 s" in s.check_time(9.0, max_gap_s=5.0)
    s.last_stamp = 10.0
    assert "gap of 6.000 s > max_gap_s = 5.000 s" in s.check_time(16.0, max_gap_s=5.0)
    s.last_stamp = 16.0
    s.reset_requested = True
    assert s.check_time(16.5, max_gap_s=5.0) == "reset requested"
    assert s.stats.resets == 3 and not s.reset_requested and s.last_stamp is None


def test_health_levels_and_reasons():
    st = Stream("cam0").stats
    level, text = assess_health(st, 100.0, stale_s=5.0, topic="/cam0/image_raw")
    assert (level, text) == (WARN, "no input received yet on /cam0/image_raw")
    assert assess_health(st, 100.0, stale_s=5.0, topic="t", active=False)[0] == WARN
    assert "disabled" in assess_health(st, 100.0, stale_s=5.0, topic="t", enabled=False)[1]

    st.record_snapshot(100.0)
    st.received, st.processed, st.last_received = 10, 10, 104.0
    st.record_snapshot(105.0)
    assert assess_health(st, 105.0, stale_s=5.0, topic="t") == (OK, "running")
    # Input stops: stale after stale_s.
    level, text = assess_health(st, 112.0, stale_s=5.0, topic="t")
    assert level == WARN and "stale input: last frame on t 8.0 s ago" in text
    # Drops: 8 of the 10 frames received in the window replaced before processing.
    st.received, st.dropped, st.processed, st.last_received = 20, 8, 12, 110.0
    level, text = assess_health(st, 110.0, stale_s=5.0, topic="t")
    assert level == WARN and "dropping 80% of frames" in text
    # Some rejected: WARN; every frame of the window rejected: ERROR.
    st.history.clear()
    st.record_snapshot(110.0)
    st.received, st.processed, st.rejected, st.last_received = 22, 13, 1, 111.0
    level, text = assess_health(st, 111.0, stale_s=5.0, topic="t")
    assert level == WARN and "1 of 2 frames of the last 1 s rejected" in text
    st.history.clear()
    st.record_snapshot(111.0)
    st.received, st.rejected, st.last_received = 26, 5, 112.0
    level, text = assess_health(st, 112.0, stale_s=5.0, topic="t")
    assert level == ERROR and "all 4 frames of the last 1 s rejected" in text
