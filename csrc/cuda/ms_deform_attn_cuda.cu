// CUDA kernels of multi-scale deformable attention.
//
// Value/output dtypes: float64, float32, float16, bfloat16; arithmetic in the op-math
// type (float32 for the half types). Sampling locations and attention weights have the
// value's dtype or float32 (what autocast code produces for coordinates).
//
// Channels are handled VEC at a time (8/4/2/1, the widest that divides D and fits a
// 16-byte load), so any D works and the common D = 32 gets vector loads.
// Forward: one thread per (b, q, h, channel group), grid-stride, so any B*Q works and
// neighbouring threads read neighbouring channels.
// Backward: a power-of-two segment of lanes per (b, q, h) (a whole warp for D >= 32*VEC);
// the location and weight gradients are segment reductions with shuffles (nothing ties
// D to a block size), and the value gradient is accumulated with (vector) atomics in
// op-math precision.
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <type_traits>

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

// VEC consecutive channels, loaded and stored as one aligned access.
template <typename T, int VEC>
struct alignas(sizeof(T) * VEC) Vec {
  T v[VEC];
};

template <typename scalar_t, typename loc_t, int VEC>
__global__ void forward_kernel(const scalar_t* __restrict__ value,
                               const int64_t* __restrict__ shapes,
                               const int64_t* __restrict__ starts, const loc_t* __restrict__ loc,
                               const loc_t* __restrict__ attn, scalar_t* __restrict__ out, Dims d) {
  using acc_t = at::opmath_type<scalar_t>;
  using VecT = Vec<scalar_t, VEC>;
  const int64_t groups = d.D / VEC;  // channel groups per (b, q, h)
  const int64_t total = d.B * d.Q * d.H * groups;
  const int64_t row = d.H * d.D;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += stride) {
    const int64_t g = i % groups;
    const int64_t idx = i / groups;  // (b, q, h)
    const int64_t h = idx % d.H;
    const int64_t b = idx / (d.H * d.Q);
    const loc_t* lp = loc + idx * d.L * d.P * 2;
    const loc_t* ap = attn + idx * d.L * d.P;
    acc_t acc[VEC];
#pragma unroll
    for (int j = 0; j < VEC; ++j) acc[j] = 0;
    for (int64_t l = 0; l < d.L; ++l) {
      const int64_t hl = shapes[2 * l];
      const int64_t wl = shapes[2 * l + 1];
      const scalar_t* base = value + ((b * d.S + starts[l]) * d.H + h) * d.D + g * VEC;
      for (int64_t p = 0; p < d.P; ++p) {
        const int64_t k_lp = l * d.P + p;
        Corners<acc_t> c;
        if (!setup_corners<acc_t>(static_cast<acc_t>(lp[2 * k_lp]),
                                  static_cast<acc_t>(lp[2 * k_lp + 1]), hl, wl, c)) {
          continue;
        }
        const acc_t a = static_cast<acc_t>(ap[k_lp]);
#pragma unroll
        for (int k = 0; k < 4; ++k) {
          if (c.off[k] < 0) continue;
          const VecT v = *reinterpret_cast<const VecT*>(base + c.off[k] * row);
          const acc_t wk = a * c.w[k];
#pragma unroll
          for (int j = 0; j < VEC; ++j) acc[j] += wk * static_cast<acc_t>(v.v[j]);
        }
      }
    }
    VecT o;
#pragma unroll
    for (int j = 0; j < VEC; ++j) o.v[j] = static_cast<scalar_t>(acc[j]);
    *reinterpret_cast<VecT*>(out + idx * d.D + g * VEC) = o;
  }
}

// Sum over the `width` lanes of an aligned lane segment; every lane gets the sum.
template <typename T>
__device__ __forceinline__ T segment_sum(T v, int width) {
  for (int offset = width / 2; offset > 0; offset /= 2) {
    v += __shfl_xor_sync(0xffffffffu, v, offset);
  }
  return v;
}

