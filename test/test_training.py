"""Training infrastructure: the stage-1 loop, outputs, exact resume, 2-process DDP (torchrun, CPU
gloo), config validation, the stage-2 hook and the CLI.

The data set here is a tiny in-memory stand-in for spvis_model.data.ytvis.ClipDataset: clips of
a red disk and a blue square moving over a noisy background, with the same `Clip` fields, and
index -> clip a pure function of (seed, epoch, index).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch.utils.data import Dataset

from spvis_model.config import ConfigError, preset
from spvis_model.model import SPVIS
from spvis_model.training.budget import fit_to_budget
from spvis_model.training.checkpoints import load_training_checkpoint
from spvis_model.training.config import TrainConfig, load_train_config
from spvis_model.training.train_log import read_log
from spvis_model.training.trainer import train

ROOT = Path(__file__).resolve().parents[1]
TEST_DIR = Path(__file__).resolve().parent
CLASSES = ["disk", "square"]


# --- a tiny Clip data set ------------------------------------------------------------------------

@dataclass
class ToyClip:
    """The fields of spvis_model.data.ytvis.Clip."""

    frames: torch.Tensor  # (T, 3, H, W) uint8
    stamps: torch.Tensor  # (T,) float64
    labels: list[torch.Tensor]  # T × (n_t,) int64
    masks: list[torch.Tensor]  # T × (n_t, H, W) bool
    track_ids: list[torch.Tensor]  # T × (n_t,) int64
    video_id: int = 0
    frame_indices: list[int] = field(default_factory=list)


class ToyClips(Dataset):
    """`size` clips of `clip_len` frames (h × w); `seen` records the indices served."""

    def __init__(self, size: int = 8, clip_len: int = 2, hw: tuple[int, int] = (48, 64),
                 seed: int = 0) -> None:
        self.size, self.clip_len, self.hw, self.seed = size, clip_len, hw, seed
        self.epoch = 0
        self.seen: list[tuple[int, int]] = []

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> ToyClip:
        self.seen.append((self.epoch, index))
        rng = np.random.default_rng([self.seed, self.epoch, index])
        h, w = self.hw
        yy, xx = np.mgrid[0:h, 0:w] + 0.5
        objects = []
        for kind in (0, 1):
            if rng.random() < 0.9:
                start = rng.uniform([8, 8], [w - 8, h - 8])
                objects.append((kind, start, rng.uniform(-4, 4, 2), rng.uniform(5, 8)))
        rng.shuffle(objects)
        base = rng.uniform(40, 120, 3)
        frames, labels, masks, ids = [], [], [], []
        for t in range(self.clip_len):
            img = base + rng.normal(0, 10, (h, w, 3))
            full = []
            for kind, start, vel, size in objects:
                cx, cy = start + t * vel
                m = ((xx - cx) ** 2 + (yy - cy) ** 2 <= size ** 2 if kind == 0
                     else (np.abs(xx - cx) <= size) & (np.abs(yy - cy) <= size))
                img[m] = (200, 40, 40) if kind == 0 else (40, 60, 210)
                full.append(m)
            vis = [m & ~np.any(full[i + 1:], axis=0) if i + 1 < len(full) else m
                   for i, m in enumerate(full)]
            keep = [i for i, m in enumerate(vis) if m.any()]
            frames.append(torch.from_numpy(np.clip(img, 0, 255).astype(np.uint8)).permute(2, 0, 1))
            labels.append(torch.tensor([objects[i][0] for i in keep], dtype=torch.int64))
            masks.append(torch.from_numpy(np.stack([vis[i] for i in keep]) if keep
                                          else np.zeros((0, h, w), bool)))
            ids.append(torch.tensor([objects[i][0] + 1 for i in keep], dtype=torch.int64))
        return ToyClip(torch.stack(frames), torch.arange(self.clip_len, dtype=torch.float64) / 4,
                       labels, masks, ids, video_id=index, frame_indices=list(range(self.clip_len)))


@pytest.fixture(autouse=True, scope="module")
def _one_cpu_thread():
    """Train single-threaded here: these models are tiny, and on a small machine shared with
    other jobs two OpenMP threads stall on every parallel region (measured 0.03 s/step with one
    thread against up to 10 s/step with two under load)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def toy_model_config():
    cfg = preset("tiny")
    cfg.class_names = list(CLASSES)
    cfg.input.max_size = 64
    return cfg


