"""The training loop: `train(model_config, train_cfg, dataset, out_dir, resume=False) -> Path`.

One function for both stages (the stage's `Task` supplies the trainable parameters and the
loss), one process or many:

- **Processes.** Under torchrun (RANK / WORLD_SIZE / LOCAL_RANK in the environment) every rank
  joins the default process group (NCCL on CUDA, gloo on CPU) and the model is wrapped in
  DistributedDataParallel. The DDP forward *is* the task's loss (a small wrapper module), so the
  gradient hooks are armed whatever model methods the task calls. `find_unused_parameters`
  comes from the task (stage 1: False, every parameter is used; stage 2: True).
- **Data.** `ShardedBatchSampler`: each epoch is a permutation fixed by (seed, epoch); rank r
  takes every world-th index, so ranks see disjoint clips. `dataset.set_epoch(epoch)` is called
  before each epoch's loader iterator is created. A resume skips straight to its batch.
- **Randomness.** The model is initialised from `seed` (identical on every rank). Then each rank
  seeds torch / numpy / random from (seed, rank); the task gets a CPU generator seeded from
  (seed, rank, step) every step. Checkpoints store every rank's RNG states, so a resume
  continues the same streams.
- **Optimisation.** AdamW in four groups (backbone or not × decayed or not; biases, norm
  weights and embeddings get no weight decay; the backbone's lr is lr × backbone_lr_mult),
  warmup + cosine or step schedule (`TrainConfig.lr_factor`, a LambdaLR), global grad-norm
  clipping. AMP: CUDA autocast in bfloat16 or float16 (float16 adds a GradScaler); refused on
  CPU. A non-finite gradient norm stops the run (unless the float16 GradScaler skips the step).
- **Outputs** (rank 0): out_dir/ckpt/step_XXXXXX.pt and ckpt/last.pt every checkpoint_every
  steps and at the end (model, optimizer, scheduler, GradScaler, step, epoch, per-rank RNG
  states, train and model config; tensors and primitives only, loaded with weights_only=True),
  out_dir/log.csv, out_dir/loss.png (at each checkpoint and at the end), train_config.yaml and
  model_config.yaml, and at the end the model in the spvis checkpoint format, out_dir/model.pt.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset

from spvis_model.atomic import atomic_write
from spvis_model.checkpoint import CheckpointError
from spvis_model.config import ConfigError, ModelConfig, load_config, preset, save_config
from spvis_model.model import SPVIS
from spvis_model.state_dict import load_state_dict_exact
from spvis_model.training import distributed as D
from spvis_model.training.budget import fit_to_budget
from spvis_model.training.checkpoints import (
    TRAIN_FORMAT,
    TRAIN_FORMAT_VERSION,
    checkpoint_dir,
    load_init_weights,
    load_training_checkpoint,
    params_digest,
    step_checkpoints,
)
from spvis_model.training.config import TrainConfig, save_train_config
from spvis_model.training.rng import rng_state, seed_everything, set_rng_state
from spvis_model.training.tasks import Task, build_task
from spvis_model.training.train_log import CsvLog, plot_losses

AMP_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


class TrainingError(RuntimeError):
    """The run cannot go on (non-finite gradients, a data set that does not fit the config)."""


def train(model_config: ModelConfig | str, train_cfg: TrainConfig, dataset: Dataset,
          out_dir: str | Path, resume: bool = False, *, stop_after: int | None = None,
          progress: bool = True) -> Path:
    """Train a model; return the path of the final model checkpoint (out_dir/model.pt).

    Args:
        model_config: a ModelConfig, a preset name or a model YAML path (its class_names must
            cover the data set's labels).
        train_cfg: the run's TrainConfig.
        dataset: a map-style data set of `Clip`s (spvis_model.data.sampler.ClipDataset or any
            with the Clip fields); `set_epoch(epoch)` is called if it has one. Index -> clip
            must be a pure function of (seed, epoch, index) for exact resumes.
        out_dir: where checkpoints, logs, plots and the model go. A fresh run refuses an
            out_dir that already holds ckpt/last.pt.
        resume: continue from out_dir/ckpt/last.pt: same weights, optimizer, schedule, data
            position and random streams, so the next steps equal an uninterrupted run's.
        stop_after: end this invocation after this global step (a checkpoint is written there;
            no model.pt), as a time-sliced job would; return the path of ckpt/last.pt.
        progress: show a tqdm bar on rank 0 (otherwise each log row is printed).

    Returns:
        out_dir/model.pt (or ckpt/last.pt when stopped early by `stop_after`).
    """
    if not isinstance(train_cfg, TrainConfig):
        raise TypeError(f"train_cfg must be a TrainConfig, got {type(train_cfg).__name__}")
    train_cfg.validate()
    if stop_after is not None and (not isinstance(stop_after, int) or stop_after < 1):
        raise ValueError(f"stop_after = {stop_after!r}: must be an int >= 1")
    info = D.init_distributed(train_cfg.device)
    try:
        trainer = _Trainer(resolve_model_config(model_config), train_cfg, dataset, Path(out_dir),
                           resume, info, progress)
        return trainer.run(stop_after)
    finally:
        D.cleanup(info)


def resolve_model_config(model_config: ModelConfig | str) -> ModelConfig:
    """A ModelConfig from a ModelConfig, a preset name or a YAML path (validated)."""
    if isinstance(model_config, ModelConfig):
        return model_config.validate()
    if isinstance(model_config, (str, Path)):
        text = str(model_config)
        return load_config(text) if text.endswith((".yaml", ".yml")) else preset(text)
    raise TypeError(f"model_config must be a ModelConfig, a preset name or a YAML path, got "
                    f"{type(model_config).__name__}")


def _last_line(exc: BaseException) -> str:
    """The last non-empty line of an exception's message (a DataLoader worker's error carries
    the worker's whole traceback in its message; its last line is the original error)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[-1] if lines else type(exc).__name__


def _prepare_out_dir(out_dir: Path, ckpt_dir: Path, probe: bool) -> None:
    """Create out_dir/ckpt and (with `probe`, on the rank that writes) check that a file can be
    written there, so a read-only or misnamed --out fails before training, not at the first
    checkpoint. ConfigError naming the folder otherwise."""
    try:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        if probe:
            test = ckpt_dir / f".write_test.{os.getpid()}"
            test.write_bytes(b"")
            test.unlink()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(f"--out (out_dir) {out_dir}: cannot write training outputs there "
                          f"({reason}: {exc.filename or ckpt_dir})") from exc


# --- the loop ------------------------------------------------------------------------------------

class _TaskModule(nn.Module):
    """What DDP wraps: its forward is the task's loss on the plain model."""

    def __init__(self, model: SPVIS, task: Task) -> None:
        super().__init__()
        self.model = model
        self.task = task

    def forward(self, clips: list[Any],
                generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        return self.task.loss(self.model, clips, generator)


def _collate_list(batch: list[Any]) -> list[Any]:
    """A batch of Clips stays a list of Clips (sizes and instance counts differ); the same
    contract as spvis_model.data.sampler.collate_clips, without its Clip type check, so any
    data set with the Clip fields works."""
    return list(batch)


class _Trainer:
    def __init__(self, model_cfg: ModelConfig, cfg: TrainConfig, dataset: Dataset, out_dir: Path,
                 resume: bool, info: D.DistInfo, progress: bool) -> None:
        self.cfg, self.info, self.dataset = cfg, info, dataset
        self.out_dir = out_dir
        self.ckpt_dir = checkpoint_dir(out_dir)
        self.device = info.device
        self.progress = progress
        self._check_amp()

        last = self.ckpt_dir / "last.pt"
        payload = None
        if resume:
            if not last.is_file():
                raise FileNotFoundError(f"resume: {last} does not exist (nothing to resume in "
                                        f"{out_dir})")
            payload = load_training_checkpoint(last)
            self._check_resume_configs(payload, model_cfg)
        elif last.is_file():
            raise FileExistsError(f"out_dir {out_dir} already holds a run ({last}); resume it "
                                  "(resume=True / --resume) or choose another out_dir")
        _prepare_out_dir(self.out_dir, self.ckpt_dir, probe=info.is_main)

        self.task = build_task(cfg.stage, cfg.task_options)  # fails fast when unavailable

        # Model: identical initialisation on every rank.
        torch.manual_seed(cfg.seed)
        start_from_file = payload is not None or cfg.init is not None
        self.model = SPVIS(model_cfg, pretrained_backbone=False if start_from_file else None)
        if payload is not None:
            load_state_dict_exact(self.model, payload["model"], source=str(last))
        elif cfg.init is not None:
            load_init_weights(self.model, cfg.init)
        self.model.to(self.device)

        self.params = self._freeze_and_collect()
        self.optimizer = torch.optim.AdamW(self._param_groups(), lr=cfg.lr,
                                           weight_decay=cfg.weight_decay)

        def lr_factor(step: int) -> float:
            # A plain function (not a bound method), so the scheduler's state dict stores no
            # callable state; it reads self.cfg: a resume with a new `steps` follows the new
            # length.
            return self.cfg.lr_factor(step)

        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_factor)
        self.amp_dtype = AMP_DTYPES[cfg.amp_dtype] if cfg.amp else None
        self.scaler = torch.amp.GradScaler(self.device.type,
                                           enabled=self.amp_dtype == torch.float16)

        # Data.
        size = len(dataset)  # type: ignore[arg-type]
        self.sampler = D.ShardedBatchSampler(size, cfg.batch_size, info.rank, info.world_size,
                                             cfg.seed)
        self.loader_generator = torch.Generator()
        self.loader = DataLoader(dataset, batch_sampler=self.sampler, collate_fn=_collate_list,
                                 num_workers=cfg.num_workers, generator=self.loader_generator)

        self.step, self.window = 0, _Window()
        if payload is not None:
            self.optimizer.load_state_dict(payload["optimizer"])
            self.scheduler.load_state_dict(payload["scheduler"])
            if self.scaler.is_enabled():
                self.scaler.load_state_dict(payload["scaler"])
            self.step = int(payload["step"])
            if self.step != self.scheduler.last_epoch:
                raise CheckpointError(f"training checkpoint {last}: step {self.step} but the "
                                      f"scheduler is at {self.scheduler.last_epoch}")

        module = _TaskModule(self.model, self.task)
        if info.distributed:
            self.net: nn.Module = DistributedDataParallel(
                module, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=bool(getattr(self.task, "find_unused_parameters", True)))
        else:
            self.net = module

        # Logs and saved configs (rank 0).
        self.log: CsvLog | None = None
        if info.is_main:
            log_path = out_dir / "log.csv"
            if payload is not None:
                self.log = CsvLog.resume(log_path, self.step)
            else:
                log_path.unlink(missing_ok=True)
                self.log = CsvLog(log_path)
            save_train_config(cfg, out_dir / "train_config.yaml")
            save_config(model_cfg, out_dir / "model_config.yaml")

        # Random streams last, so nothing above consumes them.
        if payload is not None:
            self._restore_rank_state(payload)
        else:
            seed_everything(cfg.seed, info.rank)

    # --- set-up helpers --------------------------------------------------------------------------
    def _check_amp(self) -> None:
        cfg = self.cfg
        if not cfg.amp:
            return
        if self.device.type != "cuda":
            raise ConfigError(f"amp = True needs CUDA; this run trains on {self.device} (the "
                              "MSDeformAttn CPU kernels are float32/float64 only). Set amp: false")
        if cfg.amp_dtype == "bfloat16" and not torch.cuda.is_bf16_supported():
            raise ConfigError(f"amp_dtype = 'bfloat16': {torch.cuda.get_device_name(self.device)}"
                              " has no bfloat16 support; use 'float16'")

    def _check_resume_configs(self, payload: dict[str, Any], model_cfg: ModelConfig) -> None:
        saved = TrainConfig.from_dict(payload["train_config"])
        diff = self.cfg.resume_diff(saved)
        if diff:
            k = diff[0]
            raise ConfigError(f"resume: {k} = {getattr(self.cfg, k)!r} differs from the "
                              f"checkpoint's {getattr(saved, k)!r} (fields that may change on "
                              f"resume: steps, checkpoint_every, keep_checkpoints, log_every, "
                              f"num_workers, device; to change {k}, start a new run with "
                              "init: <checkpoint>)")
        # Compared as parsed configs: fields added (with defaults) or retired since the run
        # started do not block a resume; any value that differs does.
        saved_model = ModelConfig.from_dict(payload["model_config"]).to_dict()
        if saved_model != model_cfg.to_dict():
            keys = sorted(k for k, v in model_cfg.to_dict().items() if saved_model.get(k) != v)
            raise ConfigError(f"resume: the model config differs from the checkpoint's in "
                              f"{keys}")
        if self.info.is_main and saved.steps != self.cfg.steps:
            print(f"spvis train: resuming with steps = {self.cfg.steps} (was {saved.steps}); "
                  "the lr schedule follows the new length", file=sys.stderr)
        if int(payload["world_size"]) != self.info.world_size and self.info.is_main:
            print(f"spvis train: resuming a {payload['world_size']}-process run with "
                  f"{self.info.world_size} processes: data order and random streams differ from "
                  "an uninterrupted run", file=sys.stderr)

    def _freeze_and_collect(self) -> list[nn.Parameter]:
        """The task's trainable parameters, minus the segmenter's when it is frozen; every other
        parameter gets requires_grad=False (so DDP and the optimizer ignore it)."""
        cfg, model = self.cfg, self.model
        seen: set[int] = set()
        trainable = []
        for p in self.task.trainable_parameters(model):
            if id(p) not in seen:
                seen.add(id(p))
                trainable.append(p)
        segmenter = {id(p) for p in model.segmenter.parameters()}
        if cfg.segmenter_frozen:
            trainable = [p for p in trainable if id(p) not in segmenter]
        elif cfg.stage == 2 and not any(id(p) in segmenter for p in trainable):
            raise ConfigError(f"freeze_segmenter = {cfg.freeze_segmenter!r}: the stage-2 task "
                              f"({type(self.task).__name__}) trains no segmenter parameter, so "
                              "the segmenter stays frozen anyway; leave freeze_segmenter unset "
                              "or true")
        if not trainable:
            raise ConfigError(f"stage = {cfg.stage}: the task {self.task.name!r} has no "
                              "trainable parameter left (freeze_segmenter?)")
        keep = {id(p) for p in trainable}
        for p in model.parameters():
            p.requires_grad_(id(p) in keep)
        return [p for p in model.parameters() if id(p) in keep]  # model order: deterministic

    def _param_groups(self) -> list[dict[str, Any]]:
        cfg, model = self.cfg, self.model
        keep = {id(p) for p in self.params}
        backbone = {id(p) for p in model.segmenter.backbone.parameters()}
        no_decay: set[int] = set()
        for module in model.modules():
            if isinstance(module, (nn.Embedding, nn.LayerNorm, nn.GroupNorm,
                                   nn.modules.batchnorm._NormBase)):
                no_decay.update(id(p) for p in module.parameters(recurse=False))
        groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
        for p in model.parameters():
            if id(p) not in keep:
                continue
            decay = p.dim() > 1 and id(p) not in no_decay
            groups.setdefault((id(p) in backbone, decay), []).append(p)
        out = []
        for (is_backbone, decay) in ((False, True), (False, False), (True, True), (True, False)):
            params = groups.get((is_backbone, decay))
            if params:
                out.append({"params": params,
                            "lr": cfg.lr * (cfg.backbone_lr_mult if is_backbone else 1.0),
                            "weight_decay": cfg.weight_decay if decay else 0.0})
        return out

    # --- rank state (RNG, task, log window) ------------------------------------------------------
    def _rank_state(self) -> dict[str, Any]:
        state_fn = getattr(self.task, "state_dict", None)
        return {"rng": rng_state(self.device),
                "task": state_fn() if callable(state_fn) else None,
                "window": self.window.to_dict()}

    def _restore_rank_state(self, payload: dict[str, Any]) -> None:
        states = payload["rank_states"]
        if self.info.rank < len(states) and int(payload["world_size"]) == self.info.world_size:
            mine = states[self.info.rank]
            load_fn = getattr(self.task, "load_state_dict", None)
            if mine.get("task") is not None and callable(load_fn):
                load_fn(mine["task"])
            self.window = _Window.from_dict(mine["window"])
            set_rng_state(mine["rng"], self.device)
        else:  # another world size: fresh streams for this rank, derived from the step
            seed_everything(D.derive_seed(self.cfg.seed, self.step), self.info.rank)

    # --- the loop --------------------------------------------------------------------------------
    def _batches(self) -> Iterator[tuple[int, list[Any]]]:
        per_epoch = len(self.sampler)
        epoch, start = divmod(self.step, per_epoch)
        while True:
            self.sampler.set_epoch(epoch, start)
            set_epoch = getattr(self.dataset, "set_epoch", None)
            if callable(set_epoch):
                set_epoch(epoch)
            self.loader_generator.manual_seed(D.derive_seed(self.cfg.seed, self.info.rank, epoch,
                                                            0x10AD))
            for clips in self.loader:
                yield epoch, clips
            epoch, start = epoch + 1, 0

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def run(self, stop_after: int | None) -> Path:
        cfg, info = self.cfg, self.info
        end = cfg.steps if stop_after is None else min(cfg.steps, stop_after)
        self.model.train()
        if cfg.segmenter_frozen:
            self.model.segmenter.eval()  # no BatchNorm statistics updates, no dropout
        bar = None
        if info.is_main and self.progress and self.step < end:
            from tqdm import tqdm

            bar = tqdm(total=cfg.steps, initial=self.step, desc=f"train stage {cfg.stage}",
                       unit="step", dynamic_ncols=True)
        data = self._batches()
        epoch = self.step // len(self.sampler)
        first_step, loop_start, step_times = self.step, time.perf_counter(), []
        catch_up = False
        try:
            while self.step < end:
                t0 = time.perf_counter()
                try:
                    epoch, clips = next(data)
                except (ValueError, OSError) as exc:  # a frame file missing, undecodable, ...
                    raise TrainingError(f"step {self.step + 1}: the data set could not give a "
                                        f"batch: {_last_line(exc)}") from exc
                self._check_clips(clips)
                t_data = time.perf_counter() - t0
                logs = self._train_step(clips)
                self.step += 1
                self.window.add(logs, time.perf_counter() - t0, t_data)
                step_times.append(time.perf_counter() - t0)
                if (self.cfg.time_budget_s is not None
                        and self.step - first_step == self.cfg.budget_probe_steps):
                    self._fit_to_budget(step_times, time.perf_counter() - loop_start)
                    cfg = self.cfg
                    end = cfg.steps if stop_after is None else min(cfg.steps, stop_after)
                    # A checkpoint the fixed interval puts inside the probe steps (a short
                    # budget) is written now instead of never.
                    every = cfg.checkpoint_every
                    catch_up = self.step // every > first_step // every
                    if bar is not None:
                        bar.total = cfg.steps
                        bar.refresh()
                if self.step % cfg.log_every == 0 or self.step == end:
                    row = self._log_row(epoch)
                    if bar is not None:
                        bar.set_postfix(loss=f"{row['loss']:.4g}", lr=f"{row['lr']:.3g}")
                    elif info.is_main and row:
                        print(f"step {self.step}/{cfg.steps} loss {row['loss']:.5g} "
                              f"lr {row['lr']:.4g} {row['time_per_step']:.3f} s/step",
                              flush=True)
                if bar is not None:
                    bar.update(1)
                if self.step % cfg.checkpoint_every == 0 or self.step == end or catch_up:
                    self._checkpoint(epoch)
                    catch_up = False
        finally:
            data.close()
            if bar is not None:
                bar.close()
        if self.step < cfg.steps:  # stopped early (stop_after)
            D.barrier(info)
            return self.ckpt_dir / "last.pt"
        final = self.out_dir / "model.pt"
        if info.is_main:
            meta = {"stage": cfg.stage, "steps": self.step, "train_config": cfg.to_dict()}
            self.model.save(final, meta=meta)
            if self.log is not None and self.log.rows:
                plot_losses(self.log.rows, self.out_dir / "loss.png", self._title())
            print(f"spvis train: final model written to {final}", flush=True)
        D.barrier(info)
        return final

    def _fit_to_budget(self, step_times: list[float], elapsed: float) -> None:
        """Fix `steps` / `checkpoint_every` from the timed steps (rank 0's timing decides for
        every rank, so all take the same number of steps)."""
        decision = fit_to_budget(self.cfg, self.step, step_times, elapsed)
        decision = D.gather_objects(self.info, decision)[0]
        self.cfg = decision.config
        if self.info.is_main:
            print(f"spvis train: {decision.message()}", file=sys.stderr, flush=True)
            save_train_config(self.cfg, self.out_dir / "train_config.yaml")

    def _check_clips(self, clips: list[Any]) -> None:
        for clip in clips:
            t = len(clip.stamps)
            if t > self.cfg.clip_len:
                raise TrainingError(f"clip_len = {self.cfg.clip_len} but the data set gave clip "
                                    f"{getattr(clip, 'video_id', '?')!r} with {t} frames")

    def _train_step(self, clips: list[Any]) -> dict[str, float]:
        cfg, info = self.cfg, self.info
        gen = torch.Generator().manual_seed(D.derive_seed(cfg.seed, info.rank, self.step))
        self.optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            loss, logs = self.net(clips, gen)
        if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
            raise TrainingError(f"task {self.task.name!r}: loss must be a scalar tensor, got "
                                f"{type(loss).__name__} {getattr(loss, 'shape', '')}")
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        grads = [p.grad for p in self.params if p.grad is not None]
        if cfg.grad_clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip)
        else:
            norm = torch.nn.utils.get_total_norm(grads) if grads else torch.zeros(())
        norm_value = float(norm)
        skipped = 0
        if not math.isfinite(norm_value):
            if not self.scaler.is_enabled():
                raise TrainingError(f"step {self.step + 1}: gradient norm is {norm_value} "
                                    f"(loss {float(loss)}, terms {logs}); stopping")
            skipped = 1  # the float16 GradScaler skips this step and lowers its scale
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        out = {"loss": float(loss.detach()), **{k: float(v) for k, v in logs.items()}}
        if math.isfinite(norm_value):
            out["grad_norm"] = norm_value
        out["skipped_steps"] = float(skipped)
        return out

    def _log_row(self, epoch: int) -> dict[str, float]:
        means = D.mean_over_ranks(self.info, self.window.means())
        self.window = _Window()
        if not self.info.is_main or self.log is None:
            return {}
        if means.get("supervised") == 0.0:
            print(f"spvis train: warning: step {self.step}: no tracker output was supervised "
                  "in the steps since the last log row (loss 0: nothing is learned); the "
                  "frozen segmenter finds none of the training objects at the tracker's "
                  "detect_score / new_track_score, so train stage 1 (or use a better --init) "
                  "first", file=sys.stderr, flush=True)
        row = {"step": float(self.step), "epoch": float(epoch),
               "lr": self.cfg.lr * self.cfg.lr_factor(self.step - 1), **means}
        self.log.append(row)
        return row

    def _title(self) -> str:
        procs = self.info.world_size
        return (f"spvis stage {self.cfg.stage} ({self.model.cfg.name}), step {self.step}, "
                f"{procs} process{'es' if procs > 1 else ''}")

    def _checkpoint(self, epoch: int) -> None:
        rank_states = D.gather_objects(self.info, self._rank_state())
        if self.info.distributed:
            digests = D.gather_objects(self.info, params_digest(self.model))
            if len(set(digests)) != 1:
                raise TrainingError(f"step {self.step}: the ranks' parameters differ (digests "
                                    f"{digests}); gradients were not synchronised")
        if not self.info.is_main:
            return
        payload = {
            "format": TRAIN_FORMAT,
            "format_version": TRAIN_FORMAT_VERSION,
            "step": self.step,
            "epoch": epoch,
            "world_size": self.info.world_size,
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rank_states": rank_states,
            "train_config": self.cfg.to_dict(),
            "model_config": self.model.cfg.to_dict(),
        }
        path = self.ckpt_dir / f"step_{self.step:06d}.pt"
        atomic_write(path, lambda f: torch.save(payload, f))
        tmp = self.ckpt_dir / "last.pt.tmp"
        shutil.copyfile(path, tmp)
        os.replace(tmp, self.ckpt_dir / "last.pt")
        if self.cfg.keep_checkpoints > 0:
            old = step_checkpoints(self.ckpt_dir)[:-self.cfg.keep_checkpoints]
            for p in old:
                p.unlink()
        if self.log is not None and self.log.rows:
            plot_losses(self.log.rows, self.out_dir / "loss.png", self._title())


class _Window:
    """Sums of logged scalars since the last log row (per rank)."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.steps = 0
        self.time = 0.0
        self.data_time = 0.0

    def add(self, logs: dict[str, float], step_time: float, data_time: float) -> None:
        for k, v in logs.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
            self.counts[k] = self.counts.get(k, 0) + 1
        self.steps += 1
        self.time += step_time
        self.data_time += data_time

    def means(self) -> dict[str, float]:
        out = {k: self.sums[k] / self.counts[k] for k in self.sums}
        if "skipped_steps" in self.sums:
            out["skipped_steps"] = self.sums["skipped_steps"]
        if self.steps:
            out["time_per_step"] = self.time / self.steps
            out["data_time"] = self.data_time / self.steps
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"sums": dict(self.sums), "counts": dict(self.counts), "steps": self.steps,
                "time": self.time, "data_time": self.data_time}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> _Window:
        w = cls()
        w.sums, w.counts = dict(d["sums"]), dict(d["counts"])
        w.steps, w.time, w.data_time = int(d["steps"]), float(d["time"]), float(d["data_time"])
        return w
