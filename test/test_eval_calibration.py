"""Score reliability and Platt calibration on hand-made predictions."""

from __future__ import annotations

import numpy as np
import pytest
from eval_cases import box, dataset, gt_ann, pred, video

from spvis_model.eval.calibration import calibrate, fit_platt, reliability, track_outcomes
from spvis_model.eval.report import run_evaluation, write_outputs


def test_reliability_bins_and_ece():
    rel = reliability([0.05, 0.15, 0.95, 1.0], [False, True, True, True], bins=10)
    assert rel.count.tolist() == [1, 1, 0, 0, 0, 0, 0, 0, 0, 2]
    assert rel.hit_rate[0] == 0 and rel.hit_rate[1] == 1 and rel.hit_rate[9] == 1
    # |0-0.05|*1 + |1-0.15|*1 + |1-0.975|*2, over 4
    assert rel.ece == pytest.approx((0.05 + 0.85 + 0.05) / 4)
    assert np.isnan(rel.mean_score[2]) and rel.as_json()["mean_score"][2] is None


def test_platt_fit_recovers_a_known_miscalibration():
    rng = np.random.default_rng(0)
    s = rng.uniform(0.02, 0.98, 4000)
    true_p = calibrate(s, (2.0, -1.0))  # the real probability of a hit behind each score
    hits = rng.random(4000) < true_p
    a, b = fit_platt(s, hits)
    assert a == pytest.approx(2.0, abs=0.2) and b == pytest.approx(-1.0, abs=0.15)
    assert reliability(calibrate(s, (a, b)), hits).ece < reliability(s, hits).ece
    assert calibrate([0.3], (1.0, 0.0))[0] == pytest.approx(0.3)
    with pytest.raises(ValueError, match="needs hits and misses"):
        fit_platt([0.2, 0.9], [True, True])


def test_platt_fit_converges_on_scores_in_a_narrow_band():
    """Plain Newton steps diverged here (a = 1556, b = 344, as on a real validation set of 64
    tracks: a = 1203): the fit must reach the optimum of its penalised likelihood."""
    rng = np.random.default_rng(0)
    x = rng.normal(rng.uniform(-2, 8), rng.uniform(0.1, 4), 64)
    s = 1 / (1 + np.exp(-x))
    hits = rng.random(64) < rng.uniform(0.2, 0.6)
    assert x.min() > 1.5 and x.max() < 7 and 0 < hits.mean() < 1  # the diverging case
    a, b = fit_platt(s, hits)
    assert np.isfinite([a, b]).all() and abs(a) < 20 and abs(b) < 50, (a, b)
    # Optimality: the penalised log-likelihood's gradient vanishes at (a, b).
    z = a * x + b
    p = 1 / (1 + np.exp(-z))
    grad = np.array([np.sum((p - hits) * x), np.sum(p - hits)]) \
        + 1e-3 * 64 * (np.array([a, b]) - [1.0, 0.0])
    assert np.abs(grad).max() < 1e-6, grad
    # And it fits: the calibrated mean probability equals the hit rate (up to the penalty).
    assert p.mean() == pytest.approx(hits.mean(), abs=0.02)


def test_track_outcomes_match_greedily_by_score_within_category(tmp_path):
    a, b = box(0, 8, 0, 8), box(20, 28, 20, 28)
    gt = dataset([video(1, 2)], [gt_ann(1, 1, 1, [a, a]), gt_ann(2, 1, 1, [b, b])])
    preds = [pred(1, 1, 0.9, [a, a]),      # hit
             pred(1, 1, 0.8, [a, a]),      # same object, already taken: miss
             pred(1, 1, 0.4, [b, None]),   # video IoU 64 / 128 = 0.5 with b: hit
             pred(1, 2, 0.7, [b, b])]      # other category: miss
    scores, hits = track_outcomes(gt, preds)
    assert dict(zip(scores.tolist(), hits.tolist(), strict=True)) == {
        0.9: True, 0.8: False, 0.4: True, 0.7: False}
    results = run_evaluation(gt, preds)
    assert results["calibration"]["n"] == 4
    written = write_outputs(results, tmp_path)
    assert written["reliability"].exists()
    assert "Score reliability" in written["markdown"].read_text()
