// CUDA kernels of multi-scale deformable attention.
//
// Value/output dtypes: float64, float32, float16, bfloat16; arithmetic in the op-math
// type (float32 for the half types). Sampling locations and attention weights have the
// value's dtype or float32 (what autocast code produces for coordinates).
//
// Forward: one thread per output element (b, q, h, channel), grid-stride, so any D and
// any B*Q work and neighbouring threads read neighbouring channels.
// Backward: one warp per (b, q, h); lanes stride over channels, the location and weight
// gradients are warp reductions (no shared-memory tricks that tie D to a block size),
// and the value gradient is accumulated with atomics in op-math precision.
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include <algorithm>

#include "../bilinear.h"
#include "../ms_deform_attn.h"

namespace spvis {
namespace {

constexpr int kThreads = 256;
constexpr int kWarp = 32;

struct Dims {
  int64_t B, S, H, D, Q, L, P;
};

Dims dims_of(const at::Tensor& value, const at::Tensor& locations) {
  return Dims{value.size(0),     value.size(1),     value.size(2),    value.size(3),
              locations.size(1), locations.size(3), locations.size(4)};
}

int64_t grid_for(int64_t threads_needed) {
  const int64_t sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  const int64_t cap = sms * (2048 / kThreads) * 8;
  return std::max<int64_t>(1, std::min<int64_t>((threads_needed + kThreads - 1) / kThreads, cap));
}

template <typename scalar_t, typename loc_t>
__global__ void forward_kernel(const scalar_t* __restrict__ value,
                               const int64_t* __restrict__ shapes,
                               const int64_t* __restrict__ starts, const loc_t* __restrict__ loc,
                               const loc_t* __restrict__ attn, scalar_t* __restrict__ out, Dims d) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t total = d.B * d.Q * d.H * d.D;
  const int64_t row = d.H * d.D;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += stride) {
    const int64_t ch = i % d.D;
    const int64_t idx = i / d.D;  // (b, q, h)
    const int64_t h = idx % d.H;
    const int64_t b = idx / (d.H * d.Q);
    const loc_t* lp = loc + idx * d.L * d.P * 2;
    const loc_t* ap = attn + idx * d.L * d.P;
    acc_t acc = 0;
    for (int64_t l = 0; l < d.L; ++l) {
      const int64_t hl = shapes[2 * l];
      const int64_t wl = shapes[2 * l + 1];
      const scalar_t* base = value + ((b * d.S + starts[l]) * d.H + h) * d.D + ch;
      for (int64_t p = 0; p < d.P; ++p) {
        const int64_t k_lp = l * d.P + p;
        Corners<acc_t> c;
        if (!setup_corners<acc_t>(static_cast<acc_t>(lp[2 * k_lp]),
                                  static_cast<acc_t>(lp[2 * k_lp + 1]), hl, wl, c)) {
          continue;
        }
        acc_t s = 0;
#pragma unroll
        for (int k = 0; k < 4; ++k) {
          if (c.off[k] >= 0) s += c.w[k] * static_cast<acc_t>(base[c.off[k] * row]);
        }
        acc += static_cast<acc_t>(ap[k_lp]) * s;
      }
    }
    out[i] = static_cast<scalar_t>(acc);
  }
}

template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    v += __shfl_down_sync(0xffffffffu, v, offset);
  }
  return v;
}

