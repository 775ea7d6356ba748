// CPU kernels of multi-scale deformable attention, float32 and float64.
//
// Forward: one task per (batch, query, head), parallel with at::parallel_for; common head
// widths D get a kernel with D fixed at compile time.
// Backward: one task per (batch, head, query chunk), with the same fixed-D kernels. The value
// gradient is a scatter, so tasks that share a (batch, head) slice write into private buffers
// that are summed afterwards; with enough (batch, head) pairs to keep every thread busy, tasks
// write straight into the gradient.
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "../bilinear.h"
#include "../ms_deform_attn.h"

namespace spvis {
namespace {

struct Dims {
  int64_t B, S, H, D, Q, L, P;
};

Dims dims_of(const at::Tensor& value, const at::Tensor& locations) {
  return Dims{value.size(0),     value.size(1),     value.size(2),    value.size(3),
              locations.size(1), locations.size(3), locations.size(4)};
}

// Float with D a multiple of 4 fixed at compile time accumulates in 4-wide vectors
// (GCC/Clang vector extensions: SSE on x86-64, NEON on AArch64, no -march flags needed),
// which the compiler does not find on its own here.
#if defined(__GNUC__)
typedef float Float4 __attribute__((vector_size(16)));

template <int DF>
struct VecAcc {
  // DF floats as DF / 4 vectors, kept in registers across the samples of one query and head.
  Float4 lanes[DF / 4];
};
#endif

// Adds the samples of one (batch, query, head) into the accumulator. DF > 0 fixes D at
// compile time, so the channel loops have constant trip counts; DF == 0 is the path for
// any D.
template <typename scalar_t, int DF, typename Acc>
inline void gather_one(const scalar_t* value, const int64_t* shapes, const int64_t* starts,
                       const scalar_t* lp, const scalar_t* ap, Acc&& axpy, const Dims& d,
                       int64_t b, int64_t h) {
  const int64_t D = DF > 0 ? DF : d.D;
  const int64_t row = d.H * D;
  for (int64_t l = 0; l < d.L; ++l) {
    const int64_t hl = shapes[2 * l];
    const int64_t wl = shapes[2 * l + 1];
    const scalar_t* base = value + ((b * d.S + starts[l]) * d.H + h) * D;
    for (int64_t p = 0; p < d.P; ++p) {
      const int64_t lp_i = l * d.P + p;
      Corners<scalar_t> c;
      if (!setup_corners<scalar_t>(lp[2 * lp_i], lp[2 * lp_i + 1], hl, wl, c)) continue;
      const scalar_t a = ap[lp_i];
      for (int k = 0; k < 4; ++k) {
        if (c.off[k] < 0) continue;
        axpy(a * c.w[k], base + c.off[k] * row);
      }
    }
  }
}

template <typename scalar_t, int DF>
void forward_kernel(const scalar_t* value, const int64_t* shapes, const int64_t* starts,
                    const scalar_t* loc, const scalar_t* attn, scalar_t* out, const Dims& d) {
  const int64_t grain = std::max<int64_t>(1, 2048 / std::max<int64_t>(1, d.L * d.P * d.D));
  at::parallel_for(0, d.B * d.Q * d.H, grain, [&](int64_t begin, int64_t end) {
    for (int64_t idx = begin; idx < end; ++idx) {
      const int64_t h = idx % d.H;
      const int64_t b = idx / (d.H * d.Q);
      const scalar_t* lp = loc + idx * d.L * d.P * 2;
      const scalar_t* ap = attn + idx * d.L * d.P;
      scalar_t* o = out + idx * d.D;
#if defined(__GNUC__)
      if constexpr (std::is_same_v<scalar_t, float> && DF > 0 && DF % 4 == 0) {
        VecAcc<DF> acc = {};
        gather_one<scalar_t, DF>(value, shapes, starts, lp, ap,
                                 [&](float w, const float* v) {
                                   for (int j = 0; j < DF / 4; ++j) {
                                     Float4 x;
                                     std::memcpy(&x, v + 4 * j, sizeof(x));  // unaligned load
                                     acc.lanes[j] += w * x;
                                   }
                                 },
                                 d, b, h);
        std::memcpy(o, acc.lanes, sizeof(acc.lanes));
        continue;
      }
#endif
      const int64_t n = DF > 0 ? DF : d.D;
      std::fill(o, o + n, scalar_t(0));
      gather_one<scalar_t, DF>(value, shapes, starts, lp, ap,
                               [&](scalar_t w, const scalar_t* v) {
                                 for (int64_t ch = 0; ch < n; ++ch) o[ch] += w * v[ch];
                               },
                               d, b, h);
    }
  });
}

// The channel counts of the shipped presets (lite0: 128 / 8 heads = 16; Mask2Former's
// 256 / 8 = 32) and their neighbours get a fixed-D kernel; any other D the general one.
template <typename scalar_t>
void forward_dispatch(const scalar_t* value, const int64_t* shapes, const int64_t* starts,
                      const scalar_t* loc, const scalar_t* attn, scalar_t* out, const Dims& d) {
  switch (d.D) {
    case 8: forward_kernel<scalar_t, 8>(value, shapes, starts, loc, attn, out, d); break;
    case 16: forward_kernel<scalar_t, 16>(value, shapes, starts, loc, attn, out, d); break;
    case 32: forward_kernel<scalar_t, 32>(value, shapes, starts, loc, attn, out, d); break;
    case 64: forward_kernel<scalar_t, 64>(value, shapes, starts, loc, attn, out, d); break;
    default: forward_kernel<scalar_t, 0>(value, shapes, starts, loc, attn, out, d); break;
  }
}

// One corner of the backward: returns dot(go, v) and adds w * go to g, over D channels
// (DF > 0: D fixed at compile time; float with DF a multiple of 4: 4-wide vectors, the dot
// summed lane-wise and then across the lanes).
template <typename scalar_t, int DF>
struct CornerBackward {
  static inline scalar_t run(const scalar_t* go, const scalar_t* v, scalar_t* g, scalar_t w,
                             int64_t D) {
    const int64_t n = DF > 0 ? DF : D;
    scalar_t dot = 0;
    for (int64_t ch = 0; ch < n; ++ch) {
      dot += go[ch] * v[ch];
      g[ch] += w * go[ch];
    }
    return dot;
  }
};

#if defined(__GNUC__)
template <int DF>
struct CornerBackwardVec {
  static inline float run(const float* go, const float* v, float* g, float w, int64_t) {
    Float4 dot = {0.f, 0.f, 0.f, 0.f};
    for (int j = 0; j < DF / 4; ++j) {
      Float4 go4, v4, g4;
      std::memcpy(&go4, go + 4 * j, sizeof(go4));
      std::memcpy(&v4, v + 4 * j, sizeof(v4));
      std::memcpy(&g4, g + 4 * j, sizeof(g4));
      dot += go4 * v4;
      g4 += w * go4;
      std::memcpy(g + 4 * j, &g4, sizeof(g4));
    }
    return (dot[0] + dot[1]) + (dot[2] + dot[3]);
  }
};
template <> struct CornerBackward<float, 8> : CornerBackwardVec<8> {};
template <> struct CornerBackward<float, 16> : CornerBackwardVec<16> {};
template <> struct CornerBackward<float, 32> : CornerBackwardVec<32> {};
template <> struct CornerBackward<float, 64> : CornerBackwardVec<64> {};
#endif

// Backward for queries [q_begin, q_end) of one (b, h). `gv` points at the value
// gradient of pixel 0 of this (b, h) with `gv_row` elements between pixels.
template <typename scalar_t, int DF>
void backward_slice(const scalar_t* value, const int64_t* shapes, const int64_t* starts,
                    const scalar_t* loc, const scalar_t* attn, const scalar_t* grad_out,
                    scalar_t* gv, int64_t gv_row, scalar_t* grad_loc, scalar_t* grad_attn,
                    const Dims& d, int64_t b, int64_t h, int64_t q_begin, int64_t q_end) {
  const int64_t D = DF > 0 ? DF : d.D;
  const int64_t row = d.H * D;
  for (int64_t q = q_begin; q < q_end; ++q) {
    const int64_t idx = (b * d.Q + q) * d.H + h;
    const scalar_t* go = grad_out + idx * D;
    const scalar_t* lp = loc + idx * d.L * d.P * 2;
    const scalar_t* ap = attn + idx * d.L * d.P;
    scalar_t* glp = grad_loc + idx * d.L * d.P * 2;
    scalar_t* gap = grad_attn + idx * d.L * d.P;
    for (int64_t l = 0; l < d.L; ++l) {
      const int64_t hl = shapes[2 * l];
      const int64_t wl = shapes[2 * l + 1];
      const scalar_t* base = value + ((b * d.S + starts[l]) * d.H + h) * D;
      scalar_t* gbase = gv + starts[l] * gv_row;
      for (int64_t p = 0; p < d.P; ++p) {
        const int64_t lp_i = l * d.P + p;
        Corners<scalar_t> c;
        if (!setup_corners<scalar_t>(lp[2 * lp_i], lp[2 * lp_i + 1], hl, wl, c)) continue;
        const scalar_t a = ap[lp_i];
        scalar_t gx[4], gy[4];
        corner_grads(c, gx, gy);
        scalar_t g_attn = 0, g_x = 0, g_y = 0;
        for (int k = 0; k < 4; ++k) {
          if (c.off[k] < 0) continue;
          const scalar_t dot = CornerBackward<scalar_t, DF>::run(
              go, base + c.off[k] * row, gbase + c.off[k] * gv_row, a * c.w[k], D);
          g_attn += c.w[k] * dot;
          g_x += gx[k] * dot;
          g_y += gy[k] * dot;
        }
        gap[lp_i] = g_attn;
        glp[2 * lp_i] = a * g_x * static_cast<scalar_t>(wl);
        glp[2 * lp_i + 1] = a * g_y * static_cast<scalar_t>(hl);
      }
    }
  }
}

template <typename scalar_t>
void backward_slice_dispatch(const scalar_t* value, const int64_t* shapes, const int64_t* starts,
                             const scalar_t* loc, const scalar_t* attn, const scalar_t* grad_out,
                             scalar_t* gv, int64_t gv_row, scalar_t* grad_loc,
                             scalar_t* grad_attn, const Dims& d, int64_t b, int64_t h,
                             int64_t q_begin, int64_t q_end) {
#define SPVIS_BACKWARD_SLICE(DF)                                                           \
  backward_slice<scalar_t, DF>(value, shapes, starts, loc, attn, grad_out, gv, gv_row,     \
                               grad_loc, grad_attn, d, b, h, q_begin, q_end)
  switch (d.D) {
    case 8: SPVIS_BACKWARD_SLICE(8); break;
    case 16: SPVIS_BACKWARD_SLICE(16); break;
    case 32: SPVIS_BACKWARD_SLICE(32); break;
    case 64: SPVIS_BACKWARD_SLICE(64); break;
    default: SPVIS_BACKWARD_SLICE(0); break;
  }
#undef SPVIS_BACKWARD_SLICE
}

}  // namespace

at::Tensor ms_deform_attn_forward_cpu(const at::Tensor& value_in, const at::Tensor& spatial_shapes,
                                      const at::Tensor& level_start_index,
                                      const at::Tensor& sampling_locations,
                                      const at::Tensor& attention_weights) {
  check_inputs(value_in, spatial_shapes, level_start_index, sampling_locations, attention_weights);
  const at::Tensor value = value_in.contiguous();
  const at::Tensor shapes = spatial_shapes.to(at::kLong).contiguous();
  const at::Tensor starts = level_start_index.to(at::kLong).contiguous();
  const at::Tensor loc = sampling_locations.contiguous();
  const at::Tensor attn = attention_weights.contiguous();
  const Dims d = dims_of(value, loc);
  at::Tensor out = at::empty({d.B, d.Q, d.H * d.D}, value.options());
  AT_DISPATCH_FLOATING_TYPES(value.scalar_type(), "ms_deform_attn_forward_cpu", [&] {
    forward_dispatch<scalar_t>(value.data_ptr<scalar_t>(), shapes.data_ptr<int64_t>(),
                               starts.data_ptr<int64_t>(), loc.data_ptr<scalar_t>(),
                               attn.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), d);
  });
  return out;
}

