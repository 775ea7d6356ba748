"""`TrainConfig`: everything a training run needs besides the model config and the data.

Read from YAML with `yaml.safe_load` (`load_train_config`); every field is checked by
`TrainConfig.validate()`, and a bad value raises `ConfigError` naming the field and the value,
e.g. ``lr = -0.001: must be a finite number > 0``. See docs/training.md for each field.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from spvis_model.config import ConfigError, not_utf8

SCHEDULES = ("cosine", "step")
AMP_DTYPES = ("bfloat16", "float16")
DEVICES = ("auto", "cpu", "cuda")
DATA_KEYS = ("stride_min", "stride_max", "epoch_length", "augment", "skip_empty")

# Fields that may change when a run is resumed (they do not change what is computed, or, for
# `steps`, only extend/shorten the run). Any other difference is refused: see `resume_diff`.
RESUMABLE_CHANGES = ("steps", "checkpoint_every", "keep_checkpoints", "log_every", "num_workers",
                     "device", "init", "time_budget_s", "budget_probe_steps")


@dataclass
class TrainConfig:
    """A training run.

    Attributes:
        stage: 1 trains the segmenter (every frame an independent image, Mask2Former loss);
            2 trains the tracker (`spvis_model.training.tracker_task.TrackerTask`).
        steps: optimizer steps in the whole run.
        batch_size: clips per process per step (the global batch is batch_size × world size).
        clip_len: frames per clip; the data set is built with it and the trainer checks clips
            are not longer.
        lr: peak learning rate (AdamW), reached after warmup.
        weight_decay: AdamW decoupled weight decay, not applied to biases, norm weights and
            embeddings.
        backbone_lr_mult: the backbone's learning rate is lr × this (Mask2Former uses 0.1).
        warmup_steps: linear warmup from lr / warmup_steps to lr over these steps.
        schedule: "cosine" (to lr × min_lr_ratio at the last step) or "step" (× lr_gamma at each
            fraction of `steps` in lr_milestones).
        min_lr_ratio: the cosine schedule's final lr / lr.
        lr_milestones: the step schedule's milestones, as fractions of `steps` in (0, 1).
        lr_gamma: the step schedule's factor at each milestone.
        grad_clip: max global L2 norm of the gradients; 0 turns clipping off (the norm is still
            logged and a non-finite norm still stops the run).
        amp: mixed precision: CUDA autocast in amp_dtype (+ GradScaler for float16). Refused on
            CPU (the MSDeformAttn CPU kernels are float32/float64 only).
        amp_dtype: "bfloat16" or "float16".
        checkpoint_every: write ckpt/step_XXXXXX.pt and ckpt/last.pt every this many steps (and at
            the last step).
        keep_checkpoints: keep only the newest this many step_XXXXXX.pt files; 0 keeps all.
        log_every: write a row of log.csv (means over the steps since the last row) every this
            many steps.
        seed: the run's seed (model init, data order, per-rank random streams).
        num_workers: DataLoader worker processes per rank.
        device: "auto" (CUDA when available), "cpu" or "cuda" (under torchrun: cuda:LOCAL_RANK).
        init: optional checkpoint to start from: an spvis model (`model.save`, e.g. a stage-1
            model.pt) or a training checkpoint (ckpt/*.pt); weights only.
        freeze_segmenter: keep the segmenter's weights fixed (out of the optimizer, eval mode).
            None means the stage's default: False for stage 1 (True is refused: nothing would
            train), True for stage 2.
        task_options: keyword arguments for the task's constructor, e.g. {num_points: 12544}
            for stage 1 or {drop_prob: 0.2} for stage 2.
        data: how `spvis train` builds clips from a YouTube-VIS JSON (ignored by `train()`, which
            gets a data set): stride_min / stride_max (ClipSampler's random frame stride,
            default 1 / 10), epoch_length (clips per epoch, default: one per video), augment
            (ClipAugment fields; default max_size = the model's input.max_size, min_size =
            (0.45, 0.8) × that) and skip_empty (default true: leave out videos without
            annotations; false keeps object-free clips, the negatives of real footage).
        time_budget_s: wall-clock seconds for this process's training loop (start-up and data
            set building not counted), or None. After `budget_probe_steps` steps the trainer
            measures the median step time and lowers `steps` (never raises it) so the loop
            ends within the budget, scaling `checkpoint_every` by the same factor (a run of
            steps 100000 / checkpoint_every 25000 writes four checkpoints whatever the
            machine's speed). From then on the lr schedule follows the new length; the fixed
            `steps` and `checkpoint_every` are written to train_config.yaml and the
            checkpoints with `time_budget_s: null`, so a resume continues that schedule (a
            resume with a budget gives the remaining steps a new one).
        budget_probe_steps: steps timed before `time_budget_s` fixes the length (the first
            quarter of them, data-loader warm-up, is left out of the median).
    """

    stage: int = 1
    steps: int = 1000
    batch_size: int = 2
    clip_len: int = 2
    lr: float = 1e-4
    weight_decay: float = 0.05
    backbone_lr_mult: float = 0.1
    warmup_steps: int = 10
    schedule: str = "cosine"
    min_lr_ratio: float = 0.01
    lr_milestones: list[float] = field(default_factory=lambda: [0.89, 0.96])
    lr_gamma: float = 0.1
    grad_clip: float = 1.0
    amp: bool = False
    amp_dtype: str = "bfloat16"
    checkpoint_every: int = 500
    keep_checkpoints: int = 0
    log_every: int = 20
    seed: int = 0
    num_workers: int = 2
    device: str = "auto"
    init: str | None = None
    freeze_segmenter: bool | None = None
    task_options: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    time_budget_s: float | None = None
    budget_probe_steps: int = 20

    # --- derived ---------------------------------------------------------------------------------
    @property
    def segmenter_frozen(self) -> bool:
        """freeze_segmenter with the stage's default applied."""
        if self.freeze_segmenter is None:
            return self.stage == 2
        return self.freeze_segmenter

    def lr_factor(self, step: int) -> float:
        """The learning rate of (0-based) optimizer step `step`, as a fraction of `lr`."""
        warm = min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps > 0 else 1.0
        if self.schedule == "cosine":
            span = max(1, self.steps - self.warmup_steps)
            progress = min(1.0, max(0.0, (step - self.warmup_steps) / span))
            decay = self.min_lr_ratio + (1.0 - self.min_lr_ratio) * 0.5 * (
                1.0 + math.cos(math.pi * progress))
        else:
            passed = sum(1 for m in self.lr_milestones if step >= round(m * self.steps))
            decay = self.lr_gamma ** passed
        return warm * decay

    # --- (de)serialisation -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from a plain dict (as YAML gives); unknown fields and bad values raise
        ConfigError naming them."""
        if not isinstance(data, dict):
            raise ConfigError(f"train config must be a mapping, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"train config: unknown field(s) {unknown}; known: {sorted(names)}")
        data = dict(data)
        for name in _FLOAT_FIELDS:
            # PyYAML (YAML 1.1) reads `1e-4` (no dot) as a string: accept numeric strings.
            value = data.get(name)
            if isinstance(value, str):
                with contextlib.suppress(ValueError):  # if not, validate() names the field
                    data[name] = float(value)
        cfg = cls(**data)
        cfg.validate()
        return cfg

    def validate(self) -> TrainConfig:
        """Raise ConfigError for the first invalid field; return self."""
        _check(_is_int(self.stage) and self.stage in (1, 2), "stage", self.stage, "1 or 2")
        _int_at_least("steps", self.steps, 1)
        _int_at_least("batch_size", self.batch_size, 1)
        _int_at_least("clip_len", self.clip_len, 1)
        _finite("lr", self.lr, 0.0, exclusive=True)
        _finite("weight_decay", self.weight_decay, 0.0)
        _finite("backbone_lr_mult", self.backbone_lr_mult, 0.0)
        _int_at_least("warmup_steps", self.warmup_steps, 0)
        _check(self.warmup_steps <= self.steps, "warmup_steps", self.warmup_steps,
               f"<= steps ({self.steps})")
        _check(self.schedule in SCHEDULES, "schedule", self.schedule, f"one of {SCHEDULES}")
        _check(_is_number(self.min_lr_ratio) and 0.0 <= self.min_lr_ratio <= 1.0,
               "min_lr_ratio", self.min_lr_ratio, "a number in [0, 1]")
        _check(isinstance(self.lr_milestones, list)
               and all(_is_number(m) and 0.0 < m < 1.0 for m in self.lr_milestones)
               and self.lr_milestones == sorted(self.lr_milestones),
               "lr_milestones", self.lr_milestones,
               "an increasing list of fractions of steps in (0, 1)")
        _check(_is_number(self.lr_gamma) and 0.0 < self.lr_gamma <= 1.0, "lr_gamma",
               self.lr_gamma, "a number in (0, 1]")
        _finite("grad_clip", self.grad_clip, 0.0)
        _check(isinstance(self.amp, bool), "amp", self.amp, "a bool")
        _check(self.amp_dtype in AMP_DTYPES, "amp_dtype", self.amp_dtype, f"one of {AMP_DTYPES}")
        _int_at_least("checkpoint_every", self.checkpoint_every, 1)
        _int_at_least("keep_checkpoints", self.keep_checkpoints, 0)
        _int_at_least("log_every", self.log_every, 1)
        _check(_is_int(self.seed) and 0 <= self.seed < 2**63, "seed", self.seed,
               "an int in [0, 2**63)")
        _int_at_least("num_workers", self.num_workers, 0)
        _check(self.device in DEVICES, "device", self.device, f"one of {DEVICES}")
        _check(self.init is None or (isinstance(self.init, str) and self.init != ""), "init",
               self.init, "null or a checkpoint path")
        _check(self.freeze_segmenter is None or isinstance(self.freeze_segmenter, bool),
               "freeze_segmenter", self.freeze_segmenter, "null, true or false")
        _check(not (self.stage == 1 and self.freeze_segmenter is True), "freeze_segmenter",
               self.freeze_segmenter, "false or null for stage 1 (stage 1 trains the segmenter)")
        _check(isinstance(self.task_options, dict)
               and all(isinstance(k, str) for k in self.task_options), "task_options",
               self.task_options, "a mapping of keyword arguments")
        _check(self.time_budget_s is None or (_is_number(self.time_budget_s)
                                              and math.isfinite(self.time_budget_s)
                                              and self.time_budget_s > 0),
               "time_budget_s", self.time_budget_s, "null or a finite number of seconds > 0")
        _int_at_least("budget_probe_steps", self.budget_probe_steps, 4)
        _check(isinstance(self.data, dict), "data", self.data, "a mapping")
        unknown = sorted(set(self.data) - set(DATA_KEYS))
        _check(not unknown, "data", self.data, f"a mapping with keys from {DATA_KEYS} "
               f"(unknown: {unknown})")
        if self.data.get("skip_empty") is not None:
            _check(isinstance(self.data["skip_empty"], bool), "data.skip_empty",
                   self.data["skip_empty"], "a bool")
        for key in ("stride_min", "stride_max", "epoch_length"):
            if self.data.get(key) is not None:
                _int_at_least(f"data.{key}", self.data[key], 1)
        if self.data.get("stride_min") is not None and self.data.get("stride_max") is not None:
            _check(self.data["stride_min"] <= self.data["stride_max"], "data.stride_min",
                   self.data["stride_min"], f"<= data.stride_max ({self.data['stride_max']})")
        _check(isinstance(self.data.get("augment", {}), dict), "data.augment",
               self.data.get("augment"), "a mapping of ClipAugment fields")
        return self

    def resume_diff(self, saved: TrainConfig) -> list[str]:
        """Fields (outside RESUMABLE_CHANGES) where this config differs from `saved`."""
        mine, theirs = self.to_dict(), saved.to_dict()
        return [k for k in mine if k not in RESUMABLE_CHANGES and mine[k] != theirs[k]]


def load_train_config(path: str | Path) -> TrainConfig:
    """Read a YAML train config (safe loader: no code runs)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"cannot read train config {path}: {not_utf8(exc)}") from exc
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read train config {path}: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"train config {path} must be a YAML mapping, got "
                          f"{type(data).__name__}")
    try:
        return TrainConfig.from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"train config {path}: {exc}") from exc
    except TypeError as exc:  # pragma: no cover - from_dict checks names first
        raise ConfigError(f"train config {path}: {exc}") from exc


def save_train_config(cfg: TrainConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))


_FLOAT_FIELDS = ("lr", "weight_decay", "backbone_lr_mult", "min_lr_ratio", "lr_gamma", "grad_clip",
                 "time_budget_s")


# --- helpers -------------------------------------------------------------------------------------

def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check(ok: bool, name: str, value: object, expected: str) -> None:
    if not ok:
        raise ConfigError(f"{name} = {value!r}: must be {expected}")


def _int_at_least(name: str, value: object, minimum: int) -> None:
    _check(_is_int(value) and value >= minimum, name, value, f"an int >= {minimum}")


def _finite(name: str, value: object, minimum: float, *, exclusive: bool = False) -> None:
    ok = _is_number(value) and math.isfinite(value) and (
        value > minimum if exclusive else value >= minimum)
    _check(ok, name, value, f"a finite number {'>' if exclusive else '>='} {minimum:g}")
