"""`spvis import`: turn a published Mask2Former / MinVIS / DVIS checkpoint into an spvis one.

    spvis import model_final_3c8ec9.pkl --from mask2former --backbone r50 --classes coco \\
        --out m2f_r50_coco.pt
    spvis import minvis_ytvis19_R50.pth --from minvis --backbone r50 --classes ytvis2019 \\
        --out minvis_r50_ytvis19.pt

Exit status 0 on success, 2 on a usage or import error (the message names the file, key,
shape or global).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from spvis_model.config import SIZED_BACKBONES

from .classes import CLASS_LISTS
from .errors import ImportCheckpointError
from .layout import SOURCES


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The `import` subcommand's arguments."""
    parser.description = (
        "Convert a published Mask2Former (COCO instance segmentation), MinVIS or DVIS / DVIS++ "
        "checkpoint into an spvis checkpoint for the node. Every key is mapped or listed as "
        "dropped; the architecture is read from the tensors' shapes; the spvis tracker starts "
        "at its untrained safe initialisation. See docs/model.md, 'Use a published model'.")
    parser.add_argument("source_file", type=Path, metavar="SOURCE",
                        help="the model-zoo file (.pkl: detectron2 numpy pickle, read with a "
                             "restricted unpickler; .pth: torch.load(weights_only=True))")
    parser.add_argument("--from", dest="source", required=True, choices=SOURCES,
                        help="which code base published it")
    parser.add_argument("--backbone", required=True, choices=SIZED_BACKBONES,
                        help="its backbone (checked against the file)")
    parser.add_argument("--classes", required=True, metavar="|".join([*CLASS_LISTS, "FILE"]),
                        help="the class list of its class head: a built-in list or a file "
                             "(JSON list / COCO-style categories, or one name per line)")
    parser.add_argument("--out", required=True, type=Path, help="spvis checkpoint to write")
    parser.add_argument("--min-size", type=int, default=None,
                        help="override the test-time shorter side (default: the source "
                             "config's, e.g. 800 for COCO, 360/480 for video models; 720 for "
                             "DVIS's *_720p models)")
    parser.add_argument("--max-size", type=int, default=None,
                        help="override the longer-side cap (default 1333)")
    parser.add_argument("--nheads", type=int, default=8,
                        help="attention heads of the decoder and encoder (not visible in the "
                             "shapes; every published config uses 8)")
    parser.add_argument("--half", action="store_true",
                        help="store floating-point weights as float16 (half the file size)")
    return parser


def run(args: argparse.Namespace) -> int:
    """Run the import; print the report (or the error) and return the exit status."""
    from .convert import import_checkpoint

    if args.out.resolve() == args.source_file.resolve():
        print("spvis import: error: --out must not be the source file", file=sys.stderr)
        return 2
    try:
        result = import_checkpoint(args.source_file, source=args.source, backbone=args.backbone,
                                   classes=args.classes, out=args.out, nheads=args.nheads,
                                   min_size=args.min_size, max_size=args.max_size,
                                   half=args.half)
    except ImportCheckpointError as exc:
        print(f"spvis import: error: {exc}", file=sys.stderr)
        return 2
    print(result.report())
    print(f"next: spvis_node --ros-args -p checkpoint:={args.out}")
    return 0