std::vector<at::Tensor> ms_deform_attn_backward_cpu(const at::Tensor& value_in,
                                                    const at::Tensor& spatial_shapes,
                                                    const at::Tensor& level_start_index,
                                                    const at::Tensor& sampling_locations,
                                                    const at::Tensor& attention_weights,
                                                    const at::Tensor& grad_output) {
  check_inputs(value_in, spatial_shapes, level_start_index, sampling_locations, attention_weights);
  const at::Tensor value = value_in.contiguous();
  const at::Tensor shapes = spatial_shapes.to(at::kLong).contiguous();
  const at::Tensor starts = level_start_index.to(at::kLong).contiguous();
  const at::Tensor loc = sampling_locations.contiguous();
  const at::Tensor attn = attention_weights.contiguous();
  const at::Tensor go = grad_output.contiguous();
  const Dims d = dims_of(value, loc);
  TORCH_CHECK(go.numel() == d.B * d.Q * d.H * d.D, "grad_output has ", go.numel(),
              " elements, expected ", d.B * d.Q * d.H * d.D);

  at::Tensor grad_value = at::zeros_like(value);
  at::Tensor grad_loc = at::zeros_like(loc);
  at::Tensor grad_attn = at::zeros_like(attn);

  // Split queries into chunks only when (batch, head) pairs cannot feed every thread.
  const int64_t pairs = d.B * d.H;
  const int64_t threads = at::get_num_threads();
  const int64_t chunks = std::min<int64_t>(std::max<int64_t>(1, (threads + pairs - 1) / pairs),
                                           std::max<int64_t>(1, d.Q));
  const int64_t q_per_chunk = (d.Q + chunks - 1) / chunks;
  at::Tensor buffer;
  if (chunks > 1) buffer = at::zeros({d.B, d.H, chunks, d.S, d.D}, value.options());

  AT_DISPATCH_FLOATING_TYPES(value.scalar_type(), "ms_deform_attn_backward_cpu", [&] {
    scalar_t* gv_all = grad_value.data_ptr<scalar_t>();
    scalar_t* buf = chunks > 1 ? buffer.data_ptr<scalar_t>() : nullptr;
    at::parallel_for(0, pairs * chunks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t task = begin; task < end; ++task) {
        const int64_t chunk = task % chunks;
        const int64_t h = (task / chunks) % d.H;
        const int64_t b = task / (chunks * d.H);
        const int64_t q0 = chunk * q_per_chunk;
        const int64_t q1 = std::min(d.Q, q0 + q_per_chunk);
        if (q0 >= q1) continue;
        scalar_t* gv = chunks > 1 ? buf + task * d.S * d.D : gv_all + (b * d.S * d.H + h) * d.D;
        const int64_t gv_row = chunks > 1 ? d.D : d.H * d.D;
        backward_slice_dispatch<scalar_t>(
            value.data_ptr<scalar_t>(), shapes.data_ptr<int64_t>(),
                                 starts.data_ptr<int64_t>(), loc.data_ptr<scalar_t>(),
                                 attn.data_ptr<scalar_t>(), go.data_ptr<scalar_t>(), gv, gv_row,
                                 grad_loc.data_ptr<scalar_t>(), grad_attn.data_ptr<scalar_t>(), d,
                                 b, h, q0, q1);
      }
    });
  });
  if (chunks > 1) grad_value.copy_(buffer.sum(2).permute({0, 2, 1, 3}));
  return {grad_value, grad_loc, grad_attn};
}

}  // namespace spvis
