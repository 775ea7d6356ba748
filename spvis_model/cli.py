"""The `spvis` command line: `info`, `eval`, `generate`, `train`, `import`, `export`; `info`
reports what this installation runs on."""

from __future__ import annotations

import argparse
import os
import platform
import sys

import torch

from spvis_model import __version__
from spvis_model.eval.cli import add_eval_parser, run_eval
from spvis_model.ops import _ext


def _info(short: bool) -> str:
    built = _ext.is_built()
    kernels = ("CPU+CUDA" if _ext.with_cuda() else "CPU") if built else "NOT BUILT"
    cuda = (f"CUDA device {torch.cuda.get_device_name()}" if torch.cuda.is_available()
            else "no CUDA device")
    if short:
        return (f"spvis {__version__}, torch {torch.__version__}, MSDeformAttn kernels: {kernels}, "
                f"{cuda}")
    lines = [
        f"spvis          {__version__}",
        f"python         {platform.python_version()} ({sys.executable})",
        f"torch          {torch.__version__} (CUDA build: {torch.version.cuda or 'no'}), "
        f"{torch.get_num_threads()} CPU threads",
        f"MSDeformAttn   {kernels}" + ("" if built else f" - {_ext.BUILD_HINT}"),
        f"device         {cuda}",
    ]
    return "\n".join(lines)


BROKEN_PIPE_EXIT = 141
"""Exit status when stdout's reader went away (`spvis eval ... | head`): 128 + SIGPIPE, as a
shell reports a process that SIGPIPE ended."""


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `spvis` console script. A closed stdout (the reader of a pipe
    exited) ends the command quietly with status 141."""
    try:
        code = _main(argv)
        sys.stdout.flush()  # here, not at interpreter exit where it could not be caught
    except BrokenPipeError:
        # Point stdout at /dev/null so the interpreter's final flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return BROKEN_PIPE_EXIT
    return code


def _main(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(prog="spvis", description="SPVIS video instance segmentation")
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="versions, compiled kernels and devices")
    info.add_argument("--short", action="store_true", help="one line")
    add_eval_parser(sub)
    gen = sub.add_parser("generate", help="write a synthetic YouTube-VIS dataset (videos + "
                         "annotations with timestamps)")
    from spvis_model.data import synthetic

    synthetic.add_arguments(gen)
    from spvis_model.training import cli as train_cli

    train_cli.add_arguments(sub.add_parser(
        "train", help="train a model (stage 1 segmenter, stage 2 tracker); torchrun for "
                      "several processes"))
    from spvis_model.importers import cli as import_cli

    import_cli.add_arguments(sub.add_parser(
        "import", help="convert a published Mask2Former / MinVIS / DVIS checkpoint into an "
                       "spvis checkpoint"))
    from spvis_model.export import cli as export_cli

    export_cli.add_arguments(sub.add_parser(
        "export", help="export the segmenter to ONNX (standard ops or TensorRT's MSDeformAttn "
                       "plugin) with a JSON sidecar for the tracker"))
    args = parser.parse_args(argv)
    if args.command == "info":
        print(_info(args.short))
        return 0 if _ext.is_built() else 1
    if args.command == "eval":
        return run_eval(args)
    if args.command == "generate":
        return synthetic.run(args)
    if args.command == "train":
        return train_cli.run(args)
    if args.command == "import":
        return import_cli.run(args)
    if args.command == "export":
        return export_cli.run(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
