"""`spvis-bag play`: publish a bag's messages on live topics with rclpy.

Messages are published as the raw CDR bytes stored in the bag (rclpy's ``publish()`` takes
serialized ``bytes`` for the publisher's type), so nothing is decoded or re-encoded.

Timing:
- default: the recorded rate (bag log times), ``--rate R`` a multiple of it; the schedule is
  absolute (``t0 + (t_bag - t_bag0) / R``), so a slow publish does not accumulate drift;
- ``--fast``: as fast as possible;
- lock-step (``--wait-for TOPIC``, usually with ``--fast``): after each image message (types
  sensor_msgs Image / CompressedImage), wait until a message with the same header stamp arrives
  on TOPIC (the node's ``c/instances``) before publishing the next one, at most
  ``--answer-timeout`` seconds (a frame the node rejects never gets an answer; it is counted as
  unanswered and play goes on). Nothing is dropped for lack of time.

QoS: in lock-step the publishers and the answer subscription are RELIABLE (depth 10), so the
node must use ``input_reliability:=reliable``; otherwise the publishers use the sensor-data
profile (BEST_EFFORT, depth 5), which matches the node's default best-effort input (a reliable
subscriber does not match a best-effort publisher). ``--qos`` overrides either choice.

Before the first message, play waits up to ``--wait-subscribers`` seconds (default 30 in
lock-step, 2 otherwise) for a subscriber on every image topic (and, in lock-step, for a
publisher on the answer topic); in lock-step a missing one is an error, otherwise play starts
anyway. ``--loop [N]`` plays the bag N times (no N: until Ctrl-C); header stamps then go back
in time at each new pass, and the node forgets its tracks there (its documented behaviour).
"""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spvis_ros.bag.base import (
    IMAGE_TYPES,
    INSTANCES_TYPE,
    BagError,
    header_stamp_ns,
    rclpy_type,
)
from spvis_ros.bag.reader import bag_topics, iter_messages, topic_counts

QOS_CHOICES = ("reliable", "best_effort")


class PlayError(RuntimeError):
    """Play cannot go on (no subscriber in lock-step, bad option); the text says why."""


@dataclass
class PlayOptions:
    """See the module docstring. `loops` = 0 plays until interrupted."""

    rate: float = 1.0
    fast: bool = False
    remap: dict[str, str] = field(default_factory=dict)
    loops: int = 1
    wait_for: str | None = None
    answer_timeout: float = 10.0
    wait_subscribers: float | None = None
    qos: str | None = None
    topics: list[str] | None = None
    progress: bool = True
    domain_id: int | None = None

    def check(self) -> None:
        if not self.fast and not self.rate > 0:
            raise PlayError(f"--rate = {self.rate}: must be > 0")
        if self.loops < 0:
            raise PlayError(f"--loop = {self.loops}: must be >= 0 (0 = forever)")
        if self.wait_subscribers is not None and not self.wait_subscribers >= 0:
            raise PlayError(f"--wait-subscribers = {self.wait_subscribers}: must be >= 0")
        if self.answer_timeout <= 0:
            raise PlayError(f"--answer-timeout = {self.answer_timeout}: must be > 0")
        if self.qos is not None and self.qos not in QOS_CHOICES:
            raise PlayError(f"--qos = {self.qos!r}: must be one of {list(QOS_CHOICES)}")

    @property
    def reliable(self) -> bool:
        return self.qos == "reliable" if self.qos else self.wait_for is not None


@dataclass
class PlayReport:
    """What play did: messages published, lock-step answers, passes, wall time."""

    published: int = 0
    answered: int = 0
    unanswered: list[int] = field(default_factory=list)
    passes: int = 0
    seconds: float = 0.0
    interrupted: bool = False

    def text(self) -> str:
        rate = self.published / self.seconds if self.seconds > 0 else 0.0
        line = (f"published {self.published} messages in {self.passes} pass"
                f"{'es' if self.passes != 1 else ''}, {self.seconds:.2f} s ({rate:.1f} msg/s)")
        if self.answered or self.unanswered:
            line += f"; answered {self.answered}, unanswered {len(self.unanswered)}"
            if self.unanswered:
                more = "..." if len(self.unanswered) > 5 else ""
                line += f" (stamps ns {self.unanswered[:5]}{more})"
        return line + ("; interrupted" if self.interrupted else "")


class RosSession:
    """An rclpy context of its own (no signal handlers: the caller handles Ctrl-C), one node and
    an executor; `close()` tears all down."""

    def __init__(self, name: str, domain_id: int | None = None) -> None:
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node
        from rclpy.signals import SignalHandlerOptions

        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain_id,
                   signal_handler_options=SignalHandlerOptions.NO)
        self.node = Node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def spin_until(self, done: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not done():
            left = deadline - time.monotonic()
            if left <= 0:
                return done()
            self.executor.spin_once(timeout_sec=min(left, 0.05))
        return True

    def spin_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.executor.spin_once(timeout_sec=min(left, 0.05))

    def close(self) -> None:
        import rclpy

        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


def qos_profile(reliable: bool, depth: int = 10) -> Any:
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

    if reliable:
        return QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE)
    return qos_profile_sensor_data


def parse_remap(items: list[str] | None) -> dict[str, str]:
    """["old:new", ...] -> {old: new}."""
    out: dict[str, str] = {}
    for item in items or []:
        old, sep, new = item.partition(":")
        if not sep or not old or not new:
            raise PlayError(f"--topic-remap {item!r}: expected OLD:NEW")
        out[old] = new
    return out