def toy_train_config(**overrides) -> TrainConfig:
    base = dict(stage=1, steps=30, batch_size=2, clip_len=2, lr=1e-3, weight_decay=1e-4,
                warmup_steps=3, grad_clip=1.0, checkpoint_every=10, log_every=1, seed=0,
                num_workers=0, device="cpu", task_options={"num_points": 256})
    base.update(overrides)
    if "warmup_steps" not in overrides:
        base["warmup_steps"] = min(3, base["steps"])
    return TrainConfig(**base).validate()


def run_toy(out_dir: Path, resume: bool = False, stop_after: int | None = None,
            dataset: ToyClips | None = None, **overrides) -> Path:
    return train(toy_model_config(), toy_train_config(**overrides), dataset or ToyClips(),
                 out_dir, resume=resume, stop_after=stop_after, progress=False)


def state_dict(path: Path) -> dict[str, torch.Tensor]:
    return SPVIS.from_checkpoint(path).state_dict()


# --- a full stage-1 run --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def stage1_run(tmp_path_factory):
    """30 steps of stage 1 on the fixed toy data set (checkpoints every 10, a log row per step)."""
    out = tmp_path_factory.mktemp("stage1")
    final = run_toy(out)
    return out, final


def test_stage1_run_writes_outputs_and_learns(stage1_run):
    out, final = stage1_run
    assert final == out / "model.pt"
    model = SPVIS.from_checkpoint(final)
    assert model.class_names == CLASSES and model.cfg.input.max_size == 64

    rows = read_log(out / "log.csv")
    assert [r["step"] for r in rows] == list(range(1, 31))
    for key in ("lr", "loss", "loss_ce", "loss_mask", "loss_dice", "loss_aux", "grad_norm",
                "time_per_step", "data_time"):
        assert all(key in r for r in rows), key
    # warmup over 3 steps to lr, then cosine down to lr * min_lr_ratio
    assert rows[0]["lr"] == pytest.approx(1e-3 / 3)
    assert rows[2]["lr"] == pytest.approx(1e-3)
    assert rows[-1]["lr"] < 0.05e-3
    assert all(a["lr"] >= b["lr"] for a, b in itertools.pairwise(rows[2:]))
    losses = [r["loss"] for r in rows]
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    assert last < 0.7 * first, f"loss did not decrease: first 5 {first:.2f}, last 5 {last:.2f}"

    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ckpts = sorted(p.name for p in (out / "ckpt").iterdir())
    assert ckpts == ["last.pt", "step_000010.pt", "step_000020.pt", "step_000030.pt"]
    payload = load_training_checkpoint(out / "ckpt" / "last.pt")  # weights_only=True inside
    assert payload["step"] == 30 and payload["epoch"] == 7  # 4 batches per epoch
    assert payload["train_config"]["steps"] == 30
    assert payload["model_config"]["class_names"] == CLASSES
    assert payload["world_size"] == 1 and len(payload["rank_states"]) == 1
    assert isinstance(payload["rank_states"][0]["rng"]["torch"], torch.Tensor)
    weights = model.state_dict()
    assert all(torch.equal(weights[k], v) for k, v in payload["model"].items())
    assert (out / "train_config.yaml").is_file() and (out / "model_config.yaml").is_file()


# --- a run sized to a time budget ---------------------------------------------------------------

