"""PGT's referring decoder: refine each track's query against this frame's detections.

L layers of [cross-attention (query = SIM output + current estimate + position; keys = this
frame's query embeddings E_t + their positions; values = E_t) -> self-attention among tracks ->
FFN]. The estimate starts from the matched detection's embedding e_j, or, for a track with no
match this frame, from a learned "missing" token added to its query of the last matched frame.
All residual branches start switched off (LayerScale 0), so an untrained decoder returns its
initial estimate.
"""

from __future__ import annotations

import torch
from torch import nn

from spvis_model.tracker.layers import FFN, LayerScale


class ReferringLayer(nn.Module):
    def __init__(self, dim: int, nheads: int) -> None:
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.cross = nn.MultiheadAttention(dim, nheads, batch_first=True)
        self.scale_cross = LayerScale(dim)
        self.norm_self = nn.LayerNorm(dim)
        self.self_attn = nn.MultiheadAttention(dim, nheads, batch_first=True)
        self.scale_self = LayerScale(dim)
        self.ffn = FFN(dim, 2 * dim)

    def forward(self, x: torch.Tensor, guide: torch.Tensor, pos: torch.Tensor,
                keys: torch.Tensor, key_pos: torch.Tensor) -> torch.Tensor:
        """x, guide, pos: (M, C); keys, key_pos: (N, C) -> (M, C)."""
        q = self.norm_q(x + guide + pos)[None]
        k = self.norm_kv(keys + key_pos)[None]
        v = self.norm_kv(keys)[None]
        x = x + self.scale_cross(self.cross(q, k, v, need_weights=False)[0][0])
        h = self.norm_self(x + pos)[None]
        x = x + self.scale_self(self.self_attn(h, h, self.norm_self(x)[None],
                                               need_weights=False)[0][0])
        return self.ffn(x)


class ReferringDecoder(nn.Module):
    """(M tracks, N detections) -> refined track queries o (M, C)."""

    def __init__(self, dim: int, nheads: int, num_layers: int) -> None:
        super().__init__()
        self.guide_proj = nn.Linear(dim, dim)
        self.missing = nn.Parameter(torch.zeros(dim))
        self.layers = nn.ModuleList(ReferringLayer(dim, nheads) for _ in range(num_layers))

    def init_estimate(self, last_query: torch.Tensor, matched_embed: torch.Tensor,
                      matched: torch.Tensor) -> torch.Tensor:
        """(M, C) start: e_j where matched, else missing token + last query."""
        return torch.where(matched[:, None], matched_embed, last_query + self.missing)

    def forward(self, estimate: torch.Tensor, sim_out: torch.Tensor, pos: torch.Tensor,
                det_embed: torch.Tensor, det_pos: torch.Tensor) -> torch.Tensor:
        """
        Args:
            estimate: (M, C) initial estimate (see `init_estimate`).
            sim_out: (M, C) SIM output S_t.
            pos: (M, C) track positions.
            det_embed: (N, C) this frame's query embeddings E_t.
            det_pos: (N, C) their positions.

        Returns:
            (M, C) refined queries o.
        """
        if estimate.shape[0] == 0:
            return estimate
        guide = self.guide_proj(sim_out)
        x = estimate
        for layer in self.layers:
            x = layer(x, guide, pos, det_embed, det_pos)
        return x
