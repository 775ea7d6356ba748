"""Full evaluation (AP + tracking + breakdowns) and its outputs: JSON, markdown report, plots.

`run_evaluation` returns one JSON-ready dict; `write_outputs` writes into a folder:

- ``metrics.json``: everything `run_evaluation` returns;
- ``report.md``: tables of the same numbers with the plots linked;
- ``per_video_ap.png``: per-video AP bar chart (videos sorted by AP);
- ``idsw_vs_fps.png``: ID switches of each video against its frame rate;
- ``errors.png``: the error breakdown (`spvis_model.eval.errors`): error counts, covering ids
  per ground-truth track, frames to first detection;
- ``worst_video.png``: an overlay strip of the video with the lowest AP (ground truth outlined,
  tracker output filled), on the real frames when they can be read from ``images`` (the GT JSON's
  file_names are relative to it), else on a black canvas, which the figure and report say.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from spvis_model.eval.breakdown import (
    FPS_BUCKETS,
    OCCLUSION_BUCKETS,
    fps_bucket,
    occlusion_bucket,
    video_occlusion,
)
from spvis_model.eval.calibration import reliability, track_outcomes
from spvis_model.eval.calibration_report import plot_reliability, reliability_markdown
from spvis_model.eval.compare import ap_standard_errors
from spvis_model.eval.data import (
    GroundTruth,
    GtSource,
    PredSource,
    Track,
    load_ground_truth,
    load_predictions,
)
from spvis_model.eval.error_report import error_markdown, plot_errors
from spvis_model.eval.errors import error_breakdown
from spvis_model.eval.tracking import DEFAULT_SCORE_THRESHOLD, TrackingEvaluator
from spvis_model.eval.ytvis import SUMMARY_KEYS, YTVISEvaluator

MAX_STRIP_FRAMES = 6
REPORT_SE_GROUPS = 10
"""The report's AP standard error leaves out one of at most this many groups of videos."""
PLOT_FILES = {"per_video_ap": "per_video_ap.png", "idsw_vs_fps": "idsw_vs_fps.png",
              "errors": "errors.png", "reliability": "reliability.png",
              "worst_video": "worst_video.png"}


def run_evaluation(gt: GtSource | GroundTruth, predictions: PredSource | list[Track],
                   score_threshold: float = DEFAULT_SCORE_THRESHOLD, progress: bool = False
                   ) -> dict[str, Any]:
    """AP, tracking metrics, per-video rows and frame-rate / occlusion buckets in one dict.

    Keys: "inputs", "ytvis" (AP..AR10), "tracking" (HOTA, DetA, AssA, MOTSA, IDF1, IDSW, ...;
    classes detection-averaged), "tracking_class_averaged" (the same, class-averaged),
    "tracking_per_class" (one row per category), "errors" (the error breakdown: "summary",
    "gt_tracks" and "tracker_tracks" rows), "calibration" (score reliability of the
    predictions, spvis_model.eval.calibration), "per_video" (list of rows), "buckets" ({"fps":
    {...}, "occlusion": {...}}, only non-empty buckets, each with its video ids, "ytvis",
    "tracking" and "errors"), "worst_video" (id or None). Per-video rows and buckets carry the
    error summary of their videos.
    """
    gt = load_ground_truth(gt)
    preds = load_predictions(predictions, gt)
    ap = YTVISEvaluator(gt, preds, progress=progress)
    trk = TrackingEvaluator(gt, preds, score_threshold, progress=progress)
    errors = error_breakdown(gt, preds, score_threshold)
    calibration = reliability(*track_outcomes(gt, preds)).as_json()
    ap_per_video = ap.per_video(progress=progress)
    # 10 groups: on a YouTube-VIS-sized set (300 videos) the SE costs 10 summaries, ~3 s.
    ap_se = ap_standard_errors(ap, max_groups=REPORT_SE_GROUPS)
    n_preds: dict[int, int] = {vid: 0 for vid in gt.videos}
    for p in preds:
        n_preds[p.video_id] += 1
    rows = []
    for vid, video in gt.videos.items():
        occ = video_occlusion(gt, vid)
        rows.append({
            "video_id": vid, "frames": video.length, "fps": video.fps,
            "fps_bucket": fps_bucket(video), "occlusion": occ,
            "occlusion_bucket": occlusion_bucket(occ),
            "gt_tracks": len(gt.tracks_by_video[vid]), "predictions": n_preds[vid],
            "ytvis": ap_per_video[vid], "tracking": trk.summary([vid]),
            "errors": errors.summary([vid]),
        })
    buckets: dict[str, dict[str, Any]] = {}
    for kind, names in (("fps", FPS_BUCKETS), ("occlusion", OCCLUSION_BUCKETS)):
        buckets[kind] = {}
        for name in names:
            ids = [r["video_id"] for r in rows if r[f"{kind}_bucket"] == name]
            if ids:
                buckets[kind][name] = {"video_ids": ids, "ytvis": ap.summary(ids),
                                       "tracking": trk.summary(ids),
                                       "errors": errors.summary(ids)}
    scored = [r for r in rows if r["ytvis"]["AP"] >= 0]
    worst = min(scored, key=lambda r: (r["ytvis"]["AP"], -r["tracking"]["IDSW"],
                                       r["tracking"]["IDF1"], r["video_id"]), default=None)
    return {
        "inputs": {"gt": gt.source, "videos": len(gt.videos), "categories": len(gt.categories),
                   "gt_tracks": len(gt.tracks), "predictions": len(preds),
                   "score_threshold": score_threshold,
                   "tracker_tracks": sum(len(v) for v in trk.tracker_tracks.values())},
        "ytvis": ap.summary(),
        "ytvis_se": ap_se,
        "tracking": trk.summary(),
        "tracking_class_averaged": trk.class_averaged(),
        "tracking_per_class": [{"category_id": cid, "name": gt.categories[cid], **row}
                               for cid, row in trk.per_class().items()],
        "errors": errors.as_json(),
        "calibration": calibration,
        "per_video": rows,
        "buckets": buckets,
        "worst_video": worst["video_id"] if worst else None,
    }