def test_fit_to_budget_sets_steps_and_checkpoints_from_the_timed_steps():
    cfg = toy_train_config(steps=1000, checkpoint_every=250, warmup_steps=5,
                           time_budget_s=100.0)
    # 20 steps timed: a slow first quarter (loader warm-up, left out), then 0.5 s/step; 12 s
    # spent: 88 s left, 97% of it planned -> 170 more steps.
    times = [3.0] * 5 + [0.5] * 15
    d = fit_to_budget(cfg, step=20, step_times=times, elapsed=12.0)
    assert d.seconds_per_step == 0.5 and d.fits and d.steps_before == 1000
    assert d.config.steps == 20 + 170 and d.config.time_budget_s is None
    assert d.config.checkpoint_every == 48  # 250 * 190 / 1000, rounded up: 48, 96, 144, 190
    assert "steps = 190 (was 1000)" in d.message()
    # A budget longer than the configured run never adds steps, nor moves the checkpoints.
    long = fit_to_budget(dataclasses.replace(cfg, time_budget_s=1e6), 20, times, 1.0)
    assert long.config == dataclasses.replace(cfg, time_budget_s=None)
    # Over budget already: the run stops where it is (warm-up done), and says it does not fit
    # when even the warm-up does not.
    assert fit_to_budget(cfg, 20, times, elapsed=150.0).config.steps == 20
    late = fit_to_budget(dataclasses.replace(cfg, warmup_steps=50), 20, times, 150.0)
    assert late.config.steps == 51 and not late.fits and "over budget" in late.message()
    with pytest.raises(ValueError, match="at least 4"):
        fit_to_budget(cfg, 3, [0.1] * 3, 1.0)


def test_run_with_a_time_budget_fixes_its_length_and_records_it(tmp_path):
    """A budget that allows a fraction of `steps`: the run stops after about that many, the lr
    schedule ends at its minimum at the new last step, train_config.yaml and the checkpoints
    record the fixed length (time_budget_s null), and a budget larger than the run changes
    nothing."""
    budget = 3.0
    final = run_toy(tmp_path / "b", steps=100000, warmup_steps=3, checkpoint_every=25000,
                    time_budget_s=budget, budget_probe_steps=8)
    rows = read_log(tmp_path / "b" / "log.csv")
    saved = yaml.safe_load((tmp_path / "b" / "train_config.yaml").read_text())
    steps = saved["steps"]
    assert 8 < steps < 100000 and rows[-1]["step"] == steps
    assert saved["time_budget_s"] is None
    assert saved["checkpoint_every"] == max(1, math.ceil(25000 * steps / 100000))
    # The schedule follows the fixed length: the last step is the cosine's last, near min_lr.
    fixed = TrainConfig.from_dict(saved)
    assert rows[-1]["lr"] == pytest.approx(1e-3 * fixed.lr_factor(steps - 1), rel=1e-6)
    assert rows[-1]["lr"] < 1e-3 * 0.02
    payload = load_training_checkpoint(tmp_path / "b" / "ckpt" / "last.pt")
    assert payload["train_config"]["steps"] == steps
    assert payload["train_config"]["time_budget_s"] is None
    assert SPVIS.from_checkpoint(final).cfg.input.max_size == 64
    ckpts = sorted(p.name for p in (tmp_path / "b" / "ckpt").glob("step_*.pt"))
    # four whatever the speed (a handful of steps gives three), the last at the final step; an
    # interval shorter than the probe's 8 steps gets its first one at step 8
    assert len(ckpts) == math.ceil(steps / saved["checkpoint_every"]) in (3, 4), ckpts
    assert ckpts[-1] == f"step_{steps:06d}.pt"
    loop = sum(r["time_per_step"] for r in rows)
    assert loop < 3 * budget, f"{steps} steps took {loop:.1f} s for a {budget} s budget"

    plenty = run_toy(tmp_path / "p", steps=12, checkpoint_every=6, time_budget_s=1e6,
                     budget_probe_steps=8)
    assert read_log(tmp_path / "p" / "log.csv")[-1]["step"] == 12
    assert yaml.safe_load((tmp_path / "p" / "train_config.yaml").read_text())["steps"] == 12
    assert plenty.is_file()


# --- exact resume --------------------------------------------------------------------------------

