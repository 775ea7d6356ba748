"""The error breakdown (`spvis_model.eval.errors`) in the report: a markdown section and a plot.

Both read the JSON form (`results["errors"]`, as `ErrorBreakdown.as_json` writes it), so a
metrics.json can be re-rendered without the inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

MAX_ERROR_ROWS = 15
"""Ground-truth tracks listed in the report (the worst ones); metrics.json has them all."""


def _num(value: float | int | None, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return f"{value:.{digits}f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def _issues(row: dict[str, Any]) -> list[str]:
    out = []
    if row["missed"]:
        out.append("missed")
    if row["class_flip"]:
        out.append("class flip")
    if row["fragmented"]:
        out.append(f"{row['covering_ids']} ids")
    late = row["frames_to_first_detection"]
    if late:
        out.append(f"found {late} frame{'s' if late > 1 else ''} late")
    return out


def worst_gt_tracks(errors: dict[str, Any]) -> list[dict[str, Any]]:
    """Non-crowd ground-truth rows with an issue, worst first: missed, then class flips, then
    by covering ids and by frames to first detection (both descending)."""
    rows = [r for r in errors["gt_tracks"] if not r["iscrowd"] and r["frames"] and _issues(r)]
    return sorted(rows, key=lambda r: (not r["missed"], not r["class_flip"], -r["covering_ids"],
                                       -(r["frames_to_first_detection"] or 0), r["video_id"],
                                       r["index"]))


def _other(s: dict[str, Any]) -> str:
    """'n of m (p%)' for the multi-object tracks' other-object frames ('n/a' in results written
    before these counts existed)."""
    other, total = s.get("other_object_frames"), s.get("object_matches_of_multi")
    if other is None or not total:
        return _num(other)
    return f"{_num(other)} of {_num(total)} ({100 * other / total:.0f}%)"


def error_markdown(results: dict[str, Any], categories: dict[int, str] | None = None
                   ) -> list[str]:
    """The report's "Error breakdown" section (lines)."""
    errors = results["errors"]
    s = errors["summary"]
    names = categories or {}
    delay = (f"mean {_num(s['frames_to_first_detection_mean'])}, median "
             f"{_num(s['frames_to_first_detection_median'])}, max "
             f"{_num(s['frames_to_first_detection_max'])}")
    if s["seconds_to_first_detection_mean"] is not None:
        delay += (f" (mean {_num(s['seconds_to_first_detection_mean'])} s, median "
                  f"{_num(s['seconds_to_first_detection_median'])} s)")
    thr, iou = errors["score_threshold"], errors["iou_threshold"]
    lines = [
        f"## Error breakdown (tracker output: score >= {thr})", "",
        f"A tracker track *covers* a ground-truth track when their masks overlap with IoU >= "
        f"{iou} in at least one frame, whatever the categories. Crowd tracks are left out.", "",
        *_table(("", "value", "meaning"), [
            ["ground-truth tracks", _num(s["gt_tracks"]), "annotated in at least one frame"],
            ["coverage", _num(s["coverage"]), f"of {_num(s['object_frames'])} annotated "
             "object-frames, the share some tracker track covers"],
            ["missed", _num(s["missed_gt_tracks"]), "covered by no tracker track"],
            ["fragmented", _num(s["fragmented_gt_tracks"]), "covered by more than one id"],
            ["class flips", _num(s["class_flips"]), "covered by a track of another category"],
            ["ids per covered track", _num(s["covering_ids_mean"]), "mean"],
            ["frames to first detection", delay,
             "first appearance to first covered frame, over the found tracks"],
            ["tracker tracks", _num(s["tracker_tracks"]), f"predictions with score >= {thr}"],
            ["one-frame tracks", _num(s["one_frame_tracks"]), "present in exactly one frame"],
            ["false-positive tracks", _num(s["false_positive_tracks"]),
             f"never IoU >= {iou} with a ground-truth track of their category"],
            ["multi-object tracks", _num(s.get("multi_object_tracks")),
             "cover two or more ground-truth tracks: an id handed to another object, or one "
             "mask over neighbours"],
            ["their other-object frames", _other(s),
             "their matches not with the object each matches most"],
        ]), ""]
    worst = worst_gt_tracks(errors)
    if worst:
        shown = worst[:MAX_ERROR_ROWS]
        lines += [f"Ground-truth tracks with errors ({len(shown)} worst of {len(worst)}; all "
                  "tracks are in metrics.json under `errors`):", ""]
        lines += _table(("video", "annotation", "category", "frames", "covering ids",
                         "their categories", "issues"), [
            [str(r["video_id"]), f"{r['index']} (id {r['ann_id']})",
             names.get(r["category_id"], str(r["category_id"])), str(r["frames"]),
             ", ".join(f"predictions[{i}]" for i in r["covering"]) or "none",
             ", ".join(names.get(c, str(c)) for c in r["covering_categories"]) or "-",
             ", ".join(_issues(r))] for r in shown])
        lines.append("")
    return lines


def plot_errors(results: dict[str, Any], path: Path) -> None:
    """errors.png: error counts; covering ids per ground-truth track; frames to first
    detection."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    errors = results["errors"]
    s = errors["summary"]
    gts = [r for r in errors["gt_tracks"] if not r["iscrowd"] and r["frames"]]
    fig = Figure(figsize=(13, 3.8), dpi=100)
    ax = fig.add_subplot(1, 3, 1)
    names = ["missed", "fragmented", "class flips", "one-frame\ntracks", "false-positive\ntracks"]
    values = [s["missed_gt_tracks"], s["fragmented_gt_tracks"], s["class_flips"],
              s["one_frame_tracks"], s["false_positive_tracks"]]
    bars = ax.bar(range(len(names)), values, color=["tab:red", "tab:orange", "tab:purple",
                                                    "tab:gray", "tab:brown"])
    ax.bar_label(bars, fontsize=8)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, fontsize=8)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(f"{s['gt_tracks']} GT tracks, {s['tracker_tracks']} tracker tracks", fontsize=9)
    ax = fig.add_subplot(1, 3, 2)
    ids = [r["covering_ids"] for r in gts]
    top = max(ids, default=0)
    ax.bar(range(top + 1), [ids.count(k) for k in range(top + 1)], color="tab:blue")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("tracker ids covering the track (0 = missed)")
    ax.set_ylabel("ground-truth tracks")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title("Fragmentation", fontsize=9)
    ax = fig.add_subplot(1, 3, 3)
    delays = [r["frames_to_first_detection"] for r in gts
              if r["frames_to_first_detection"] is not None]
    if delays:
        top = max(delays)
        if top <= 40:
            ax.bar(range(top + 1), [delays.count(k) for k in range(top + 1)], color="tab:green")
        else:
            ax.hist(delays, bins=40, color="tab:green")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("frames from first appearance to first detection")
        ax.set_ylabel("ground-truth tracks")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    else:
        ax.text(0.5, 0.5, "no ground-truth track is ever detected", ha="center", va="center",
                transform=ax.transAxes)
    ax.set_title("Detection delay (found tracks)", fontsize=9)
    fig.suptitle(f"Error breakdown: tracker output = predictions with score >= "
                 f"{errors['score_threshold']}, match = mask IoU >= {errors['iou_threshold']}",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
