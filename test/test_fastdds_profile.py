"""The shipped Fast DDS profile (config/fastdds_shm.xml) and spvis_ros.dds.

The ``ros`` test is a real two-process measurement over loopback: a publisher process sends 30
best-effort 1920x1080 rgb8 ``sensor_msgs/Image`` at 10 Hz, a subscriber process (best effort,
depth 5) counts what arrives, in the environment our tests use
(``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``, a private ``ROS_DOMAIN_ID``). With the profile at
least 90 % must arrive; without it Fast DDS's 512 KB shared-memory segment drops nearly all of
them (measured 0/30 idle, 0-4/30 with the CPU loaded), asserted as at most a third.
"""

from __future__ import annotations

import os
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "test" / "ros_helpers"))

from dds_measure import clean_env, measure  # noqa: E402

from spvis_ros import dds  # noqa: E402

COUNT = 30
# Private domain per test run, away from the 1..101 range test_ros_msgs.py uses.
DOMAIN_ID = 110 + os.getpid() % 100
MIN_SEGMENT = 32 * 1024 * 1024


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _find_all(root: ET.Element, name: str) -> list[ET.Element]:
    return [e for e in root.iter() if _local(e.tag) == name]


def _text(elem: ET.Element, name: str) -> str | None:
    for child in elem:
        if _local(child.tag) == name:
            return (child.text or "").strip()
    return None


def test_profile_file_is_a_default_participant_profile_with_big_shm():
    path = dds.fastdds_profile_path()
    assert path == REPO / "config" / "fastdds_shm.xml"
    root = ET.parse(path).getroot()
    descriptors = {_text(d, "transport_id"): d for d in _find_all(root, "transport_descriptor")}
    kinds = {tid: _text(d, "type") for tid, d in descriptors.items()}
    assert sorted(kinds.values()) == ["SHM", "UDPv4"], kinds
    shm = next(d for d in descriptors.values() if _text(d, "type") == "SHM")
    assert int(_text(shm, "segment_size") or 0) >= MIN_SEGMENT

    participants = _find_all(root, "participant")
    defaults = [p for p in participants if p.get("is_default_profile") == "true"]
    assert len(defaults) == 1, "exactly one default participant profile"
    rtps = next(c for c in defaults[0] if _local(c.tag) == "rtps")
    used = [(e.text or "").strip() for e in _find_all(rtps, "transport_id")]
    assert sorted(used) == sorted(descriptors), "the participant uses both descriptors"
    assert _text(rtps, "useBuiltinTransports") == "false"


def test_apply_default_profile_sets_it_only_when_the_user_did_not(tmp_path):
    shipped = str(dds.fastdds_profile_path())
    assert dds.apply_default_profile({})["FASTDDS_DEFAULT_PROFILES_FILE"] == shipped

    own = {"FASTDDS_DEFAULT_PROFILES_FILE": "/etc/my.xml", "X": "1"}
    assert dds.apply_default_profile(own) == own
    legacy = {"FASTRTPS_DEFAULT_PROFILES_FILE": "/etc/old.xml"}
    assert dds.apply_default_profile(legacy) == legacy

    # An empty value is dropped (Fast DDS logs an error for it), then the default applies.
    assert dds.apply_default_profile({"FASTDDS_DEFAULT_PROFILES_FILE": ""}) == {
        "FASTDDS_DEFAULT_PROFILES_FILE": shipped}

    # SPVIS_FASTDDS_PROFILE: "" or "none" = no profile; a path = that profile.
    off = dds.apply_default_profile({"SPVIS_FASTDDS_PROFILE": "",
                                     "FASTDDS_DEFAULT_PROFILES_FILE": ""})
    assert off == {"SPVIS_FASTDDS_PROFILE": ""}
    for spelling in ("none", "None", " NONE "):
        assert dds.apply_default_profile({"SPVIS_FASTDDS_PROFILE": spelling}) == {
            "SPVIS_FASTDDS_PROFILE": spelling}
    other = tmp_path / "other.xml"
    other.write_text("<dds/>")
    chosen = dds.apply_default_profile({"SPVIS_FASTDDS_PROFILE": str(other)})
    assert chosen["FASTDDS_DEFAULT_PROFILES_FILE"] == str(other.resolve())
    with pytest.raises(FileNotFoundError, match="SPVIS_FASTDDS_PROFILE"):
        dds.apply_default_profile({"SPVIS_FASTDDS_PROFILE": str(tmp_path / "missing.xml")})

    environ = {"FASTDDS_DEFAULT_PROFILES_FILE": "", "Y": "2"}
    assert dds.use_default_profile(environ) == shipped
    assert environ == {"FASTDDS_DEFAULT_PROFILES_FILE": shipped, "Y": "2"}
    environ = {"SPVIS_FASTDDS_PROFILE": "", "FASTDDS_DEFAULT_PROFILES_FILE": ""}
    assert dds.use_default_profile(environ) is None
    assert "FASTDDS_DEFAULT_PROFILES_FILE" not in environ


