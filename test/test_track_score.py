"""Stage 2's track-score model: the fit on hand-made tracks, and the collection of tracks from
cached segmenter outputs (test_feature_cache.py's tiny cache)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spvis_model.tracker.publish import track_score
from spvis_model.training.track_score import (
    TrackFrames,
    calibrate_track_score,
    features,
    fit_track_score,
    mean_track_scores,
)


def track(score: float, frames: int, iou: float, vid: int = 1, tid: int = 1) -> TrackFrames:
    return TrackFrames(vid, tid, np.full(frames, score), np.arange(1, frames + 1), iou)


def predict(weights: list[float], t: TrackFrames) -> float:
    """The track's mean score as the tracker computes it (publish.track_score)."""
    return float(track_score(torch.from_numpy(t.score), torch.from_numpy(t.hits), weights).mean())


def test_fit_features_are_what_the_tracker_weights():
    score = np.array([0.0, 0.3, 0.9, 0.98, 1.0])
    hits = np.array([1, 2, 5, 20, 1])
    weights = [-4.0, 1.5, 0.7]
    z = weights[0] + features(score, hits) @ torch.tensor(weights[1:], dtype=torch.float64)
    got = track_score(torch.from_numpy(score), torch.from_numpy(hits), weights)
    torch.testing.assert_close(got, torch.sigmoid(z))


def test_fit_tool_refuses_sets_that_are_not_training_sets():
    import subprocess
    import sys
    from pathlib import Path

    tool = Path(__file__).resolve().parent.parent / "bench" / "fit_track_score.py"
    run = subprocess.run([sys.executable, str(tool), "--checkpoint", "unused.pt",
                          "--sets", "train_s2,val_heldout"], capture_output=True, text=True,
                         timeout=120, check=False)
    assert run.returncode == 2, run.stderr
    assert "['val_heldout']: not train sets" in run.stderr


def test_fit_learns_that_one_frame_tracks_are_wrong_more_often():
    rng = np.random.default_rng(0)
    # Right tracks: seen 5-30 times at 0.8-0.95. Wrong ones: seen once or twice at 0.9-0.99,
    # plus a few long weak ones.
    right = [track(rng.uniform(0.8, 0.95), int(rng.integers(5, 30)), 0.8, tid=i)
             for i in range(40)]
    wrong = [track(rng.uniform(0.9, 0.99), int(rng.integers(1, 3)), 0.1, tid=100 + i)
             for i in range(40)]
    wrong += [track(rng.uniform(0.3, 0.5), 20, 0.2, tid=200 + i) for i in range(10)]
    weights = fit_track_score(right + wrong)
    assert len(weights) == 3 and all(np.isfinite(weights))
    _, w_s, w_h = weights
    assert w_h > 0 and w_s > 0
    # A one-frame 0.98 track ranks below a 20-frame 0.9 track; a raw mean score would not.
    assert predict(weights, track(0.98, 1, 0)) < predict(weights, track(0.9, 20, 0))
    scores = np.array([predict(weights, t) for t in right + wrong])
    labels = np.array([t.right for t in right + wrong])
    assert scores[labels].min() > np.median(scores[~labels])


def test_track_calibration_makes_the_mean_score_the_hit_rate():
    from spvis_model.eval.calibration import reliability

    rng = np.random.default_rng(1)
    weights = [-4.0, 1.5, 0.7]
    # Tracks whose right-or-wrong follows a sharper version of the fitted model: the mean
    # score is too high for the wrong ones (as on the validation sets) and too low for the
    # right ones.
    tracks = []
    for i in range(600):
        t = track(rng.uniform(0.6, 0.99), int(rng.integers(1, 40)), 0.0, tid=i)
        p_true = 1 / (1 + np.exp(-(2.0 * np.log(mean_track_scores([t], weights)[0]
                                                / (1 - mean_track_scores([t], weights)[0]))
                                   - 0.5)))
        t.iou = 0.8 if rng.random() < p_true else 0.1
        tracks.append(t)
    y = np.array([t.right for t in tracks])
    new = calibrate_track_score(tracks, weights)
    assert len(new) == 3 and all(np.isfinite(new))
    before = reliability(mean_track_scores(tracks, weights), y).ece
    after = reliability(mean_track_scores(tracks, new), y).ece
    assert after < 0.6 * before and after < 0.06, (before, after)
    # Same form: a scale a > 1 on the logit (sharper), applied to both weights alike.
    assert new[1] / weights[1] == pytest.approx(new[2] / weights[2]) and new[1] > weights[1]
    # The tool's numbers are what the tracker computes.
    assert mean_track_scores(tracks[:1], new)[0] == pytest.approx(predict(new, tracks[0]))


