"""The MSDeformAttn module: projections around the multi-scale deformable attention op."""

from __future__ import annotations

import math

import torch
from torch import nn

from spvis_model.ops.ms_deform_attn import ms_deform_attn
from spvis_model.ops.reference import ms_deform_attn_reference


class MSDeformAttn(nn.Module):
    """Multi-scale deformable attention (Deformable DETR), as used by Mask2Former's encoder.

    Each query predicts, per head, level and point, a sampling offset around its reference
    point and an attention weight (softmax over levels x points); the sampled, projected
    values are summed and projected out.

    Args:
        d_model: channel width C (divisible by n_heads).
        n_levels: number of feature levels L.
        n_heads: attention heads H; each has D = C / H channels (any D works).
        n_points: sampling points P per head and level.
        implementation: "compiled" (default, our CPU/CUDA kernels) or "reference"
            (pure PyTorch grid_sample; slow, for checks).
    """

    def __init__(self, d_model: int = 256, n_levels: int = 4, n_heads: int = 8, n_points: int = 4,
                 implementation: str = "compiled") -> None:
        super().__init__()
        for name, v in (("d_model", d_model), ("n_levels", n_levels), ("n_heads", n_heads),
                        ("n_points", n_points)):
            if not isinstance(v, int) or v <= 0:
                raise ValueError(f"MSDeformAttn: {name} must be a positive int, got {v!r}")
        if d_model % n_heads != 0:
            raise ValueError(f"MSDeformAttn: d_model ({d_model}) must be divisible by n_heads "
                             f"({n_heads})")
        if implementation not in ("compiled", "reference"):
            raise ValueError("MSDeformAttn: implementation must be 'compiled' or 'reference', "
                             f"got {implementation!r}")
        self.d_model, self.n_levels, self.n_heads, self.n_points = (d_model, n_levels, n_heads,
                                                                    n_points)
        self.implementation = implementation
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Deformable DETR's initialisation: offsets start on rings of growing radius around the
        reference point, one direction per head; uniform attention; Xavier projections."""
        nn.init.zeros_(self.sampling_offsets.weight)
        theta = torch.arange(self.n_heads, dtype=torch.float32) * (2.0 * math.pi / self.n_heads)
        grid = torch.stack([theta.cos(), theta.sin()], -1)
        grid = grid / grid.abs().max(-1, keepdim=True).values
        grid = grid.view(self.n_heads, 1, 1, 2).repeat(1, self.n_levels, self.n_points, 1)
        grid = grid * torch.arange(1, self.n_points + 1, dtype=torch.float32).view(1, 1, -1, 1)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.flatten())
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        for proj in (self.value_proj, self.output_proj):
            nn.init.xavier_uniform_(proj.weight)
            nn.init.zeros_(proj.bias)

    def forward(
        self,
        query: torch.Tensor,
        reference_points: torch.Tensor,
        input_flatten: torch.Tensor,
        spatial_shapes: torch.Tensor,
        level_start_index: torch.Tensor,
        input_padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Attend from queries into a flattened multi-scale feature map.

        Args:
            query: (B, Q, C).
            reference_points: (B, Q, L, 2) normalised (x, y) centres, or (B, Q, L, 4)
                boxes (cx, cy, w, h) whose size scales the offsets.
            input_flatten: (B, S, C), the levels flattened row-major and concatenated.
            spatial_shapes: (L, 2) int64 rows (H_l, W_l).
            level_start_index: (L,) int64.
            input_padding_mask: (B, S) bool, True where the input is padding (zeroed).

        Returns:
            (B, Q, C).
        """
        b, q, _ = query.shape
        s = input_flatten.shape[1]
        h, n_l, n_p = self.n_heads, self.n_levels, self.n_points
        if spatial_shapes.shape[0] != n_l:
            raise ValueError(f"MSDeformAttn: spatial_shapes has {spatial_shapes.shape[0]} levels, "
                             f"the module was built for n_levels={n_l}")
        value = self.value_proj(input_flatten)
        if input_padding_mask is not None:
            value = value.masked_fill(input_padding_mask[..., None], 0.0)
        value = value.view(b, s, h, self.d_model // h)
        # Coordinates and weights stay in float32 under autocast: half precision would move a
        # sample by a sizeable fraction of a pixel on large levels.
        offsets = self.sampling_offsets(query).float().view(b, q, h, n_l, n_p, 2)
        weights = self.attention_weights(query).float().view(b, q, h, n_l * n_p)
        weights = weights.softmax(-1).view(b, q, h, n_l, n_p)
        ref = reference_points.float()
        if ref.shape[-1] == 2:
            # ref + offset / (W_l, H_l), computed on rows of L * P * 2 per query and head: a
            # broadcast whose last dimension is 2 runs several times slower on the CPU.
            inv_size = torch.stack([spatial_shapes[..., 1], spatial_shapes[..., 0]],
                                   -1).float().reciprocal()  # (L, 2)
            row = n_l * n_p * 2
            scale = inv_size[:, None, :].expand(n_l, n_p, 2).reshape(row)
            origin = ref[:, :, :, None, :].expand(-1, -1, -1, n_p, -1).reshape(-1, q, 1, row)
            locations = torch.addcmul(origin, offsets.view(b, q, h, row), scale)
            locations = locations.view(b, q, h, n_l, n_p, 2)
        elif ref.shape[-1] == 4:
            locations = (ref[:, :, None, :, None, :2]
                         + offsets / n_p * ref[:, :, None, :, None, 2:] * 0.5)
        else:
            raise ValueError("MSDeformAttn: reference_points must be (B, Q, L, 2) or (B, Q, L, 4),"
                             f" got {tuple(reference_points.shape)}")
        if value.dtype in (torch.float32, torch.float64):
            locations, weights = locations.to(value.dtype), weights.to(value.dtype)
        op = ms_deform_attn if self.implementation == "compiled" else ms_deform_attn_reference
        out = op(value, spatial_shapes, level_start_index, locations, weights)
        return self.output_proj(out)
