"""`spvis export CHECKPOINT --onnx model.onnx`: the segmenter to ONNX, the sidecar beside it."""

from __future__ import annotations

import argparse
import re
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from spvis_model.export.exporter import (
    DEFAULT_OPSET,
    MAX_OPSET,
    MIN_OPSET,
    ExportError,
    ExportOptions,
    export_onnx,
    network_size,
)
from spvis_model.export.graph import GRAPH_DTYPES, MSDA_FORMS, PLUGIN_VERSIONS

_SIZE = re.compile(r"^(\d+)x(\d+)$")


def parse_size(text: str) -> tuple[int, int]:
    """'640x480' -> (640, 480); argparse error otherwise."""
    m = _SIZE.match(text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"--size {text!r}: must be WIDTHxHEIGHT, e.g. 640x480")
    return int(m.group(1)), int(m.group(2))


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The `export` subcommand's arguments."""
    p.add_argument("checkpoint", type=Path, help="spvis checkpoint (.pt)")
    p.add_argument("--onnx", type=Path, required=True, help="output file (.onnx); the sidecar "
                   "<file>.json is written beside it")
    p.add_argument("--size", type=parse_size, default=(640, 480), metavar="WxH",
                   help="camera frame size the graph is for (default 640x480); the graph input "
                   "is the model's resize rule applied to it, padded to multiples of 32")
    p.add_argument("--dynamic", action="store_true", help="dynamic input height/width "
                   "(refused for backbones whose graph freezes the size)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET,
                   help=f"ONNX opset, {MIN_OPSET}..{MAX_OPSET} (default {DEFAULT_OPSET})")
    p.add_argument("--precision", default="float32", help="what the graph computes in: "
                   f"{', '.join(GRAPH_DTYPES)} (inputs and outputs stay float32)")
    p.add_argument("--msda", default="grid_sample", help="MSDeformAttn as standard ops "
                   "(grid_sample: onnxruntime, TensorRT) or TensorRT's plugin node "
                   f"(trt_plugin: TensorRT only); one of {', '.join(MSDA_FORMS)}")
    p.add_argument("--plugin-version", default="1", help="plugin_version written on trt_plugin "
                   f"nodes, one of {', '.join(PLUGIN_VERSIONS)} (2 needs TensorRT >= 10.11)")
    p.add_argument("--no-verify", action="store_true", help="skip the onnxruntime check against "
                   "the eager segmenter (onnx.checker still runs; not allowed with --dynamic)")
    p.add_argument("--verbose", action="store_true", help="let torch's exporter print to "
                   "stdout / stderr (a failed trace dumps its whole graph there; hidden by "
                   "default)")


class _TerminatedError(BaseException):
    """SIGTERM turned into an exception (a BaseException, like KeyboardInterrupt, so that no
    `except Exception` inside torch's exporter swallows it): the export's cleanup removes its
    temporary file and the command ends with one line."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise _TerminatedError()


def run(args: argparse.Namespace) -> int:
    """Export; print what was written and verified. Exit 2 with one line on a refusal, 1 with
    one line when writing fails, 130 / 143 with one line on Ctrl-C / SIGTERM (nothing left
    behind: no .onnx, no sidecar, no temporary file)."""
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return _run(args)
    except (KeyboardInterrupt, _TerminatedError) as exc:
        what, code = (("interrupted", 130) if isinstance(exc, KeyboardInterrupt) else
                      ("terminated (SIGTERM)", 143))
        print(f"spvis export: {what}; nothing was written to {str(args.onnx)!r}",
              file=sys.stderr)
        return code
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _run(args: argparse.Namespace) -> int:
    from spvis_model.checkpoint import CheckpointError
    from spvis_model.model import SPVIS

    try:
        options = ExportOptions(size=args.size, dynamic=args.dynamic, opset=args.opset,
                                precision=args.precision, msda=args.msda,
                                plugin_version=args.plugin_version,
                                verify=not args.no_verify).validate()
        model = SPVIS.from_checkpoint(args.checkpoint)
        t0 = time.perf_counter()
        result = export_onnx(model, args.onnx, options, quiet=not args.verbose)
    except (ExportError, CheckpointError) as exc:
        print(f"spvis export: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"spvis export: cannot write {str(args.onnx)!r}: {exc}", file=sys.stderr)
        return 1
    side = result.sidecar
    h, w = network_size(model, options.size)
    shape = "dynamic (batch, 3, height, width)" if side.dynamic else f"(batch, 3, {h}, {w})"
    print(f"spvis export: {result.onnx_path} ({result.onnx_path.stat().st_size / 2**20:.1f} MiB, "
          f"{time.perf_counter() - t0:.0f} s): {model.cfg.name}, input {shape}, msda "
          f"{side.msda}, {side.precision}, opset {side.opset}; onnx.checker passed")
    for label, diffs in result.verified.items():
        worst = ", ".join(f"{k} {v:.1e}" for k, v in diffs.items())
        print(f"  verified with onnxruntime at {label} against {result.reference}: max |onnx - "
              f"reference| {worst}")
        beyond = result.queries_beyond.get(label)
        if beyond:
            rows = ", ".join(f"{k} {n}/{total}" for k, (n, total) in beyond.items())
            print(f"    query rows beyond the float16 tolerance (borderline masked-attention "
                  f"pixels): {rows}")
        cost = result.versus_float32.get(label)
        if cost:
            worst = ", ".join(f"{k} {v:.1e}" for k, v in cost.items())
            print(f"    what {side.precision} costs: max |onnx - eager float32| {worst}")
    if not result.verified:
        print("  not verified with onnxruntime (--no-verify)")
    print(f"  sidecar: {result.sidecar_path} (its preprocess says how to prepare frames; its "
          f"input_shape is the graph's: {side.input_shape})")
    return 0