def _fmt(value: float | int | None, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}f}"


def _fmt_ap(value: float) -> str:
    """AP/AR: the official -1 ("no ground truth in this setting") shows as n/a."""
    return "n/a" if value < 0 else f"{value:.3f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


_TRACK_COLS = ("HOTA", "DetA", "AssA", "MOTSA", "IDF1", "IDSW")
_TRACK_KEYS = ("HOTA", "DetA", "AssA", "MOTSA", "IDF1", "IDSW", "Frag", "IDP", "IDR")
_TRACK_HEADER = ("HOTA", "DetA", "AssA", "MOTSA", "IDF1", "ID switches", "Frag", "IDP", "IDR")


def _se_lines(results: dict[str, Any]) -> list[str]:
    """The AP's jackknife standard error over videos, when the results carry it."""
    se = results.get("ytvis_se") or {}
    if se.get("AP") is None:
        return []
    ap, n = results["ytvis"]["AP"], results["inputs"]["videos"]
    return [f"AP {ap:.3f} ± {se['AP']:.3f} (AP50 ± {_fmt(se.get('AP50'))}): the jackknife "
            f"standard error over the {n} videos, how far the AP would move on other videos of "
            "the same kind. Two models scored on the same videos are compared by their paired "
            "difference (bench/compare_results.py), whose error is usually smaller.", ""]


