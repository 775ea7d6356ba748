"""Run one publisher / subscriber pair of image processes and report what was delivered.

Used by ``test/test_fastdds_profile.py``; also a command-line tool that measures a matrix of
DDS settings (discovery range x profile x ``RMW_FASTRTPS_USE_QOS_FROM_XML`` ...):

    .venv/bin/python test/ros_helpers/dds_measure.py --profile config/fastdds_shm.xml

Every run gets its own ``ROS_DOMAIN_ID``; all ROS / Fast DDS variables that change transports
are removed from the inherited environment first, so a run only sees what it is given.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

CONTROLLED_VARS = (
    "ROS_AUTOMATIC_DISCOVERY_RANGE",
    "ROS_STATIC_PEERS",
    "ROS_LOCALHOST_ONLY",
    "ROS_DISCOVERY_SERVER",
    "FASTDDS_DEFAULT_PROFILES_FILE",
    "FASTRTPS_DEFAULT_PROFILES_FILE",
    "FASTDDS_BUILTIN_TRANSPORTS",
    "RMW_FASTRTPS_USE_QOS_FROM_XML",
    "RMW_FASTRTPS_PUBLICATION_MODE",
    "SKIP_DEFAULT_XML",
    "SPVIS_FASTDDS_PROFILE",
)


def clean_env(domain_id: int, overrides: dict[str, str | None]) -> dict[str, str]:
    """The inherited environment without :data:`CONTROLLED_VARS`, with ``ROS_DOMAIN_ID`` and
    ``RMW_IMPLEMENTATION=rmw_fastrtps_cpp`` set and the repository first on ``PYTHONPATH`` (so
    ``spvis_ros`` imports), then ``overrides`` applied (``None`` deletes).
    """
    env = {k: v for k, v in os.environ.items() if k not in CONTROLLED_VARS}
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env["ROS_DOMAIN_ID"] = str(domain_id)
    env["RMW_IMPLEMENTATION"] = "rmw_fastrtps_cpp"
    env["PYTHONUNBUFFERED"] = "1"
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def _last_json(text: str) -> dict | None:
    for raw in reversed(text.strip().splitlines()):
        line = raw.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                return None
    return None


def measure(
    env: dict[str, str],
    *,
    count: int = 30,
    rate: float = 10.0,
    depth: int = 5,
    width: int = 1920,
    height: int = 1080,
    topic: str = "/spvis_dds_probe/image",
    timeout: float = 20.0,
    python: str = sys.executable,
    pub_env: dict[str, str] | None = None,
    pub_args: tuple[str, ...] = (),
) -> dict:
    """Start the subscriber, then the publisher, with ``env`` (the publisher with ``pub_env``
    when given, and with the extra arguments ``pub_args``); return the subscriber's and the
    publisher's JSON reports plus wall time. Every wait is bounded by ``timeout`` seconds; on a
    timeout both processes are killed and the report says so (``"timed_out": true``)."""
    t0 = time.monotonic()
    size = ["--width", str(width), "--height", str(height)]
    sub = subprocess.Popen(
        [python, str(HERE / "dds_image_subscriber.py"), topic, "--expect", str(count),
         "--depth", str(depth), "--timeout", str(timeout), *size],
        env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    pub = subprocess.Popen(
        [python, str(HERE / "dds_image_publisher.py"), topic, "--count", str(count),
         "--rate", str(rate), "--match-timeout", str(min(10.0, timeout / 2)), *size, *pub_args],
        env=env if pub_env is None else pub_env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    timed_out = False
    try:
        pub_out, pub_err = pub.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        pub.kill()
        pub_out, pub_err = pub.communicate()
    remaining = max(1.0, timeout - (time.monotonic() - t0))
    try:
        sub_out, sub_err = sub.communicate(input="", timeout=remaining)
    except subprocess.TimeoutExpired:
        timed_out = True
        sub.kill()
        sub_out, sub_err = sub.communicate()
    return {
        "sub": _last_json(sub_out),
        "pub": _last_json(pub_out),
        "pub_rc": pub.returncode,
        "sub_rc": sub.returncode,
        "timed_out": timed_out,
        "wall_s": round(time.monotonic() - t0, 2),
        "pub_stderr": pub_err[-2000:],
        "sub_stderr": sub_err[-2000:],
    }


def _summary(name: str, result: dict) -> str:
    sub = result["sub"] or {}
    pub = result["pub"] or {}
    return (
        f"{name:60s} received {sub.get('received')}/{pub.get('published')} "
        f"corrupt {sub.get('corrupt')} latency_ms {sub.get('latency_ms_median')} "
        f"match_s {pub.get('match_s')} cpu_s pub {pub.get('cpu_s')} sub {sub.get('cpu_s')} "
        f"wall {result['wall_s']}s"
        + (" TIMED OUT" if result["timed_out"] else "")
    )


def main() -> int:
    """Measure the matrix of settings; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profile", default=str(REPO / "config" / "fastdds_shm.xml"))
    parser.add_argument("--count", type=int, default=30)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--only", default="", help="substring filter on the case name")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()

    profile = str(Path(args.profile).resolve())
    ranges = ["LOCALHOST", "SUBNET", "SYSTEM_DEFAULT", None]
    cases: list[tuple[str, dict[str, str | None]]] = []
    for rng in ranges:
        base = {"ROS_AUTOMATIC_DISCOVERY_RANGE": rng}
        cases.append((f"range={rng} no-profile", base))
        cases.append((f"range={rng} profile", {**base, "FASTDDS_DEFAULT_PROFILES_FILE": profile}))
        cases.append((f"range={rng} profile QOS_FROM_XML=1",
                       {**base, "FASTDDS_DEFAULT_PROFILES_FILE": profile,
                        "RMW_FASTRTPS_USE_QOS_FROM_XML": "1"}))
        cases.append((f"range={rng} BUILTIN_TRANSPORTS=LARGE_DATA",
                       {**base, "FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"}))
    cases.append(("range=SUBNET static_peers=127.0.0.1 profile",
                  {"ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET", "ROS_STATIC_PEERS": "127.0.0.1",
                   "FASTDDS_DEFAULT_PROFILES_FILE": profile}))
    domain = 120 + os.getpid() % 90
    for name, overrides in cases:
        if args.only and args.only not in name:
            continue
        for _ in range(args.repeat):
            domain = 120 + (domain - 119) % 90
            result = measure(clean_env(domain, overrides), count=args.count, rate=args.rate)
            print(_summary(name, result), flush=True)
            if args.verbose or result["sub"] is None or result["pub"] is None:
                print("  pub stderr:", result["pub_stderr"].strip()[-600:])
                print("  sub stderr:", result["sub_stderr"].strip()[-600:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
