"""bench/soup.py: the soup's weights are the mean of its ingredients', its config is the first
one's, its meta names every ingredient; models of another architecture are refused by name."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import torch

from spvis_model.config import preset
from spvis_model.model import SPVIS

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _soup(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCH / "soup.py"), *args], capture_output=True,
                          text=True, timeout=300, check=False)


def test_soup_is_the_mean_of_its_ingredients(trained_tiny, tmp_path):
    a, b, out = tmp_path / "a.pt", tmp_path / "b.pt", tmp_path / "soup" / "s.pt"
    trained_tiny.save(a, meta={"from": "a"})
    other = copy.deepcopy(trained_tiny)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    other.cfg.tracker.new_track_score = 0.9  # run-time settings may differ; a's are kept
    other.save(b)
    run = _soup(str(a), str(b), "--out", str(out), "--full")
    assert run.returncode == 0, run.stdout + run.stderr
    soup = SPVIS.from_checkpoint(out)
    sa, sb, ss = trained_tiny.state_dict(), other.state_dict(), soup.state_dict()
    moved = 0
    for k, v in ss.items():
        if v.is_floating_point():
            torch.testing.assert_close(v, (sa[k] + sb[k]) / 2, rtol=0, atol=1e-6)
            moved += int(not torch.equal(v, sa[k]))
        else:
            assert torch.equal(v, sa[k])
    assert moved > 0
    assert soup.cfg.tracker.new_track_score == trained_tiny.cfg.tracker.new_track_score
    assert soup.meta["from"] == "a"
    assert [i["file"] for i in soup.meta["soup"]] == [str(a), str(b)]
    assert all(len(i["sha256"]) == 64 for i in soup.meta["soup"])


def test_another_architecture_is_refused_by_name(trained_tiny, tmp_path):
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    trained_tiny.save(a)
    cfg = preset("tiny")
    cfg.class_names = ["one", "two", "three"]
    SPVIS(cfg, pretrained_backbone=False).save(b)
    run = _soup(str(a), str(b), "--out", str(tmp_path / "s.pt"))
    assert run.returncode == 2
    assert str(b) in run.stderr and "differs" in run.stderr
    assert not (tmp_path / "s.pt").exists()
    one = _soup(str(a), "--out", str(tmp_path / "s.pt"))
    assert one.returncode == 2 and "at least two" in one.stderr
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    bad = _soup(str(a), str(junk), "--out", str(tmp_path / "s.pt"))
    assert bad.returncode == 2 and str(junk) in bad.stderr and "Traceback" not in bad.stderr
    missing = _soup(str(a), str(tmp_path / "nope.pt"), "--out", str(tmp_path / "s.pt"))
    assert missing.returncode == 2 and "nope.pt" in missing.stderr
    assert "Traceback" not in missing.stderr and not (tmp_path / "s.pt").exists()