template <typename scalar_t, typename loc_t>
__global__ void backward_kernel(const scalar_t* __restrict__ value,
                                const int64_t* __restrict__ shapes,
                                const int64_t* __restrict__ starts,
                                const loc_t* __restrict__ loc, const loc_t* __restrict__ attn,
                                const scalar_t* __restrict__ grad_out,
                                at::opmath_type<scalar_t>* __restrict__ grad_value,
                                loc_t* __restrict__ grad_loc, loc_t* __restrict__ grad_attn,
                                Dims d) {
  using acc_t = at::opmath_type<scalar_t>;
  const int lane = threadIdx.x % kWarp;
  const int64_t n_warps = d.B * d.Q * d.H;
  const int64_t warp_stride = static_cast<int64_t>(gridDim.x) * blockDim.x / kWarp;
  const int64_t row = d.H * d.D;
  // Every lane of a warp walks the same (b, q, h) sequence, so the shuffles below
  // always see the full warp.
  for (int64_t idx = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
       idx < n_warps; idx += warp_stride) {
    const int64_t h = idx % d.H;
    const int64_t b = idx / (d.H * d.Q);
    const scalar_t* go = grad_out + idx * d.D;
    const loc_t* lp = loc + idx * d.L * d.P * 2;
    const loc_t* ap = attn + idx * d.L * d.P;
    for (int64_t l = 0; l < d.L; ++l) {
      const int64_t hl = shapes[2 * l];
      const int64_t wl = shapes[2 * l + 1];
      const int64_t level_off = ((b * d.S + starts[l]) * d.H + h) * d.D;
      for (int64_t p = 0; p < d.P; ++p) {
        const int64_t k_lp = l * d.P + p;
        Corners<acc_t> c;
        const bool inside = setup_corners<acc_t>(static_cast<acc_t>(lp[2 * k_lp]),
                                                 static_cast<acc_t>(lp[2 * k_lp + 1]), hl, wl, c);
        if (!inside) continue;  // uniform across the warp: every lane reads the same location
        const acc_t a = static_cast<acc_t>(ap[k_lp]);
        acc_t gx[4], gy[4];
        corner_grads(c, gx, gy);
        acc_t g_attn = 0, g_x = 0, g_y = 0;
        for (int64_t ch = lane; ch < d.D; ch += kWarp) {
          const acc_t g = static_cast<acc_t>(go[ch]);
#pragma unroll
          for (int k = 0; k < 4; ++k) {
            if (c.off[k] < 0) continue;
            const int64_t at_ = level_off + c.off[k] * row + ch;
            const acc_t dot = g * static_cast<acc_t>(value[at_]);
            g_attn += c.w[k] * dot;
            g_x += gx[k] * dot;
            g_y += gy[k] * dot;
            atomicAdd(grad_value + at_, a * c.w[k] * g);
          }
        }
        g_attn = warp_sum(g_attn);
        g_x = warp_sum(g_x);
        g_y = warp_sum(g_y);
        if (lane == 0) {
          grad_attn[idx * d.L * d.P + k_lp] = static_cast<loc_t>(g_attn);
          grad_loc[(idx * d.L * d.P + k_lp) * 2] = static_cast<loc_t>(a * g_x * wl);
          grad_loc[(idx * d.L * d.P + k_lp) * 2 + 1] = static_cast<loc_t>(a * g_y * hl);
        }
      }
    }
  }
}

// Calls `fn.template operator()<loc_t>()` with loc_t the dtype of the locations.
template <typename scalar_t, typename Fn>
void with_loc_type(const at::Tensor& loc, Fn&& fn) {
  if (loc.scalar_type() == c10::CppTypeToScalarType<scalar_t>::value) {
    fn(static_cast<scalar_t*>(nullptr));
  } else {
    TORCH_CHECK(loc.scalar_type() == at::kFloat, "sampling_locations must have the value's dtype "
                "or float32, got ", loc.scalar_type());
    fn(static_cast<float*>(nullptr));
  }
}

}  // namespace