def test_track_calibration_refuses_one_sided_sets():
    with pytest.raises(ValueError, match="needs right and wrong tracks"):
        calibrate_track_score([track(0.9, 5, 0.8), track(0.8, 3, 0.9)], [-4.0, 1.5, 0.7])


def test_fit_refuses_data_without_both_outcomes():
    with pytest.raises(ValueError, match="right and wrong tracks"):
        fit_track_score([track(0.9, 5, 0.9), track(0.8, 3, 0.7)])
    with pytest.raises(ValueError, match="right and wrong tracks"):
        fit_track_score([])


def test_collected_tracks_match_the_results_of_the_same_tracker(trained_tiny, tmp_path):
    import dataclasses

    from spvis_model.ablation import make_variant, variant_results
    from spvis_model.data.synthetic import generate, preset
    from spvis_model.feature_cache import build_cache
    from spvis_model.training.track_score import collect_track_frames

    cfg = dataclasses.replace(preset("easy"), width=96, height=64, videos=2, frames=6,
                              classes=("disk", "square"), objects=(2, 2), seed=11)
    data = generate(cfg, tmp_path / "data")
    cache = build_cache(trained_tiny, data, tmp_path / "cache", progress=False)
    tracks = collect_track_frames(trained_tiny, cache, data)
    raw = make_variant(trained_tiny, "raw", {"score_model": [], "score_calibration": [1.0, 0.0]})
    results = variant_results(trained_tiny, cache, data, [raw], progress=False)["raw"]
    assert len(tracks) == len(results) > 0
    for t, r in zip(tracks, results, strict=True):
        assert t.video_id == r["video_id"]
        # Published frames of the track = its non-empty segmentations, each with its running
        # score; the mean is the result's score.
        assert len(t.score) == sum(s is not None for s in r["segmentations"])
        assert np.mean(t.score) == pytest.approx(r["score"], abs=1e-5)
        assert (np.diff(t.hits) > 0).all() and t.hits[0] >= 1
        assert 0.0 <= t.iou <= 1.0
    # Every track lies on one of the clips' objects (the tiny model's masks are coarse: video
    # IoU 0.09-0.33, so none is right), and `right` is IoU >= 0.5.
    assert all(t.iou > 0.05 for t in tracks)
    assert [t.right for t in tracks] == [t.iou >= 0.5 for t in tracks]
    # With a score model the result files rank each track by its mean learned score over the
    # same frames (tracker -> postprocess -> results); the published frames do not change.
    weights = [-4.0, 1.5, 0.7]
    learned = make_variant(trained_tiny, "learned", {"score_model": weights,
                                                     "score_calibration": [1.0, 0.0]})
    ranked = variant_results(trained_tiny, cache, data, [learned], progress=False)["learned"]
    assert [r["segmentations"] for r in ranked] == [r["segmentations"] for r in results]
    for t, r in zip(tracks, ranked, strict=True):
        assert r["score"] == pytest.approx(predict(weights, t), abs=1e-5)


def test_calibrate_track_refuses_test_sets_and_a_model_without_a_score_model(trained_tiny,
                                                                             tmp_path):
    """bench/calibrate.py --target track: only validation sets, checked before the model is
    read; a model without a track-score model is refused naming the field and the fix."""
    import subprocess
    import sys
    from pathlib import Path

    tool = Path(__file__).resolve().parent.parent / "bench" / "calibrate.py"
    run = subprocess.run([sys.executable, str(tool), "--target", "track", "--checkpoint",
                          "unused.pt", "--sets", "val_heldout,heldout", "--out", "x.pt"],
                         capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 2, run.stderr
    assert "['heldout']: only validation sets" in run.stderr

    plain = tmp_path / "plain.pt"
    assert not trained_tiny.cfg.tracker.score_model
    trained_tiny.save(plain)
    run = subprocess.run([sys.executable, str(tool), "--target", "track", "--checkpoint",
                          str(plain), "--sets", "val_heldout", "--out", str(tmp_path / "o.pt")],
                         capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 2, run.stderr
    assert "has no track-score model (tracker.score_model is empty)" in run.stderr
    assert "bench/fit_track_score.py" in run.stderr and not (tmp_path / "o.pt").exists()