// grad[0..VEC) += vals, with 16-byte vector atomics where the GPU has them (sm_90+).
template <typename acc_t, int VEC>
__device__ __forceinline__ void atomic_add_vec(acc_t* grad, const acc_t* vals) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  if constexpr (std::is_same_v<acc_t, float> && VEC % 4 == 0) {
#pragma unroll
    for (int j = 0; j < VEC; j += 4) {
      atomicAdd(reinterpret_cast<float4*>(grad + j),
                make_float4(vals[j], vals[j + 1], vals[j + 2], vals[j + 3]));
    }
    return;
  } else if constexpr (std::is_same_v<acc_t, float> && VEC == 2) {
    atomicAdd(reinterpret_cast<float2*>(grad), make_float2(vals[0], vals[1]));
    return;
  }
#endif
#pragma unroll
  for (int j = 0; j < VEC; ++j) atomicAdd(grad + j, vals[j]);
}

// One segment of `width` lanes (a power of two <= 32) per (b, q, h); lane j of a segment
// handles channel groups j, j + width, ... Every lane of a warp runs the same loop trip
// counts, so the segment reductions always see the full warp.
template <typename scalar_t, typename loc_t, int VEC>
__global__ void backward_kernel(const scalar_t* __restrict__ value,
                                const int64_t* __restrict__ shapes,
                                const int64_t* __restrict__ starts,
                                const loc_t* __restrict__ loc, const loc_t* __restrict__ attn,
                                const scalar_t* __restrict__ grad_out,
                                at::opmath_type<scalar_t>* __restrict__ grad_value,
                                loc_t* __restrict__ grad_loc, loc_t* __restrict__ grad_attn,
                                Dims d, int width) {
  using acc_t = at::opmath_type<scalar_t>;
  using VecT = Vec<scalar_t, VEC>;
  const int lane = threadIdx.x % kWarp;
  const int seg_lane = lane % width;
  const int per_warp = kWarp / width;
  const int64_t groups = d.D / VEC;
  const int64_t n_idx = d.B * d.Q * d.H;
  const int64_t n_warps = (n_idx + per_warp - 1) / per_warp;
  const int64_t warp_stride = static_cast<int64_t>(gridDim.x) * blockDim.x / kWarp;
  const int64_t row = d.H * d.D;
  for (int64_t w = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
       w < n_warps; w += warp_stride) {
    const int64_t idx = w * per_warp + lane / width;
    const bool valid = idx < n_idx;
    const int64_t h = idx % d.H;
    const int64_t b = idx / (d.H * d.Q);
    for (int64_t l = 0; l < d.L; ++l) {
      const int64_t hl = shapes[2 * l];
      const int64_t wl = shapes[2 * l + 1];
      const int64_t level_off = ((b * d.S + starts[l]) * d.H + h) * d.D;
      for (int64_t p = 0; p < d.P; ++p) {
        const int64_t k_lp = l * d.P + p;
        const int64_t lp_off = idx * d.L * d.P + k_lp;
        Corners<acc_t> c;
        bool inside = valid && setup_corners<acc_t>(static_cast<acc_t>(loc[2 * lp_off]),
                                                    static_cast<acc_t>(loc[2 * lp_off + 1]), hl,
                                                    wl, c);
        const acc_t a = valid ? static_cast<acc_t>(attn[lp_off]) : acc_t(0);
        acc_t gx[4], gy[4];
        corner_grads(c, gx, gy);
        acc_t g_attn = 0, g_x = 0, g_y = 0;
        if (inside) {
          for (int64_t g = seg_lane; g < groups; g += width) {
            const VecT go = *reinterpret_cast<const VecT*>(grad_out + idx * d.D + g * VEC);
#pragma unroll
            for (int k = 0; k < 4; ++k) {
              if (c.off[k] < 0) continue;
              const int64_t at_ = level_off + c.off[k] * row + g * VEC;
              const VecT v = *reinterpret_cast<const VecT*>(value + at_);
              acc_t dot = 0;
              acc_t upd[VEC];
              const acc_t wk = a * c.w[k];
#pragma unroll
              for (int j = 0; j < VEC; ++j) {
                const acc_t gj = static_cast<acc_t>(go.v[j]);
                dot += gj * static_cast<acc_t>(v.v[j]);
                upd[j] = wk * gj;
              }
              g_attn += c.w[k] * dot;
              g_x += gx[k] * dot;
              g_y += gy[k] * dot;
              atomic_add_vec<acc_t, VEC>(grad_value + at_, upd);
            }
          }
        }
        g_attn = segment_sum(g_attn, width);
        g_x = segment_sum(g_x, width);
        g_y = segment_sum(g_y, width);
        if (inside && seg_lane == 0) {
          grad_attn[lp_off] = static_cast<loc_t>(g_attn);
          grad_loc[2 * lp_off] = static_cast<loc_t>(a * g_x * wl);
          grad_loc[2 * lp_off + 1] = static_cast<loc_t>(a * g_y * hl);
        }
      }
    }
  }
}

