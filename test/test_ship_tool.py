"""bench/ship.py: a candidate segmenter becomes a shippable model with the shipped model's
meta carried over; a failing step stops the chain and writes nothing at --out."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from spvis_model.checkpoint import weights_checksum
from spvis_model.model import SPVIS

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

from ship import ship_meta  # noqa: E402


def test_meta_keeps_kind_and_history_and_names_the_new_selection():
    shipped = {"kind": "demo", "calibration": {"a": 2.0}, "selected_from": "runs/old",
               "tracker_settings": [{"field": "use_correction", "old": False, "new": True,
                                     "why": "val"}]}
    meta = ship_meta(shipped, selected_from="runs/new", checkpoint="step_001600",
                     selection_sets=["val_heldout", "val_real_unseen"], recipe="r")
    assert meta["kind"] == "demo" and "calibration" not in meta  # refitted, not carried
    assert meta["tracker_settings"] == shipped["tracker_settings"]
    assert meta["tracker_settings"] is not shipped["tracker_settings"]
    assert meta["selected_from"] == "runs/new" and meta["checkpoint"] == "step_001600"
    assert meta["selection_sets"] == ["val_heldout", "val_real_unseen"]
    assert ship_meta({}, selected_from="a", checkpoint="b", selection_sets=[],
                     recipe="r")["kind"] == "demo"


def test_a_failing_step_stops_the_chain(trained_tiny, tmp_path):
    cand, shipped, out = tmp_path / "model_step_000010.pt", tmp_path / "s.pt", tmp_path / "o.pt"
    trained_tiny.save(cand, half=True, meta={"trained_by": "a test"})
    trained_tiny.save(shipped, half=True, meta={"kind": "demo", "tracker_settings": [
        {"field": "new_track_score", "old": 0.5, "new": 0.65, "why": "val"}]})
    run = subprocess.run(
        [sys.executable, str(BENCH / "ship.py"), "--candidate", str(cand), "--shipped",
         str(shipped), "--selected-from", "runs/x", "--selection-sets", "val_heldout",
         "--recipe", "a test", "--frame-sets", "heldout", "--out", str(out)],
        capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "only validation sets" in run.stderr and "2/4 frame calibration failed" in run.stderr
    assert not out.exists()
    first = SPVIS.from_checkpoint(out.with_suffix(".steps") / "0_meta.pt")
    assert first.meta["kind"] == "demo" and first.meta["checkpoint"] == "step_000010"
    assert first.meta["tracker_settings"][0]["field"] == "new_track_score"
    assert "trained_by" not in first.meta
    same = SPVIS.from_checkpoint(cand).state_dict()
    assert weights_checksum(first.state_dict()) == weights_checksum(same)
