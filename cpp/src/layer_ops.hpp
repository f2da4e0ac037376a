// What the layer's forward and backward drivers (layer.cpp, layer_backward.cpp) share: copies
// between the caller's order and time-major order, and the dispatch to the cells.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "rnnkit/cells.hpp"
#include "rnnkit/layer.hpp"
#include "rnnkit/spec.hpp"

RNNKIT_BEGIN_NAMESPACE
namespace layer_ops {

/// dst[j, i, :] = src[i, j, :] for src of shape [n0, n1, width].
template <class T>
void swap_leading_axes(const T* src, T* dst, Index n0, Index n1, Index width) {
  for (Index i = 0; i < n0; ++i) {
    for (Index j = 0; j < n1; ++j) {
      std::copy_n(src + (i * n1 + j) * width, width, dst + (j * n0 + i) * width);
    }
  }
}

/// A checksum of n values' bytes: two running sums (the second of the first, so that moving a
/// value changes it too) in each of 16 32-bit lanes, which the compiler vectorises (60 us for
/// 1.6 MB here, at the speed of memory). Tells whether the caller changed an array between two
/// calls; not a defence against tampering.
template <class T>
std::uint64_t fingerprint(const T* data, std::size_t n) {
  constexpr std::size_t kLanes = 16;
  std::uint32_t a[kLanes] = {}, b[kLanes] = {};
  const auto* bytes = reinterpret_cast<const unsigned char*>(data);
  const std::size_t words = n * sizeof(T) / sizeof(std::uint32_t), full = words / kLanes * kLanes;
  for (std::size_t i = 0; i < full; i += kLanes) {
    for (std::size_t l = 0; l < kLanes; ++l) {  // (a word at a time: GCC then keeps a and b in registers)
      std::uint32_t w;
      std::memcpy(&w, bytes + (i + l) * sizeof(std::uint32_t), sizeof(w));
      a[l] += w;
      b[l] += a[l];
    }
  }
  for (std::size_t i = full; i < words; ++i) {
    std::uint32_t w;
    std::memcpy(&w, bytes + i * sizeof(std::uint32_t), sizeof(w));
    a[i % kLanes] += w;
    b[i % kLanes] += a[i % kLanes];
  }
  std::uint64_t h = words;
  for (std::size_t l = 0; l < kLanes; ++l) {
    h = (h ^ a[l]) * 0x100000001b3ULL;
    h = (h ^ b[l]) * 0x100000001b3ULL;
  }
  return h;
}

/// Where the caller changed the output that a training forward's top layer keeps its states in
/// (Tape::Direction::caller_output), runs that layer again with the same weights, input and
/// initial state into the tape's own memory, as the forward would have without the offer.
template <class T>
void restore_states(Tape<T>& tape, const T* params);

/// Copies a [T, B, F] (or [B, T, F] when batch_first) array into time-major order.
template <class T>
void to_time_major(const T* src, T* dst, Index steps, Index batch, Index width, bool batch_first) {
  if (batch_first) {
    swap_leading_axes(src, dst, batch, steps, width);
  } else {
    std::copy_n(src, steps * batch * width, dst);
  }
}

/// Copies a time-major [T, B, F] array out in the caller's order.
template <class T>
void from_time_major(const T* src, T* dst, Index steps, Index batch, Index width, bool batch_first) {
  if (batch_first) {
    swap_leading_axes(src, dst, steps, batch, width);
  } else {
    std::copy_n(src, steps * batch * width, dst);
  }
}

template <class T>
void cell_forward(CellKind cell, const ForwardStep<T>& step) noexcept {
  switch (cell) {
    case CellKind::RnnTanh: RnnCell<T>::forward(step, false); break;
    case CellKind::RnnRelu: RnnCell<T>::forward(step, true); break;
    case CellKind::Lstm: LstmCell<T>::forward(step); break;
    case CellKind::Gru: GruCell<T>::forward(step); break;
  }
}

template <class T>
void cell_backward(CellKind cell, const BackwardStep<T>& step) noexcept {
  switch (cell) {
    case CellKind::RnnTanh: RnnCell<T>::backward(step, false); break;
    case CellKind::RnnRelu: RnnCell<T>::backward(step, true); break;
    case CellKind::Lstm: LstmCell<T>::backward(step); break;
    case CellKind::Gru: GruCell<T>::backward(step); break;
  }
}

}  // namespace layer_ops
RNNKIT_END_NAMESPACE
