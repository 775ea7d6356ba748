"""`spvis eval`: files written, their numbers, images vs black canvas, errors, checkpoint mode."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from eval_cases import box, dataset, gt_ann, pred, rle, two_object_scene, video

from spvis_model.cli import main
from spvis_model.eval import evaluate, evaluate_tracking

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _write_inputs(root: Path) -> tuple[Path, Path, dict, list]:
    a, b = two_object_scene(4)
    gt = dataset(
        [video(1, 4, fps=30.0), video(2, 4, timestamps=[0.0, 0.2, 0.4, 0.6]), video(3, 4)],
        [gt_ann(1, 1, 1, a), gt_ann(2, 1, 2, b),
         gt_ann(3, 2, 1, a), gt_ann(4, 2, 1, b),
         gt_ann(5, 3, 1, [a[0], None, None, a[3]])])
    preds = [
        pred(1, 1, 0.9, a), pred(1, 2, 0.8, b),                           # video 1: perfect
        pred(2, 1, 0.9, a[:2] + b[2:]), pred(2, 1, 0.8, b[:2] + a[2:]),   # video 2: id swap
        pred(3, 1, 0.7, [box(30, 38, 40, 48)] * 4),                       # video 3: a miss
        pred(3, 1, 0.2, [a[0], None, None, a[3]]),                        # ... found below 0.5
    ]
    gt_path, pred_path = root / "gt.json", root / "pred.json"
    gt_path.write_text(json.dumps(gt))
    pred_path.write_text(json.dumps(preds))
    return gt_path, pred_path, gt, preds


def test_cli_writes_json_markdown_and_plots(tmp_path, capsys):
    gt_path, pred_path, gt, preds = _write_inputs(tmp_path)
    out = tmp_path / "out"
    assert main(["eval", "--gt", str(gt_path), "--pred", str(pred_path), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "# spvis evaluation report" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    # The CLI's numbers are the library's numbers.
    assert metrics["ytvis"] == pytest.approx(evaluate(gt, preds))
    assert metrics["tracking"] == pytest.approx(evaluate_tracking(gt, preds))
    per_video = {r["video_id"]: r for r in metrics["per_video"]}
    assert per_video[1]["ytvis"]["AP"] == pytest.approx(1.0)
    assert per_video[2]["tracking"]["IDSW"] == 2
    assert per_video[3]["fps"] is None
    assert per_video[3]["occlusion"] == pytest.approx(0.5)  # absent in 2 of its 4 span frames
    # video 2's swapped tracks have video IoU (100+100)/(200+288+200) = 0.29 with each object:
    # AP 0; video 3's top prediction is wrong, the right one scores lower: AP 0.5.
    assert per_video[2]["ytvis"]["AP"] == 0.0
    assert per_video[3]["ytvis"]["AP"] == pytest.approx(0.5)
    assert metrics["worst_video"] == 2  # lowest AP
    assert set(metrics["buckets"]["fps"]) == {"fps >= 20", "fps < 10", "fps unknown"}
    assert metrics["buckets"]["fps"]["fps < 10"]["video_ids"] == [2]
    assert metrics["buckets"]["fps"]["fps < 10"]["tracking"]["IDSW"] == 2
    assert set(metrics["buckets"]["occlusion"]) == {"none", "high"}
    report = (out / "report.md").read_text()
    for needle in ("## YouTube-VIS AP", "## By frame rate", "## By occlusion", "## Per video",
                   "![Per-video AP](per_video_ap.png)", "![Worst video](worst_video.png)",
                   "black canvas"):
        assert needle in report, needle
    for name in ("per_video_ap.png", "idsw_vs_fps.png", "worst_video.png"):
        data = (out / name).read_bytes()
        assert data.startswith(PNG_MAGIC), name
        assert len(data) > 2000, name
    assert metrics["overlay_note"] == "no --images folder given: masks drawn on a black canvas"


def test_cli_overlays_real_frames_when_images_exist(tmp_path):
    import cv2

    gt_path, pred_path, gt, _ = _write_inputs(tmp_path)
    images = tmp_path / "frames"
    for v in gt["videos"]:
        for name in v["file_names"]:
            (images / name).parent.mkdir(parents=True, exist_ok=True)
            frame = np.zeros((v["height"], v["width"], 3), dtype=np.uint8)
            frame[:, :, 0] = 255  # pure blue in BGR
            assert cv2.imwrite(str(images / name), frame)
    out = tmp_path / "out"
    assert main(["eval", "--gt", str(gt_path), "--pred", str(pred_path), "--out", str(out),
                 "--images", str(images)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["overlay_note"] is None
    assert "black canvas" not in (out / "report.md").read_text()
    strip = cv2.imread(str(out / "worst_video.png"))
    blue = (strip[:, :, 0] > 200) & (strip[:, :, 1] < 60) & (strip[:, :, 2] < 60)
    assert blue.mean() > 0.05  # the frames themselves are drawn


def test_cli_without_out_prints_report(tmp_path, capsys):
    gt_path, pred_path, _, _ = _write_inputs(tmp_path)
    assert main(["eval", "--gt", str(gt_path), "--pred", str(pred_path)]) == 0
    assert "## Tracking" in capsys.readouterr().out


def test_cli_bad_input_names_the_entry(tmp_path, capsys):
    gt_path, pred_path, _, preds = _write_inputs(tmp_path)
    preds[4]["segmentations"][2] = {"size": [40, 50], "counts": "bad!"}
    pred_path.write_text(json.dumps(preds))
    assert main(["eval", "--gt", str(gt_path), "--pred", str(pred_path)]) == 1
    err = capsys.readouterr().err
    assert "predictions[4] (video_id=3).segmentations[2]: malformed compressed RLE" in err
    assert main(["eval", "--gt", str(tmp_path / "missing.json"), "--pred", str(pred_path)]) == 1
    assert "ground-truth file not found" in capsys.readouterr().err
    pred_path.write_bytes(b"\xff\xfe[]")  # not UTF-8: the message used to leave out the file
    assert main(["eval", "--gt", str(gt_path), "--pred", str(pred_path)]) == 1
    assert capsys.readouterr().err == (f"spvis eval: error: predictions file {str(pred_path)!r} "
                                       "is not UTF-8 text (byte 0xff at offset 0)\n")
    pred_path.write_text('""')  # a JSON string is not a results list (was scored as empty)
    assert main(["eval", "--gt", str(gt_path), "--pred", str(pred_path)]) == 1
    assert "predictions must be a JSON list" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    ["eval", "--gt", "g.json"],
    ["eval", "--gt", "g.json", "--pred", "p.json", "--checkpoint", "c.pt", "--data", "d.json"],
    ["eval"],
    ["eval", "--gt", "g.json", "--pred", "p.json", "--score-threshold", "2"],
])
def test_cli_usage_errors(argv, capsys):
    assert main(argv) == 2
    assert "spvis eval: error:" in capsys.readouterr().err


def test_cli_out_that_is_a_file_is_refused_before_evaluating(tmp_path, capsys):
    gt_path, pred_path, _, _ = _write_inputs(tmp_path)
    afile = tmp_path / "afile"
    afile.write_text("keep")
    for out in (afile, afile / "sub"):
        assert main(["eval", "--gt", str(gt_path), "--pred", str(pred_path),
                     "--out", str(out)]) == 2
        captured = capsys.readouterr()
        assert captured.out == ""  # refused up front, nothing evaluated
        assert captured.err.startswith("spvis eval: error: --out ")
        assert "is a file" in captured.err and captured.err.count("\n") == 1
    assert afile.read_text() == "keep"


def test_cli_checkpoint_mode_runs_the_model(tmp_path, capsys, trained_tiny):
    # The briefly trained tiny model on the crossing clip, written as PNG frames plus a
    # YouTube-VIS JSON: `spvis eval --checkpoint` must run it and score it well.
    import cv2
    from synthetic_clip import CLASSES, crossing_clip

    frames, masks = crossing_clip()
    (tmp_path / "JPEGImages" / "clip").mkdir(parents=True)
    names = []
    for t, frame in enumerate(frames):
        names.append(f"clip/{t:05d}.png")
        cv2.imwrite(str(tmp_path / "JPEGImages" / names[-1]), frame[:, :, ::-1])
    h, w = frames[0].shape[:2]
    anns = [{"id": k + 1, "video_id": 1, "category_id": k + 1, "iscrowd": 0,
             "segmentations": [rle(m[k]) for m in masks],
             "bboxes": [None] * len(frames), "areas": [int(m[k].sum()) for m in masks]}
            for k in range(2)]
    data = {"videos": [{"id": 1, "width": w, "height": h, "length": len(frames),
                        "file_names": names, "fps": 4.0}],
            "annotations": anns,
            "categories": [{"id": i + 1, "name": n} for i, n in enumerate(CLASSES)]}
    (tmp_path / "data.json").write_text(json.dumps(data))
    trained_tiny.save(tmp_path / "c.pt")
    argv = ["eval", "--checkpoint", str(tmp_path / "c.pt"), "--data", str(tmp_path / "data.json"),
            "--mode", "online", "--out", str(tmp_path / "out"), "--no-progress"]
    assert main(argv) == 0, capsys.readouterr().err
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["ytvis"]["AP50"] > 0.9 and metrics["ytvis"]["AP"] > 0.5, metrics["ytvis"]
    assert metrics["tracking"]["IDSW"] == 0
    # The MinVIS baseline on the same checkpoint: runs, and segments as well (same segmenter).
    base = [*argv[:-3], "--out", str(tmp_path / "minvis"), "--no-progress",
            "--association", "minvis"]
    assert main(base) == 0, capsys.readouterr().err
    minvis = json.loads((tmp_path / "minvis" / "metrics.json").read_text())
    assert "checkpoint" in minvis["inputs"]["predictions_source"]
    assert minvis["ytvis"]["AP50"] > 0.9
    # A missing frame is named.
    (tmp_path / "JPEGImages" / names[3]).unlink()
    assert main(argv) == 1
    assert f"video 1 frame 3: cannot read image {tmp_path / 'JPEGImages' / names[3]}" in \
        capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["eval", "--checkpoint", "c.pt", "--data", "d.json", "--mode", "batch"])


def test_cli_checkpoint_mode_needs_one_file_name_per_frame(tmp_path, capsys):
    # Checked before the checkpoint is read: was "zip() argument 2 is longer than argument 1".
    a, _ = two_object_scene(3)
    gt = dataset([{**video(1, 3), "file_names": []}, video(2, 3)], [gt_ann(1, 1, 1, a)])
    (tmp_path / "JPEGImages").mkdir()
    (tmp_path / "data.json").write_text(json.dumps(gt))
    assert main(["eval", "--checkpoint", str(tmp_path / "c.pt"), "--data",
                 str(tmp_path / "data.json"), "--no-progress"]) == 1
    assert capsys.readouterr().err == (
        f"spvis eval: error: {tmp_path / 'data.json'}: video 1 has 0 file_names but length 3; "
        "running a checkpoint needs one file name per frame\n")


@pytest.mark.parametrize("command", [["info"], ["eval"]])
def test_closed_stdout_ends_quietly_with_141(tmp_path, command):
    # `spvis info | head -0`, `spvis eval ... | head`: the reader is gone before the output.
    gt_path, pred_path, _, _ = _write_inputs(tmp_path)
    if command == ["eval"]:
        command = [*command, "--gt", str(gt_path), "--pred", str(pred_path)]
    read_end, write_end = os.pipe()
    os.close(read_end)  # closed before the command starts: its first write fails
    try:
        done = subprocess.run([sys.executable, "-m", "spvis_model.cli", *command],
                              cwd=Path(__file__).resolve().parents[1], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=120, check=False)
    finally:
        os.close(write_end)
    assert done.returncode == 141, done.stderr
    assert done.stderr == ""


def test_console_entry_runs_eval_and_info(tmp_path):
    gt_path, pred_path, _, _ = _write_inputs(tmp_path)
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-m", "spvis_model.cli", "eval", "--gt", str(gt_path),
                           "--pred", str(pred_path), "--out", str(tmp_path / "o")],
                          cwd=root, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "o" / "metrics.json").is_file()
    info = subprocess.run([sys.executable, "-m", "spvis_model.cli", "info", "--short"],
                          cwd=root, capture_output=True, text=True, timeout=120, check=False)
    assert info.stdout.startswith("spvis ")