at::Tensor ms_deform_attn_forward_cuda(const at::Tensor& value_in,
                                       const at::Tensor& spatial_shapes,
                                       const at::Tensor& level_start_index,
                                       const at::Tensor& sampling_locations,
                                       const at::Tensor& attention_weights) {
  check_inputs(value_in, spatial_shapes, level_start_index, sampling_locations, attention_weights);
  const c10::cuda::CUDAGuard guard(value_in.device());
  const at::Tensor value = value_in.contiguous();
  const at::Tensor shapes = spatial_shapes.to(at::kLong).contiguous();
  const at::Tensor starts = level_start_index.to(at::kLong).contiguous();
  const at::Tensor loc = sampling_locations.contiguous();
  const at::Tensor attn = attention_weights.contiguous();
  const Dims d = dims_of(value, loc);
  at::Tensor out = at::empty({d.B, d.Q, d.H * d.D}, value.options());
  if (out.numel() == 0) return out;
  const auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, value.scalar_type(), "ms_deform_attn_forward_cuda", [&] {
        with_loc_type<scalar_t>(loc, [&](auto* loc_tag) {
          using loc_t = std::remove_pointer_t<decltype(loc_tag)>;
          forward_kernel<scalar_t, loc_t><<<grid_for(out.numel()), kThreads, 0, stream>>>(
              value.data_ptr<scalar_t>(), shapes.data_ptr<int64_t>(), starts.data_ptr<int64_t>(),
              loc.data_ptr<loc_t>(), attn.data_ptr<loc_t>(), out.data_ptr<scalar_t>(), d);
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        });
      });
  return out;
}

std::vector<at::Tensor> ms_deform_attn_backward_cuda(const at::Tensor& value_in,
                                                     const at::Tensor& spatial_shapes,
                                                     const at::Tensor& level_start_index,
                                                     const at::Tensor& sampling_locations,
                                                     const at::Tensor& attention_weights,
                                                     const at::Tensor& grad_output) {
  check_inputs(value_in, spatial_shapes, level_start_index, sampling_locations, attention_weights);
  const c10::cuda::CUDAGuard guard(value_in.device());
  const at::Tensor value = value_in.contiguous();
  const at::Tensor shapes = spatial_shapes.to(at::kLong).contiguous();
  const at::Tensor starts = level_start_index.to(at::kLong).contiguous();
  const at::Tensor loc = sampling_locations.contiguous();
  const at::Tensor attn = attention_weights.contiguous();
  const at::Tensor go = grad_output.to(value.scalar_type()).contiguous();
  const Dims d = dims_of(value, loc);
  TORCH_CHECK(go.numel() == d.B * d.Q * d.H * d.D, "grad_output has ", go.numel(),
              " elements, expected ", d.B * d.Q * d.H * d.D);
  const auto acc_dtype = at::toOpMathType(value.scalar_type());
  at::Tensor grad_value_acc = at::zeros(value.sizes(), value.options().dtype(acc_dtype));
  at::Tensor grad_loc = at::zeros_like(loc);
  at::Tensor grad_attn = at::zeros_like(attn);
  const int64_t n_warps = d.B * d.Q * d.H;
  if (n_warps > 0 && d.D > 0) {
    const auto stream = at::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(
        at::kHalf, at::kBFloat16, value.scalar_type(), "ms_deform_attn_backward_cuda", [&] {
          using acc_t = at::opmath_type<scalar_t>;
          with_loc_type<scalar_t>(loc, [&](auto* loc_tag) {
            using loc_t = std::remove_pointer_t<decltype(loc_tag)>;
            backward_kernel<scalar_t, loc_t><<<grid_for(n_warps * kWarp), kThreads, 0, stream>>>(
                value.data_ptr<scalar_t>(), shapes.data_ptr<int64_t>(),
                starts.data_ptr<int64_t>(), loc.data_ptr<loc_t>(), attn.data_ptr<loc_t>(),
                go.data_ptr<scalar_t>(), grad_value_acc.data_ptr<acc_t>(),
                grad_loc.data_ptr<loc_t>(), grad_attn.data_ptr<loc_t>(), d);
            C10_CUDA_KERNEL_LAUNCH_CHECK();
          });
        });
  }
  at::Tensor grad_value = grad_value_acc.scalar_type() == value.scalar_type()
                              ? grad_value_acc
                              : grad_value_acc.to(value.scalar_type());
  return {grad_value, grad_loc, grad_attn};
}

}  // namespace spvis
