// Multi-scale deformable attention (Deformable DETR / Mask2Former pixel decoder).
//
// Shapes (all tensors on one device):
//   value               (B, S, H, D)      S = sum_l H_l * W_l
//   spatial_shapes      (L, 2) int64      rows (H_l, W_l)
//   level_start_index   (L,)   int64
//   sampling_locations  (B, Q, H, L, P, 2) normalised (x, y); pixel = loc * size - 0.5
//   attention_weights   (B, Q, H, L, P)
//   output              (B, Q, H * D)
// Bilinear sampling with zero padding (grid_sample, align_corners=False).
// Validation of shapes and dtypes happens in Python (spvis_model/ops); the C++ side
// re-checks only what would otherwise cause an out-of-bounds access.
#pragma once

#include <torch/extension.h>

#include <vector>

namespace spvis {

at::Tensor ms_deform_attn_forward_cpu(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                      const at::Tensor& level_start_index,
                                      const at::Tensor& sampling_locations,
                                      const at::Tensor& attention_weights);

std::vector<at::Tensor> ms_deform_attn_backward_cpu(const at::Tensor& value,
                                                    const at::Tensor& spatial_shapes,
                                                    const at::Tensor& level_start_index,
                                                    const at::Tensor& sampling_locations,
                                                    const at::Tensor& attention_weights,
                                                    const at::Tensor& grad_output);

#ifdef SPVIS_WITH_CUDA
at::Tensor ms_deform_attn_forward_cuda(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                       const at::Tensor& level_start_index,
                                       const at::Tensor& sampling_locations,
                                       const at::Tensor& attention_weights);

std::vector<at::Tensor> ms_deform_attn_backward_cuda(const at::Tensor& value,
                                                     const at::Tensor& spatial_shapes,
                                                     const at::Tensor& level_start_index,
                                                     const at::Tensor& sampling_locations,
                                                     const at::Tensor& attention_weights,
                                                     const at::Tensor& grad_output);
#endif

// Checks shared by both back ends: ranks and the sizes that index memory.
void check_inputs(const at::Tensor& value, const at::Tensor& spatial_shapes,
                  const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
                  const at::Tensor& attention_weights);

}  // namespace spvis
