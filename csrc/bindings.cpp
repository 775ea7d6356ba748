// pybind11 bindings of the MSDeformAttn kernels: spvis_model._C.
// The Python wrapper (spvis_model/ops/ms_deform_attn.py) validates arguments with
// messages meant for users; the checks here guard memory safety for direct callers.
#include <torch/extension.h>

#include "ms_deform_attn.h"

namespace spvis {

void check_inputs(const at::Tensor& value, const at::Tensor& spatial_shapes,
                  const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
                  const at::Tensor& attention_weights) {
  TORCH_CHECK(value.dim() == 4, "value must be (B, S, H, D), got ", value.sizes());
  TORCH_CHECK(spatial_shapes.dim() == 2 && spatial_shapes.size(1) == 2,
              "spatial_shapes must be (L, 2), got ", spatial_shapes.sizes());
  const int64_t L = spatial_shapes.size(0);
  TORCH_CHECK(level_start_index.dim() == 1 && level_start_index.size(0) == L,
              "level_start_index must be (", L, ",), got ", level_start_index.sizes());
  TORCH_CHECK(sampling_locations.dim() == 6 && sampling_locations.size(0) == value.size(0) &&
                  sampling_locations.size(2) == value.size(2) && sampling_locations.size(3) == L &&
                  sampling_locations.size(5) == 2,
              "sampling_locations must be (B, Q, H, L, P, 2), got ", sampling_locations.sizes());
  const auto& loc = sampling_locations.sizes();
  TORCH_CHECK(attention_weights.dim() == 5 && attention_weights.size(0) == loc[0] &&
                  attention_weights.size(1) == loc[1] && attention_weights.size(2) == loc[2] &&
                  attention_weights.size(3) == loc[3] && attention_weights.size(4) == loc[4],
              "attention_weights must be (B, Q, H, L, P), got ", attention_weights.sizes());
  TORCH_CHECK(sampling_locations.scalar_type() == attention_weights.scalar_type(),
              "sampling_locations and attention_weights must share a dtype");
  for (const at::Tensor* t : {&spatial_shapes, &level_start_index, &sampling_locations,
                              &attention_weights}) {
    TORCH_CHECK(t->device() == value.device(), "all inputs must be on ", value.device());
  }
  if (spatial_shapes.device().is_cpu()) {
    // The shapes decide which memory is read: check them against S where it is free to.
    const at::Tensor shapes = spatial_shapes.to(at::kLong).contiguous();
    const at::Tensor starts = level_start_index.to(at::kLong).contiguous();
    const int64_t* sh = shapes.data_ptr<int64_t>();
    const int64_t* st = starts.data_ptr<int64_t>();
    int64_t total = 0;
    for (int64_t l = 0; l < L; ++l) {
      TORCH_CHECK(sh[2 * l] >= 0 && sh[2 * l + 1] >= 0, "negative spatial shape at level ", l);
      TORCH_CHECK(st[l] == total, "level_start_index[", l, "] = ", st[l], ", expected ", total);
      total += sh[2 * l] * sh[2 * l + 1];
    }
    TORCH_CHECK(total == value.size(1), "value has S = ", value.size(1),
                " but spatial_shapes sum to ", total);
  }
}

namespace {

at::Tensor forward(const at::Tensor& value, const at::Tensor& spatial_shapes,
                   const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
                   const at::Tensor& attention_weights) {
  if (value.is_cuda()) {
#ifdef SPVIS_WITH_CUDA
    return ms_deform_attn_forward_cuda(value, spatial_shapes, level_start_index,
                                       sampling_locations, attention_weights);
#else
    TORCH_CHECK(false, "spvis_model._C was built without CUDA kernels");
#endif
  }
  return ms_deform_attn_forward_cpu(value, spatial_shapes, level_start_index, sampling_locations,
                                    attention_weights);
}

std::vector<at::Tensor> backward(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                 const at::Tensor& level_start_index,
                                 const at::Tensor& sampling_locations,
                                 const at::Tensor& attention_weights,
                                 const at::Tensor& grad_output) {
  if (value.is_cuda()) {
#ifdef SPVIS_WITH_CUDA
    return ms_deform_attn_backward_cuda(value, spatial_shapes, level_start_index,
                                        sampling_locations, attention_weights, grad_output);
#else
    TORCH_CHECK(false, "spvis_model._C was built without CUDA kernels");
#endif
  }
  return ms_deform_attn_backward_cpu(value, spatial_shapes, level_start_index, sampling_locations,
                                     attention_weights, grad_output);
}

bool with_cuda() {
#ifdef SPVIS_WITH_CUDA
  return true;
#else
  return false;
#endif
}

}  // namespace
}  // namespace spvis

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "spvis compiled ops: multi-scale deformable attention (CPU, and CUDA when built)";
  m.def("ms_deform_attn_forward", &spvis::forward, "MSDeformAttn forward -> (B, Q, H*D)",
        py::arg("value"), py::arg("spatial_shapes"), py::arg("level_start_index"),
        py::arg("sampling_locations"), py::arg("attention_weights"));
  m.def("ms_deform_attn_backward", &spvis::backward,
        "MSDeformAttn backward -> [grad_value, grad_sampling_locations, grad_attention_weights]",
        py::arg("value"), py::arg("spatial_shapes"), py::arg("level_start_index"),
        py::arg("sampling_locations"), py::arg("attention_weights"), py::arg("grad_output"));
  m.def("with_cuda", &spvis::with_cuda, "True when the CUDA kernels were compiled in");
}