def markdown_report(results: dict[str, Any], plots: dict[str, str], canvas_note: str | None
                    ) -> str:
    """The report as markdown; `plots` maps plot name -> file name next to the report."""
    inp = results["inputs"]
    tracking_rows = [["detection-averaged", *[_fmt(results["tracking"][k]) for k in _TRACK_KEYS]]]
    if "tracking_class_averaged" in results:
        tracking_rows.append(["class-averaged", *[_fmt(results["tracking_class_averaged"][k])
                                                  for k in _TRACK_KEYS]])
    lines = [
        "# spvis evaluation report", "",
        f"Ground truth `{inp['gt']}`: {inp['videos']} videos, {inp['categories']} categories, "
        f"{inp['gt_tracks']} tracks. {inp['predictions']} predictions; "
        f"{inp['tracker_tracks']} of them score >= {inp['score_threshold']} and are the tracker "
        "output for the tracking metrics.", "",
        "## YouTube-VIS AP (official definition)", "",
        *_table(SUMMARY_KEYS, [[_fmt_ap(results["ytvis"][k]) for k in SUMMARY_KEYS]]), "",
        "`n/a`: no ground-truth track in that area range (the official API reports -1).", "",
        *_se_lines(results),
        f"## Tracking (predictions with score >= {inp['score_threshold']})", "",
        *_table(("classes combined", *_TRACK_HEADER), tracking_rows), "",
        "Each category is scored on its own and the categories are then combined as trackeval "
        "does: detection-averaged (counts summed over categories; the headline) or "
        "class-averaged (mean over all the dataset's categories).", "",
    ]
    if "errors" in results:
        names = {r["category_id"]: r["name"] for r in results.get("tracking_per_class", [])}
        lines += error_markdown(results, names)
    if "calibration" in results:
        lines += reliability_markdown(results["calibration"])
    for kind, title in (("fps", "By frame rate"), ("occlusion", "By occlusion")):
        rows = [[name, str(len(b["video_ids"])), _fmt_ap(b["ytvis"]["AP"]),
                 *[_fmt(b["tracking"][k]) for k in _TRACK_COLS]]
                for name, b in results["buckets"][kind].items()]
        lines += [f"## {title}", "", *_table(("bucket", "videos", "AP", *_TRACK_COLS), rows), ""]
    lines += ["Buckets: see docs/evaluation.md (fps: field, else from timestamps; occlusion: "
              "fraction of in-span track-frames where the object is absent).", "",
              "## Per video", ""]
    rows = [[str(r["video_id"]), str(r["frames"]), _fmt(r["fps"], 1), _fmt(r["occlusion"], 2),
             str(r["gt_tracks"]), str(r["predictions"]), _fmt_ap(r["ytvis"]["AP"]),
             *[_fmt(r["tracking"][k]) for k in _TRACK_COLS]] for r in results["per_video"]]
    lines += _table(("video", "frames", "fps", "occlusion", "gt tracks", "predictions", "AP",
                     *_TRACK_COLS), rows)
    lines += ["", "## Plots", ""]
    for name, title in (("per_video_ap", "Per-video AP"),
                        ("idsw_vs_fps", "ID switches vs frame rate"),
                        ("errors", "Error breakdown"), ("reliability", "Score reliability"),
                        ("worst_video", "Worst video")):
        if name in plots:
            lines.append(f"![{title}]({plots[name]})")
            lines.append("")
    if results["worst_video"] is not None:
        lines.append(f"Worst video (lowest AP): {results['worst_video']}.")
    if canvas_note:
        lines.append(f"Overlay strip: {canvas_note}.")
    return "\n".join(lines) + "\n"


def _plot_per_video_ap(results: dict[str, Any], path: Path) -> None:
    from matplotlib.figure import Figure

    rows = sorted(results["per_video"], key=lambda r: (r["ytvis"]["AP"], r["video_id"]))
    fig = Figure(figsize=(min(40.0, max(6.0, 0.3 * len(rows))), 4), dpi=100)
    ax = fig.add_subplot()
    values = [max(r["ytvis"]["AP"], 0.0) for r in rows]
    colors = ["tab:gray" if r["ytvis"]["AP"] < 0 else "tab:blue" for r in rows]
    bars = ax.bar(range(len(rows)), values, color=colors)
    if len(rows) <= 60:
        ax.bar_label(bars, labels=[_fmt_ap(r["ytvis"]["AP"]) for r in rows], fontsize=7)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([str(r["video_id"]) for r in rows] if len(rows) <= 60 else [],
                       rotation=90, fontsize=7)
    ax.set_ylim(0, 1.08)
    ax.set_xlabel("video id (sorted by AP; grey: no ground truth)")
    ax.set_ylabel("AP")
    ax.set_title(f"Per-video AP (overall AP {_fmt_ap(results['ytvis']['AP'])})")
    fig.tight_layout()
    fig.savefig(path)


def _plot_idsw_vs_fps(results: dict[str, Any], path: Path) -> None:
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    rows = [r for r in results["per_video"] if r["fps"] is not None]
    fig = Figure(figsize=(6, 4), dpi=100)
    ax = fig.add_subplot()
    if rows:
        x = [r["fps"] for r in rows]
        y = [r["tracking"]["IDSW"] for r in rows]
        ax.scatter(x, y)
        if len(rows) <= 30:
            for r, xi, yi in zip(rows, x, y, strict=True):
                ax.annotate(str(r["video_id"]), (xi, yi), fontsize=7, xytext=(3, 3),
                            textcoords="offset points")
    else:
        ax.text(0.5, 0.5, "no video has fps or timestamps in the GT JSON", ha="center",
                va="center", transform=ax.transAxes)
    skipped = len(results["per_video"]) - len(rows)
    ax.set_xlabel("frame rate (fps)" + (f"; not shown (no fps): {skipped} video(s)"
                                        if skipped and rows else ""))
    ax.set_ylabel("ID switches")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title("ID switches per video against frame rate")
    fig.tight_layout()
    fig.savefig(path)


def _decode(rle: dict[str, Any]) -> np.ndarray:
    """(H, W) bool mask of a compressed RLE."""
    with warnings.catch_warnings():
        # pycocotools 2.0.11's decode trips numpy 2's __array__(copy=...) deprecation check.
        warnings.simplefilter("ignore", DeprecationWarning)
        return mask_utils.decode([rle])[:, :, 0].astype(bool)


