"""scripts/gpu_train.sh in its dry run: the same steps as on the GPU machine (set-up through
the GPU check's env and build parts, data with real-footage negatives from a media copy, a
training run sized by its time budget, export), on the CPU with the tiny model; what comes back
fits the device's limits and every model file loads, also as bench/select_checkpoint.py reads
them (the next step of the recipe, on this machine)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from spvis_model.model import SPVIS

ROOT = Path(__file__).resolve().parents[1]
MAX_FILES, MAX_BYTES = 8, 16 * 2**20


def run_train(out: Path, work: Path, *args: str, env: dict[str, str] | None = None,
              timeout: float = 600) -> subprocess.CompletedProcess:
    full_env = dict(os.environ, PYTHON=sys.executable, SPVIS_GPU_TRAIN_WORK=str(work),
                    OMP_NUM_THREADS="1", **(env or {}))
    full_env.pop("SPVIS_MEDIA_DIR", None)
    return subprocess.run(["bash", str(ROOT / "scripts" / "gpu_train.sh"), *args, str(out)],
                          cwd=ROOT, env=full_env, capture_output=True, text=True,
                          timeout=timeout, check=False)


@pytest.mark.slow
def test_dry_run_trains_within_its_budget_and_brings_back_model_files(tmp_path, capsys):
    media = tmp_path / "whl" / "media"
    subprocess.run([sys.executable, "-m", "spvis_model.data.media_copy", str(media)],
                   check=True, capture_output=True)
    out, work = tmp_path / "out", tmp_path / "work"
    proc = run_train(out, work, "--dry-run", "--keep", "3",
                     env={"SPVIS_WHEELS": str(tmp_path / "whl")})
    tail = proc.stdout[-4000:] + proc.stderr[-4000:]
    assert proc.returncode == 0, tail
    assert f"real footage from the media copy {media}" in proc.stdout

    files = sorted(p for p in out.iterdir() if p.is_file())
    assert len(files) <= MAX_FILES and all(0 < p.stat().st_size < MAX_BYTES for p in files)
    models = [p for p in files if p.name.startswith("model_step_")]
    assert len(models) == 3 and {p.name for p in files} - {p.name for p in models} == {
        "train.json", "log.csv", "log.txt"}

    info = json.loads((out / "train.json").read_text())
    steps = info["train_config"]["steps"]
    # The budget (20 s in the dry run) fixed the length: far below the config's ceiling, and
    # the last exported file is the last step.
    assert 4 < steps < 100000 and info["train_config"]["time_budget_s"] is None
    assert info["log"]["steps"] == steps and info["log"]["seconds_per_step"] > 0
    assert [e["step"] for e in info["exported"]][-1] == steps
    assert info["data"]["real_backgrounds"] >= 1 and info["dry_run"] is True
    assert {k for k in info if k.startswith("step_")} == {"step_setup", "step_data",
                                                          "step_train"}
    assert all(info[k]["exit"] == 0 for k in ("step_setup", "step_data", "step_train"))
    assert "time budget:" in (out / "log.txt").read_text()

    model = SPVIS.from_checkpoint(models[-1])  # weights_only load, float16 storage
    assert model.cfg.name == "tiny" and model.class_names[0] == "disk"

    # bench/select_checkpoint.py takes the folder as a run: the model files are its candidates
    # (here rebuilt under another input size, as --model-config does for the shipped config).
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from select_checkpoint import main as select_main
        from select_checkpoint import model_file
    finally:
        sys.path.remove(str(ROOT / "bench"))
    cfg = model.cfg
    cfg.input.max_size = 96
    rebuilt = model_file(models[0], cfg)
    assert rebuilt.cfg.input.max_size == 96 and not rebuilt.training
    assert all(v.dtype == model.state_dict()[k].dtype for k, v in rebuilt.state_dict().items())
    empty = tmp_path / "empty"
    empty.mkdir()
    assert select_main(["--run", str(empty), "--sets", "val_heldout"]) == 2
    # --only naming no checkpoint (e.g. the file name instead of the step) is refused, naming
    # the run's checkpoints, before anything is scored.
    assert select_main(["--run", str(models[0].parent), "--sets", "val_heldout",
                        "--only", models[0].stem]) == 2
    assert f"none of {models[0].parent}'s checkpoints" in capsys.readouterr().err
    # A stage-1 model config has no score calibration: the tool says candidates are scored raw
    # (stop 27: raw scores published ~1 instance per frame where calibrated ones gave
    # 0.003-0.03).
    synthetic = ROOT / "configs" / "model_lite0_synthetic.yaml"
    assert select_main(["--run", str(models[0].parent), "--sets", "val_heldout",
                        "--model-config", str(synthetic), "--only", models[0].stem]) == 2
    assert "no score calibration" in capsys.readouterr().err


def test_bad_options_are_refused_before_anything_runs(tmp_path):
    for args, message in ((["--videos", "many"], "--videos many: want a whole number"),
                          (["--size", "640"], "--size 640: want WIDTHxHEIGHT"),
                          (["--config", "nope.yaml"], "--config nope.yaml: no such file"),
                          (["--deadline", "soon"], "--deadline soon: want a whole number"),
                          (["--frobnicate"], "unknown option --frobnicate")):
        proc = run_train(tmp_path / "out", tmp_path / "work", "--dry-run", *args, timeout=60)
        assert proc.returncode == 2 and message in proc.stderr, (args, proc.stderr)
        assert not (tmp_path / "work").exists()
    # The Python helper it calls, used directly, names the bad value too.
    helper = [sys.executable, str(ROOT / "bench" / "gpu_train.py")]
    for args, message in ((["data", "--size", "640", "--out", str(tmp_path / "d")],
                           "--size must be WIDTHxHEIGHT"),
                          (["data", "--set", "val_heldout", "--out", str(tmp_path / "d")],
                           "'val_heldout' is not a training set"),
                          (["model-config", "--init", str(ROOT / "README.md"), "--out",
                            str(tmp_path / "m.yaml")], "not a readable spvis checkpoint")):
        run = subprocess.run([*helper, *args], cwd=ROOT, capture_output=True, text=True,
                             timeout=120, check=False)
        assert run.returncode == 2 and message in run.stderr, (args, run.stderr)


def test_help_prints_the_whole_header(tmp_path):
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_train.sh"), "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 2
    out = proc.stdout + proc.stderr
    assert out.startswith("Stage 1 on the lent GPU machine") and "#" not in out.splitlines()[0]
    assert "default train_s1_movers4" in out and "SPVIS_GPU_TRAIN_WORK" in out
    assert "set -uo pipefail" not in out


def test_data_leaves_out_media_that_do_not_read_here_and_says_so(tmp_path):
    """On another machine a video may not decode as registered (its OpenCV / FFmpeg differ):
    `bench/gpu_train.py data` leaves it out loudly, records it, and still writes the set."""
    media = tmp_path / "media"
    subprocess.run([sys.executable, "-m", "spvis_model.data.media_copy", str(media)],
                   check=True, capture_output=True)
    (media / "opencv-doc" / "tree.avi").write_bytes(b"not a video" * 100)
    env = dict(os.environ, SPVIS_MEDIA_DIR=str(media), OMP_NUM_THREADS="1")
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_train.py"), "data",
                          "--videos", "4", "--frames", "4", "--out", str(tmp_path / "d"),
                          "--json", str(tmp_path / "d.json")], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "WARNING: real medium 'tree' left out of the training data" in run.stdout
    info = json.loads((tmp_path / "d.json").read_text())["data"]
    assert list(info["media_dropped"]) == ["tree"] and info["videos"] == 4
    used = json.loads((tmp_path / "d" / "annotations.json").read_text())["info"]["config"]
    assert "tree" not in used["real_media"] and "bikes" in used["real_media"]
