"""Evaluation: YouTube-VIS AP (official definition) and tracking metrics (HOTA, MOTSA, IDF1).

Public API (imported on first use, so `spvis info` does not load pycocotools or trackeval):

- `evaluate(gt, predictions) -> dict`: AP, AP50, AP75, APs, APm, APl, AR1, AR10 (`ytvis`).
- `evaluate_tracking(gt, predictions, score_threshold=0.5) -> dict`: HOTA, DetA, AssA, MOTSA,
  IDF1, IDSW, ... (`tracking`; classes scored one by one, as trackeval's YouTube-VIS reader).
- `error_breakdown(gt, tracks, score_threshold) -> ErrorBreakdown`: missed, late, fragmented,
  class-flipped ground-truth tracks; one-frame and false-positive tracker tracks (`errors`).
- `run_evaluation(...)`, `write_outputs(...)`: everything, with per-video rows, frame-rate and
  occlusion buckets, JSON/markdown/PNG outputs (`report`).
- `results_from_tracks(video_id, frames, category_ids)`: tracker outputs -> results list
  (`results`).

See docs/evaluation.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "evaluate": "ytvis",
    "YTVISEvaluator": "ytvis",
    "video_iou": "ytvis",
    "evaluate_tracking": "tracking",
    "TrackingEvaluator": "tracking",
    "error_breakdown": "errors",
    "ErrorBreakdown": "errors",
    "run_evaluation": "report",
    "write_outputs": "report",
    "results_from_tracks": "results",
    "FrameInstances": "results",
    "FrameOutput": "results",
    "load_ground_truth": "data",
    "load_predictions": "data",
}

__all__ = [
    "ErrorBreakdown",
    "FrameInstances",
    "FrameOutput",
    "TrackingEvaluator",
    "YTVISEvaluator",
    "error_breakdown",
    "evaluate",
    "evaluate_tracking",
    "load_ground_truth",
    "load_predictions",
    "results_from_tracks",
    "run_evaluation",
    "video_iou",
    "write_outputs",
]

if TYPE_CHECKING:
    from spvis_model.eval.data import load_ground_truth, load_predictions
    from spvis_model.eval.errors import ErrorBreakdown, error_breakdown
    from spvis_model.eval.report import run_evaluation, write_outputs
    from spvis_model.eval.results import FrameInstances, FrameOutput, results_from_tracks
    from spvis_model.eval.tracking import TrackingEvaluator, evaluate_tracking
    from spvis_model.eval.ytvis import YTVISEvaluator, evaluate, video_iou


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'spvis_model.eval' has no attribute {name!r}")
    module = importlib.import_module(f"spvis_model.eval.{_EXPORTS[name]}")
    return getattr(module, name)
