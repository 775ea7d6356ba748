"""`spvis eval`: score a results file (or, once the model lands, a checkpoint) on a dataset.

    spvis eval --gt data.json --pred results.json [--out DIR] [--images DIR] [--score-threshold T]
    spvis eval --checkpoint ckpt --data data.json [--mode online|clip] [--out DIR] [--images DIR]

Prints the markdown report; with --out also writes metrics.json, report.md and the PNG plots
there. Heavy imports (pycocotools, trackeval, matplotlib) happen only when the command runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from spvis_model.eval import runner
from spvis_model.eval.runner import MODEL_MISSING, MODES


def add_eval_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the `eval` subcommand on the `spvis` parser's subparsers."""
    p = subparsers.add_parser(
        "eval", help="YouTube-VIS AP and tracking metrics of predictions or a checkpoint",
        description="Score predictions (--gt/--pred) or a checkpoint (--checkpoint/--data) "
                    "with YouTube-VIS AP and HOTA/MOTSA/IDF1; see docs/evaluation.md.")
    p.add_argument("--gt", type=Path, help="ground-truth dataset JSON (YouTube-VIS format)")
    p.add_argument("--pred", type=Path, help="results JSON: [{video_id, category_id, score, "
                                             "segmentations}]")
    p.add_argument("--checkpoint", type=Path, help="model checkpoint (runs the model)")
    p.add_argument("--data", type=Path, help="dataset JSON to run the checkpoint on")
    p.add_argument("--association", choices=("pgt", "minvis"), default=None,
                   help="with --checkpoint: override the tracker (minvis = the frame-to-frame "
                        "baseline on the same segmenter)")
    p.add_argument("--device", default="cpu",
                   help="with --checkpoint: where the model runs: cpu (default), cuda, cuda:N or "
                        "auto (CUDA when torch sees a device, else the CPU)")
    p.add_argument("--mode", choices=MODES, default="online",
                   help="with --checkpoint: frame-by-frame tracking or clip inference")
    p.add_argument("--out", type=Path, help="folder for metrics.json, report.md and plots")
    p.add_argument("--images", type=Path,
                   help="folder the GT JSON's file_names are relative to (for the overlay strip)")
    p.add_argument("--score-threshold", type=float, default=0.5,
                   help="predictions scoring at least this are the tracker output for the "
                        "tracking metrics (default 0.5)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def _fail(message: str, code: int = 2) -> int:
    print(f"spvis eval: error: {message}", file=sys.stderr)
    return code


def _usage_error(args: argparse.Namespace) -> str | None:
    by_file = args.gt is not None or args.pred is not None
    by_model = args.checkpoint is not None or args.data is not None
    if by_file == by_model:
        return "give either --gt and --pred, or --checkpoint and --data"
    if by_file and (args.gt is None or args.pred is None):
        return "--gt and --pred go together"
    if by_model and (args.checkpoint is None or args.data is None):
        return "--checkpoint and --data go together"
    if not 0.0 <= args.score_threshold <= 1.0:
        return f"--score-threshold must be in [0, 1], got {args.score_threshold}"
    if args.out is not None:
        if args.out.exists() and not args.out.is_dir():
            return f"--out {str(args.out)!r} is a file; give a folder (created if missing)"
        above = next((p for p in args.out.parents if p.exists()), None)
        if above is not None and not above.is_dir():
            return f"--out {str(args.out)!r}: {str(above)!r} is a file, not a folder"
    return None


def run_eval(args: argparse.Namespace) -> int:
    """Run `spvis eval` with parsed arguments; returns the exit code (0 ok, 1 bad input data,
    2 bad usage or mode not available)."""
    usage = _usage_error(args)
    if usage:
        return _fail(usage)
    by_model = args.checkpoint is not None
    if by_model and not runner.model_available():
        return _fail(MODEL_MISSING)
    if by_model:
        from spvis_model.devices import resolve_device
        try:
            resolve_device(args.device, "--device")
        except ValueError as err:
            return _fail(str(err))

    from spvis_model.eval import report
    from spvis_model.eval.data import load_ground_truth, load_predictions

    progress = not args.no_progress and sys.stderr.isatty()
    try:
        if by_model:
            predictions = runner.run_model_on_dataset(args.checkpoint, args.data, args.mode,
                                                      args.images, device=args.device,
                                                      progress=progress,
                                                      association=args.association)
        else:
            predictions = args.pred
        gt = load_ground_truth(args.data if by_model else args.gt)
        preds = load_predictions(predictions, gt)
        results = report.run_evaluation(gt, preds, args.score_threshold, progress=progress)
        results["inputs"]["predictions_source"] = \
            f"checkpoint {args.checkpoint} ({args.mode})" if by_model else str(args.pred)
        if args.out is not None:
            written = report.write_outputs(results, args.out, gt, preds, args.images)
            print(written["markdown"].read_text(encoding="utf-8"))
            print("wrote " + ", ".join(str(p) for p in written.values()))
        else:
            print(report.markdown_report(results, {}, None))
    except (ValueError, FileNotFoundError) as err:
        return _fail(str(err), code=1)
    except BrokenPipeError:
        raise  # stdout's reader went away: spvis_model.cli.main ends quietly
    except OSError as err:  # writing --out failed (permissions, disk full)
        return _fail(f"cannot write the outputs: {err}", code=1)
    return 0
