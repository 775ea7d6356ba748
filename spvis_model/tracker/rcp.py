"""RCP, the Refinement Compensator: keep a track's query from degrading over time.

    g = σ(W_g [o_i, e_j(i), μ_i, φ(Δt), score])
    q_i = g ⊙ o_i + (1 − g) ⊙ W_m · Attn(o_i, snapshots_i)

The memory read-out attends from the refined query o_i over the track's high-quality snapshots
(written only when the track was clearly visible and confident, see the tracker). The gate
starts almost open (bias +4: q ≈ o) and the read-out starts as the plain attention-weighted
snapshot mix, so an untrained RCP is a mild pull towards memory.
"""

from __future__ import annotations

import torch
from torch import nn


class RefinementCompensator(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gate = nn.Linear(4 * dim + 1, dim)
        nn.init.normal_(self.gate.weight, std=1e-3)
        nn.init.constant_(self.gate.bias, 4.0)
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(dim, dim, bias=False)
        self.read_out = nn.Linear(dim, dim)
        for lin in (self.to_q, self.to_k):
            nn.init.eye_(lin.weight)
        nn.init.eye_(self.read_out.weight)
        nn.init.zeros_(self.read_out.bias)
        self.scale = dim ** -0.5

    def forward(self, refined: torch.Tensor, matched_embed: torch.Tensor, proto: torch.Tensor,
                dt_enc: torch.Tensor, score: torch.Tensor, snapshots: torch.Tensor,
                snap_valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            refined: (M, C) o_i from the referring decoder.
            matched_embed: (M, C) e_j(i), zeros for tracks with no match this frame.
            proto: (M, C) memory prototype μ_i.
            dt_enc: (M, C) φ(Δt).
            score: (M,) detection score of the match (0 when unmatched).
            snapshots: (M, K, C); snap_valid: (M, K) bool.

        Returns:
            q (M, C) compensated queries, and the gate g (M, C).
        """
        if refined.shape[0] == 0:
            return refined, refined
        g = torch.sigmoid(self.gate(torch.cat([refined, matched_embed, proto, dt_enc,
                                               score[:, None].to(refined.dtype)], 1)))
        logits = torch.einsum("mc,mkc->mk", self.to_q(refined), self.to_k(snapshots)) * self.scale
        logits = logits.masked_fill(~snap_valid, float("-inf"))
        has_memory = snap_valid.any(1, keepdim=True)
        weights = torch.softmax(torch.where(has_memory, logits, torch.zeros_like(logits)), 1)
        memory = self.read_out(torch.einsum("mk,mkc->mc", weights, snapshots))
        memory = torch.where(has_memory, memory, refined)  # no memory yet: nothing to pull to
        return g * refined + (1 - g) * memory, g
