"""The node's ROS-free parts: parameter validation and the per-camera stream rules."""

from __future__ import annotations

import re

import pytest

from spvis_ros.params import (
    PARAMETERS,
    NodeParams,
    ParameterError,
    check_change,
    markdown_table,
)
from spvis_ros.streams import Stream


def test_defaults_validate():
    p = NodeParams.from_values({})
    assert p.cameras == ["cam0"] and p.class_filter == [] and p.device == "auto"


@pytest.mark.parametrize("name,value,message", [
    ("score_threshold", 1.5, "parameter score_threshold = 1.5: must be a number in [0, 1]"),
    ("score_threshold", True, "parameter score_threshold = True"),
    ("max_instances", 0, "parameter max_instances = 0: must be an integer >= 1"),
    ("keep_seconds", -2.0, "parameter keep_seconds = -2.0: must be a number of seconds > 0"),
    ("max_gap_s", float("inf"), "parameter max_gap_s = inf"),
    ("device", "gpu", "parameter device = 'gpu': must be auto, cuda, cuda:N or cpu"),
    ("precision", "int8", "parameter precision = 'int8': must be one of"),
    ("transport", "theora", "parameter transport = 'theora'"),
    ("input_reliability", "sometimes", "parameter input_reliability = 'sometimes'"),
    ("cameras", [], "parameter cameras = []: must be a non-empty list"),
    ("cameras", ["front", "front"], "must be unique names"),
    ("cameras", ["front/left"], "bad: 'front/left'"),
    ("class_filter", [1, 2], "parameter class_filter = [1, 2]"),
    ("publish_overlay", "yes", "parameter publish_overlay = 'yes': must be true or false"),
])
def test_bad_values_name_parameter_and_value(name, value, message):
    with pytest.raises(ParameterError, match=re.escape(message)):
        NodeParams.from_values({name: value})


def test_live_changes():
    assert check_change("score_threshold", 0.7) == 0.7
    assert check_change("class_filter", ["", "disk"]) == ["disk"]
    with pytest.raises(ParameterError, match="cameras cannot change while the node runs"):
        check_change("cameras", ["a"])
    with pytest.raises(ParameterError, match="unknown parameter bogus"):
        check_change("bogus", 1)
    with pytest.raises(ParameterError, match=r"unknown parameter\(s\) \['bogus'\]"):
        NodeParams.from_values({"bogus": 1})


def test_markdown_table_lists_every_parameter():
    table = markdown_table()
    for spec in PARAMETERS:
        assert f"| `{spec.name}` |" in table


def test_stream_newest_frame_wins_and_counts_drops():
    s = Stream("cam0")
    s.offer("a")
    s.offer("b")
    s.offer("c")
    assert s.take().msg == "c" and s.take() is None
    assert s.stats.dropped == 2


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
