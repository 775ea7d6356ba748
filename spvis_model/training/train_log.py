"""Training logs: scalar rows in out_dir/log.csv and the loss-curve plot out_dir/loss.png.

(Named train_log, not logging, so it never shadows the standard library's module.)

log.csv has one row per `log_every` steps: step, epoch, lr, loss, then every loss term the task
reports (columns in first-seen order; a term that appears later rewrites the file with the new
column, rows that lack a value leave it empty), then grad_norm, time_per_step and data_time
(seconds, means over the steps of the row). Floats are written with repr(), so they read back
bit-exactly.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

FIRST = ("step", "epoch", "lr", "loss")
LAST = ("grad_norm", "skipped_steps", "time_per_step", "data_time")


class CsvLog:
    """Rows of scalars, kept in memory and mirrored to a CSV file (rank 0 only)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.rows: list[dict[str, float]] = []
        self.columns: list[str] = list(FIRST) + list(LAST)

    @classmethod
    def resume(cls, path: Path, up_to_step: int) -> CsvLog:
        """Read an existing log and keep the rows up to `up_to_step` (rows written after the
        checkpoint being resumed from are dropped; the resumed run writes them again)."""
        log = cls(path)
        if log.path.is_file():
            with log.path.open(newline="") as f:
                reader = csv.DictReader(f)
                if reader.fieldnames:
                    log.columns = list(reader.fieldnames)
                for row in reader:
                    parsed = {k: float(v) for k, v in row.items() if v not in ("", None)}
                    if parsed.get("step", math.inf) <= up_to_step:
                        log.rows.append(parsed)
        log._rewrite()
        return log

    def append(self, row: dict[str, float]) -> None:
        new = [k for k in row if k not in self.columns]
        self.rows.append(dict(row))
        if new:
            tail = [c for c in self.columns if c in LAST]
            head = [c for c in self.columns if c not in LAST]
            self.columns = head + new + tail
            self._rewrite()
            return
        exists = self.path.is_file()
        with self.path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.columns)
            if not exists:
                writer.writeheader()
            writer.writerow(_fmt(row))

    def _rewrite(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.columns)
            writer.writeheader()
            for r in self.rows:
                writer.writerow(_fmt(r))
        os.replace(tmp, self.path)


def _fmt(row: dict[str, float]) -> dict[str, str]:
    out = {}
    for k, v in row.items():
        if k in ("step", "epoch", "skipped_steps") and float(v).is_integer():
            out[k] = str(int(v))
        else:
            out[k] = repr(float(v))
    return out


def read_log(path: str | Path) -> list[dict[str, float]]:
    """log.csv as a list of {column: float} (empty cells left out)."""
    with Path(path).open(newline="") as f:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)}
                for row in csv.DictReader(f)]


def plot_losses(rows: list[dict[str, float]], path: Path, title: str = "") -> None:
    """Write the loss curves (total, and each loss_* term) against the step as a PNG.

    Uses matplotlib's Agg canvas directly, so the process's pyplot backend is never touched.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax_total, ax_terms = fig.subplots(1, 2)
    steps = [r["step"] for r in rows if "loss" in r]
    ax_total.plot(steps, [r["loss"] for r in rows if "loss" in r], color="black", lw=1.2)
    ax_total.set_title("total loss")
    terms = sorted({k for r in rows for k in r if k.startswith("loss_")})
    for k in terms:
        pts = [(r["step"], r[k]) for r in rows if k in r]
        ax_terms.plot([p[0] for p in pts], [p[1] for p in pts], lw=1.0, label=k)
    ax_terms.set_title("loss terms (as the task logs them)")
    if terms:
        ax_terms.legend(fontsize=7, loc="upper right")
    for ax in (ax_total, ax_terms):
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        values = [float(v) for line in ax.get_lines() for v in line.get_ydata()]
        if values and min(values) > 0:
            ax.set_yscale("log")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, format="png")
    os.replace(tmp, path)
