"""The level layout of a multi-scale feature stack, made once per input size.

`spatial_shapes` (L, 2) and `level_start_index` (L,) describe how the L flattened feature maps
sit in the value tensor's S rows. Callers know them on the host (the feature maps' sizes), yet
building them as device tensors every frame costs an upload, and `ms_deform_attn` checking them
costs two device-to-host reads per call (a pixel decoder calls it once per encoder layer, SIM
once more): on CUDA, synchronisations that stall the stream.

`level_layout(shapes, device)` returns the pair built from host values, cached per (shapes,
device, inference mode), and registers it as known-good: `ms_deform_attn` then checks only
that the value tensor's S equals the registered total, with no device read. Tensors made any
other way are checked in full as before. The registered tensors are the cache's own: never
modify them in place.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence

import torch

_MAX_ENTRIES = 64
_CACHE: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
# id(spatial_shapes) -> (weak ref to it, weak ref to its level_start_index, total rows S,
# the host shapes)
_KNOWN: dict[int, tuple[weakref.ref, weakref.ref, int, tuple[tuple[int, int], ...]]] = {}


def level_layout(shapes: Sequence[tuple[int, int]], device: torch.device | str
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """(spatial_shapes (L, 2) int64, level_start_index (L,) int64) on `device` for the levels'
    (H_l, W_l) `shapes`; the same tensors for the same arguments (and inference mode)."""
    host = tuple((int(h), int(w)) for h, w in shapes)
    if not host or any(h < 0 or w < 0 for h, w in host):
        raise ValueError(f"level_layout: shapes = {list(host)} must be a non-empty list of "
                         "non-negative (H_l, W_l)")
    dev = torch.device(device)
    key = (host, str(dev), torch.is_inference_mode_enabled())
    hit = _CACHE.get(key)
    if hit is not None:
        return hit
    starts, total = [], 0
    for h, w in host:
        starts.append(total)
        total += h * w
    spatial = torch.tensor(host, dtype=torch.int64).to(dev)
    start = torch.tensor(starts, dtype=torch.int64).to(dev)
    if len(_CACHE) >= _MAX_ENTRIES:
        _CACHE.clear()
        _KNOWN.clear()
    _CACHE[key] = (spatial, start)
    _KNOWN[id(spatial)] = (weakref.ref(spatial), weakref.ref(start), total, host)
    return spatial, start


def known_layout(spatial_shapes: torch.Tensor, level_start_index: torch.Tensor
                 ) -> tuple[int, tuple[tuple[int, int], ...]] | None:
    """(total rows S, host shapes) when the pair came from `level_layout`, else None."""
    entry = _KNOWN.get(id(spatial_shapes))
    if entry is None or entry[0]() is not spatial_shapes or entry[1]() is not level_start_index:
        return None
    return entry[2], entry[3]