def test_resume_continues_exactly(tmp_path):
    """6 steps in one go == 3 steps, stop, resume to 6: the same losses (every term, bit for bit)
    and the same final weights. The stop is mid-epoch (4 batches per epoch), with a worker."""
    opts = dict(steps=6, checkpoint_every=3, num_workers=1)
    whole = run_toy(tmp_path / "whole", **opts)
    assert run_toy(tmp_path / "split", stop_after=3, **opts) == tmp_path / "split/ckpt/last.pt"
    assert not (tmp_path / "split" / "model.pt").exists()
    assert [r["step"] for r in read_log(tmp_path / "split" / "log.csv")] == [1, 2, 3]
    resumed = run_toy(tmp_path / "split", resume=True, **opts)

    a, b = read_log(tmp_path / "whole" / "log.csv"), read_log(tmp_path / "split" / "log.csv")
    assert [r["step"] for r in b] == [1, 2, 3, 4, 5, 6]
    timing = ("time_per_step", "data_time")
    for ra, rb in zip(a, b, strict=True):
        assert {k: v for k, v in ra.items() if k not in timing} == \
               {k: v for k, v in rb.items() if k not in timing}, ra["step"]
    assert len({r["loss"] for r in a}) == 6  # the losses do move
    sa, sb = state_dict(whole), state_dict(resumed)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    seg = [k for k in sa if k.startswith("segmenter.")]
    init = SPVIS(toy_model_config()).state_dict()
    assert any(not torch.equal(sa[k], init[k]) for k in seg)


def test_resume_refuses_changed_config_and_fresh_run_refuses_used_dir(tmp_path):
    run_toy(tmp_path, steps=2, warmup_steps=1, checkpoint_every=2)
    with pytest.raises(ConfigError, match=r"lr = 0\.002"):
        run_toy(tmp_path, resume=True, steps=4, warmup_steps=1, lr=2e-3)
    with pytest.raises(FileExistsError, match="resume"):
        run_toy(tmp_path, steps=2, warmup_steps=1)
    with pytest.raises(FileNotFoundError, match=r"last\.pt"):
        run_toy(tmp_path / "empty", resume=True)


# --- 2 processes, torchrun, gloo -----------------------------------------------------------------

DDP_CHILD = """
import json, os, sys
sys.path.insert(0, {test_dir!r})
from pathlib import Path
import spvis_model.training.trainer as T
from test_training import ToyClips, toy_model_config, toy_train_config

captured = {{}}
original_run = T._Trainer.run
def run(self, stop_after):
    path = original_run(self, stop_after)
    captured["digest"] = T.params_digest(self.model)
    return path
T._Trainer.run = run

data = ToyClips(size=8)
cfg = toy_train_config(steps=4, batch_size=1, checkpoint_every=2, log_every=1)
final = T.train(toy_model_config(), cfg, data, Path({out!r}), progress=False)
rank = int(os.environ["RANK"])
Path({out!r}, f"result_{{rank}}.json").write_text(json.dumps(
    {{"rank": rank, "digest": captured["digest"], "seen": data.seen, "final": str(final)}}))
"""


def test_ddp_two_processes_gloo(tmp_path):
    script = tmp_path / "child.py"
    out = tmp_path / "out"
    script.write_text(DDP_CHILD.format(test_dir=str(TEST_DIR), out=str(out)))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    env.pop("CUDA_VISIBLE_DEVICES", None)
    torchrun = Path(sys.executable).with_name("torchrun")
    proc = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2", str(script)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240,
                          check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    results = {r: json.loads((out / f"result_{r}.json").read_text()) for r in (0, 1)}
    assert "final model written to" in proc.stdout
    # 8 clips, 2 ranks × batch 1: 4 steps = one epoch; the ranks split it
    seen0 = {i for _, i in results[0]["seen"]}
    seen1 = {i for _, i in results[1]["seen"]}
    assert len(results[0]["seen"]) == len(results[1]["seen"]) == 4
    assert not seen0 & seen1 and seen0 | seen1 == set(range(8))
    # gradients synchronised: bit-identical parameters on both ranks, equal to model.pt's
    assert results[0]["digest"] == results[1]["digest"]
    from spvis_model.training.checkpoints import params_digest

    final = SPVIS.from_checkpoint(out / "model.pt")
    assert params_digest(final) == results[0]["digest"]
    assert params_digest(SPVIS(toy_model_config())) != results[0]["digest"]  # it trained
    assert [r["step"] for r in read_log(out / "log.csv")] == [1, 2, 3, 4]
    payload = load_training_checkpoint(out / "ckpt" / "last.pt")
    assert payload["world_size"] == 2 and len(payload["rank_states"]) == 2
    rng = [s["rng"]["torch"] for s in payload["rank_states"]]
    assert not torch.equal(rng[0], rng[1])  # per-rank random streams