// Channels per thread: the widest of 8/4/2/1 that divides D, fits a 16-byte access, and
// keeps every vector access aligned (a contiguous view can start at any element).
int pick_vec(int64_t channels, size_t elem_size, std::initializer_list<const void*> ptrs) {
  for (int vec : {8, 4, 2}) {
    const size_t bytes = vec * elem_size;
    bool aligned = channels % vec == 0 && bytes <= 16;
    for (const void* p : ptrs) aligned = aligned && reinterpret_cast<uintptr_t>(p) % bytes == 0;
    if (aligned) return vec;
  }
  return 1;
}

// Calls fn(std::integral_constant<int, VEC>{}) for the runtime `vec`.
template <typename Fn>
void with_vec(int vec, Fn&& fn) {
  switch (vec) {
    case 8: fn(std::integral_constant<int, 8>{}); break;
    case 4: fn(std::integral_constant<int, 4>{}); break;
    case 2: fn(std::integral_constant<int, 2>{}); break;
    default: fn(std::integral_constant<int, 1>{}); break;
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
          with_vec(pick_vec(d.D, sizeof(scalar_t), {value.data_ptr(), out.data_ptr()}),
                   [&](auto vec_tag) {
            constexpr int VEC = decltype(vec_tag)::value;
            forward_kernel<scalar_t, loc_t, VEC>
                <<<grid_for(out.numel() / VEC), kThreads, 0, stream>>>(
                    value.data_ptr<scalar_t>(), shapes.data_ptr<int64_t>(),
                    starts.data_ptr<int64_t>(), loc.data_ptr<loc_t>(), attn.data_ptr<loc_t>(),
                    out.data_ptr<scalar_t>(), d);
            C10_CUDA_KERNEL_LAUNCH_CHECK();
          });
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
  const int64_t n_idx = d.B * d.Q * d.H;
  if (n_idx > 0 && d.D > 0) {
    const auto stream = at::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(
        at::kHalf, at::kBFloat16, value.scalar_type(), "ms_deform_attn_backward_cuda", [&] {
          using acc_t = at::opmath_type<scalar_t>;
          with_loc_type<scalar_t>(loc, [&](auto* loc_tag) {
            using loc_t = std::remove_pointer_t<decltype(loc_tag)>;
            // The vector width is bounded by the float32 accumulator as well: one 16-byte
            // atomic per corner (8-wide half loads would need two, and measured slower).
            with_vec(std::min(pick_vec(d.D, sizeof(scalar_t), {value.data_ptr(), go.data_ptr()}),
                              pick_vec(d.D, sizeof(acc_t), {grad_value_acc.data_ptr()})),
                     [&](auto vec_tag) {
              constexpr int VEC = decltype(vec_tag)::value;
              // Lanes per (b, q, h): enough for every channel group, at most a warp.
              int width = 1;
              while (width < kWarp && width < d.D / VEC) width *= 2;
              const int64_t warps = (n_idx + kWarp / width - 1) / (kWarp / width);
              backward_kernel<scalar_t, loc_t, VEC>
                  <<<grid_for(warps * kWarp), kThreads, 0, stream>>>(
                      value.data_ptr<scalar_t>(), shapes.data_ptr<int64_t>(),
                      starts.data_ptr<int64_t>(), loc.data_ptr<loc_t>(), attn.data_ptr<loc_t>(),
                      go.data_ptr<scalar_t>(), grad_value_acc.data_ptr<acc_t>(),
                      grad_loc.data_ptr<loc_t>(), grad_attn.data_ptr<loc_t>(), d, width);
              C10_CUDA_KERNEL_LAUNCH_CHECK();
            });
          });
        });
  }
  at::Tensor grad_value = grad_value_acc.scalar_type() == value.scalar_type()
                              ? grad_value_acc
                              : grad_value_acc.to(value.scalar_type());
  return {grad_value, grad_loc, grad_attn};
}

}  // namespace spvis
