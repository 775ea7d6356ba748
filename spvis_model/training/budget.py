"""A training run sized to a wall-clock budget (`TrainConfig.time_budget_s`).

A GPU lent for a few minutes, or a CPU job that must end before a session does, is given
seconds, not steps. The trainer times its first `budget_probe_steps` steps and then calls
`fit_to_budget`, which says how many steps the run can take in what is left of the budget; the
run then continues with that length (the lr schedule follows it) and the same number of
checkpoints as configured.

    decision = fit_to_budget(cfg, step=20, step_times=[...], elapsed=31.0)
    cfg = decision.config          # steps / checkpoint_every fixed, time_budget_s None
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import dataclass

from spvis_model.training.config import TrainConfig

MARGIN = 0.97
"""Share of the remaining budget planned for steps (the rest: checkpoints, logging, noise)."""


@dataclass(frozen=True)
class BudgetDecision:
    """What the budget fixed.

    Attributes:
        config: the run's config with `steps` and `checkpoint_every` fixed and `time_budget_s`
            None (what train_config.yaml and the checkpoints record).
        seconds_per_step: the median time of the timed steps (the first quarter left out).
        steps_before: `steps` as configured.
        fits: False when even the configured warm-up does not fit the budget (the run then
            takes `warmup_steps` + 1 steps and ends late).
    """

    config: TrainConfig
    seconds_per_step: float
    steps_before: int
    fits: bool

    def message(self) -> str:
        """One line for the log."""
        c = self.config
        tail = "" if self.fits else " (over budget: the warm-up alone does not fit)"
        return (f"time budget: {self.seconds_per_step:.4f} s/step -> steps = {c.steps} (was "
                f"{self.steps_before}), checkpoint_every = {c.checkpoint_every}{tail}")


def fit_to_budget(cfg: TrainConfig, step: int, step_times: list[float],
                  elapsed: float) -> BudgetDecision:
    """The run's length for what is left of `cfg.time_budget_s`.

    Args:
        cfg: the run's config (`time_budget_s` set).
        step: optimizer steps done so far (the run's global step).
        step_times: seconds of each step this process took, in order (at least 4).
        elapsed: seconds since this process's loop started.

    Returns:
        A `BudgetDecision`; `steps` is never raised above the configured value and never set
        below `step` (or below `warmup_steps` + 1, which `TrainConfig` requires).
    """
    if cfg.time_budget_s is None:
        raise ValueError("fit_to_budget: cfg.time_budget_s is None")
    if len(step_times) < 4:
        raise ValueError(f"fit_to_budget: {len(step_times)} timed steps, need at least 4")
    timed = step_times[len(step_times) // 4:]
    per_step = max(statistics.median(timed), 1e-9)
    left = cfg.time_budget_s - elapsed
    more = max(0, math.floor(left * MARGIN / per_step))
    steps = min(cfg.steps, step + more)
    floor = max(step, cfg.warmup_steps + 1 if cfg.warmup_steps > 0 else 1)
    fits = steps >= floor
    steps = max(steps, floor)
    every = cfg.checkpoint_every
    if steps < cfg.steps:
        # Rounded up, so the last scaled checkpoint is the final step, not one step before it.
        every = max(1, math.ceil(cfg.checkpoint_every * steps / cfg.steps))
    fixed = dataclasses.replace(cfg, steps=steps, checkpoint_every=every, time_budget_s=None)
    return BudgetDecision(fixed.validate(), per_step, cfg.steps, fits)
