// What the layer's forward and backward drivers (layer.cpp, layer_backward.cpp) share: copies
// between the caller's order and time-major order, and the dispatch to the cells.
#pragma once

#include <algorithm>

#include "rnnkit/cells.hpp"
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
