"""Gated Hungarian assignment (PGT step a, the error correction, and the MinVIS baseline)."""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment


def gated_assignment(cost: torch.Tensor, gate: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimum-cost one-to-one assignment, keeping only pairs with cost <= gate.

    Args:
        cost: (M, N) finite costs (rows: tracks, columns: detections).
        gate: largest admissible cost.

    Returns:
        (rows, cols) int64 index tensors of the kept pairs, on cost's device.
    """
    m, n = cost.shape
    if m == 0 or n == 0:
        empty = torch.zeros(0, dtype=torch.int64, device=cost.device)
        return empty, empty
    c = cost.detach().float().cpu().numpy()
    # Pairs above the gate can never be taken: price them out so they don't steer the rest.
    big = float(np.abs(c[np.isfinite(c)]).max(initial=0.0)) * 4 + gate * 4 + 1.0
    c = np.where(np.isfinite(c) & (c <= gate), c, big)
    rows, cols = linear_sum_assignment(c)
    keep = c[rows, cols] <= gate
    to = {"dtype": torch.int64, "device": cost.device}
    return torch.as_tensor(rows[keep], **to), torch.as_tensor(cols[keep], **to)


def assignment_cost(cost: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                    unmatched_cost: float) -> float:
    """Total cost of an assignment under `cost` (M, N), charging `unmatched_cost` for each row
    left unmatched, so assignments with different numbers of pairs compare fairly."""
    total = float(cost.detach()[rows, cols].sum()) if rows.numel() else 0.0
    return total + unmatched_cost * (cost.shape[0] - rows.numel())