def play(bag: str | Path, options: PlayOptions) -> PlayReport:
    """Publish the bag per `options` (see the module docstring); returns what was done.

    Raises:
        BagError: the bag cannot be read (what was published before stays published).
        PlayError: bad options, or no subscriber / answer publisher in lock-step.
    """
    from tqdm import tqdm

    options.check()
    bag = Path(bag)
    topics = bag_topics(bag)
    if options.topics:
        missing = sorted(set(options.topics) - set(topics))
        if missing:
            raise PlayError(f"{bag}: no topics {missing} (has {sorted(topics)})")
        topics = {t: topics[t] for t in options.topics}
    for old in options.remap:
        if old not in topics:
            raise PlayError(f"--topic-remap {old}:...: {bag} has no topic {old!r} "
                            f"(has {sorted(topics)})")
    lockstep = options.wait_for is not None
    wait = options.wait_subscribers
    if wait is None:
        wait = 30.0 if lockstep else 2.0
    classes: dict[str, type] = {}
    for t, m in topics.items():
        try:
            classes[t] = rclpy_type(m)
        except BagError as exc:
            others = sorted(set(topics) - {t})
            hint = (f"; play the other topics with --topics {' '.join(others)}" if others
                    else "")
            raise BagError(f"{bag}: topic {t!r} cannot be played: {exc}{hint}") from exc
    counts = topic_counts(bag)
    total = None
    if counts is not None:
        total = sum(counts.get(t, 0) for t in topics)
        total = None if options.loops == 0 else total * options.loops

    session = RosSession("spvis_bag_player", options.domain_id)
    report = PlayReport()
    start = time.monotonic()
    bar = tqdm(total=total, unit="msg", desc="play", file=sys.stderr,
               disable=not options.progress)
    try:
        qos = qos_profile(options.reliable)
        pubs = {t: session.node.create_publisher(classes[t], options.remap.get(t, t), qos)
                for t in topics}
        image_pubs = [pubs[t] for t, m in topics.items() if m in IMAGE_TYPES]
        expected: list[int | None] = [None]
        got = [False]
        answer_sub = None
        if lockstep:
            if not image_pubs:
                raise PlayError(f"--wait-for needs image topics to wait on; {bag} has none")

            def on_answer(data: bytes) -> None:
                try:
                    stamp = header_stamp_ns(data)
                except ValueError:
                    return
                if stamp == expected[0]:
                    got[0] = True

            answer_type = _graph_type(session, options.wait_for, min(wait, 5.0)) \
                or INSTANCES_TYPE
            answer_sub = session.node.create_subscription(
                rclpy_type(answer_type), options.wait_for, on_answer,
                qos_profile(True), raw=True)

        def connected() -> bool:
            ok = all(p.get_subscription_count() > 0 for p in image_pubs)
            return ok and (answer_sub is None or answer_sub.get_publisher_count() > 0)

        if wait > 0 and not session.spin_until(connected, wait):
            who = [p.topic_name for p in image_pubs if p.get_subscription_count() == 0]
            if answer_sub is not None and answer_sub.get_publisher_count() == 0:
                who.append(f"(publisher of) {options.wait_for}")
            if lockstep:
                raise PlayError(f"lock-step: no subscriber on {who} after {wait:g} s "
                                "(is the node running, with input_reliability:=reliable?)")
            print(f"spvis-bag play: no subscriber on {who} after {wait:g} s; playing anyway",
                  file=sys.stderr)

        passes = itertools.count() if options.loops == 0 else range(options.loops)
        for _ in passes:
            t0_wall: float | None = None
            t0_bag = 0
            for index, msg in enumerate(iter_messages(bag, list(topics))):
                if not options.fast:
                    if t0_wall is None:
                        t0_wall, t0_bag = time.monotonic(), msg.log_time_ns
                    target = t0_wall + (msg.log_time_ns - t0_bag) / 1e9 / options.rate
                    while (left := target - time.monotonic()) > 0:
                        session.executor.spin_once(timeout_sec=min(left, 0.05))
                stamp = None
                if lockstep and msg.msgtype in IMAGE_TYPES:
                    try:
                        stamp = header_stamp_ns(msg.data)
                    except ValueError as exc:
                        raise BagError(f"{bag}: message {index} on {msg.topic} (log time "
                                       f"{msg.log_time_ns} ns) has no readable header stamp for "
                                       f"lock-step: {exc}; published {report.published} "
                                       "messages before it", index) from exc
                    expected[0], got[0] = stamp, False
                pubs[msg.topic].publish(msg.data)
                report.published += 1
                bar.update(1)
                if stamp is not None:
                    if session.spin_until(lambda: got[0], options.answer_timeout):
                        report.answered += 1
                    else:
                        report.unanswered.append(stamp)
                else:
                    session.executor.spin_once(timeout_sec=0.0)
            report.passes += 1
        # Let reliable transports deliver the tail before the publishers go away.
        session.spin_for(0.3 if options.reliable else 0.05)
    except KeyboardInterrupt:
        report.interrupted = True
    finally:
        bar.close()
        report.seconds = time.monotonic() - start
        session.close()
    return report


def _graph_type(session: RosSession, topic: str, timeout: float) -> str | None:
    """The type of `topic` in the ROS graph, waiting up to `timeout` s for it to appear."""
    name = session.node.resolve_topic_name(topic)
    found: list[str | None] = [None]

    def look() -> bool:
        for t, types in session.node.get_topic_names_and_types():
            if t == name and types:
                found[0] = types[0]
                return True
        return False

    session.spin_until(look, timeout)
    return found[0]


__all__ = ["BagError", "PlayError", "PlayOptions", "PlayReport", "RosSession", "parse_remap",
           "play", "qos_profile"]
