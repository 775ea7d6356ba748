"""`spvis-bag`: real bags (rosbags MCAP / sqlite3, plain MCAP from the mcap libraries), real
rclpy processes on loopback, and the full replay: bag -> node process -> recording -> scores.

The end-to-end test plays a bag of the synthetic crossing clip (two videos) in lock-step to the
node running the briefly trained tiny model (conftest `trained_tiny`), records /cam0/instances,
evaluates the recording, and checks that the metrics equal those of running the same model
directly on the same frames (nothing dropped in lock-step). Every wait is bounded.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils
from synthetic_clip import CLASSES, crossing_clip

sys.path.insert(0, str(Path(__file__).parent / "ros_helpers"))
from node_harness import ROOT, NodeProcess, ros_env, unique_domain

from spvis_ros.bag import cli
from spvis_ros.bag.evaluate import EvalOptions, decode_rle, evaluate_bag
from spvis_ros.bag.io import (
    COMPRESSED_TYPE,
    IMAGE_TYPE,
    BagError,
    BagWarning,
    bag_topics,
    iter_messages,
    read_images,
    topic_counts,
)
from spvis_ros.bag.make import SourceVideo, sidecar_path, write_image_bag

pytestmark = pytest.mark.ros

NS = 1_000_000_000
START_NS = 1_700_000_000 * NS
CATEGORIES = [{"id": i + 1, "name": n} for i, n in enumerate(CLASSES)]
PROCESS_TIMEOUT = 120.0


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def rle(mask: np.ndarray) -> dict | None:
    if not mask.any():
        return None
    r = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(r["size"]), "counts": r["counts"].decode("ascii")}


def clip_video(name: str, frames: int, seed: int, dt: float = 0.1) -> SourceVideo:
    """The crossing clip as a SourceVideo with its ground truth (disk = 1, square = 2)."""
    imgs, masks = crossing_clip(frames=frames, seed=seed)
    anns = [{"category_id": k + 1, "iscrowd": 0,
             "segmentations": [rle(m[k]) for m in masks]} for k in range(2)]
    h, w = imgs[0].shape[:2]
    return SourceVideo(name, imgs, [dt * t for t in range(frames)], w, h, fps=1 / dt,
                       annotations=anns)


def wait_for_file_text(path: Path, needle: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = path.read_text() if path.exists() else ""
        if needle in text:
            return
        if proc.poll() is not None:
            raise AssertionError(f"process exited ({proc.returncode}) before {needle!r}:\n{text}")
        time.sleep(0.05)
    raise AssertionError(f"no {needle!r} after {timeout} s:\n{path.read_text()}")


class BagProcess:
    """`python -m spvis_ros.bag.cli ...` in its own process, output to a log file."""

    def __init__(self, args: list[str], domain: int, log: Path) -> None:
        self.log_path = log
        self._log = open(log, "w")  # noqa: SIM115 - closed in wait()
        self.proc = subprocess.Popen([sys.executable, "-m", "spvis_ros.bag.cli", *args],
                                     cwd=ROOT, env=ros_env(domain), stdout=self._log,
                                     stderr=subprocess.STDOUT)

    def wait_for(self, needle: str, timeout: float = 60.0) -> None:
        wait_for_file_text(self.log_path, needle, self.proc, timeout)

    def wait(self, timeout: float = PROCESS_TIMEOUT) -> tuple[int, str]:
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self._log.close()
        return self.proc.returncode, self.log_path.read_text()

    def kill(self) -> None:
        """End it if still running (test clean-up after a failure)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self._log.close()


