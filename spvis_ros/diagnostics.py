"""The node's /diagnostics: one `DiagnosticStatus` per camera, built from its `Stream`.

Each status is named after the node's fully qualified name and the camera (/diagnostics is
global: two spvis nodes, each with a ``cam0``, must not share status names); its level and
message come from `spvis_ros.streams.assess_health`, its values are the camera's counters and
rates and the node's device memory (CUDA memory allocated on a GPU, else the process's RSS).
"""

from __future__ import annotations

import os
import resource
from collections.abc import Mapping

import torch
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

from spvis_ros.streams import Stream, assess_health


def process_memory(device: str) -> tuple[float, float]:
    """(current, peak) MiB: CUDA memory allocated on `device` when it is a GPU, else this
    process's resident set (peak: ``ru_maxrss``, which the kernel updates lazily: never
    reported below the current one)."""
    if device.startswith("cuda") and torch.cuda.is_available():
        dev = torch.device(device)
        return (torch.cuda.memory_allocated(dev) / 2**20,
                torch.cuda.max_memory_allocated(dev) / 2**20)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        current = pages * os.sysconf("SC_PAGE_SIZE") / 2**20
        return current, max(current, peak)
    except (OSError, ValueError, IndexError):
        return peak, peak


def camera_statuses(node_name: str, streams: Mapping[str, Stream], inputs: Mapping[str, str],
                    now: float, *, stale_s: float, lifecycle_state: str, active: bool,
                    enabled: bool, device: str) -> list[DiagnosticStatus]:
    """One status per camera at monotonic time `now`; records each camera's counter snapshot
    (the window rates of `assess_health` are computed from them).

    Args:
        node_name: the node's fully qualified name (the statuses' name prefix).
        streams: camera name -> its Stream; inputs: camera name -> its input topic.
        stale_s: the `stale_input_s` parameter; lifecycle_state: the node's state label.
        active / enabled: the node is active (lifecycle) / enabled (``~/enable``).
        device: the model's device (the memory values and ``hardware_id``).
    """
    current, peak = process_memory(device)
    out = []
    for name, s in streams.items():
        st = s.stats
        st.record_snapshot(now)
        level, message = assess_health(st, now, stale_s=stale_s, topic=inputs[name],
                                       active=active, enabled=enabled)
        age = "" if st.last_received is None else f"{now - st.last_received:.1f}"
        values = {"lifecycle_state": lifecycle_state, "input_topic": inputs[name],
                  "frame_rate_hz": f"{st.frame_rate(now):.2f}",
                  "latency_ms": f"{st.latency_ms():.1f}", "received": str(st.received),
                  "processed": str(st.processed), "dropped": str(st.dropped),
                  "rejected": str(st.rejected), "errors": str(st.errors),
                  "last_error": st.last_error, "resets": str(st.resets),
                  "live_tracks": str(st.live_tracks), "last_input_age_s": age,
                  "device": device, "device_memory_mb": f"{current:.1f}",
                  "device_memory_peak_mb": f"{peak:.1f}",
                  "memory_kind": "cuda_allocated" if device.startswith("cuda") else "rss",
                  "enabled": str(enabled)}
        out.append(DiagnosticStatus(
            level=bytes([level]), name=f"{node_name}: camera {name}", hardware_id=device,
            message=message, values=[KeyValue(key=k, value=v) for k, v in values.items()]))
    return out
