"""SIM, the Spatial Interaction Module: where is each track now, and who is next to whom.

Each live track query first cross-attends into the pixel decoder's encoder memory with
multi-scale deformable attention, around its last box: the reference point is the box centre
and the sampling spread grows with the time since the track was last seen (the object may have
moved further). Tracks then self-attend with an additive bias computed from pairwise mask IoU
and centre distance, so an occluder and the object it hides exchange information.
"""

from __future__ import annotations

import torch
from torch import nn

from spvis_model.ops import MSDeformAttn
from spvis_model.tracker.geometry import centre_distance, soft_iou, time_encoding
from spvis_model.tracker.layers import FFN, BoxEncoding, LayerScale


class SpatialInteraction(nn.Module):
    """Track queries (M, C) -> spatially updated queries S_t (M, C).

    Args:
        dim: query width C.
        memory_dim: channel width of the encoder memory (projected to C when different).
        n_levels: encoder levels (3).
        nheads: attention heads.
        n_points: deformable sampling points per head and level.
    """

    def __init__(self, dim: int, memory_dim: int, n_levels: int, nheads: int,
                 n_points: int) -> None:
        super().__init__()
        self.nheads = nheads
        self.memory_proj = nn.Linear(memory_dim, dim) if memory_dim != dim else nn.Identity()
        self.box_pos = BoxEncoding(dim)
        self.time_proj = nn.Linear(dim, dim)
        self.norm_cross = nn.LayerNorm(dim)
        self.cross = MSDeformAttn(dim, n_levels, nheads, n_points)
        self.scale_cross = LayerScale(dim)
        self.norm_self = nn.LayerNorm(dim)
        self.self_attn = nn.MultiheadAttention(dim, nheads, batch_first=True)
        self.scale_self = LayerScale(dim)
        self.pair_bias = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, nheads))
        self.ffn = FFN(dim, 2 * dim)

    def forward(self, query: torch.Tensor, box: torch.Tensor, mask: torch.Tensor,
                since_seen: torch.Tensor, memory: torch.Tensor, spatial_shapes: torch.Tensor,
                level_start_index: torch.Tensor) -> torch.Tensor:
        """
        Args:
            query: (M, C) live track queries.
            box: (M, 4) last boxes (cx, cy, w, h) in [0, 1].
            mask: (M, R, R) last masks on the frame grid.
            since_seen: (M,) seconds since each track was last matched.
            memory: (S, C_mem) encoder output of this frame.
            spatial_shapes: (L, 2); level_start_index: (L,).

        Returns:
            (M, C).
        """
        m = query.shape[0]
        if m == 0:
            return query
        n_levels = spatial_shapes.shape[0]
        pos = self.box_pos(box) + self.time_proj(time_encoding(since_seen, query.shape[1]))
        # Search window: the last box, at least 10% of the frame, widened with elapsed time.
        widen = 1.0 + torch.log1p(since_seen.float().clamp_min(0))[:, None]
        size = (box[:, 2:] * widen).clamp(0.1, 1.0)
        ref = torch.cat([box[:, :2], size], 1)[None, :, None, :].expand(1, m, n_levels, 4)
        value = self.memory_proj(memory)[None]
        x = query + self.scale_cross(self.cross(self.norm_cross(query + pos)[None], ref, value,
                                                spatial_shapes, level_start_index)[0])
        # Pairwise geometry as an additive attention bias, one value per head.
        geometry = torch.stack([soft_iou(mask, mask), centre_distance(box, box)], -1)  # (M, M, 2)
        bias = self.pair_bias(geometry).permute(2, 0, 1)  # (heads, M, M)
        h = self.norm_self(x + pos)
        attn, _ = self.self_attn(h[None], h[None], self.norm_self(x)[None],
                                 attn_mask=bias.to(h.dtype), need_weights=False)
        x = x + self.scale_self(attn[0])
        return self.ffn(x)
