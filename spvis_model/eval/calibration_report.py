"""The score-reliability section of the evaluation report and its plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def reliability_markdown(rel: dict[str, Any]) -> list[str]:
    """Markdown lines for `results["calibration"]` (a `Reliability.as_json()`)."""
    lines = ["## Score reliability (are scores probabilities?)", "",
             "A prediction is a hit when it matches a ground-truth track of its category at "
             "video IoU >= 0.5 (greedy by score, as AP at that threshold). Well calibrated: the "
             f"hit rate in each bin equals its mean score. {rel['n']} predictions; expected "
             f"calibration error (ECE) {rel['ece']:.3f}.", "",
             "| score bin | predictions | mean score | hit rate |", "|---|---:|---:|---:|"]
    edges = rel["edges"]
    for k, count in enumerate(rel["count"]):
        if not count:
            continue
        lines.append(f"| {edges[k]:.1f}-{edges[k + 1]:.1f} | {count} | "
                     f"{rel['mean_score'][k]:.3f} | {rel['hit_rate'][k]:.3f} |")
    return [*lines, ""]


def plot_reliability(rel: dict[str, Any], path: Path) -> None:
    """Reliability diagram: hit rate against mean score per bin, bar widths = bins."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    edges = rel["edges"]
    for k, count in enumerate(rel["count"]):
        if count:
            ax.bar(edges[k], rel["hit_rate"][k], width=edges[k + 1] - edges[k], align="edge",
                   color="tab:blue", alpha=0.4 + 0.6 * min(1.0, count / max(rel["count"])),
                   edgecolor="black")
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfectly calibrated")
    ax.set_xlabel("score")
    ax.set_ylabel("hit rate (video IoU >= 0.5)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(f"reliability, ECE {rel['ece']:.3f} ({rel['n']} predictions)")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