# --------------------------------------------------------------------------------------------
# make / read round trips
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
@pytest.mark.parametrize("compressed", [False, True], ids=["raw", "jpeg"])
def test_make_read_round_trip(tmp_path, storage, compressed):
    videos = [clip_video("a", 6, 7, dt=0.1), clip_video("b", 4, 3, dt=1 / 3)]
    frames = [f for v in videos for f in v.frames]
    bag = tmp_path / "in"
    summary = write_image_bag(bag, videos, storage=storage, compressed=compressed,
                              categories=CATEGORIES, frame_id="cam9", video_gap_s=7.5)
    assert summary.messages == 10 and summary.videos == 2
    meta = (bag / "metadata.yaml").read_text()
    assert f"storage_identifier: {storage}" in meta
    topic = "/cam0/image_raw/compressed" if compressed else "/cam0/image_raw"
    assert bag_topics(bag) == {topic: COMPRESSED_TYPE if compressed else IMAGE_TYPE}
    assert topic_counts(bag) == {topic: 10}

    got = list(read_images(bag))
    expected_ns = [START_NS + round(0.1 * t * NS) for t in range(6)]
    second = expected_ns[-1] + round(7.5 * NS)
    expected_ns += [second + round(t / 3 * NS) for t in range(4)]
    assert [g.stamp_ns for g in got] == expected_ns
    assert [g.log_time_ns for g in got] == expected_ns
    assert {g.frame_id for g in got} == {"cam9"}
    for g, f in zip(got, frames, strict=True):
        assert g.rgb.shape == f.shape and g.rgb.dtype == np.uint8
        if compressed:  # JPEG quality 90 (frames carry sensor noise of std 8)
            err = np.abs(g.rgb.astype(int) - f.astype(int))
            assert err.mean() < 10.0, err.mean()
            ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(f, cv2.COLOR_RGB2BGR),
                                   [cv2.IMWRITE_JPEG_QUALITY, 90])
            reference = cv2.cvtColor(cv2.imdecode(jpg, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
            assert ok and np.array_equal(g.rgb, reference)
        else:
            assert np.array_equal(g.rgb, f)

    side = json.loads(sidecar_path(bag).read_text())
    assert sidecar_path(bag) == tmp_path / "in.gt.json"
    assert [v["stamps_ns"] for v in side["videos"]] == [expected_ns[:6], expected_ns[6:]]
    for v in side["videos"]:
        assert v["timestamps"] == [s / NS for s in v["stamps_ns"]]
        assert v["topic"] == topic and v["length"] == len(v["stamps_ns"])
    assert [a["video_id"] for a in side["annotations"]] == [1, 1, 2, 2]
    assert side["categories"] == CATEGORIES
    from spvis_model.eval import load_ground_truth

    assert len(load_ground_truth(sidecar_path(bag)).tracks) == 4


def test_make_cli_synthetic_matches_the_generator(tmp_path):
    from spvis_model.data.synthetic import generate_video, preset

    bag = tmp_path / "syn"
    rc = cli.main(["make", "--out", str(bag), "--synthetic", "easy", "--videos", "2",
                   "--frames", "5", "--classes", "disk,square", "--seed", "4",
                   "--no-progress"])
    assert rc == 0
    assert cli.main(["make", "--out", str(bag), "--synthetic", "easy"]) == 1  # exists
    cfg = preset("easy")
    cfg.videos, cfg.frames, cfg.classes, cfg.seed = 2, 5, ("disk", "square"), 4
    got = list(read_images(bag))
    side = json.loads(sidecar_path(bag).read_text())
    offset = START_NS
    for i in range(2):
        frames, stamps, tracks = generate_video(cfg, i)
        mine = got[5 * i: 5 * i + 5]
        assert [g.stamp_ns for g in mine] == [offset + round(s * NS) for s in stamps]
        assert all(np.array_equal(g.rgb, f) for g, f in zip(mine, frames, strict=True))
        video = side["videos"][i]
        assert video["stamps_ns"] == [g.stamp_ns for g in mine]
        assert video["name"] == f"video_{i:05d}" and video["fps"] > 0
        anns = [a for a in side["annotations"] if a["video_id"] == i + 1]
        assert [a["segmentations"] for a in anns] == [t.rles for t in tracks]
        offset = mine[-1].stamp_ns + 60 * NS  # default --video-gap
    assert {c["name"] for c in side["categories"]} == {"disk", "square"}


def test_make_cli_from_video_and_image_folder(tmp_path):
    imgs, _ = crossing_clip(frames=5, seed=1)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for k, img in enumerate(imgs):
        cv2.imwrite(str(folder / f"{k:03d}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    assert cli.main(["make", "--out", str(tmp_path / "b1"), "--images", str(folder), "--fps",
                     "4", "--storage", "sqlite3", "--no-progress"]) == 0
    got = list(read_images(tmp_path / "b1"))
    assert [g.stamp_ns - START_NS for g in got] == [k * NS // 4 for k in range(5)]
    assert all(np.array_equal(g.rgb, f) for g, f in zip(got, imgs, strict=True))
    assert not sidecar_path(tmp_path / "b1").exists()  # no ground truth for plain images

    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 8.0, (96, 64))
    for img in imgs:
        writer.write(cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    writer.release()
    assert cli.main(["make", "--out", str(tmp_path / "b2"), "--video", str(video),
                     "--compressed", "--no-progress"]) == 0
    got = list(read_images(tmp_path / "b2", "/cam0/image_raw/compressed"))
    assert [g.stamp_ns - START_NS for g in got] == [k * NS // 8 for k in range(5)]
    assert np.abs(got[2].rgb.astype(int) - imgs[2].astype(int)).mean() < 12


# --------------------------------------------------------------------------------------------
# bags written by other tools
# --------------------------------------------------------------------------------------------
IMAGE_MSGDEF = """std_msgs/Header header
uint32 height
uint32 width
string encoding
uint8 is_bigendian
uint32 step
uint8[] data
================================================================================
MSG: std_msgs/Header
builtin_interfaces/Time stamp
string frame_id
================================================================================
MSG: builtin_interfaces/Time
int32 sec
uint32 nanosec
"""


def test_reads_plain_mcap_written_by_mcap_ros2_support(tmp_path):
    from mcap_ros2.writer import Writer

    imgs, _ = crossing_clip(frames=4, seed=2)
    path = tmp_path / "plain.mcap"
    with path.open("wb") as f:
        writer = Writer(f)
        schema = writer.register_msgdef("sensor_msgs/msg/Image", IMAGE_MSGDEF)
        for k, img in enumerate(imgs):
            stamp = 1234 * NS + k * 50_000_000
            writer.write_message("/front/image_raw", schema, {
                "header": {"stamp": {"sec": stamp // NS, "nanosec": stamp % NS},
                           "frame_id": "front"},
                "height": 64, "width": 96, "encoding": "rgb8", "is_bigendian": 0,
                "step": 96 * 3, "data": img.tobytes()}, log_time=stamp, publish_time=stamp)
        writer.finish()
    got = list(read_images(path))
    assert [g.topic for g in got] == ["/front/image_raw"] * 4
    assert [g.stamp_ns for g in got] == [1234 * NS + k * 50_000_000 for k in range(4)]
    assert all(np.array_equal(g.rgb, f) for g, f in zip(got, imgs, strict=True))


FOXY_QOS = ("- history: 3\n  depth: 0\n  reliability: 1\n  durability: 2\n  deadline:\n"
            "    sec: 2147483647\n    nsec: 4294967295\n  lifespan:\n    sec: 2147483647\n"
            "    nsec: 4294967295\n  liveliness: 1\n  liveliness_lease_duration:\n"
            "    sec: 2147483647\n    nsec: 4294967295\n  avoid_ros_namespace_conventions: false")


def _foxy_metadata(bag: Path, storage_file: str, topic: str, msgtype: str, count: int,
                   start_ns: int, duration_ns: int, listed: int | None = None) -> None:
    """metadata.yaml as rosbag2 (Foxy, version 4) writes it: QoS as a YAML string, in the old
    enum numbers, which the storage file's own topic record does not repeat."""
    listed = count if listed is None else listed
    (bag / "metadata.yaml").write_text(f"""rosbag2_bagfile_information:
  version: 4
  storage_identifier: {"mcap" if storage_file.endswith(".mcap") else "sqlite3"}
  relative_file_paths:
    - {storage_file}
  duration:
    nanoseconds: {duration_ns}
  starting_time:
    nanoseconds_since_epoch: {start_ns}
  message_count: {listed}
  topics_with_message_count:
    - topic_metadata:
        name: {topic}
        type: {msgtype}
        serialization_format: cdr
        offered_qos_profiles: {json.dumps(FOXY_QOS)}
      message_count: {listed}
  compression_format: ""
  compression_mode: ""
""")


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_metadata_qos_never_filters_messages(tmp_path, storage):
    """A bag whose metadata.yaml QoS differs from its storage's (rosbag2's old bags, an edited
    depth) used to read as empty: info said 5 messages, play published 0 and exited 0."""
    bag = tmp_path / "in"
    write_image_bag(bag, [clip_video("a", 5, 1)], storage=storage)
    expected = [f.stamp_ns for f in read_images(bag)]
    meta = (bag / "metadata.yaml").read_text()
    edited = meta.replace("offered_qos_profiles: []", """offered_qos_profiles:
      - history: keep_last
        depth: 7
        reliability: reliable
        durability: volatile
        deadline: {sec: 0, nsec: 0}
        lifespan: {sec: 0, nsec: 0}
        liveliness: automatic
        liveliness_lease_duration: {sec: 0, nsec: 0}
        avoid_ros_namespace_conventions: false""")
    assert edited != meta
    (bag / "metadata.yaml").write_text(edited)
    assert [f.stamp_ns for f in read_images(bag)] == expected
    storage_file = next(p.name for p in bag.iterdir() if p.suffix in (".mcap", ".db3"))
    _foxy_metadata(bag, storage_file, "/cam0/image_raw", IMAGE_TYPE, 5, expected[0],
                   expected[-1] - expected[0])
    assert [f.stamp_ns for f in read_images(bag)] == expected
    assert topic_counts(bag) == {"/cam0/image_raw": 5}


def test_fewer_messages_than_listed_is_an_error_for_play_and_eval(tmp_path):
    bag = tmp_path / "in"
    write_image_bag(bag, [clip_video("a", 5, 1)], storage="sqlite3", categories=CATEGORIES)
    stamps = [f.stamp_ns for f in read_images(bag)]
    _foxy_metadata(bag, "in.db3", "/cam0/image_raw", IMAGE_TYPE, 5, stamps[0],
                   stamps[-1] - stamps[0], listed=8)
    with pytest.raises(BagError, match=r"read fewer messages than the bag lists "
                                       r"\(/cam0/image_raw: 5 of 8\); read 5 messages"):
        list(iter_messages(bag))
    assert len(list(iter_messages(bag, check_counts=False))) == 5
    rc = subprocess.run([sys.executable, "-m", "spvis_ros.bag.cli", "play", str(bag), "--fast",
                         "--wait-subscribers", "0", "--no-progress"],
                        env=ros_env(unique_domain()), capture_output=True, text=True,
                        timeout=PROCESS_TIMEOUT, cwd=ROOT, check=False)
    assert rc.returncode == 1, rc.stdout + rc.stderr
    assert "5 of 8" in rc.stderr
    # eval of a recording that lists more than it holds: an error, unless --allow-partial.
    from rclpy.serialization import serialize_message
    from spvis_msgs.msg import InstanceArray

    from spvis_ros.bag.writer import BagWriter

    rec = tmp_path / "rec"
    with BagWriter(rec, "sqlite3") as w:
        w.add_topic("/cam0/instances", "spvis_msgs/msg/InstanceArray")
        for ns in stamps:
            arr = InstanceArray(width=96, height=64)
            arr.header.stamp.sec, arr.header.stamp.nanosec = divmod(ns, NS)
            w.write("/cam0/instances", ns, serialize_message(arr))
    _foxy_metadata(rec, "rec.db3", "/cam0/instances", "spvis_msgs/msg/InstanceArray", 5,
                   stamps[0], stamps[-1] - stamps[0], listed=6)
    assert cli.main(["eval", "--bag", str(rec), "--gt", str(sidecar_path(bag)), "--out",
                     str(tmp_path / "ev"), "--no-video"]) == 1
    assert cli.main(["eval", "--bag", str(rec), "--gt", str(sidecar_path(bag)), "--out",
                     str(tmp_path / "ev"), "--no-video", "--allow-partial"]) == 0
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert "5 of 6" in metrics["bag"]["read_error"]


def test_info_shows_duration_and_time_range(tmp_path, capsys):
    bag = tmp_path / "in"
    write_image_bag(bag, [clip_video("a", 5, 1, dt=0.25)])
    assert cli.main(["info", str(bag)]) == 0
    out = capsys.readouterr().out
    assert "messages: 5" in out and "duration: 1.000 s" in out
    assert "start: 2023-11-14T22:13:20.000+00:00 (1700000000.000 s)" in out
    assert "end:   2023-11-14T22:13:21.000+00:00 (1700000001.000 s)" in out
    assert "/cam0/image_raw  sensor_msgs/msg/Image  5 messages" in out
    # A truncated MCAP (small chunks, cut in the data section): what a scan reads.
    plain = tmp_path / "plain.mcap"
    copy_to_plain_mcap(bag, plain, chunk_size=256)
    data = plain.read_bytes()
    (summary_start,) = struct.unpack_from("<Q", data, len(data) - 8 - 20)  # Footer record
    (tmp_path / "cut.mcap").write_bytes(data[: summary_start * 7 // 10])
    assert cli.main(["info", str(tmp_path / "cut.mcap")]) == 0
    out = capsys.readouterr().out
    assert "scanned" in out and "start: 2023-11-14T22:13:20.000" in out
    assert "messages: 3" in out or "messages: 2" in out, out


def test_reads_bare_storage_files_and_unfinished_directories(tmp_path):
    video = clip_video("a", 3, 5)
    frames = list(video.frames)
    for storage, suffix in (("mcap", ".mcap"), ("sqlite3", ".db3")):
        bag = tmp_path / f"bag_{storage}"
        write_image_bag(bag, [clip_video("a", 3, 5)], storage=storage)
        bare = tmp_path / f"bare{suffix}"
        bare.write_bytes((bag / f"{bag.name}{suffix}").read_bytes())
        (bag / "metadata.yaml").unlink()  # as a killed recorder leaves it
        for path in (bare, bag):
            got = list(read_images(path))
            assert all(np.array_equal(g.rgb, f) for g, f in zip(got, frames, strict=True))
            assert len(got) == 3


# --------------------------------------------------------------------------------------------
# broken bags
# --------------------------------------------------------------------------------------------
def big_bag(tmp_path: Path, storage: str = "mcap") -> tuple[Path, list[np.ndarray]]:
    """12 random 320x240 rgb8 frames: about 3 MB, three MCAP chunks of ~1 MiB."""
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (240, 320, 3), dtype=np.uint8) for _ in range(12)]
    bag = tmp_path / f"big_{storage}"
    write_image_bag(bag, [SourceVideo("v", frames, [k / 10 for k in range(12)], 320, 240)],
                    storage=storage)
    return bag, frames


def mcap_chunk_offsets(data: bytes) -> list[int]:
    """File offsets of the top-level Chunk records (opcode 0x06) of an MCAP file: after the
    8-byte magic, every record is opcode (1 byte), length (uint64 LE), body."""
    pos, chunks = 8, []
    while pos + 9 <= len(data) - 8:
        op = data[pos]
        (length,) = struct.unpack_from("<Q", data, pos + 1)
        if op == 0x06:
            chunks.append(pos)
        pos += 9 + length
    return chunks


def read_until_error(path: Path) -> tuple[list, BagError | None]:
    got = []
    try:
        for frame in read_images(path):
            got.append(frame)
    except BagError as exc:
        return got, exc
    return got, None


def test_truncated_mcap_yields_complete_chunks_then_names_the_file(tmp_path):
    bag, frames = big_bag(tmp_path)
    storage = bag / f"{bag.name}.mcap"
    data = storage.read_bytes()
    storage.write_bytes(data[: int(len(data) * 0.75)])  # inside the third chunk
    got, err = read_until_error(bag)
    assert err is not None
    assert 0 < len(got) < 12
    assert str(bag) in str(err) and "truncated" in str(err)
    assert f"read {len(got)} messages before the error" in str(err)
    assert err.read == len(got)
    assert all(np.array_equal(g.rgb, f) for g, f in zip(got, frames, strict=False))

    # Only the footer lost: every message is still read, with a warning.
    storage.write_bytes(data[:-20])
    with pytest.warns(BagWarning, match="index is unreadable"):
        got = list(read_images(bag))
    assert len(got) == 12


def test_corrupt_mcap_chunk_and_garbage_files_raise_naming_the_file(tmp_path):
    bag, _ = big_bag(tmp_path)
    storage = bag / f"{bag.name}.mcap"
    data = bytearray(storage.read_bytes())
    chunks = mcap_chunk_offsets(bytes(data))
    assert len(chunks) == 3
    data[chunks[1] + 9: chunks[1] + 49] = b"\xff" * 40  # the second chunk's header fields
    storage.write_bytes(bytes(data))
    got, err = read_until_error(bag)
    assert err is not None and str(bag) in str(err)
    assert 0 < len(got) < 12 and f"read {len(got)} messages before the error" in str(err)

    garbage = tmp_path / "garbage.mcap"
    garbage.write_bytes(b"not an mcap file at all" * 10)
    got, err = read_until_error(garbage)
    assert got == [] and err is not None and str(garbage) in str(err)
    with pytest.raises(BagError, match="no such bag"):
        list(iter_messages(tmp_path / "missing"))
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(BagError, match="unknown bag file type"):
        list(iter_messages(tmp_path / "x.txt"))


def test_truncated_sqlite_yields_what_sqlite_reads_then_raises(tmp_path):
    bag, frames = big_bag(tmp_path, "sqlite3")
    db = bag / f"{bag.name}.db3"
    data = db.read_bytes()
    db.write_bytes(data[: len(data) - 5000])
    got, err = read_until_error(bag)
    assert err is not None and str(bag) in str(err)
    assert f"read {len(got)} messages before the error" in str(err)
    assert all(np.array_equal(g.rgb, f) for g, f in zip(got, frames, strict=False))
    db.write_bytes(data[:4096])
    got, err = read_until_error(bag)
    assert got == [] and err is not None and "read 0 messages" in str(err)


# --------------------------------------------------------------------------------------------
# eval without a node: hand-made recordings
# --------------------------------------------------------------------------------------------
def write_recording(path: Path, bag: Path, skip: set[int], extra: bool = True,
                    track_score: float | None = None, fake: bool = False) -> None:
    """InstanceArrays made from the sidecar's GT (perfect predictions, score 0.9), except frames
    in `skip`; plus (extra) one message matching no frame and one duplicate. `track_score`: the
    instances' track_score (None: NaN, as from a model without a track-score model). `fake`:
    one false track per video as well (a 4x4 square in the top-left corner, score 0.95,
    track_score 0.05)."""
    import torch
    from rclpy.serialization import serialize_message
    from spvis_msgs.msg import InstanceArray
    from std_msgs.msg import Header

    from spvis_model.instances import Instances
    from spvis_model.tracker.geometry import masks_to_boxes
    from spvis_ros import messages
    from spvis_ros.bag.io import BagWriter

    side = json.loads(sidecar_path(bag).read_text())
    msgs = []
    k = 0
    for video in side["videos"]:
        anns = [a for a in side["annotations"] if a["video_id"] == video["id"]]
        for t, ns in enumerate(video["stamps_ns"]):
            present = [a for a in anns if a["segmentations"][t] is not None]
            n = len(present) + fake
            masks = np.zeros((n, video["height"], video["width"]), bool)
            for j, a in enumerate(present):
                seg = dict(a["segmentations"][t])
                masks[j] = decode_rle({"size": seg["size"], "counts": seg["counts"].encode()})
            ids = [100 * video["id"] + a["id"] for a in present]
            labels = [a["category_id"] - 1 for a in present]
            scores, tracks = [0.9] * len(present), [track_score or 0.0] * len(present)
            if fake:
                masks[-1, :4, :4] = True
                ids, labels = [*ids, 999], [*labels, 0]
                scores, tracks = [*scores, 0.95], [*tracks, 0.05]
            inst = Instances(
                ids=np.array(ids, np.int64), labels=np.array(labels, np.int64),
                label_names=[CLASSES[k] for k in labels],
                scores=np.array(scores, np.float32),
                boxes=masks_to_boxes(torch.from_numpy(masks)).numpy().astype(np.float32),
                masks=masks, visibility=np.ones(n, np.float32),
                first_seen=np.zeros(n),
                track_scores=None if track_score is None else np.array(tracks, np.float32))
            header = Header(frame_id="cam0")
            header.stamp.sec, header.stamp.nanosec = divmod(ns, NS)
            arr = messages.instance_array(inst, np.arange(n), header)
            if k not in skip:
                msgs.append((ns, bytes(serialize_message(arr))))
            k += 1
    if extra:
        msgs.append((msgs[0][0] + 1, msgs[0][1]))  # duplicate of frame 0 (same header)
        stray = InstanceArray(width=96, height=64)
        stray.header.stamp.sec = 5
        msgs.append((5 * NS, bytes(serialize_message(stray))))
    with BagWriter(path, "mcap") as w:
        w.add_topic("/cam0/instances", "spvis_msgs/msg/InstanceArray")
        for ns, data in msgs:
            w.write("/cam0/instances", ns, data)


def test_eval_counts_dropped_frames_and_writes_overlays(tmp_path):
    bag = tmp_path / "in"
    write_image_bag(bag, [clip_video("a", 8, 7), clip_video("b", 6, 3)],
                    categories=CATEGORIES)
    perfect = tmp_path / "perfect"
    write_recording(perfect, bag, skip=set(), extra=False)
    res = evaluate_bag(perfect, sidecar_path(bag), tmp_path / "ev0",
                       EvalOptions(images_bag=False))
    assert res.metrics["ytvis"]["AP"] == pytest.approx(1.0)
    assert res.metrics["tracking"]["IDSW"] == 0
    assert res.accounting.dropped == 0 and res.accounting.matched == 14

    rec = tmp_path / "rec"
    write_recording(rec, bag, skip={2, 3, 10})
    out = tmp_path / "ev"
    rc = cli.main(["eval", "--bag", str(rec), "--gt", str(sidecar_path(bag)), "--out", str(out)])
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    acc = metrics["bag"]
    assert acc["dropped"] == 3 and acc["dropped_per_video"] == {"1": 2, "2": 1}
    assert acc["matched"] == 11 and acc["unmatched"] == 1 and acc["duplicates"] == 1
    side = json.loads(sidecar_path(bag).read_text())
    stamps = [s for v in side["videos"] for s in v["stamps_ns"]]
    assert acc["dropped_stamps_ns"] == [stamps[2], stamps[3], stamps[10]]
    assert metrics["ytvis"]["AP"] < 1.0
    report = (out / "report.md").read_text()
    assert "## Bag replay" in report
    assert "**Dropped frames** (GT frames with no output): 3" in report
    results = json.loads((out / "results.json").read_text())
    assert len(results) == 4  # two tracks per video
    for name, n in (("a", 8), ("b", 6)):
        cap = cv2.VideoCapture(str(out / f"overlay_{name}.mp4"))
        count = 0
        while cap.read()[0]:
            count += 1
        cap.release()
        assert count == n
    assert (out / "worst_video.png").is_file()
    assert any((out / "frames").rglob("*.jpg"))  # the worst video's real frames

    # The same recording as a plain MCAP in small chunks (the mcap library's writer), cut
    # short: an error naming it, or scored as far as it goes with allow_partial.
    plain = tmp_path / "rec.mcap"
    copy_to_plain_mcap(perfect, plain, chunk_size=256)  # RLE messages are small: many chunks
    data = plain.read_bytes()
    (summary_start,) = struct.unpack_from("<Q", data, len(data) - 8 - 20)  # Footer record
    plain.write_bytes(data[: summary_start * 6 // 10])  # cut inside the data section
    assert cli.main(["eval", "--bag", str(plain), "--gt", str(sidecar_path(bag)), "--out",
                     str(tmp_path / "ev2"), "--no-video"]) == 1
    with pytest.raises(BagError, match=str(plain)):
        evaluate_bag(plain, sidecar_path(bag), tmp_path / "ev2", EvalOptions(images_bag=False))
    part = evaluate_bag(plain, sidecar_path(bag), tmp_path / "ev2",
                        EvalOptions(images_bag=False, allow_partial=True))
    acc = part.accounting
    assert 0 < acc.matched < 14 and acc.dropped == 14 - acc.matched
    assert str(plain) in acc.read_error and f"read {acc.matched} messages" in acc.read_error
    assert "could not be read to the end" in (tmp_path / "ev2" / "report.md").read_text()


def test_eval_ranks_by_track_score_and_reads_recordings_from_before_it(tmp_path):
    bag = tmp_path / "in"
    write_image_bag(bag, [clip_video("a", 8, 7), clip_video("b", 6, 3)],
                    categories=CATEGORIES)
    opts = EvalOptions(images_bag=False)
    # A false track that outscores the right ones frame by frame but not as a track.
    rec = tmp_path / "rec"
    write_recording(rec, bag, skip=set(), extra=False, track_score=0.9, fake=True)
    by_track = evaluate_bag(rec, sidecar_path(bag), tmp_path / "ev", opts)
    assert by_track.accounting.ranked_by == "track_score"
    assert by_track.metrics["bag"]["ranked_by"] == "track_score"
    assert by_track.metrics["ytvis"]["AP"] == pytest.approx(1.0)
    fakes = [r for r in by_track.predictions if r["score"] < 0.5]
    assert len(fakes) == 2 and all(r["score"] == pytest.approx(0.05) for r in fakes)
    # NaN track scores (a model without a track-score model): ranked by the per-frame score,
    # the false track first.
    nan = tmp_path / "nan"
    write_recording(nan, bag, skip=set(), extra=False, track_score=None, fake=True)
    by_score = evaluate_bag(nan, sidecar_path(bag), tmp_path / "ev_nan", opts)
    assert by_score.accounting.ranked_by == "score"
    assert by_score.metrics["ytvis"]["AP"] < 0.99
    # The same recording made before Instance had track_score (its own definition in the
    # bag): read with that definition, scored like the NaN one.
    old = tmp_path / "old.mcap"
    copy_to_plain_mcap(nan, old, chunk_size=4096, drop_field="track_score")
    schema = old.read_bytes()
    assert b"float32 score" in schema and b"track_score" not in schema
    from_old = evaluate_bag(old, sidecar_path(bag), tmp_path / "ev_old", opts)
    assert from_old.accounting.ranked_by == "score"
    assert from_old.accounting.matched == 14 and from_old.accounting.bad_instances == 0
    assert from_old.metrics["ytvis"] == by_score.metrics["ytvis"]
    assert from_old.predictions == by_score.predictions


def _drop_field(store: object, msgtype: str, text: str, data: bytes, field: str
                ) -> tuple[str, bytes]:
    """(definition text, CDR bytes) of a message re-serialized without Instance.`field`: what
    a node built with an older spvis_msgs recorded."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    old_text = "\n".join(line for line in text.splitlines()
                         if line.split()[-1:] != [field])
    old = get_typestore(Stores.ROS2_KILTED)
    old.register(get_types_from_msg(old_text, msgtype))
    msg = store.deserialize_cdr(data, msgtype)
    inst_type = old.types["spvis_msgs/msg/Instance"]
    names = [f for f in inst_type.__dataclass_fields__ if f != "__msgtype__"]
    old_arr = old.types[msgtype](**{
        **{k: getattr(msg, k) for k in old.types[msgtype].__dataclass_fields__
           if k != "__msgtype__"},
        "instances": [inst_type(**{k: getattr(i, k) for k in names}) for i in msg.instances]})
    return old_text, bytes(old.serialize_cdr(old_arr, msgtype))


def copy_to_plain_mcap(bag: Path, out: Path, chunk_size: int, drop_field: str = "") -> None:
    """Rewrite a bag as a bare .mcap with the `mcap` library (ros2 profile, ros2msg schemas);
    `drop_field`: without that Instance field, in definition and data (`_drop_field`)."""
    from mcap.writer import Writer

    from spvis_ros.bag.io import typestore

    schemas: dict[str, int] = {}
    channels: dict[str, int] = {}
    with out.open("wb") as f:
        writer = Writer(f, chunk_size=chunk_size)
        writer.start(profile="ros2", library="spvis test")
        for msg in iter_messages(bag):
            text = typestore().generate_msgdef(msg.msgtype, ros_version=2)[0]
            data = msg.data
            if drop_field:
                text, data = _drop_field(typestore(), msg.msgtype, text, data, drop_field)
            if msg.topic not in channels:
                schemas[msg.msgtype] = writer.register_schema(msg.msgtype, "ros2msg",
                                                              text.encode())
                channels[msg.topic] = writer.register_channel(msg.topic, "cdr",
                                                              schemas[msg.msgtype])
            writer.add_message(channels[msg.topic], msg.log_time_ns, data, msg.log_time_ns)
        writer.finish()


# --------------------------------------------------------------------------------------------
# play and record (real processes)
# --------------------------------------------------------------------------------------------
def test_play_loop_remap_and_record_until_sigint(tmp_path):
    bag = tmp_path / "in"
    write_image_bag(bag, [clip_video("a", 5, 1)], storage="sqlite3")
    domain = unique_domain()
    rec = BagProcess(["record", "--out", str(tmp_path / "rec"), "--topics", "/cam1/image_raw",
                      "--duration", "60", "--wait-topics", "30"], domain, tmp_path / "rec.log")
    play = BagProcess(["play", str(bag), "--rate", "4", "--loop", "2", "--qos", "reliable",
                       "--topic-remap", "/cam0/image_raw:/cam1/image_raw",
                       "--wait-subscribers", "30",
                       "--no-progress"], domain, tmp_path / "play.log")
    try:
        rc, log = play.wait()
        assert rc == 0, log
        assert "published 10 messages in 2 passes" in log
        time.sleep(1.0)  # reliable delivery on loopback takes milliseconds
        rec.proc.send_signal(signal.SIGINT)
        rc, log = rec.wait(timeout=30)
    finally:
        rec.kill()
    assert rc == 0, log
    assert "recorded 10 messages" in log and "stopped by signal" in log
    got = list(read_images(tmp_path / "rec"))
    first = list(read_images(bag))
    assert [g.stamp_ns for g in got] == [f.stamp_ns for f in first] * 2
    assert all(np.array_equal(g.rgb, f.rgb) for g, f in zip(got, first * 2, strict=True))


def test_record_fails_clearly_without_publishers(tmp_path):
    rc = subprocess.run([sys.executable, "-m", "spvis_ros.bag.cli", "record", "--out",
                         str(tmp_path / "r"), "--topics", "/nobody", "--wait-topics", "1"],
                        env=ros_env(unique_domain()), capture_output=True, text=True,
                        timeout=60, cwd=ROOT, check=False)
    assert rc.returncode == 1
    assert "no publisher on ['/nobody']" in rc.stderr
    assert not (tmp_path / "r").exists()


# --------------------------------------------------------------------------------------------
# end to end: bag -> node -> recording -> scores == the model run directly
# --------------------------------------------------------------------------------------------
def direct_metrics(checkpoint: Path, bag: Path, score_threshold: float) -> dict:
    """Run the checkpoint frame by frame on the bag's frames as the node does (fresh tracks per
    video, the node's default keep_seconds, its score filter), score with spvis_model.eval."""
    import torch

    from spvis_model.eval import FrameOutput, results_from_tracks, run_evaluation
    from spvis_model.model import SPVIS
    from spvis_ros import messages
    from spvis_ros.bag.io import ns_to_seconds
    from spvis_ros.params import NodeParams

    defaults = NodeParams.from_values({})
    model = SPVIS.from_checkpoint(checkpoint)
    settings = dataclasses.replace(model.default_settings(), keep_seconds=defaults.keep_seconds)
    side = json.loads(sidecar_path(bag).read_text())
    frames = {f.stamp_ns: f.rgb for f in read_images(bag)}
    names = [c["name"] for c in side["categories"]]
    results = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the node process (OMP_NUM_THREADS=1): same arithmetic
    try:
        for video in side["videos"]:
            state = model.init_state()
            outs = []
            for ns in video["stamps_ns"]:
                state, inst = model.step(state, frames[ns].copy(), ns_to_seconds(ns), settings)
                idx = messages.select(inst, score_threshold, defaults.max_instances, [])
                outs.append(FrameOutput(
                    ids=inst.ids[idx],
                    labels=np.array([names.index(inst.label_names[i]) for i in idx], np.int64),
                    scores=inst.scores[idx].astype(np.float64), masks=inst.masks[idx]))
            results += results_from_tracks(video["id"], outs,
                                           [c["id"] for c in side["categories"]])
    finally:
        torch.set_num_threads(threads)
    return run_evaluation(str(sidecar_path(bag)), results)


def test_replay_through_the_node_scores_like_the_model(trained_tiny, tmp_path, monkeypatch):
    # One torch thread in the node process and in direct_metrics: the same arithmetic on both
    # sides, and on a shared 2-core machine much faster than two contending threads.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    checkpoint = tmp_path / "tiny.pt"
    trained_tiny.save(checkpoint)
    bag = tmp_path / "in"
    write_image_bag(bag, [clip_video("crossing", 20, 7), clip_video("crossing_b", 12, 3)],
                    categories=CATEGORIES)
    n_frames = 32
    threshold = 0.3
    domain = unique_domain()
    times = {"start": time.monotonic()}
    node = NodeProcess(domain, tmp_path / "node.log", {
        "checkpoint": str(checkpoint), "input_reliability": "reliable", "input_depth": "10",
        "score_threshold": str(threshold)})
    helpers: list[BagProcess] = []
    try:
        node.wait_for_log("spvis: tiny model")
        times["node up"] = time.monotonic()
        rec = BagProcess(["record", "--out", str(tmp_path / "rec"), "--topics",
                          "/cam0/instances", "--count", str(n_frames), "--duration", "100",
                          "--wait-topics", "30"], domain, tmp_path / "rec.log")
        helpers.append(rec)
        rec.wait_for("recording 1 topics")
        times["recording"] = time.monotonic()
        play = BagProcess(["play", str(bag), "--fast", "--wait-for", "/cam0/instances",
                           "--no-progress"], domain, tmp_path / "play.log")
        helpers.append(play)
        rc, log = play.wait()
        times["played"] = time.monotonic()
        assert rc == 0, log + node.log()
        assert f"answered {n_frames}, unanswered 0" in log
        rc, log = rec.wait()
        assert rc == 0, log
        assert f"recorded {n_frames} messages" in log
    finally:
        for proc in helpers:
            proc.kill()
        assert node.stop() == 0, node.log_path.read_text()
    assert "tracks reset (gap of" in node.log_path.read_text()  # between the two videos

    out = tmp_path / "eval"
    assert cli.main(["eval", "--bag", str(tmp_path / "rec"), "--gt", str(sidecar_path(bag)),
                     "--out", str(out)]) == 0
    times["evaluated"] = time.monotonic()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["bag"]["dropped"] == 0 and metrics["bag"]["matched"] == n_frames
    assert metrics["bag"]["unmatched"] == 0 and metrics["bag"]["duplicates"] == 0
    assert (out / "overlay_crossing.mp4").is_file() and (out / "overlay_crossing_b.mp4").is_file()

    direct = direct_metrics(checkpoint, bag, threshold)
    times["direct"] = time.monotonic()
    names = list(times)
    print("phases: " + ", ".join(f"{b} {times[b] - times[a]:.1f} s"
                                 for a, b in itertools.pairwise(names)))
    assert metrics["ytvis"]["AP"] > 0.2, metrics["ytvis"]  # a model that sees the objects
    for group in ("ytvis", "tracking"):
        for key, value in direct[group].items():
            assert metrics[group][key] == pytest.approx(value, abs=1e-9), (group, key)
    assert metrics["per_video"] == json.loads(json.dumps(direct["per_video"]))


def test_pick_topic_names_the_candidates():
    """Choosing a bag's image / InstanceArray topic: the given one if it is a candidate, else
    the only candidate; otherwise an error that names what there is and how to choose."""
    from spvis_ros.bag.base import BagError
    from spvis_ros.bag.reader import pick_topic

    two = {"/a/image_raw": "sensor_msgs/msg/Image", "/b/image_raw": "sensor_msgs/msg/Image"}
    assert pick_topic("x.bag", two, "/b/image_raw", "image", "give the topic") == "/b/image_raw"
    assert pick_topic("x.bag", {"/a": "t"}, None, "image", "give the topic") == "/a"
    with pytest.raises(BagError, match=r"several image topics .*/a/image_raw.*give the topic"):
        pick_topic("x.bag", two, None, "image", "give the topic")
    with pytest.raises(BagError, match=r"no image topics"):
        pick_topic("x.bag", {}, None, "image", "give the topic")
    with pytest.raises(BagError, match=r"no image topic '/c'"):
        pick_topic("x.bag", two, "/c", "image", "give the topic")
