"""`spvis-bag` on bad input: every user error is one line naming what is wrong, with exit 1 (or
2 for bad usage), and no partial or silently wrong output. Real bags (rosbags / BagWriter),
real sidecars, the real CLI; play runs as its own process where it starts ROS.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml
from test_bag import (
    CATEGORIES,
    NS,
    PROCESS_TIMEOUT,
    START_NS,
    clip_video,
    write_recording,
)

sys.path.insert(0, str(Path(__file__).parent / "ros_helpers"))
from node_harness import ROOT, ros_env, unique_domain

from spvis_ros.bag import cli
from spvis_ros.bag.evaluate import EvalOptions, evaluate_bag
from spvis_ros.bag.io import IMAGE_TYPE, BagError, BagWriter, iter_messages, read_images
from spvis_ros.bag.make import SourceVideo, encode_frame, sidecar_path, write_image_bag

pytestmark = pytest.mark.ros


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(input bag: videos a (8 frames) and b (6), its sidecar, a perfect recording of it)."""
    root = tmp_path_factory.mktemp("scored")
    bag = root / "in"
    write_image_bag(bag, [clip_video("a", 8, 7), clip_video("b", 6, 3)], categories=CATEGORIES)
    rec = root / "perfect"
    write_recording(rec, bag, skip=set(), extra=False)
    return bag, sidecar_path(bag), rec


def image_bag(path: Path, frames: list[tuple[int, np.ndarray]],
              topic: str = "/cam0/image_raw") -> Path:
    """An rgb8 image bag of (stamp ns, frame) pairs, written as they are (any sizes)."""
    with BagWriter(path, "mcap") as w:
        w.add_topic(topic, IMAGE_TYPE)
        for ns, rgb in frames:
            w.write(topic, ns, encode_frame(rgb, ns, "cam0", compressed=False))
    return path


def sidecar_stamps(gt: Path) -> list[list[int]]:
    return [v["stamps_ns"] for v in json.loads(gt.read_text())["videos"]]


def edited_sidecar(gt: Path, out: Path, edit: Callable[[dict], object]) -> Path:
    data = copy.deepcopy(json.loads(gt.read_text()))
    edit(data)
    out.write_text(json.dumps(data))
    return out


def usage_exit(argv: list[str], capsys: pytest.CaptureFixture) -> str:
    """Run the CLI expecting argparse's usage error (exit 2); returns stderr."""
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    return capsys.readouterr().err


def run_cli(args: list[str], timeout: float = PROCESS_TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "spvis_ros.bag.cli", *args],
                          env=ros_env(unique_domain()), capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, check=False)


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


