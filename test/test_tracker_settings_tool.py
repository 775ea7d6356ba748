"""bench/tracker_settings.py: tracker settings change in a checkpoint, its weights do not."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import torch

from spvis_model.checkpoint import weights_checksum
from spvis_model.model import SPVIS

TOOL = Path(__file__).resolve().parent.parent / "bench" / "tracker_settings.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True,
                          check=False, timeout=120)


def test_settings_change_and_weights_do_not(trained_tiny, tmp_path):
    src, out = tmp_path / "in.pt", tmp_path / "out.pt"
    trained_tiny.save(src, half=True)
    res = _run("--checkpoint", str(src), "--set", "use_correction=true",
               "--set", "correction_max_interval=.inf", "--why", "a test", "--out", str(out))
    assert res.returncode == 0, res.stderr
    before, after = SPVIS.from_checkpoint(src), SPVIS.from_checkpoint(out)
    assert after.cfg.tracker.use_correction is True
    assert after.cfg.tracker.correction_max_interval == math.inf
    assert weights_checksum(after.state_dict()) == weights_checksum(before.state_dict())
    stored = torch.load(out, weights_only=True)["state_dict"]
    assert all(t.dtype != torch.float32 for t in stored.values() if t.is_floating_point())
    log = after.meta["tracker_settings"]
    assert [c["field"] for c in log] == ["use_correction", "correction_max_interval"]
    assert log[1]["old"] == trained_tiny.cfg.tracker.correction_max_interval
    assert log[1]["new"] == math.inf and log[1]["why"] == "a test"


def test_a_field_the_file_predates_is_logged_as_absent(trained_tiny, tmp_path):
    src, out = tmp_path / "old.pt", tmp_path / "out.pt"
    trained_tiny.save(src)
    ckpt = torch.load(src, weights_only=True)
    del ckpt["config"]["tracker"]["correction_max_interval"]  # as in checkpoints before it
    torch.save(ckpt, src)
    res = _run("--checkpoint", str(src), "--set", "correction_max_interval=0.05",
               "--why", "x", "--out", str(out))
    assert res.returncode == 0, res.stderr
    log = SPVIS.from_checkpoint(out).meta["tracker_settings"]
    assert log == [{"field": "correction_max_interval", "old": None, "new": 0.05, "why": "x"}]


def test_bad_settings_are_refused_naming_the_field(trained_tiny, tmp_path):
    src = tmp_path / "in.pt"
    trained_tiny.save(src)
    res = _run("--checkpoint", str(src), "--set", "correction_max_interval=0",
               "--why", "x", "--out", str(tmp_path / "o.pt"))
    assert res.returncode == 2 and "correction_max_interval" in res.stderr
    res = _run("--checkpoint", str(src), "--set", "no_such_field=1",
               "--why", "x", "--out", str(tmp_path / "o.pt"))
    assert res.returncode == 2 and "no_such_field" in res.stderr
    assert not (tmp_path / "o.pt").exists()
