"""bench/segmenter_ab.py: the paired checkout-vs-checkout timing runs end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "segmenter_ab.py"


def test_paired_run_against_itself(tmp_path):
    out = tmp_path / "rounds.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--base", str(ROOT), "--rounds", "2", "--repeats", "1",
         "--models", "shipped", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = {line.split()[1]: line.split() for line in proc.stdout.splitlines()
            if line.startswith("shipped")}
    assert set(rows) == {"backbone", "pixel_decoder", "decoder", "segmenter", "nhwc/nchw"}
    assert all(float(rows[s][4]) > 0 for s in ("backbone", "segmenter"))  # this/base ratios
    rounds = json.loads(out.read_text())
    assert [(r["round"], r["side"]) for r in rounds] == [(0, "base"), (0, "this"),
                                                         (1, "this"), (1, "base")]
    assert rounds[0]["t"]["shipped"]["input"] == [256, 320]  # the shipped model's 320 px input


def test_base_must_be_a_checkout(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--base", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2
    assert f"--base must be another spvis checkout, got {tmp_path}" in proc.stderr
