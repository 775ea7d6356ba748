// Bilinear corner set-up shared by the CPU and CUDA kernels.
//
// A sample at normalised (loc_x, loc_y) on a level of size (h, w) sits at pixel
// (x, y) = (loc_x * w - 0.5, loc_y * h - 0.5). Its four integer neighbours are
// (y0, x0), (y0, x0 + 1), (y0 + 1, x0), (y0 + 1, x0 + 1); a neighbour outside the
// level contributes zero (grid_sample's zero padding).
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define SPVIS_HD __host__ __device__ __forceinline__
#else
#define SPVIS_HD inline
#endif

namespace spvis {

template <typename acc_t>
struct Corners {
  // Pixel indices (y * w + x) of the four neighbours within the level;
  // -1 marks a neighbour outside the level.
  int64_t off[4];
  // Bilinear weights of the four neighbours.
  acc_t w[4];
  // Fractional parts, needed for the location gradient.
  acc_t lx, ly;
};

// Fills `c` and returns true when the sample touches the level at all.
template <typename acc_t>
SPVIS_HD bool setup_corners(acc_t loc_x, acc_t loc_y, int64_t h, int64_t w, Corners<acc_t>& c) {
  const acc_t x = loc_x * static_cast<acc_t>(w) - static_cast<acc_t>(0.5);
  const acc_t y = loc_y * static_cast<acc_t>(h) - static_cast<acc_t>(0.5);
  if (!(x > static_cast<acc_t>(-1) && y > static_cast<acc_t>(-1) &&
        x < static_cast<acc_t>(w) && y < static_cast<acc_t>(h))) {
    return false;  // also false for NaN locations
  }
  const acc_t fx = floor(x);
  const acc_t fy = floor(y);
  const int64_t x0 = static_cast<int64_t>(fx);
  const int64_t y0 = static_cast<int64_t>(fy);
  c.lx = x - fx;
  c.ly = y - fy;
  const acc_t hx = static_cast<acc_t>(1) - c.lx;
  const acc_t hy = static_cast<acc_t>(1) - c.ly;
  const bool x0_in = x0 >= 0;
  const bool x1_in = x0 + 1 < w;
  const bool y0_in = y0 >= 0;
  const bool y1_in = y0 + 1 < h;
  c.off[0] = (y0_in && x0_in) ? y0 * w + x0 : -1;
  c.off[1] = (y0_in && x1_in) ? y0 * w + x0 + 1 : -1;
  c.off[2] = (y1_in && x0_in) ? (y0 + 1) * w + x0 : -1;
  c.off[3] = (y1_in && x1_in) ? (y0 + 1) * w + x0 + 1 : -1;
  c.w[0] = hy * hx;
  c.w[1] = hy * c.lx;
  c.w[2] = c.ly * hx;
  c.w[3] = c.ly * c.lx;
  return true;
}

// d(sample)/d(x) and d(sample)/d(y) weights for each corner: the derivative of the
// bilinear weights with respect to the pixel coordinates.
template <typename acc_t>
SPVIS_HD void corner_grads(const Corners<acc_t>& c, acc_t gx[4], acc_t gy[4]) {
  const acc_t hx = static_cast<acc_t>(1) - c.lx;
  const acc_t hy = static_cast<acc_t>(1) - c.ly;
  gx[0] = -hy;
  gx[1] = hy;
  gx[2] = -c.ly;
  gx[3] = c.ly;
  gy[0] = -hx;
  gy[1] = -c.lx;
  gy[2] = hx;
  gy[3] = c.lx;
}

}  // namespace spvis
