"""A published model in the node, as a user brings one: `spvis import` a MinVIS YouTube-VIS 2019
checkpoint (the reduced-width fixture of test/fixtures/import, real key layout), start the real
node process on the result, and get its 40 class names on /class_names and /label_info and in
every published instance; the start-up log names the model and its class count."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent / "ros_helpers"))
from node_harness import Driver, NodeProcess, rgb_image, unique_domain

from spvis_model.cli import main as spvis_main
from spvis_model.importers import load_class_list
from spvis_model.model import SPVIS

pytestmark = pytest.mark.ros

FIXTURES = Path(__file__).parent / "fixtures" / "import"


@pytest.fixture(scope="module")
def imported(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("import_node")
    out = folder / "minvis_r50.pt"
    assert spvis_main(["import", str(FIXTURES / "minvis_ytvis19_r50.pth"), "--from", "minvis",
                       "--backbone", "r50", "--classes", "ytvis2019", "--out", str(out)]) == 0
    # Keep the CPU test small: the stored resize rule is 360 / 1333. The fixture's weights are
    # random: let every query start a track and be published.
    model = SPVIS.from_checkpoint(out)
    model.cfg.input.min_size = 96
    model.cfg.tracker.output_score = 0.0
    model.cfg.tracker.detect_score = 0.0
    model.cfg.tracker.new_track_score = 0.0
    small = folder / "minvis_r50_small.pt"
    model.save(small)
    return small


def test_node_runs_an_imported_model_with_its_class_names(imported, tmp_path):
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from std_msgs.msg import String
    from vision_msgs.msg import LabelInfo

    names = list(load_class_list("ytvis2019").names)
    assert len(names) == 40
    domain = unique_domain()
    node = NodeProcess(domain, tmp_path / "node.log",
                       {"checkpoint": str(imported), "device": "cpu", "score_threshold": "0.0",
                        "input_reliability": "reliable", "input_depth": "10"})
    try:
        node.wait_for_log("spvis: active", timeout=120)
        assert "(40 classes)" in node.log(), node.log()[-2000:]
        driver = Driver(domain, ["cam0"])
        try:
            driver.wait_connected()
            frames = np.load(FIXTURES / "minvis_ytvis19_r50.expected.npz")["frames"]
            published = []
            for t in range(3):
                out = driver.send("cam0", rgb_image(frames[t % 2], 5.0 + 0.5 * t), timeout=60)
                assert out is not None, f"no output for frame {t}"
                published += [(int(i.class_id), i.class_name) for i in out.instances]
            assert published, "score_threshold 0 and an untrained-width model: expected output"
            for class_id, class_name in published:
                assert names[class_id] == class_name
            latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                 durability=DurabilityPolicy.TRANSIENT_LOCAL)
            got = driver.subscribe(String, "/class_names", latched)
            infos = driver.subscribe(LabelInfo, "/label_info", latched)
            assert driver.spin_until(lambda: got and infos, 10), "no latched class names"
            assert json.loads(got[-1].data) == names
            assert {c.class_id: c.class_name for c in infos[-1].class_map} == dict(
                enumerate(names))
        finally:
            driver.close()
    finally:
        code = node.stop()
    assert code == 0, node.log()[-2000:]
