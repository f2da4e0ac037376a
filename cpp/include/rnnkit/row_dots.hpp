// Products of a few rows with a large matrix that is not packed: out = H W^T for H with at most
// kMaxDotRows rows (a batch of 1-4 sequences, one step).
//
// One matrix-vector product per row of H reads all of W once per row; with W too large for L2
// (an LSTM's W_hh is 4 MB at H=512) that traffic is the whole cost. dot_rows reads each row of W
// once for all rows of H: a few rows of W at a time (four for 1-2 rows of H, eight for one row
// and a W that stays in L2, three for 3-4) are multiplied with every row of H, their products
// kept in vector registers, while the next rows of W are prefetched. Written with Eigen's
// packet primitives, so every SIMD level (SSE2, AVX2+FMA, AVX-512) gets its own vector width;
// every kernel forms each output as the same sum in the same order, so the rows of H (and of W)
// may be split between kernels without changing a bit.
#pragma once

#include <algorithm>

#include <Eigen/Core>

#include "rnnkit/tensor.hpp"

RNNKIT_BEGIN_NAMESPACE

/// Rows of H that dot_rows handles in one pass over W.
inline constexpr Index kMaxDotRows = 4;

namespace row_dots_detail {

using Eigen::internal::pmadd;
using Eigen::internal::ploadu;
using Eigen::internal::pset1;

/// The packet of T at this SIMD level, its width, and the values of T in a 64-byte cache line.
template <class T>
using PacketOf = typename Eigen::internal::packet_traits<T>::type;
template <class T>
inline constexpr Index kWidthOf = Eigen::internal::packet_traits<T>::size;
template <class T>
inline constexpr Index kLineOf = 64 / static_cast<Index>(sizeof(T));

/// Where the whole packets of a row of `depth` values end (the scalar tail starts).
template <class T>
constexpr Index vector_end(Index depth) noexcept {
  return depth / kWidthOf<T> * kWidthOf<T>;
}

/// Prefetch the `kRows` rows of W after a block (`next`, contiguous) at kRows times the pace of
/// k: the lines of next[kRows * k, kRows * (k + width)). A fixed number of prefetches, unrolled,
/// one line apart from the first value of the step's range, with no loop or counter of its own
/// to keep in a register (with one, the eight-row kernel spilled row pointers to the stack and
/// the three-row kernel spent a fifth of its time in that loop). Where kRows * width is not a
/// whole number of lines (three rows: 1.5 lines a step on AVX2), the count rounds up, so that
/// consecutive prefetches, across steps too, are at most a line apart and miss no line in
/// between; some lines are then prefetched twice, which costs an issue slot and no traffic.
template <class T, Index kRows>
inline void prefetch_rows_ahead(const T* next, Index k) noexcept {
  for (Index f = 0; f < kRows * kWidthOf<T>; f += kLineOf<T>) __builtin_prefetch(next + kRows * k + f, 0, 3);
}

/// The end of every dot product here: the packet's lanes summed, then the scalar tail
/// W[vec_end:depth] . x[vec_end:depth] added in order. One definition, so that every kernel
/// forms each output as the same sum in the same order.
template <class T, class Packet>
inline T finish_dot(const Packet& acc, const T* w, const T* x, Index vec_end, Index depth) noexcept {
  T s = Eigen::internal::predux(acc);
  for (Index k = vec_end; k < depth; ++k) s += w[k] * x[k];
  return s;
}

/// The reference form of every kernel below, used for the rows of W they leave over (fewer than
/// a block): out[r, j] = W[j, :] . h[r, :], summed packet by packet in order, then across the
/// packet, then the scalar tail. The block kernels form the same sums in the same order.
template <class T, int R>
void dot_rows_fixed(const T* w, Index w_rows, Index depth, const T* h, Index ld_h, T* out, Index ld_out) noexcept {
  using Packet = PacketOf<T>;
  constexpr Index kWidth = kWidthOf<T>;
  const Index vec_end = vector_end<T>(depth);
  for (Index j = 0; j < w_rows; ++j) {
    const T* wj = w + j * depth;
    Packet acc[R];
    for (int r = 0; r < R; ++r) acc[r] = pset1<Packet>(T(0));
    for (Index k = 0; k < vec_end; k += kWidth) {
      const Packet a = ploadu<Packet>(wj + k);
      for (int r = 0; r < R; ++r) {
        acc[r] = pmadd(a, ploadu<Packet>(h + r * ld_h + k), acc[r]);
      }
    }
    for (int r = 0; r < R; ++r) out[r * ld_out + j] = finish_dot(acc[r], wj, h + r * ld_h, vec_end, depth);
  }
}

/// dot_rows_fixed for one or two rows of H: four rows of W at a time (more independent loads in
/// flight, which is what streaming W from L3 needs), the next four prefetched as these are read.
/// Each output is the same sum in the same order as in dot_rows_fixed. Written out rather than as
/// arrays of accumulators, which GCC kept on the stack.
template <class T, int R>
void dot_rows_four(const T* w, Index w_rows, Index depth, const T* h, Index ld_h, T* out, Index ld_out) noexcept {
  static_assert(R == 1 || R == 2, "one or two rows of H");
  using Packet = PacketOf<T>;
  constexpr Index kWidth = kWidthOf<T>;
  const Index vec_end = vector_end<T>(depth);
  const T* x0 = h;
  const T* x1 = h + (R == 2 ? ld_h : 0);
  Index j = 0;
  for (; j + 4 <= w_rows; j += 4) {
    const T* w0 = w + j * depth;
    const T* w1 = w0 + depth;
    const T* w2 = w1 + depth;
    const T* w3 = w2 + depth;
    // The next four rows are contiguous: prefetch their 4 * depth values at four times the pace
    // of k, one cache line at a time (the last block prefetches past W: harmless, a hint only).
    const T* next = w3 + depth;
    Packet a0 = pset1<Packet>(T(0)), a1 = a0, a2 = a0, a3 = a0;
    Packet b0 = a0, b1 = a0, b2 = a0, b3 = a0;
    for (Index k = 0; k < vec_end; k += kWidth) {
      prefetch_rows_ahead<T, 4>(next, k);
      const Packet p0 = ploadu<Packet>(w0 + k), p1 = ploadu<Packet>(w1 + k);
      const Packet p2 = ploadu<Packet>(w2 + k), p3 = ploadu<Packet>(w3 + k);
      const Packet x = ploadu<Packet>(x0 + k);
      a0 = pmadd(p0, x, a0);
      a1 = pmadd(p1, x, a1);
      a2 = pmadd(p2, x, a2);
      a3 = pmadd(p3, x, a3);
      if constexpr (R == 2) {
        const Packet y = ploadu<Packet>(x1 + k);
        b0 = pmadd(p0, y, b0);
        b1 = pmadd(p1, y, b1);
        b2 = pmadd(p2, y, b2);
        b3 = pmadd(p3, y, b3);
      }
    }
    const auto finish = [&](const Packet& acc, const T* wi, const T* x) { return finish_dot(acc, wi, x, vec_end, depth); };
    out[j] = finish(a0, w0, x0);
    out[j + 1] = finish(a1, w1, x0);
    out[j + 2] = finish(a2, w2, x0);
    out[j + 3] = finish(a3, w3, x0);
    if constexpr (R == 2) {
      out[ld_out + j] = finish(b0, w0, x1);
      out[ld_out + j + 1] = finish(b1, w1, x1);
      out[ld_out + j + 2] = finish(b2, w2, x1);
      out[ld_out + j + 3] = finish(b3, w3, x1);
    }
  }
  if (j < w_rows) dot_rows_fixed<T, R>(w + j * depth, w_rows - j, depth, h, ld_h, out + j, ld_out);
}

/// dot_rows_fixed for one row of H and a W that stays in cache: eight rows of W at a time. With
/// one row of H the four-row kernel keeps four FMA chains in flight, fewer than the two FMA
/// units' latency needs once W is read from L1/L2; eight chains run a 64 KB-256 KB W 6-12%
/// faster in a microbenchmark. Streaming W from L3 the eight concurrent rows were slower (up to
/// 20% at 4 MB; since the prefetch stopped spilling, within the noise either way), so dot_rows
/// keeps the four-row kernel there (bench/NOTES.md, 2026-11-29). Each output is the same sum in
/// the same order as in dot_rows_fixed.
template <class T>
void dot_rows_eight(const T* w, Index w_rows, Index depth, const T* x, T* out) noexcept {
  using Packet = PacketOf<T>;
  constexpr Index kWidth = kWidthOf<T>;
  const Index vec_end = vector_end<T>(depth);
  Index j = 0;
  for (; j + 8 <= w_rows; j += 8) {
    const T* w0 = w + j * depth;
    const T* next = w0 + 8 * depth;  // the next eight rows, prefetched as these are read
    const Packet zero = pset1<Packet>(T(0));
    Packet a0 = zero, a1 = zero, a2 = zero, a3 = zero, a4 = zero, a5 = zero, a6 = zero, a7 = zero;
    for (Index k = 0; k < vec_end; k += kWidth) {
      prefetch_rows_ahead<T, 8>(next, k);
      const Packet v = ploadu<Packet>(x + k);
      a0 = pmadd(ploadu<Packet>(w0 + k), v, a0);
      a1 = pmadd(ploadu<Packet>(w0 + depth + k), v, a1);
      a2 = pmadd(ploadu<Packet>(w0 + 2 * depth + k), v, a2);
      a3 = pmadd(ploadu<Packet>(w0 + 3 * depth + k), v, a3);
      a4 = pmadd(ploadu<Packet>(w0 + 4 * depth + k), v, a4);
      a5 = pmadd(ploadu<Packet>(w0 + 5 * depth + k), v, a5);
      a6 = pmadd(ploadu<Packet>(w0 + 6 * depth + k), v, a6);
      a7 = pmadd(ploadu<Packet>(w0 + 7 * depth + k), v, a7);
    }
    const auto finish = [&](const Packet& acc, Index i) {
      out[j + i] = finish_dot(acc, w0 + i * depth, x, vec_end, depth);
    };
    finish(a0, 0), finish(a1, 1), finish(a2, 2), finish(a3, 3);
    finish(a4, 4), finish(a5, 5), finish(a6, 6), finish(a7, 7);
  }
  if (j < w_rows) dot_rows_four<T, 1>(w + j * depth, w_rows - j, depth, x, depth, out + j, 0);
}

/// dot_rows_fixed for three or four rows of H: three rows of W at a time (3 x R accumulators and
/// the three rows' packets fill the sixteen AVX2 registers at R = 4), the next three prefetched.
/// Each output is the same sum in the same order as in dot_rows_fixed.
template <class T, int R>
void dot_rows_three(const T* w, Index w_rows, Index depth, const T* h, Index ld_h, T* out, Index ld_out) noexcept {
  static_assert(R == 3 || R == 4, "three or four rows of H");
  using Packet = PacketOf<T>;
  constexpr Index kWidth = kWidthOf<T>;
  const Index vec_end = vector_end<T>(depth);
  const T* x0 = h;
  const T* x1 = h + ld_h;
  const T* x2 = h + 2 * ld_h;
  const T* x3 = h + (R == 4 ? 3 * ld_h : 0);
  Index j = 0;
  for (; j + 3 <= w_rows; j += 3) {
    const T* w0 = w + j * depth;
    const T* w1 = w0 + depth;
    const T* w2 = w1 + depth;
    const T* next = w2 + depth;
    const Packet zero = pset1<Packet>(T(0));
    Packet a0 = zero, a1 = zero, a2 = zero, a3 = zero;  // row 0 of W with rows 0-3 of H
    Packet b0 = zero, b1 = zero, b2 = zero, b3 = zero;
    Packet c0 = zero, c1 = zero, c2 = zero, c3 = zero;
    for (Index k = 0; k < vec_end; k += kWidth) {
      prefetch_rows_ahead<T, 3>(next, k);
      const Packet p0 = ploadu<Packet>(w0 + k), p1 = ploadu<Packet>(w1 + k), p2 = ploadu<Packet>(w2 + k);
      Packet x = ploadu<Packet>(x0 + k);
      a0 = pmadd(p0, x, a0);
      b0 = pmadd(p1, x, b0);
      c0 = pmadd(p2, x, c0);
      x = ploadu<Packet>(x1 + k);
      a1 = pmadd(p0, x, a1);
      b1 = pmadd(p1, x, b1);
      c1 = pmadd(p2, x, c1);
      x = ploadu<Packet>(x2 + k);
      a2 = pmadd(p0, x, a2);
      b2 = pmadd(p1, x, b2);
      c2 = pmadd(p2, x, c2);
      if constexpr (R == 4) {
        x = ploadu<Packet>(x3 + k);
        a3 = pmadd(p0, x, a3);
        b3 = pmadd(p1, x, b3);
        c3 = pmadd(p2, x, c3);
      }
    }
    const auto finish = [&](const Packet& acc, const T* wi, const T* x, Index r, Index col) {
      out[r * ld_out + col] = finish_dot(acc, wi, x, vec_end, depth);
    };
    finish(a0, w0, x0, 0, j), finish(b0, w1, x0, 0, j + 1), finish(c0, w2, x0, 0, j + 2);
    finish(a1, w0, x1, 1, j), finish(b1, w1, x1, 1, j + 1), finish(c1, w2, x1, 1, j + 2);
    finish(a2, w0, x2, 2, j), finish(b2, w1, x2, 2, j + 1), finish(c2, w2, x2, 2, j + 2);
    if constexpr (R == 4) finish(a3, w0, x3, 3, j), finish(b3, w1, x3, 3, j + 1), finish(c3, w2, x3, 3, j + 2);
  }
  if (j < w_rows) dot_rows_fixed<T, R>(w + j * depth, w_rows - j, depth, h, ld_h, out + j, ld_out);
}

}  // namespace row_dots_detail

