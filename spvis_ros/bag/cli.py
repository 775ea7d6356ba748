"""`spvis-bag`: make, play, record, evaluate and inspect rosbag2 bags (docs/bags.md).

    spvis-bag make --out BAG [--storage mcap|sqlite3] [--transport raw|compressed] [--topic T]
                   (--video FILE | --images DIR | --synthetic PRESET [--seed S] [--videos N])
    spvis-bag play BAG [--rate R | --fast] [--topic-remap OLD:NEW] [--loop [N]] [--wait-for T]
    spvis-bag record --out BAG --topics T [T ...] [--duration S] [--count N]
    spvis-bag eval --bag RECORDED --gt BAG.gt.json [--images-bag BAG] --out DIR
    spvis-bag info BAG             (topics, types, counts, duration and time range)

Exit status: 0 done, 1 the work failed (the message names the file or topic), 2 bad usage.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from spvis_ros.bag.base import BagError
from spvis_ros.transports import DEFAULT_BASE_TOPIC, TRANSPORT_NAMES

PROG = "spvis-bag"
DEFAULT_TOPIC = f"/cam0/{DEFAULT_BASE_TOPIC}"


def _number(text: str, ok: Any, expected: str) -> float:
    """`text` as a float for argparse, refused (naming the value) unless ok(value)."""
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from exc
    if not ok(value):
        raise argparse.ArgumentTypeError(f"must be {expected}, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    return _number(text, lambda v: v > 0, "> 0")


def _non_negative_float(text: str) -> float:
    return _number(text, lambda v: v >= 0 and math.isfinite(v), "a finite number >= 0")


def _fraction(text: str) -> float:
    """A number in [0, 1] (a score threshold)."""
    return _number(text, lambda v: 0.0 <= v <= 1.0, "in [0, 1]")


def _int_at_least(low: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from exc
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {text!r}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


MAX_START_S = 2**31 - 1  # builtin_interfaces/Time holds int32 seconds


def _start(text: str) -> float:
    """`make --start`: seconds since the epoch that a ROS Time can hold."""
    return _number(text, lambda v: 0 <= v <= MAX_START_S,
                   f"in 0 .. {MAX_START_S} s (a ROS Time has int32 seconds)")


_TOKEN = re.compile(r"(?:[A-Za-z_][A-Za-z0-9_]*|\{[A-Za-z_][A-Za-z0-9_]*\})+")


def topic_name_problem(name: str, absolute: bool = False) -> str | None:
    """Why `name` is not a valid ROS 2 topic name (rcl's rules), or None when it is.

    Rules: not empty; only letters, digits, ``_``, ``/``, a leading ``~`` (followed by ``/`` or
    nothing) and ``{substitutions}``; no ``//``, no trailing ``/``; no token starting with a
    digit. `absolute`: the name must also be fully qualified (start with ``/``, no ``~`` or
    substitutions), as a topic stored in a bag is.
    """
    if not name:
        return "is empty"
    bad = sorted({c for c in name if not (c.isascii() and (c.isalnum() or c in "_/~{}"))})
    if bad:
        return f"contains {''.join(bad)!r} (allowed: letters, digits, '_', '/')"
    if absolute and not name.startswith("/"):
        return "must be absolute (start with '/')"
    body = name
    if name.startswith("~"):
        if absolute:
            return "must be absolute (no '~')"
        if len(name) > 1 and name[1] != "/":
            return "'~' must be followed by '/'"
        body = name[2:] if len(name) > 1 else ""
        if not body:
            return None if name == "~" else "must not end with '/'"
    if "~" in body:
        return "'~' is allowed only as the first character"
    if body.endswith("/"):
        return "must not end with '/'"
    tokens = body[1:].split("/") if body.startswith("/") else body.split("/")
    for token in tokens:
        if not token:
            return "contains '//'" if body != "/" else "must not end with '/'"
        if token[0].isdigit():
            return f"token {token!r} starts with a digit"
        if not _TOKEN.fullmatch(token):
            return f"token {token!r} is malformed (unbalanced or bad {{substitution}})"
        if absolute and "{" in token:
            return "must be absolute (no {substitutions})"
    return None


def _topic(text: str) -> str:
    problem = topic_name_problem(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a valid ROS topic name: {problem}")
    return text


def _bag_topic(text: str) -> str:
    problem = topic_name_problem(text, absolute=True)
    if problem is not None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a valid topic name for a bag: "
                                         f"{problem}")
    return text


def _remap(text: str) -> str:
    """OLD:NEW, both valid topic names."""
    old, sep, new = text.partition(":")
    if not sep or not old or not new:
        raise argparse.ArgumentTypeError(f"{text!r}: expected OLD:NEW (two topic names)")
    for name in (old, new):
        problem = topic_name_problem(name)
        if problem is not None:
            raise argparse.ArgumentTypeError(f"{text!r}: {name!r} is not a valid ROS topic "
                                             f"name: {problem}")
    return text


def _classes(text: str) -> list[str]:
    return [c.strip() for c in text.split(",") if c.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="rosbag2 tools for spvis: make image "
                                     "bags, play them to the node, record its outputs, score "
                                     "them (docs/bags.md)")
    sub = parser.add_subparsers(dest="command", required=True)

    mk = sub.add_parser("make", help="write an image bag (and a GT sidecar for synthetic data)")
    mk.add_argument("--out", type=Path, required=True, help="bag to write (a rosbag2 directory)")
    mk.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap",
                    help="storage plugin (default mcap)")
    mk.add_argument("--transport", choices=TRANSPORT_NAMES, default="raw",
                    help="raw: sensor_msgs/Image rgb8; compressed: CompressedImage JPEG "
                    "(default raw)")
    mk.add_argument("--compressed", action="store_true", help="= --transport compressed")
    mk.add_argument("--topic", type=_bag_topic,
                    help=f"image topic, absolute (default {DEFAULT_TOPIC}, plus the "
                    "transport's suffix: /compressed)")
    mk.add_argument("--frame-id", default="cam0_optical", help="header frame_id")
    mk.add_argument("--start", type=_start, default=1_700_000_000.0,
                    help="stamp of the first frame, seconds since the epoch (default 1.7e9; "
                    f"0 .. {MAX_START_S})")
    mk.add_argument("--video-gap", type=_positive_float, default=60.0,
                    help="seconds between the last frame of a video and the first of the next "
                    "(default 60; keep it > the node's max_gap_s so it resets between videos)")
    mk.add_argument("--jpeg-quality", type=int, default=90, help="JPEG quality (1-100)")
    mk.add_argument("--overwrite", action="store_true", help="replace an existing bag")
    src = mk.add_mutually_exclusive_group(required=True)
    src.add_argument("--video", type=Path, help="a video file (OpenCV)")
    src.add_argument("--images", type=Path, help="a folder of images, in name order")
    src.add_argument("--synthetic", metavar="PRESET",
                     help="synthetic videos: easy, medium, hard or heldout (writes BAG.gt.json)")
    mk.add_argument("--fps", type=_positive_float,
                    help="frame rate for --images (default 10) or to override a video's")
    mk.add_argument("--seed", type=int, help="synthetic: base seed")
    mk.add_argument("--videos", type=int, help="synthetic: number of videos")
    mk.add_argument("--frames", type=int, help="synthetic: frames per video")
    mk.add_argument("--classes", type=_classes,
                    help="synthetic: comma-separated class names to draw (e.g. disk,square)")
    mk.add_argument("--no-progress", action="store_true", help="no progress bar")

    pl = sub.add_parser("play", help="publish a bag's messages on live topics")
    pl.add_argument("bag", type=Path)
    speed = pl.add_mutually_exclusive_group()
    speed.add_argument("--rate", type=_positive_float, default=1.0,
                       help="multiple of the recorded rate (default 1)")
    speed.add_argument("--fast", action="store_true", help="as fast as possible (lock-step "
                       "with --wait-for)")
    pl.add_argument("--topic-remap", action="append", metavar="OLD:NEW", type=_remap,
                    help="publish the bag's topic OLD on NEW (repeatable)")
    pl.add_argument("--topics", nargs="+", help="play only these topics of the bag")
    pl.add_argument("--loop", nargs="?", type=_int_at_least(0), const=0, default=1, metavar="N",
                    help="play N times (no N: until Ctrl-C)")
    pl.add_argument("--wait-for", metavar="TOPIC", type=_topic,
                    help="lock-step: after each image, wait for the message with its header "
                    "stamp on TOPIC (e.g. /cam0/instances)")
    pl.add_argument("--answer-timeout", type=_positive_float, default=10.0,
                    help="lock-step: seconds to wait for one answer (default 10)")
    pl.add_argument("--wait-subscribers", type=_non_negative_float,
                    help="seconds to wait for subscribers first (default 30 lock-step, else 2)")
    pl.add_argument("--qos", choices=("reliable", "best_effort"),
                    help="publisher reliability (default: reliable in lock-step, else "
                    "best_effort sensor-data QoS)")
    pl.add_argument("--no-progress", action="store_true", help="no progress bar")

    rc = sub.add_parser("record", help="record live topics into a bag")
    rc.add_argument("--out", type=Path, required=True, help="bag to write")
    rc.add_argument("--topics", nargs="+", required=True, type=_topic,
                    help="topics to record")
    rc.add_argument("--duration", type=_positive_float, help="stop after this many seconds")
    rc.add_argument("--count", type=_int_at_least(1),
                    help="stop after this many messages (all topics)")
    rc.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    rc.add_argument("--wait-topics", type=_non_negative_float, default=10.0,
                    help="seconds to wait for the topics' publishers (default 10)")
    rc.add_argument("--qos", choices=("reliable", "best_effort"),
                    help="subscription reliability (default: what the publishers offer)")
    rc.add_argument("--overwrite", action="store_true", help="replace an existing bag")

    ev = sub.add_parser("eval", help="score recorded InstanceArrays against a GT sidecar")
    ev.add_argument("--bag", type=Path, required=True, help="the recording")
    ev.add_argument("--gt", type=Path, required=True, help="the input bag's BAG.gt.json")
    ev.add_argument("--out", type=Path, required=True, help="output folder")
    imgs = ev.add_mutually_exclusive_group()
    imgs.add_argument("--images-bag", type=Path,
                      help="input bag for the overlay videos (default: the bag beside --gt)")
    imgs.add_argument("--no-video", action="store_true", help="no overlay videos")
    ev.add_argument("--topic", help="InstanceArray topic (default: the recording's only one)")
    ev.add_argument("--image-topic", help="image topic of the input bag (default: the GT's)")
    ev.add_argument("--score-threshold", type=_fraction, default=0.5,
                    help="tracker output threshold for the tracking metrics, in [0, 1] "
                    "(default 0.5)")
    ev.add_argument("--allow-partial", action="store_true",
                    help="score what could be read of a truncated/corrupt recording")
    ev.add_argument("--progress", action="store_true", help="progress bars")

    info = sub.add_parser("info", help="topics, types, message counts, duration and time range "
                          "of a bag")
    info.add_argument("bag", type=Path)
    return parser


def _make(args: argparse.Namespace) -> int:
    from spvis_ros.bag import make

    compressed = args.compressed or args.transport == "compressed"
    common = {"storage": args.storage, "compressed": compressed, "topic": args.topic,
              "frame_id": args.frame_id, "start_ns": round(args.start * 1e9),
              "video_gap_s": args.video_gap, "jpeg_quality": args.jpeg_quality,
              "overwrite": args.overwrite, "progress": not args.no_progress}
    if not 1 <= args.jpeg_quality <= 100:
        return _usage(f"--jpeg-quality = {args.jpeg_quality}: must be in 1..100")
    if args.synthetic is not None:
        categories, videos, config = make.synthetic_source(
            args.synthetic, args.seed, args.videos, args.frames, args.classes)
        info = {"synthetic": {"preset": args.synthetic, "seed": config.seed,
                              "videos": config.videos, "frames": config.frames,
                              "classes": list(config.classes)}}
        summary = make.write_image_bag(args.out, videos, categories=categories, info=info,
                                       **common)
    else:
        for name in ("seed", "videos", "frames", "classes"):
            if getattr(args, name) is not None:
                return _usage(f"--{name} is for --synthetic only")
        if args.video is not None:
            source = make.video_source(args.video, args.fps)
        else:
            source = make.images_source(args.images, args.fps or 10.0)
        summary = make.write_image_bag(args.out, [source], **common)
    print(summary.text())
    return 0


def _play(args: argparse.Namespace) -> int:
    from spvis_ros.bag.play import PlayOptions, parse_remap, play

    options = PlayOptions(rate=args.rate, fast=args.fast, remap=parse_remap(args.topic_remap),
                          loops=args.loop, wait_for=args.wait_for,
                          answer_timeout=args.answer_timeout,
                          wait_subscribers=args.wait_subscribers, qos=args.qos,
                          topics=args.topics, progress=not args.no_progress)
    report = play(args.bag, options)
    print(report.text(), flush=True)
    if report.interrupted:
        return 130
    if args.wait_for is not None and report.unanswered and not report.answered:
        print(f"{PROG} play: error: lock-step: none of the {len(report.unanswered)} images was "
              f"answered on {args.wait_for} (is the node running with "
              "input_reliability:=reliable, and is that its output topic?)", file=sys.stderr)
        return 1
    return 0


def _record(args: argparse.Namespace) -> int:
    from spvis_ros.bag.record import RecordOptions, print_ready, record

    options = RecordOptions(topics=args.topics, duration=args.duration, count=args.count,
                            storage=args.storage, wait_topics=args.wait_topics, qos=args.qos,
                            overwrite=args.overwrite)
    report = record(args.out, options, ready=print_ready)
    print(report.text(), flush=True)
    return 0


def _eval(args: argparse.Namespace) -> int:
    from spvis_ros.bag.evaluate import EvalOptions, evaluate_bag

    options = EvalOptions(topic=args.topic,
                          images_bag=False if args.no_video else args.images_bag,
                          image_topic=args.image_topic, score_threshold=args.score_threshold,
                          allow_partial=args.allow_partial, progress=args.progress)
    result = evaluate_bag(args.bag, args.gt, args.out, options)
    m = result.metrics
    print(f"AP {m['ytvis']['AP']:.3f}  AP50 {m['ytvis']['AP50']:.3f}  "
          f"HOTA {m['tracking']['HOTA']:.3f}  MOTSA {m['tracking']['MOTSA']:.3f}  "
          f"IDF1 {m['tracking']['IDF1']:.3f}  IDSW {m['tracking']['IDSW']}")
    print(result.accounting.text())
    print(f"wrote {args.out}: " + ", ".join(sorted(p.name for p in result.written.values())))
    return 0


def _info(args: argparse.Namespace) -> int:
    from spvis_ros.bag.reader import bag_info

    print(bag_info(args.bag).text())
    return 0


def _usage(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `spvis-bag` console script."""
    args = build_parser().parse_args(None if argv is None else list(argv))
    commands = {"make": _make, "play": _play, "record": _record, "eval": _eval, "info": _info}

    def one_line(message: Warning | str, category: type[Warning], *_: object,
                 **__: object) -> None:
        print(f"{PROG} {args.command}: warning: {message}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = one_line  # type: ignore[assignment]
        return _run(commands[args.command], args)


def _run(command: Any, args: argparse.Namespace) -> int:
    """`command(args)`, with the errors a user can cause turned into one line and exit 1."""
    from spvis_ros.bag.play import PlayError
    from spvis_ros.bag.record import RecordError

    try:
        return command(args)
    except (PlayError, RecordError) as exc:
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except BagError as exc:
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # the file system refused (the text names the path)
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG} {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
