"""`spvis train` as a researcher runs it: user errors are one line with an exit code (missing or
undecodable frame files, an --out that cannot be written, Ctrl-C / SIGTERM), and checkpoint
rotation keeps the newest checkpoints past step 999999."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from spvis_model.config import ConfigError
from spvis_model.training.checkpoints import step_checkpoints

ROOT = Path(__file__).resolve().parents[1]
TRAIN_YAML = ("steps: {steps}\nbatch_size: 2\nclip_len: 2\nlr: 1e-3\nwarmup_steps: 1\n"
              "checkpoint_every: {every}\nlog_every: 1\nnum_workers: 0\ndevice: cpu\n"
              "task_options: {{num_points: 128}}\ndata: {{augment: {{crop_prob: 0.0}}}}\n")


@pytest.fixture(autouse=True, scope="module")
def _one_cpu_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def ytvis(tmp_path_factory) -> Path:
    """A 3-video, 8-frame, 64x48 synthetic YouTube-VIS set; returns its annotations.json."""
    from spvis_model.data.synthetic import generate
    from spvis_model.data.synthetic import preset as synthetic_preset

    root = tmp_path_factory.mktemp("ytvis_audit")
    cfg = dataclasses.replace(synthetic_preset("easy"), width=64, height=48, videos=3, frames=8)
    return generate(cfg, root)


def _config(tmp_path: Path, steps: int = 2, every: int = 1) -> Path:
    path = tmp_path / "train.yaml"
    path.write_text(TRAIN_YAML.format(steps=steps, every=every))
    return path


def _args(config: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--config", str(config), "--data", str(data), "--model-config", "tiny",
            "--out", str(out), "--no-progress", *extra]


def test_missing_frame_files_are_refused_before_anything_is_written(ytvis, tmp_path, capsys):
    from spvis_model.cli import main

    data = json.loads(ytvis.read_text())
    video = data["videos"][2]
    video["file_names"] = [f"gone/{Path(n).name}" for n in video["file_names"]]
    bad = tmp_path / "annotations.json"
    bad.write_text(json.dumps(data))
    images = ytvis.parent / "JPEGImages"
    out = tmp_path / "run"
    code = main(_args(_config(tmp_path), bad, out, "--images", str(images)))
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"8 of 24 frame files do not exist, e.g. video {video['id']}" in err
    assert str(images / "gone" / Path(video["file_names"][0]).name) in err
    assert not out.exists()


def test_an_undecodable_frame_mid_run_is_one_line_and_exit_1(ytvis, tmp_path, capsys):
    import shutil

    from spvis_model.cli import main

    root = tmp_path / "copy"
    shutil.copytree(ytvis.parent, root)
    data = json.loads(ytvis.read_text())
    for name in data["videos"][0]["file_names"]:  # every frame of one video is not an image
        (root / "JPEGImages" / name).write_bytes(b"not a jpeg")
    code = main(_args(_config(tmp_path, steps=4, every=4), root / ytvis.name, tmp_path / "run"))
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "the data set could not give a batch" in err and "could not decode" in err


@pytest.mark.parametrize("kind", ["file", "under_file"])
def test_an_out_dir_that_cannot_be_written_is_one_line_and_exit_2(ytvis, tmp_path, capsys,
                                                                  kind):
    from spvis_model.cli import main

    blocker = tmp_path / "a_file"
    blocker.write_text("")
    out = blocker if kind == "file" else blocker / "run"
    code = main(_args(_config(tmp_path), ytvis, out))
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"--out (out_dir) {out}: cannot write training outputs there" in err


def test_train_refuses_an_unwritable_out_dir_before_training(tmp_path, monkeypatch):
    """A folder that exists but cannot take files (read-only mount, no permission) is found at
    start-up, not at the first checkpoint."""
    from spvis_model.training import trainer as T
    from spvis_model.training.config import TrainConfig

    real_write = Path.write_bytes

    def refuse(self: Path, data: bytes) -> int:
        if self.name.startswith(".write_test"):
            raise PermissionError(13, "Permission denied", str(self))
        return real_write(self, data)

    monkeypatch.setattr(Path, "write_bytes", refuse)
    stepped: list[int] = []
    monkeypatch.setattr(T._Trainer, "_train_step", lambda self, clips: stepped.append(1) or {})
    cfg = TrainConfig(steps=1, warmup_steps=0, num_workers=0, device="cpu")
    with pytest.raises(ConfigError, match="cannot write training outputs there "
                                          r"\(Permission denied"):
        T.train("tiny", cfg, [None], tmp_path / "run", progress=False)
    assert not stepped


@pytest.mark.parametrize("sig, code, word", [(signal.SIGINT, 130, "interrupted"),
                                             (signal.SIGTERM, 143, "terminated")])
def test_ctrl_c_and_sigterm_end_with_one_line_naming_the_checkpoint(ytvis, tmp_path, sig, code,
                                                                    word):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "spvis_model.cli",
           *_args(_config(tmp_path, steps=100000, every=1), ytvis, out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 15
        while not (out / "ckpt" / "step_000002.pt").exists():
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "no checkpoint within 15 s"
            time.sleep(0.05)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == code, err
    assert "Traceback" not in err
    last = out / "ckpt" / "last.pt"
    assert err.strip().splitlines()[-1] == (f"spvis train: error: {word}"
                                            f"{' (SIGTERM)' if code == 143 else ''}; continue "
                                            f"from its last checkpoint ({last}) with --resume")
    assert last.is_file()


def test_checkpoint_rotation_orders_by_step_not_by_name(tmp_path):
    for step in (999998, 999999, 1000000, 1000001):
        (tmp_path / f"step_{step:06d}.pt").write_bytes(b"")
    (tmp_path / "step_x.pt").write_bytes(b"")  # not a step checkpoint: left alone
    names = [p.name for p in step_checkpoints(tmp_path)]
    assert names == ["step_999998.pt", "step_999999.pt", "step_1000000.pt", "step_1000001.pt"]
    # keep_checkpoints: 2 deletes the two oldest, i.e. [:-2] of this order
    assert names[:-2] == ["step_999998.pt", "step_999999.pt"]


def test_a_budget_interval_shorter_than_the_probe_still_checkpoints_inside_it(ytvis, tmp_path,
                                                                              monkeypatch):
    """A short time budget can fix `checkpoint_every` below the probe's step count: the
    checkpoints the new interval puts inside the probe steps used to be skipped (found as a
    flaky three-instead-of-four in test_training). One is written where the probe ends."""
    from spvis_model.cli import main
    from spvis_model.training import budget as B
    from spvis_model.training import trainer as T

    def fixed(cfg, step, step_times, elapsed):
        assert step == 4
        config = dataclasses.replace(cfg, steps=8, checkpoint_every=3, time_budget_s=None)
        return B.BudgetDecision(config.validate(), 0.1, cfg.steps, True)

    monkeypatch.setattr(T, "fit_to_budget", fixed)
    config = _config(tmp_path, steps=1000, every=500)
    config.write_text(config.read_text() + "budget_probe_steps: 4\n")
    out = tmp_path / "run"
    assert main(_args(config, ytvis, out, "--time-budget", "60")) == 0
    names = [p.name for p in step_checkpoints(out / "ckpt")]
    # 3 fell inside the probe (steps 1-4): written at 4; then 6 and the final step 8
    assert names == ["step_000004.pt", "step_000006.pt", "step_000008.pt"]
