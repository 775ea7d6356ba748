"""The training task protocol: what a stage trains and how its loss is computed.

The trainer (`spvis_model.training.trainer.train`) owns everything generic: processes, data
order, optimizer, schedule, AMP, checkpoints and logs. A task only says which parameters train
and what the loss of a batch of clips is:

    class Task(Protocol):
        name: str
        def trainable_parameters(self, model: SPVIS) -> list[nn.Parameter]: ...
        def loss(self, model: SPVIS, clips: list[Clip],
                 generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]: ...

- `loss` returns the scalar total loss (the trainer back-propagates it) and scalar logs; keys
  starting with ``loss_`` are plotted in loss.png, every key becomes a column of log.csv.
  It runs inside the DistributedDataParallel forward, under autocast when AMP is on; `model` is
  the plain SPVIS module (call `model.segment`, `model.track`, ... on it).
- `generator` is a CPU generator seeded from (seed, rank, step): use it for the task's own
  random choices so that runs and resumes are reproducible.
- Optional: `find_unused_parameters: bool` (default True: safe when some branches are unused on
  some steps, as in the tracker); `state_dict()` / `load_state_dict(d)` if the task keeps state
  across steps (saved per rank in training checkpoints; tensors and primitives only).

Stage 1 is `spvis_model.training.stage1.SegmenterTask`; stage 2 is
`spvis_model.training.tracker_task.TrackerTask`, imported only when stage 2 is asked for. Tasks
are constructed as ``TaskClass(**train_cfg.task_options)``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import torch
from torch import nn

from spvis_model.config import ConfigError

if TYPE_CHECKING:
    from spvis_model.model import SPVIS

TRACKER_TASK_MODULE = "spvis_model.training.tracker_task"


@runtime_checkable
class Task(Protocol):
    """A training stage (see the module docstring)."""

    name: str

    def trainable_parameters(self, model: SPVIS) -> list[nn.Parameter]:
        """The parameters this stage trains (the trainer freezes every other one)."""
        ...

    def loss(self, model: SPVIS, clips: list[Any],
             generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        """(total loss, scalar logs) of a batch of `Clip`s."""
        ...


class TaskUnavailableError(RuntimeError):
    """The task a stage needs is not part of this installation."""


def task_class(stage: int) -> type:
    """The task class of a stage; stage 2's module is imported here, lazily."""
    if stage == 1:
        from spvis_model.training.stage1 import SegmenterTask

        return SegmenterTask
    if stage == 2:
        try:
            module = importlib.import_module(TRACKER_TASK_MODULE)
        except ImportError as exc:
            raise TaskUnavailableError(
                f"stage = 2 needs {TRACKER_TASK_MODULE}.TrackerTask (the stage-2 tracker task), "
                f"but {TRACKER_TASK_MODULE} cannot be imported: {exc}") from exc
        cls = getattr(module, "TrackerTask", None)
        if cls is None:
            raise TaskUnavailableError(f"stage = 2 needs {TRACKER_TASK_MODULE}.TrackerTask, and "
                                       f"{TRACKER_TASK_MODULE} has no TrackerTask")
        return cls
    raise ConfigError(f"stage = {stage!r}: must be 1 or 2")


def build_task(stage: int, options: dict[str, Any] | None = None) -> Task:
    """Construct the task of `stage` with keyword arguments `options` (TrainConfig.task_options).
    Unknown or bad options raise ConfigError naming task_options."""
    cls = task_class(stage)
    try:
        task = cls(**dict(options or {}))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"task_options = {options!r}: not valid for {cls.__name__}: "
                          f"{exc}") from exc
    if not isinstance(task, Task):
        raise TypeError(f"{cls.__name__} does not implement the Task protocol (name, "
                        "trainable_parameters, loss)")
    return task
