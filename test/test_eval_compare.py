"""spvis_model.eval.compare: the paired jackknife of an AP difference over videos, and
bench/compare_results.py on saved results lists."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from eval_cases import box, dataset, gt_ann, pred, video

from spvis_model.eval.compare import paired_jackknife
from spvis_model.eval.ytvis import evaluate

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _scene(n_videos: int = 6, length: int = 4):
    """One object per video; list a finds it everywhere, list b misses it in videos 0 and 1
    (a shifted mask) and adds a confident false positive in video 2."""
    videos, anns, a, b = [], [], [], []
    for v in range(1, n_videos + 1):
        videos.append(video(v, length))
        obj = [box(5, 20, 5 + v, 20 + v)] * length
        anns.append(gt_ann(v, v, 1, obj))
        a.append(pred(v, 1, 0.9, obj))
        if v <= 2:
            b.append(pred(v, 1, 0.9, [box(25, 38, 30, 48)] * length))
        else:
            b.append(pred(v, 1, 0.8, obj))
        if v == 3:
            b.append(pred(v, 1, 0.95, [box(25, 38, 30, 48)] * length))
    return dataset(videos, anns, n_categories=1), a, b


def test_difference_and_its_standard_error_by_hand():
    gt, a, b = _scene()
    d = paired_jackknife(gt, a, b)
    assert d.a == pytest.approx(evaluate(gt, a)["AP"])
    assert d.b == pytest.approx(evaluate(gt, b)["AP"])
    assert d.delta == pytest.approx(d.a - d.b) and d.delta > 0 and d.videos == 6
    ids = [v["id"] for v in gt["videos"]]
    loo = []
    for i in range(6):
        rest = ids[:i] + ids[i + 1:]
        loo.append(evaluate(gt, a, rest)["AP"] - evaluate(gt, b, rest)["AP"])
    mean = sum(loo) / 6
    assert d.se == pytest.approx(math.sqrt(5 / 6 * sum((x - mean) ** 2 for x in loo)))
    assert d.se > 0
    assert "±" in d.describe() and "6 videos" in d.describe()


def test_identical_lists_differ_by_nothing():
    gt, a, _ = _scene()
    d = paired_jackknife(gt, a, a)
    assert d.delta == 0 and d.se == 0


def test_bad_metric_and_empty_ground_truth_are_named():
    gt, a, b = _scene()
    with pytest.raises(ValueError, match="metric = 'mAP'"):
        paired_jackknife(gt, a, b, metric="mAP")
    empty = dataset([video(1, 2)], [], n_categories=1)
    with pytest.raises(ValueError, match="no video has a"):
        paired_jackknife(empty, [], [])


def test_compare_results_tool(tmp_path):
    gt, a, b = _scene()
    (tmp_path / "data" / "s").mkdir(parents=True)
    (tmp_path / "data" / "s" / "annotations.json").write_text(json.dumps(gt))
    for name, res in (("a", a), ("b", b)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "s.json").write_text(json.dumps(res))
    run = subprocess.run(
        [sys.executable, str(BENCH / "compare_results.py"), "--reference", str(tmp_path / "b"),
         "--candidate", str(tmp_path / "a"), "--sets", "s", "--data-root",
         str(tmp_path / "data")], capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    d = paired_jackknife(gt, a, b)
    assert f"{d.delta:+.3f} ± {d.se:.3f}" in run.stdout
    assert "mean over 1 sets" in run.stdout
    missing = subprocess.run(
        [sys.executable, str(BENCH / "compare_results.py"), "--reference", str(tmp_path / "b"),
         "--candidate", str(tmp_path / "a"), "--sets", "s,t", "--data-root",
         str(tmp_path / "data")], capture_output=True, text=True, timeout=120, check=False)
    assert missing.returncode == 2 and "set 't'" in missing.stderr


def test_single_list_standard_error_and_the_report():
    from spvis_model.eval.compare import ap_standard_errors
    from spvis_model.eval.report import markdown_report, run_evaluation
    from spvis_model.eval.ytvis import YTVISEvaluator

    gt, _, b = _scene()
    se = ap_standard_errors(YTVISEvaluator(gt, b))
    ids = [v["id"] for v in gt["videos"]]
    loo = [evaluate(gt, b, ids[:i] + ids[i + 1:])["AP"] for i in range(6)]
    mean = sum(loo) / 6
    assert se["AP"] == pytest.approx(math.sqrt(5 / 6 * sum((x - mean) ** 2 for x in loo)))
    assert se["AP"] > 0 and se["APl"] is None  # no large track: -1, undefined
    results = run_evaluation(gt, b)
    assert results["ytvis_se"]["AP"] == pytest.approx(se["AP"])
    assert f"± {se['AP']:.3f}" in markdown_report(results, {}, None)
    one = dataset([video(1, 4)], [gt_ann(1, 1, 1, [box(5, 20, 5, 20)] * 4)], n_categories=1)
    assert ap_standard_errors(YTVISEvaluator(one, []))["AP"] is None
    assert "±" not in markdown_report(run_evaluation(one, []), {}, None)


def test_large_sets_leave_out_groups_of_videos():
    from spvis_model.eval.compare import video_groups

    groups = video_groups(list(range(45, 0, -1)), max_groups=20)
    assert len(groups) == 20 and sorted(v for g in groups for v in g) == list(range(1, 46))
    assert {len(g) for g in groups} == {2, 3}
    assert video_groups([3, 1, 2]) == [[1], [2], [3]]
