"""Tracker variants on the same segmenter outputs: the ablation table and the tuning harness.

Every variant shares the model's segmenter and tracker weights and differs only in its tracker
configuration (association method, which stages run, life-cycle budgets). All variants step
through each video in lock-step on the same cached segmenter outputs (`feature_cache`), so the
segmenter runs once per frame for the whole table and the comparison is exact.

    cache = build_cache(model, "data/heldout/annotations.json", "cache/heldout")
    rows = run_variants(model, cache, "data/heldout/annotations.json", ABLATION)
    # {"MinVIS": {"AP": ..., "HOTA": ..., "IDSW": ...}, "PGT association only": {...}, ...}
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from spvis_model.feature_cache import FeatureCache
from spvis_model.instances import Instances
from spvis_model.model import SPVIS, make_tracker
from spvis_model.tracker.methods import METHODS
from spvis_model.tracker.settings import TrackSettings
from spvis_model.tracker.tracker import Tracker

_ALL_OFF = {"use_reid": False, "use_sim": False, "use_referring": False,
            "use_correction": False, "use_rcp": False}
# The stage rows compare trackers on raw scores (the running detection score, no track-score
# model): a calibration fitted for one tracker configuration would favour it. The last row is
# the model exactly as configured.
_RAW = {"score_calibration": [1.0, 0.0], "output_score": 0.3, "score_model": []}
# The error-correction rows run it on every frame, whatever frame-interval limit the model is
# configured with; the last row shows the configured limit.
_EVERY_FRAME = {"use_correction": True, "correction_max_interval": math.inf}

# The ablation table: each row adds one stage to the one above. SIM's output guides the
# referring decoder (it is the decoder's query guide), so SIM is added after the decoder: before
# it, SIM has nothing to act on.
ABLATION: dict[str, dict[str, Any]] = {
    "MinVIS": {**_RAW, "association": "minvis"},
    "PGT association only": {**_RAW, **_ALL_OFF},
    "+ memory re-ID": {**_RAW, **_ALL_OFF, "use_reid": True},
    "+ referring decoder": {**_RAW, **_ALL_OFF, "use_reid": True, "use_referring": True},
    "+ SIM": {**_RAW, **_ALL_OFF, "use_reid": True, "use_referring": True, "use_sim": True},
    "+ error correction": {**_RAW, **_ALL_OFF, "use_reid": True, "use_referring": True,
                           "use_sim": True, **_EVERY_FRAME},
    "+ RCP (every stage)": {**_RAW, "use_reid": True, "use_referring": True, "use_sim": True,
                            **_EVERY_FRAME, "use_rcp": True},
    "PGT as shipped (config defaults)": {},
}

METRICS = ("AP", "AP50", "HOTA", "AssA", "IDF1", "IDSW", "coverage")


@dataclasses.dataclass
class Variant:
    """One tracker configuration over the shared weights."""

    name: str
    tracker: Tracker
    settings: TrackSettings

    @property
    def association(self) -> str:
        return self.tracker.cfg.association


def make_variant(model: SPVIS, name: str, overrides: Mapping[str, Any]) -> Variant:
    """A tracker with the model's tracker weights and its config changed by `overrides`
    (TrackerConfig fields; unknown names raise TypeError). MinVIS gets one slot per query."""
    tcfg = dataclasses.replace(model.cfg.tracker, **overrides)
    if tcfg.association == "minvis":
        tcfg.max_tracks = max(tcfg.max_tracks, model.cfg.segmenter.num_queries)
    cfg = dataclasses.replace(model.cfg, tracker=tcfg).validate()
    tracker = make_tracker(cfg).to(model.device)
    tracker.load_state_dict(model.tracker.state_dict())
    return Variant(name, tracker.eval(), TrackSettings.from_config(tcfg))


@torch.inference_mode()
def _instances(model: SPVIS, cache: FeatureCache, variants: list[Variant],
               progress: bool) -> Iterator[tuple[int, dict[str, list[Instances]]]]:
    """(video id, {variant: per-frame Instances}) for each cached video, the variants stepped
    in lock-step over the same segmenter outputs."""
    cache.check_model(model)
    heads = model.segmenter.decoder
    refine = any(v.tracker.cfg.mask_refine != "none" for v in variants)
    for vid in tqdm(cache.video_ids, desc="videos", disable=not progress):
        video = cache.video(vid)
        images = cache.frames(vid) if refine else None
        states = {v.name: v.tracker.init_state(model.device) for v in variants}
        frames: dict[str, list[Instances]] = {v.name: [] for v in variants}
        for t in range(len(video)):
            feats = video.features(t, heads, model.device)
            stamp = float(video.stamps[t])
            image = images[t] if images is not None else None
            for v in variants:
                states[v.name], step = METHODS[v.association](
                    v.tracker, states[v.name], feats, stamp, heads, v.settings)
                frames[v.name].append(model.postprocess(step, video.geometry,
                                                        v.tracker.cfg, frame=image))
        yield vid, frames


def variant_results(model: SPVIS, cache: FeatureCache, data: str | Path,
                    variants: list[Variant], progress: bool = True
                    ) -> dict[str, list[dict[str, Any]]]:
    """YouTube-VIS results lists of each variant over the cached videos of `data`."""
    from spvis_model.eval.data import load_ground_truth
    from spvis_model.eval.results import results_from_tracks
    from spvis_model.eval.runner import category_mapping, known_classes

    gt = load_ground_truth(data)
    mapping = category_mapping(model.class_names, gt.categories, str(data))
    results: dict[str, list[dict[str, Any]]] = {v.name: [] for v in variants}
    for vid, frames in _instances(model, cache, variants, progress):
        for v in variants:
            kept = [known_classes(inst, mapping) for inst in frames[v.name]]
            results[v.name].extend(results_from_tracks(vid, kept, mapping))
    return results


def published_per_frame(model: SPVIS, cache: FeatureCache, variants: list[Variant],
                        score_threshold: float = 0.5, progress: bool = True
                        ) -> dict[str, dict[int, list[int]]]:
    """{variant: {video id: instances published on each frame}}: the instances scoring >=
    `score_threshold`, as the node publishes them (on object-free footage every one of them
    is a false positive)."""
    counts: dict[str, dict[int, list[int]]] = {v.name: {} for v in variants}
    for vid, frames in _instances(model, cache, variants, progress):
        for v in variants:
            counts[v.name][vid] = [int((inst.scores >= score_threshold).sum())
                                   for inst in frames[v.name]]
    return counts


def score(data: str | Path, results: list[dict[str, Any]],
          score_threshold: float = 0.5) -> dict[str, float]:
    """AP/AR (YouTube-VIS), tracking metrics (HOTA, AssA, IDF1, IDSW, ...) and coverage (share
    of annotated object-frames some output covers, spvis_model.eval.errors) of a results list;
    the tracking metrics and coverage read the predictions scoring >= `score_threshold`."""
    from spvis_model.eval.data import load_ground_truth, load_predictions
    from spvis_model.eval.errors import error_breakdown
    from spvis_model.eval.tracking import evaluate_tracking
    from spvis_model.eval.ytvis import evaluate

    gt = load_ground_truth(data)
    preds = load_predictions(results, gt) if results else []
    out = dict(evaluate(gt, preds)) if preds else {"AP": 0.0, "AP50": 0.0}
    out.update(evaluate_tracking(gt, preds, score_threshold))
    coverage = error_breakdown(gt, preds, score_threshold).summary()["coverage"]
    out["coverage"] = float("nan") if coverage is None else float(coverage)
    return out


def folder_name(row: str) -> str:
    """A row name as a folder name: each run of other characters than letters, digits and
    "._-" becomes one "_" ('+ RCP (every stage)' -> 'RCP_every_stage')."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", row).strip("_")


def run_variants(model: SPVIS, cache: FeatureCache, data: str | Path,
                 table: Mapping[str, Mapping[str, Any]], score_threshold: float = 0.5,
                 progress: bool = True, save_dir: str | Path | None = None,
                 save_name: str = "results.json") -> dict[str, dict[str, float]]:
    """Score every row of `table` ({name: TrackerConfig overrides}) on the cached videos.
    With `save_dir`, each row's results list is also written to
    save_dir/<folder_name(row)>/<save_name> (for bench/compare_results.py)."""
    variants = [make_variant(model, name, overrides) for name, overrides in table.items()]
    results = variant_results(model, cache, data, variants, progress)
    if save_dir is not None:
        for name, res in results.items():
            out = Path(save_dir) / folder_name(name) / save_name
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(res))
    return {name: score(data, res, score_threshold) for name, res in results.items()}