def test_callers_group_at_world_size_one_is_used(tmp_path, monkeypatch):
    """A process group the caller created is used even by one process (bench/train_check.py
    proves the NCCL path on one GPU so): DDP and the collectives run, and train() leaves the
    group to its owner."""
    from spvis_model.training import distributed as D

    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    alone = D.init_distributed("cpu")
    assert not alone.distributed and not alone.in_group and not alone.owns_group
    dist = torch.distributed
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0,
                            world_size=1)
    try:
        info = D.init_distributed("cpu")
        assert info.distributed and info.in_group and not info.owns_group
        assert D.mean_over_ranks(info, {"loss": 2.0}) == {"loss": 2.0}
        final = run_toy(tmp_path / "run", steps=2, warmup_steps=1)
        assert final.is_file()
        assert dist.is_initialized()  # not destroyed by train(): the caller owns it
        payload = load_training_checkpoint(tmp_path / "run" / "ckpt" / "last.pt")
        assert payload["world_size"] == 1 and len(payload["rank_states"]) == 1
    finally:
        dist.destroy_process_group()


# --- sampler -------------------------------------------------------------------------------------

def test_sharded_batch_sampler():
    from spvis_model.training.distributed import ShardedBatchSampler

    samplers = [ShardedBatchSampler(10, 2, r, 3, seed=5) for r in range(3)]
    assert len(samplers[0]) == 2  # ceil(10 / 6) batches per epoch
    epoch0 = [s.rank_indices(0) for s in samplers]
    flat = [i for idx in epoch0 for i in idx]
    assert sorted(set(flat)) == list(range(10)) and len(flat) == 12  # 2 wrapped repeats
    assert epoch0 == [s.rank_indices(0) for s in samplers]  # pure function of (seed, epoch)
    assert epoch0 != [s.rank_indices(1) for s in samplers]
    s = samplers[1]
    s.set_epoch(0, start_batch=1)
    assert list(s) == [epoch0[1][2:4]]


# --- configuration -------------------------------------------------------------------------------

@pytest.mark.parametrize(("field", "value"), [
    ("stage", 3), ("steps", 0), ("batch_size", 0), ("clip_len", 0), ("lr", -1e-3),
    ("lr", float("nan")), ("weight_decay", -1.0), ("warmup_steps", 31), ("schedule", "linear"),
    ("min_lr_ratio", 2.0), ("lr_milestones", [0.9, 0.5]), ("lr_gamma", 0.0),
    ("grad_clip", float("inf")), ("amp", "yes"), ("amp_dtype", "float8"),
    ("checkpoint_every", 0), ("keep_checkpoints", -1), ("log_every", 0), ("seed", -1),
    ("num_workers", -1), ("device", "tpu"), ("init", ""), ("freeze_segmenter", True),
    ("task_options", []), ("data", {"frames": 3}), ("data", {"stride_min": 0}),
    ("time_budget_s", 0.0), ("time_budget_s", float("inf")), ("time_budget_s", "5 min"),
    ("budget_probe_steps", 3),
])
def test_bad_train_config_names_the_field(field, value):
    with pytest.raises(ConfigError, match=rf"^{field}"):
        toy_train_config(**{field: value})