def test_profile_path_found_in_an_installed_share_dir(tmp_path, monkeypatch):
    """An install layout: <prefix>/lib/pythonX.Y/site-packages/spvis_ros/dds.py and
    <prefix>/share/spvis_ros/config/fastdds_shm.xml, no source tree next to the package."""
    site = tmp_path / "prefix" / "lib" / "python3.11" / "site-packages" / "spvis_ros"
    site.mkdir(parents=True)
    fake_module = site / "dds.py"
    fake_module.write_text("")
    share = tmp_path / "prefix" / "share" / "spvis_ros" / "config"
    share.mkdir(parents=True)
    (share / "fastdds_shm.xml").write_text("<dds/>")
    monkeypatch.setattr(dds, "__file__", str(fake_module))
    monkeypatch.delenv("AMENT_PREFIX_PATH", raising=False)
    assert dds.fastdds_profile_path() == share / "fastdds_shm.xml"

    (share / "fastdds_shm.xml").unlink()
    monkeypatch.setattr(dds.sys, "prefix", str(tmp_path / "empty_prefix"))
    with pytest.raises(FileNotFoundError, match=r"fastdds_shm\.xml"):
        dds.fastdds_profile_path()


def _report(name: str, result: dict) -> tuple[int, int]:
    sub = result["sub"] or {}
    pub = result["pub"] or {}
    print(f"[fastdds profile] {name}: received {sub.get('received')}/{pub.get('published')} "
          f"1920x1080 rgb8 best-effort images at 10 Hz, corrupt {sub.get('corrupt')}, "
          f"median latency {sub.get('latency_ms_median')} ms, wall {result['wall_s']} s")
    assert not result["timed_out"], result
    assert result["pub"] is not None and result["sub"] is not None, result
    assert pub["matched"], f"{name}: publisher never matched the subscriber: {result}"
    assert pub["published"] == COUNT, result
    assert sub["corrupt"] == 0, result
    assert "XMLPARSER" not in result["pub_stderr"] + result["sub_stderr"], result
    return sub["received"], pub["published"]


@pytest.mark.ros
def test_profile_makes_best_effort_1080p_arrive_over_loopback():
    base = {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    with_profile = dds.apply_default_profile(clean_env(DOMAIN_ID, base))
    assert with_profile["FASTDDS_DEFAULT_PROFILES_FILE"] == str(dds.fastdds_profile_path())
    got, sent = _report("with profile (environment)",
                        measure(with_profile, count=COUNT, timeout=12.0))
    assert got >= 0.9 * sent

    # The node's way: the publisher applies the profile to os.environ before rclpy.init().
    plain = clean_env(DOMAIN_ID + 1, base)
    got, sent = _report("with profile (in-process, publisher only)",
                        measure(plain, count=COUNT, timeout=12.0,
                                pub_args=("--apply-default-profile",)))
    assert got >= 0.9 * sent

    got, sent = _report("without profile", measure(plain, count=COUNT, timeout=12.0))
    assert got <= sent // 3, "without the profile nearly everything should be dropped"
