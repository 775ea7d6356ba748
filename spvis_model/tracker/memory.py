"""Track memory: high-quality snapshots of a track's query, and their prototype μ.

A snapshot is written (FIFO of K per track) only when the track is clearly visible and
confident, so occluded or degraded views never enter memory. μ is a similarity-weighted fusion
of the snapshots (outliers count less); it is the key of re-identification and an input of RCP.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def write_snapshots(snapshots: torch.Tensor, snap_time: torch.Tensor, snap_valid: torch.Tensor,
                    snap_next: torch.Tensor, slots: torch.Tensor, query: torch.Tensor,
                    stamp: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                           torch.Tensor]:
    """Write `query` (W, C) as the newest snapshot of `slots` (W,).

    Args:
        snapshots: (M, K, C); snap_time: (M, K) float64; snap_valid: (M, K) bool;
            snap_next: (M,) int64 FIFO positions.

    Returns:
        The four tensors updated (new tensors; the inputs are not modified).
    """
    if slots.numel() == 0:
        return snapshots, snap_time, snap_valid, snap_next
    k = snapshots.shape[1]
    ptr = snap_next[slots]
    snapshots = snapshots.index_put((slots, ptr), query)
    snap_time = snap_time.index_put((slots, ptr), torch.full_like(snap_time[slots, 0], stamp))
    snap_valid = snap_valid.index_put((slots, ptr), torch.ones_like(snap_valid[slots, 0]))
    snap_next = snap_next.index_put((slots,), (ptr + 1) % k)
    return snapshots, snap_time, snap_valid, snap_next


def write_snapshots_where(snapshots: torch.Tensor, snap_time: torch.Tensor,
                          snap_valid: torch.Tensor, snap_next: torch.Tensor, slots: torch.Tensor,
                          write: torch.Tensor, query: torch.Tensor, stamp: float
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """`write_snapshots` of the rows where `write` holds, without selecting them: every slot's
    current FIFO position is rewritten, with its old values where `write` is False. The same
    results as ``write_snapshots(..., slots[write], query[write], stamp)``, with no boolean
    index (whose size the host would have to read back from the device).

    Args:
        slots: (V,) distinct int64 slots; write: (V,) bool; query: (V, C).
    """
    k = snapshots.shape[1]
    ptr = snap_next[slots]
    snapshots = snapshots.index_put((slots, ptr), torch.where(write[:, None], query,
                                                              snapshots[slots, ptr]))
    snap_time = snap_time.index_put((slots, ptr), torch.where(
        write, torch.full_like(snap_time[slots, 0], stamp), snap_time[slots, ptr]))
    snap_valid = snap_valid.index_put((slots, ptr), snap_valid[slots, ptr] | write)
    snap_next = snap_next.index_put((slots,), torch.where(write, (ptr + 1) % k, ptr))
    return snapshots, snap_time, snap_valid, snap_next


def prototype(snapshots: torch.Tensor, valid: torch.Tensor, temperature: float = 0.1
              ) -> torch.Tensor:
    """μ: similarity-weighted fusion of each track's snapshots.

    Args:
        snapshots: (M, K, C); valid: (M, K) bool.

    Returns:
        (M, C) unit-norm prototypes (zeros for tracks without snapshots).
    """
    unit = F.normalize(snapshots, dim=-1)
    count = valid.sum(1, keepdim=True).clamp_min(1)
    mean = F.normalize((unit * valid[..., None]).sum(1) / count, dim=-1)
    sim = torch.einsum("mkc,mc->mk", unit, mean) / temperature
    weights = torch.softmax(sim.masked_fill(~valid, float("-inf")), 1)
    weights = torch.nan_to_num(weights) * valid
    return F.normalize(torch.einsum("mk,mkc->mc", weights, unit), dim=-1) * valid.any(
        1, keepdim=True)
