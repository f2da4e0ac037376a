// Products of a few rows with a large matrix that is not packed: out = H W^T for H with at most
// kMaxDotRows rows (a batch of 1-4 sequences, one step).
//
// One matrix-vector product per row of H reads all of W once per row; with W too large for L2
// (an LSTM's W_hh is 4 MB at H=512) that traffic is the whole cost. dot_rows reads each row of W
// once for all rows of H: two rows of W at a time are multiplied with every row of H, keeping
// 2 x rows vector accumulators in registers. Written with Eigen's packet primitives, so every
// SIMD level (SSE2, AVX2+FMA, AVX-512) gets its own vector width.
#pragma once

#include <Eigen/Core>

#include "rnnkit/tensor.hpp"

RNNKIT_BEGIN_NAMESPACE

/// Rows of H that dot_rows handles in one pass over W.
inline constexpr Index kMaxDotRows = 4;

namespace row_dots_detail {

template <class T, int R>
void dot_rows_fixed(const T* w, Index w_rows, Index depth, const T* h, Index ld_h, T* out, Index ld_out) noexcept {
  using Packet = typename Eigen::internal::packet_traits<T>::type;
  constexpr Index kWidth = Eigen::internal::packet_traits<T>::size;
  const Index vec_end = depth / kWidth * kWidth;
  Index j = 0;
  for (; j + 2 <= w_rows; j += 2) {
    const T* w0 = w + j * depth;
    const T* w1 = w0 + depth;
    Packet acc0[R], acc1[R];
    for (int r = 0; r < R; ++r) acc0[r] = acc1[r] = Eigen::internal::pset1<Packet>(T(0));
    for (Index k = 0; k < vec_end; k += kWidth) {
      const Packet a = Eigen::internal::ploadu<Packet>(w0 + k);
      const Packet b = Eigen::internal::ploadu<Packet>(w1 + k);
      for (int r = 0; r < R; ++r) {
        const Packet x = Eigen::internal::ploadu<Packet>(h + r * ld_h + k);
        acc0[r] = Eigen::internal::pmadd(a, x, acc0[r]);
        acc1[r] = Eigen::internal::pmadd(b, x, acc1[r]);
      }
    }
    for (int r = 0; r < R; ++r) {
      T s0 = Eigen::internal::predux(acc0[r]);
      T s1 = Eigen::internal::predux(acc1[r]);
      const T* x = h + r * ld_h;
      for (Index k = vec_end; k < depth; ++k) {
        s0 += w0[k] * x[k];
        s1 += w1[k] * x[k];
      }
      out[r * ld_out + j] = s0;
      out[r * ld_out + j + 1] = s1;
    }
  }
  if (j < w_rows) {  // an odd last row of W
    const T* w0 = w + j * depth;
    Packet acc[R];
    for (int r = 0; r < R; ++r) acc[r] = Eigen::internal::pset1<Packet>(T(0));
    for (Index k = 0; k < vec_end; k += kWidth) {
      const Packet a = Eigen::internal::ploadu<Packet>(w0 + k);
      for (int r = 0; r < R; ++r) {
        acc[r] = Eigen::internal::pmadd(a, Eigen::internal::ploadu<Packet>(h + r * ld_h + k), acc[r]);
      }
    }
    for (int r = 0; r < R; ++r) {
      T s = Eigen::internal::predux(acc[r]);
      for (Index k = vec_end; k < depth; ++k) s += w0[k] * h[r * ld_h + k];
      out[r * ld_out + j] = s;
    }
  }
}

}  // namespace row_dots_detail

/// out[r, 0:w_rows] = W h[r, :] for r < rows, W the row-major [w_rows, depth] block at `w`,
/// `h` rows `ld_h` apart, `out` rows `ld_out` apart. Any `rows`: passes of up to kMaxDotRows.
template <class T>
void dot_rows(const T* w, Index w_rows, Index depth, const T* h, Index ld_h, Index rows, T* out,
              Index ld_out) noexcept {
  using row_dots_detail::dot_rows_fixed;
  for (Index r = 0; r < rows; r += kMaxDotRows) {
    const T* hr = h + r * ld_h;
    T* o = out + r * ld_out;
    switch (std::min(rows - r, kMaxDotRows)) {
      case 1: dot_rows_fixed<T, 1>(w, w_rows, depth, hr, ld_h, o, ld_out); break;
      case 2: dot_rows_fixed<T, 2>(w, w_rows, depth, hr, ld_h, o, ld_out); break;
      case 3: dot_rows_fixed<T, 3>(w, w_rows, depth, hr, ld_h, o, ld_out); break;
      default: dot_rows_fixed<T, 4>(w, w_rows, depth, hr, ld_h, o, ld_out); break;
    }
  }
}

RNNKIT_END_NAMESPACE