# --------------------------------------------------------------------------------------------
# eval: overlay frames, sidecar stamps, recordings matching nothing
# --------------------------------------------------------------------------------------------
def test_eval_overlay_frames_of_another_size_are_reported_and_scores_written(scored, tmp_path):
    bag, gt, rec = scored
    stamps = [s for v in sidecar_stamps(gt) for s in v]
    frames = [f.rgb for f in read_images(bag)]
    # Every frame at half size (48x32 instead of 96x64).
    small = image_bag(tmp_path / "small", [(ns, f[::2, ::2].copy())
                                           for ns, f in zip(stamps, frames, strict=True)])
    out = tmp_path / "ev_small"
    assert cli.main(["eval", "--bag", str(rec), "--gt", str(gt), "--images-bag", str(small),
                     "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["ytvis"]["AP"] == pytest.approx(1.0)
    err = metrics["bag"]["images_error"]
    assert str(small) in err and "/cam0/image_raw" in err and str(stamps[0]) in err
    assert "48x32" in err and "96x64" in err
    assert "Input bag: " in (out / "report.md").read_text()
    # A size change mid-video: the first 3 frames are overlaid, then the error.
    changed = image_bag(tmp_path / "changed", [
        (ns, f if k != 3 else f[::2, ::2].copy())
        for k, (ns, f) in enumerate(zip(stamps, frames, strict=True))])
    res = evaluate_bag(rec, gt, tmp_path / "ev_changed", EvalOptions(images_bag=changed))
    assert res.accounting.images_read == 3
    assert str(stamps[3]) in res.accounting.images_error
    assert (tmp_path / "ev_changed" / "metrics.json").is_file()


def _set(video: int, key: str, value: object) -> Callable[[dict], None]:
    def edit(data: dict) -> None:
        data["videos"][video][key] = value
    return edit


def _set_stamp(video: int, index: int, value: object) -> Callable[[dict], None]:
    def edit(data: dict) -> None:
        data["videos"][video]["stamps_ns"][index] = value
    return edit


@pytest.mark.parametrize(("name", "edit", "expected"), [
    ("null", _set_stamp(0, 2, None), r"video 1: stamps_ns\[2\] = None is not an integer"),
    ("string", _set_stamp(0, 1, "abc"), r"video 1: stamps_ns\[1\] = 'abc' is not an integer"),
    ("scalar", _set(1, "stamps_ns", 5), r"video 2: stamps_ns must be a list .* got int 5"),
    ("swapped", lambda d: d["videos"][0]["stamps_ns"].insert(
        1, d["videos"][0]["stamps_ns"].pop(2)),
     r"video 1: stamps_ns\[2\] = \d+ ns is not after stamps_ns\[1\] = \d+ ns"),
    ("shared", lambda d: d["videos"][1]["stamps_ns"].__setitem__(
        0, d["videos"][0]["stamps_ns"][4]),
     r"video 1 frame 4 and video 2 frame 0 share the stamp \d+ ns"),
])
def test_sidecar_stamps_are_checked(scored, tmp_path, name, edit, expected):
    _, gt, rec = scored
    bad = edited_sidecar(gt, tmp_path / f"{name}.gt.json", edit)
    with pytest.raises(BagError, match=expected) as exc:
        evaluate_bag(rec, bad, tmp_path / "ev", EvalOptions(images_bag=False))
    assert str(bad) in str(exc.value)


def test_sidecar_float_stamps_ns_are_refused_not_rounded(scored, tmp_path, capsys):
    """JSON floats hold 1.7e18 only to 256 ns: frames were silently dropped (AP 0.18)."""
    _, gt, rec = scored
    bad = edited_sidecar(gt, tmp_path / "float.gt.json", lambda d: [
        v.__setitem__("stamps_ns", [float(s) for s in v["stamps_ns"]]) for v in d["videos"]])
    assert cli.main(["eval", "--bag", str(rec), "--gt", str(bad), "--out", str(tmp_path / "e"),
                     "--no-video"]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert str(bad) in line and "video 1: stamps_ns[0] = 1.7e+18 is not an integer" in line
    assert not (tmp_path / "e" / "metrics.json").exists()


def test_recording_matching_no_frame_is_an_error_with_both_ranges(scored, tmp_path, capsys):
    _, gt, rec = scored
    stamps = [s for v in sidecar_stamps(gt) for s in v]
    hour = 3600 * NS

    def shift(data: dict) -> None:
        for v in data["videos"]:
            v["stamps_ns"] = [s + hour for s in v["stamps_ns"]]
            v["timestamps"] = [s / NS for s in v["stamps_ns"]]

    other = edited_sidecar(gt, tmp_path / "other.gt.json", shift)
    assert cli.main(["eval", "--bag", str(rec), "--gt", str(other), "--out",
                     str(tmp_path / "e"), "--no-video"]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "no message on /cam0/instances matches a ground-truth frame" in line
    assert f"14 messages with header stamps {stamps[0]}..{stamps[-1]} ns" in line
    assert f"stamps {stamps[0] + hour}..{stamps[-1] + hour} ns (14 frames)" in line
    assert not (tmp_path / "e" / "metrics.json").exists()
    empty = tmp_path / "empty_rec"
    with BagWriter(empty, "mcap") as w:
        w.add_topic("/cam0/instances", "spvis_msgs/msg/InstanceArray")
    with pytest.raises(BagError, match=r"empty_rec: no message on /cam0/instances matches .*"
                                       r"\(no messages; .*stamps \d+\.\.\d+ ns \(14 frames\)"):
        evaluate_bag(empty, gt, tmp_path / "e2", EvalOptions(images_bag=False))


def test_images_bag_with_missing_frames_is_reported(scored, tmp_path):
    bag, gt, rec = scored
    stamps = sidecar_stamps(gt)
    frames = [f.rgb for f in read_images(bag)]
    part = image_bag(tmp_path / "part", list(zip(stamps[0], frames[:8], strict=True)))
    res = evaluate_bag(rec, gt, tmp_path / "ev", EvalOptions(images_bag=part))
    assert res.accounting.images_read == 8
    assert "only 8 of the 14 ground-truth frames found on /cam0/image_raw" in \
        res.accounting.images_error
    other = image_bag(tmp_path / "other", [(ns + 1, f) for ns, f in
                                           zip(stamps[0], frames[:8], strict=True)])
    res = evaluate_bag(rec, gt, tmp_path / "ev2", EvalOptions(images_bag=other))
    assert res.accounting.images_read == 0 and not res.accounting.overlay_videos
    assert "only 0 of the 14" in res.accounting.images_error
    full = evaluate_bag(rec, gt, tmp_path / "ev3", EvalOptions(images_bag=bag))
    assert full.accounting.images_read == 14 and full.accounting.images_error is None


# --------------------------------------------------------------------------------------------
# make: stamps, partial bags, file system errors
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("start", ["-5", "3e9", "nan", "inf"])
def test_make_start_outside_a_ros_time_is_a_usage_error(tmp_path, capsys, start):
    err = usage_exit(["make", "--out", str(tmp_path / "b"), "--synthetic", "easy",
                      "--start", start], capsys)
    assert "argument --start" in err and repr(start) in err
    assert not (tmp_path / "b").exists()


def test_make_stamps_beyond_int32_seconds_name_the_frame_and_leave_no_bag(tmp_path, capsys):
    frames = [np.full((8, 8, 3), k, np.uint8) for k in range(3)]
    folder = tmp_path / "imgs"
    folder.mkdir()
    import cv2

    for k, f in enumerate(frames):
        cv2.imwrite(str(folder / f"{k}.png"), f)
    out = tmp_path / "b"
    assert cli.main(["make", "--out", str(out), "--images", str(folder), "--fps", "1e-12",
                     "--no-progress"]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "video 'imgs' frame 1: stamp 1001700000000000000000 ns is outside" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["imgs"]  # nothing partial


def test_failed_make_leaves_no_bag_and_keeps_the_one_it_would_replace(tmp_path):
    def frames(bad_at: int | None) -> Iterator[np.ndarray]:
        for k in range(4):
            yield np.zeros((16 if k == bad_at else 8, 8, 3), np.uint8)

    def video(bad_at: int | None) -> SourceVideo:
        return SourceVideo("v", frames(bad_at), [k / 10 for k in range(4)], 8, 8)

    for storage in ("mcap", "sqlite3"):
        out = tmp_path / f"b_{storage}"
        with pytest.raises(BagError, match=r"frame 2 has shape \(16, 8, 3\)"):
            write_image_bag(out, [video(2)], storage=storage)
        assert not out.exists() and not list(tmp_path.glob(".*"))
        write_image_bag(out, [video(None)], storage=storage)
        with pytest.raises(BagError, match="frame 1 has shape"):
            write_image_bag(out, [video(1)], storage=storage, overwrite=True)
        assert len(list(iter_messages(out))) == 4  # the old bag, whole
        assert not list(tmp_path.glob(".*"))
    # A killed earlier run's hidden folder does not block the next make.
    stale = tmp_path / ".c.partial" / "c"
    stale.mkdir(parents=True)
    (stale / "c.mcap").write_bytes(b"\x89MCAP0\r\n")
    write_image_bag(tmp_path / "c", [video(None)])
    assert not (tmp_path / ".c.partial").exists()
    assert len(list(iter_messages(tmp_path / "c"))) == 4


def test_file_system_errors_are_one_line(tmp_path, capsys):
    plain = tmp_path / "file.txt"
    plain.write_text("keep me")
    argv = ["make", "--synthetic", "easy", "--videos", "1", "--frames", "2", "--no-progress"]
    assert cli.main([*argv, "--out", str(plain / "sub")]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert f"{plain / 'sub'}: cannot write the bag" in line
    assert cli.main([*argv, "--out", str(plain), "--overwrite"]) == 1
    assert "is not a bag" in one_error_line(capsys.readouterr().err)
    assert plain.read_text() == "keep me"  # --overwrite never deletes a non-bag file
    bag = tmp_path / "in"
    write_image_bag(bag, [clip_video("a", 3, 1)], categories=CATEGORIES)
    rec = tmp_path / "rec"
    write_recording(rec, bag, skip=set(), extra=False)
    assert cli.main(["eval", "--bag", str(rec), "--gt", str(sidecar_path(bag)), "--out",
                     str(plain), "--no-video"]) == 1
    assert f"{plain}: cannot create the output folder" in one_error_line(
        capsys.readouterr().err)


# --------------------------------------------------------------------------------------------
# option values and topic names: usage errors (exit 2)
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("argv", "expected"), [
    (["make", "--out", "x", "--images", "d", "--topic", "bad topic"], "argument --topic"),
    (["make", "--out", "x", "--images", "d", "--topic", "cam/image"], "must be absolute"),
    (["play", "b", "--topic-remap", "/a:bad name"], "argument --topic-remap"),
    (["play", "b", "--topic-remap", "foo"], "expected OLD:NEW"),
    (["play", "b", "--wait-for", "bad name"], "argument --wait-for"),
    (["play", "b", "--wait-for", "/a//b"], "contains '//'"),
    (["record", "--out", "x", "--topics", "/ok", "bad name"], "argument --topics"),
    (["record", "--out", "x", "--topics", "/1cam"], "starts with a digit"),
    (["play", "b", "--loop", "-1"], "argument --loop"),
    (["play", "b", "--wait-subscribers", "-5"], "argument --wait-subscribers"),
    (["record", "--out", "x", "--topics", "/a", "--count", "0"], "argument --count"),
    (["record", "--out", "x", "--topics", "/a", "--wait-topics", "-1"], "--wait-topics"),
    (["eval", "--bag", "r", "--gt", "g", "--out", "o", "--score-threshold", "5"],
     "must be in [0, 1]"),
    (["eval", "--bag", "r", "--gt", "g", "--out", "o", "--score-threshold", "nan"],
     "must be in [0, 1]"),
])
def test_bad_option_values_are_usage_errors(capsys, argv, expected):
    assert expected in usage_exit(argv, capsys)


@pytest.mark.parametrize("name", ["/cam0/image_raw", "cam0/image", "~/out", "/a/{node}/b",
                                  "/cam0/image_raw/compressed", "_x/y_1"])
def test_valid_topic_names_pass(name):
    assert cli.topic_name_problem(name) is None


@pytest.mark.parametrize("name", ["", "/", "a b", "/a/", "a//b", "/1a", "a~", "~a", "/a-b",
                                  "/a/{b", "/ä"])
def test_invalid_topic_names_are_named(name):
    assert cli.topic_name_problem(name) is not None


# --------------------------------------------------------------------------------------------
# play
# --------------------------------------------------------------------------------------------
def test_play_names_the_topic_of_an_unknown_type(tmp_path, capsys):
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    store.register(get_types_from_msg("int32 x", "acme_msgs/msg/Foo"))
    bag = tmp_path / "acme"
    with Writer(bag, version=9, storage_plugin=StoragePlugin.MCAP) as w:
        foo = w.add_connection("/foo", "acme_msgs/msg/Foo", typestore=store)
        img = w.add_connection("/cam0/image_raw", IMAGE_TYPE, typestore=store)
        w.write(foo, START_NS, bytes(store.serialize_cdr(
            store.types["acme_msgs/msg/Foo"](x=1), "acme_msgs/msg/Foo")))
        w.write(img, START_NS, encode_frame(np.zeros((4, 4, 3), np.uint8), START_NS, "c",
                                            compressed=False))
    assert cli.main(["play", str(bag), "--no-progress", "--wait-subscribers", "0"]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "topic '/foo' cannot be played" in line and "acme_msgs/msg/Foo" in line
    assert "--topics /cam0/image_raw" in line


def test_lockstep_play_errors(tmp_path):
    """A truncated image message names bag, topic, index and log time; a lock-step run where
    nothing was answered fails."""
    bad = tmp_path / "bad"
    frame = np.zeros((4, 4, 3), np.uint8)
    with BagWriter(bad, "mcap") as w:
        w.add_topic("/cam0/image_raw", IMAGE_TYPE)
        w.write("/cam0/image_raw", START_NS, encode_frame(frame, START_NS, "c", False))
        w.write("/cam0/image_raw", START_NS + NS, b"\x00\x01")
    common = ["--fast", "--wait-for", "/cam0/instances", "--wait-subscribers", "0",
              "--answer-timeout", "0.2", "--no-progress"]
    rc = run_cli(["play", str(bad), *common])
    assert rc.returncode == 1, rc.stdout + rc.stderr
    line = one_error_line(rc.stderr)
    assert f"{bad}: message 1 on /cam0/image_raw (log time {START_NS + NS} ns)" in line
    assert "no readable header stamp" in line

    good = image_bag(tmp_path / "good", [(START_NS + k * NS, frame) for k in range(2)])
    rc = run_cli(["play", str(good), *common])
    assert rc.returncode == 1, rc.stdout + rc.stderr
    assert "answered 0, unanswered 2" in rc.stdout
    assert "none of the 2 images was answered on /cam0/instances" in one_error_line(rc.stderr)


# --------------------------------------------------------------------------------------------
# reading: empty files, bad metadata, split bags
# --------------------------------------------------------------------------------------------
def test_empty_storage_file_says_empty(tmp_path, capsys):
    zero = tmp_path / "zero.mcap"
    zero.touch()
    with pytest.raises(BagError, match=r"zero\.mcap: empty file \(0 bytes"):
        list(iter_messages(zero))
    killed = tmp_path / "killed"
    killed.mkdir()
    (killed / "killed.mcap").touch()
    assert cli.main(["info", str(killed)]) == 1
    assert "killed.mcap: empty file" in one_error_line(capsys.readouterr().err)


def test_info_on_unparseable_metadata_says_so_in_one_line(tmp_path, capsys):
    bag = tmp_path / "in"
    write_image_bag(bag, [clip_video("a", 4, 1)])
    (bag / "metadata.yaml").write_text("{{{ not yaml :::\n")
    assert cli.main(["info", str(bag)]) == 0
    captured = capsys.readouterr()
    assert "messages: 4" in captured.out
    line = one_error_line(captured.err)
    assert line.startswith("spvis-bag info: warning: ")
    assert f"{bag / 'metadata.yaml'} is not valid YAML (line 2, column 1)" in line
    assert "MCAP index" not in line


def test_split_bag_is_read_in_log_time_order(tmp_path):
    """Two storage files whose messages interleave in time, listed in reverse order."""
    parts = []
    for i in range(2):
        stamps = [START_NS + (2 * k + i) * NS // 10 for k in range(4)]
        parts.append(image_bag(tmp_path / f"part{i}", [
            (ns, np.full((4, 4, 3), k, np.uint8)) for k, ns in enumerate(stamps)]))
    bag = tmp_path / "split"
    bag.mkdir()
    metas = []
    for i, part in enumerate(parts):
        (part / f"part{i}.mcap").rename(bag / f"split_{i}.mcap")
        metas.append(yaml.safe_load((part / "metadata.yaml").read_text()))
    info = metas[0]["rosbag2_bagfile_information"]
    files = [m["rosbag2_bagfile_information"]["files"][0] for m in metas]
    for i, f in enumerate(files):
        f["path"] = f"split_{i}.mcap"
    info["relative_file_paths"] = ["split_1.mcap", "split_0.mcap"]
    info["files"] = [files[1], files[0]]
    info["message_count"] = 8
    info["duration"]["nanoseconds"] = 7 * NS // 10
    info["topics_with_message_count"][0]["message_count"] = 8
    (bag / "metadata.yaml").write_text(yaml.safe_dump(metas[0]))
    got = [m.log_time_ns for m in iter_messages(bag)]
    assert got == [START_NS + k * NS // 10 for k in range(8)]