def _read_frame(images: Path | None, name: str | None) -> np.ndarray | None:
    if images is None or not name:
        return None
    path = images / name
    if not path.is_file():
        return None
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return None if bgr is None else bgr[:, :, ::-1]


def _plot_worst_video(gt: GroundTruth, tracker: list[Track], video_id: int,
                      results: dict[str, Any], images: Path | None, path: Path) -> str | None:
    """Draw the strip; return a note when (some) frames are drawn on a black canvas."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    video = gt.videos[video_id]
    gts = [g for g in gt.tracks_by_video[video_id]]
    active = [t for t in range(video.length)
              if any(g.present[t] for g in gts) or any(p.present[t] for p in tracker)]
    frames = active or list(range(video.length))
    pick = sorted({frames[round(i)] for i in
                   np.linspace(0, len(frames) - 1, min(MAX_STRIP_FRAMES, len(frames)))})
    fig = Figure(figsize=(3.2 * len(pick), 3.2 * video.height / video.width + 0.9), dpi=100)
    cmap = colormaps["tab10"]
    missing = 0
    for k, t in enumerate(pick):
        ax = fig.add_subplot(1, len(pick), k + 1)
        name = video.file_names[t] if video.file_names else None
        image = _read_frame(images, name)
        if image is None or image.shape[:2] != (video.height, video.width):
            missing += 1
            image = np.zeros((video.height, video.width, 3), dtype=np.uint8)
        ax.imshow(image)
        overlay = np.zeros((video.height, video.width, 4))
        for j, p in enumerate(tracker):
            if p.rles[t] is not None and p.present[t]:
                m = _decode(p.rles[t])
                overlay[m] = (*cmap(j % 10)[:3], 0.55)
        ax.imshow(overlay)
        for g in gts:
            if g.rles[t] is not None and g.present[t]:
                ax.contour(_decode(g.rles[t]).astype(np.uint8), levels=[0.5], colors="white",
                           linewidths=1.2)
        ax.set_title(f"frame {t}", fontsize=8)
        ax.axis("off")
    note = None
    if missing:
        why = "no --images folder given" if images is None else \
            f"{missing} of {len(pick)} frames not readable under {images}"
        note = f"{why}: masks drawn on a black canvas"
    row = next(r for r in results["per_video"] if r["video_id"] == video_id)
    fig.suptitle(f"Worst video {video_id}: AP {_fmt_ap(row['ytvis']['AP'])}, "
                 f"{row['tracking']['IDSW']} ID switches. Filled: tracker output (colour = "
                 f"track), white outline: ground truth" + (f"\n{note}" if note else ""),
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    return note


def write_outputs(results: dict[str, Any], out_dir: str | Path,
                  gt: GtSource | GroundTruth | None = None,
                  predictions: PredSource | list[Track] | None = None,
                  images: str | Path | None = None) -> dict[str, Path]:
    """Write metrics.json, report.md and the PNG plots into `out_dir` (created if needed).

    `gt` and `predictions` are needed for the worst-video overlay strip (skipped without them).
    Returns {"json", "markdown", plot names...} -> written paths.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    _plot_per_video_ap(results, out / PLOT_FILES["per_video_ap"])
    _plot_idsw_vs_fps(results, out / PLOT_FILES["idsw_vs_fps"])
    written["per_video_ap"] = out / PLOT_FILES["per_video_ap"]
    written["idsw_vs_fps"] = out / PLOT_FILES["idsw_vs_fps"]
    if "errors" in results:
        plot_errors(results, out / PLOT_FILES["errors"])
        written["errors"] = out / PLOT_FILES["errors"]
    if "calibration" in results:
        plot_reliability(results["calibration"], out / PLOT_FILES["reliability"])
        written["reliability"] = out / PLOT_FILES["reliability"]
    note = None
    if gt is not None and predictions is not None and results["worst_video"] is not None:
        gt = load_ground_truth(gt)
        preds = load_predictions(predictions, gt)
        vid = results["worst_video"]
        thr = results["inputs"]["score_threshold"]
        tracker = [p for p in preds if p.video_id == vid and p.score >= thr]
        note = _plot_worst_video(gt, tracker, vid, results,
                                 Path(images) if images is not None else None,
                                 out / PLOT_FILES["worst_video"])
        written["worst_video"] = out / PLOT_FILES["worst_video"]
    results = {**results, "overlay_note": note}
    json_path = out / "metrics.json"
    json_path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    md_path = out / "report.md"
    md_path.write_text(markdown_report(results, {k: v.name for k, v in written.items()}, note),
                       encoding="utf-8")
    written["json"] = json_path
    written["markdown"] = md_path
    return written