/// Bytes of W up to which one row of H goes through the eight-row kernel (dot_rows_eight).
inline constexpr Index kMaxEightRowBytes = Index{256} << 10;

/// out[r, 0:w_rows] = W h[r, :] for r < rows, W the row-major [w_rows, depth] block at `w`,
/// `h` rows `ld_h` apart, `out` rows `ld_out` apart. Any `rows`: passes of up to kMaxDotRows.
template <class T>
void dot_rows(const T* w, Index w_rows, Index depth, const T* h, Index ld_h, Index rows, T* out,
              Index ld_out) noexcept {
  using row_dots_detail::dot_rows_four;
  using row_dots_detail::dot_rows_three;
  for (Index r = 0; r < rows; r += kMaxDotRows) {
    const T* hr = h + r * ld_h;
    T* o = out + r * ld_out;
    switch (std::min(rows - r, kMaxDotRows)) {
      case 1:
        if (w_rows * depth * static_cast<Index>(sizeof(T)) <= kMaxEightRowBytes) {
          row_dots_detail::dot_rows_eight<T>(w, w_rows, depth, hr, o);
        } else {
          dot_rows_four<T, 1>(w, w_rows, depth, hr, ld_h, o, ld_out);
        }
        break;
      case 2: dot_rows_four<T, 2>(w, w_rows, depth, hr, ld_h, o, ld_out); break;
      case 3: dot_rows_three<T, 3>(w, w_rows, depth, hr, ld_h, o, ld_out); break;
      default: dot_rows_three<T, 4>(w, w_rows, depth, hr, ld_h, o, ld_out); break;
    }
  }
}

RNNKIT_END_NAMESPACE