def test_train_config_yaml(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text("stage: 2\nsteps: 100\nlr: 1e-4\ntask_options: {drop_prob: 0.1}\n")
    cfg = load_train_config(path)
    assert cfg.lr == 1e-4 and cfg.stage == 2 and cfg.segmenter_frozen
    path.write_text("steps: 10\nlearning_rate: 0.1\n")
    with pytest.raises(ConfigError, match="learning_rate"):
        load_train_config(path)
    path.write_text("steps: 10\nwarmup_steps: 20\n")
    with pytest.raises(ConfigError, match="warmup_steps = 20"):
        load_train_config(path)
    path.write_bytes(b"steps: 10\n\xff\xfe\n")  # was a UnicodeDecodeError traceback
    with pytest.raises(ConfigError, match=rf"cannot read train config {path}: not UTF-8 text "
                                          r"\(byte 0xff at offset 10\)"):
        load_train_config(path)


class _Payload:
    """Unpickling this calls os.system(command)."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_malicious_training_checkpoint_is_one_line_without_torchs_retry_advice(tmp_path):
    from spvis_model.checkpoint import CheckpointError

    marker = tmp_path / "pwned"
    path = tmp_path / "run" / "ckpt" / "last.pt"
    path.parent.mkdir(parents=True)
    torch.save({"format": _Payload(f"touch {marker}")}, path)
    with pytest.raises(CheckpointError) as err:
        load_training_checkpoint(path)
    text = str(err.value)
    assert text.startswith(f"training checkpoint {path}: not readable (refused to load global "
                           "posix.system"), text
    assert "\n" not in text and "weights_only" not in text, text
    assert not marker.exists()


def test_amp_refused_on_cpu(tmp_path):
    with pytest.raises(ConfigError, match="amp = True"):
        run_toy(tmp_path, amp=True)


def test_bad_task_options_name_the_field(tmp_path):
    with pytest.raises(ConfigError, match="task_options"):
        run_toy(tmp_path, task_options={"num_pts": 3})


# --- stage 2 -------------------------------------------------------------------------------------

def test_stage2_without_tracker_task_fails_clearly(tmp_path, monkeypatch):
    from spvis_model.training.tasks import TRACKER_TASK_MODULE, TaskUnavailableError

    monkeypatch.setitem(sys.modules, TRACKER_TASK_MODULE, None)  # import now fails
    with pytest.raises(TaskUnavailableError, match=r"spvis_model\.training\.tracker_task"):
        run_toy(tmp_path, stage=2)


def test_stage2_from_stage1_model(stage1_run, tmp_path, capsys):
    pytest.importorskip("spvis_model.training.tracker_task")
    _, stage1 = stage1_run
    final = run_toy(tmp_path, stage=2, steps=2, clip_len=3, init=str(stage1), task_options={},
                    dataset=ToyClips(clip_len=3))
    assert "no tracker output was supervised" not in capsys.readouterr().err
    assert all(r["supervised"] > 0 for r in read_log(tmp_path / "log.csv"))
    before, after = state_dict(stage1), state_dict(final)
    seg = [k for k in before if k.startswith("segmenter.")]
    assert all(torch.equal(before[k], after[k]) for k in seg)  # frozen
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("tracker."))
    with pytest.raises(ConfigError, match="freeze_segmenter"):
        run_toy(tmp_path / "unfrozen", stage=2, steps=2, clip_len=3, init=str(stage1),
                task_options={}, freeze_segmenter=False)


def test_stage2_that_supervises_nothing_says_so(stage1_run, tmp_path, capsys):
    """A segmenter that gives the tracker no candidate (here detect_score 1.0) makes stage 2
    steps of loss 0 that learn nothing: the log row says supervised 0 and a warning says why."""
    pytest.importorskip("spvis_model.training.tracker_task")
    _, stage1 = stage1_run
    model_cfg = toy_model_config()
    model_cfg.tracker.detect_score = 1.0
    train(model_cfg, toy_train_config(stage=2, steps=2, clip_len=3, init=str(stage1),
                                      task_options={}),
          ToyClips(clip_len=3), tmp_path, progress=False)
    err = capsys.readouterr().err
    assert "spvis train: warning: step 1: no tracker output was supervised" in err
    assert all(r["supervised"] == 0 for r in read_log(tmp_path / "log.csv"))


# --- the CLI -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_ytvis(tmp_path_factory):
    import dataclasses

    from spvis_model.data.synthetic import generate
    from spvis_model.data.synthetic import preset as synthetic_preset

    root = tmp_path_factory.mktemp("ytvis")
    cfg = dataclasses.replace(synthetic_preset("easy"), width=64, height=48, videos=3, frames=8)
    return generate(cfg, root)


def test_cli_train(tiny_ytvis, tmp_path, capsys):
    from spvis_model.cli import main

    (tmp_path / "train.yaml").write_text(
        "steps: 3\nbatch_size: 2\nclip_len: 2\nlr: 1e-3\nwarmup_steps: 1\ncheckpoint_every: 3\n"
        "log_every: 1\nnum_workers: 0\ndevice: cpu\ntask_options: {num_points: 128}\n"
        "data: {augment: {crop_prob: 0.0}}\n")
    (tmp_path / "model.yaml").write_text("preset: tiny\ninput: {max_size: 64}\n")
    out = tmp_path / "run"
    args = ["train", "--config", str(tmp_path / "train.yaml"), "--data", str(tiny_ytvis),
            "--model-config", str(tmp_path / "model.yaml"), "--out", str(out), "--no-progress"]
    assert main(args) == 0
    assert f"final model written to {out / 'model.pt'}" in capsys.readouterr().out
    model = SPVIS.from_checkpoint(out / "model.pt")
    names = json.loads(tiny_ytvis.read_text())["categories"]
    assert model.class_names == [c["name"] for c in sorted(names, key=lambda c: c["id"])]
    assert [r["step"] for r in read_log(out / "log.csv")] == [1, 2, 3]
    # a used --out without --resume is refused with a clear message
    assert main(args) == 2
    assert "--resume" in capsys.readouterr().err
    # --resume with more steps continues (the model config comes from the run)
    (tmp_path / "train.yaml").write_text(
        (tmp_path / "train.yaml").read_text().replace("steps: 3", "steps: 4"))
    resume = [a for a in args if a not in ("--model-config", str(tmp_path / "model.yaml"))]
    assert main([*resume, "--resume"]) == 0
    assert [r["step"] for r in read_log(out / "log.csv")] == [1, 2, 3, 4]


def test_cli_missing_images_folder_is_refused_up_front(tiny_ytvis, tmp_path, capsys):
    from spvis_model.cli import main

    (tmp_path / "train.yaml").write_text("steps: 1\nwarmup_steps: 0\nnum_workers: 0\n"
                                         "device: cpu\n")
    missing = tmp_path / "no_such_frames"
    code = main(["train", "--config", str(tmp_path / "train.yaml"), "--data", str(tiny_ytvis),
                 "--images", str(missing), "--model-config", "tiny",
                 "--out", str(tmp_path / "run"), "--no-progress"])
    assert code == 1
    assert capsys.readouterr().err == (f"spvis train: error: image directory {missing} does "
                                       "not exist (give --images DIR: the folder the dataset's "
                                       "file_names are relative to)\n")
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_cli_without_data_module_names_it(tiny_ytvis, tmp_path, monkeypatch, capsys):
    from spvis_model.cli import main

    (tmp_path / "train.yaml").write_text("steps: 1\nwarmup_steps: 0\n")
    monkeypatch.setitem(sys.modules, "spvis_model.data.ytvis", None)
    monkeypatch.delitem(sys.modules, "spvis_model.data.sampler", raising=False)
    monkeypatch.delitem(sys.modules, "spvis_model.data.transforms", raising=False)
    code = main(["train", "--config", str(tmp_path / "train.yaml"), "--data", str(tiny_ytvis),
                 "--out", str(tmp_path / "run")])
    assert code == 2
    assert "spvis_model.data.ytvis" in capsys.readouterr().err
