// The element-wise half of each recurrent cell: one time step for a batch, after the
// layer driver has done the matrix products. One cell per source file (cells/*.cpp).
//
// Shapes: B = batch, H = hidden size, G = gate count, GH = G*H. Every matrix is row-major
// and dense. Rows whose `active` flag is 0 are past their sequence's length: their state is
// carried unchanged and they receive no gradient, which is what packed sequences do.
#pragma once

#include <cstdint>

#include "rnnkit/spec.hpp"
#include "rnnkit/tensor.hpp"

RNNKIT_BEGIN_NAMESPACE

/// Arguments of a forward step.
template <class T>
struct ForwardStep {
  Index batch = 0;
  Index hidden = 0;
  /// [B, GH] in: W_ih x_t + b_ih. Out: the activated gates, kept for the backward step.
  T* gates = nullptr;
  /// [B, GH] W_hh h_{t-1} (no bias).
  const T* recurrent = nullptr;
  /// [GH] b_hh, or nullptr without bias.
  const T* bias_hh = nullptr;
  const T* h_prev = nullptr;  // [B, H], rows state_rows() apart
  T* h_next = nullptr;        // [B, H], rows state_rows() apart
  const T* c_prev = nullptr;  // [B, H], LSTM only, rows state_rows() apart
  T* c_next = nullptr;        // [B, H], LSTM only, rows state_rows() apart
  /// [B, H] GRU only: out: W_hn h_{t-1} + b_hn, kept for the backward step.
  T* extra = nullptr;
  /// [B] 1 where the step is inside the sequence, or nullptr when every row is.
  const std::uint8_t* active = nullptr;
  /// Values from one row of the states to the next (0: `hidden`, packed): a step over a slice of
  /// the hidden units reads and writes the whole states' rows in place.
  Index state_stride = 0;

  Index state_rows() const noexcept { return state_stride > 0 ? state_stride : hidden; }
};

/// Arguments of a backward step (the mirror of ForwardStep).
template <class T>
struct BackwardStep {
  Index batch = 0;
  Index hidden = 0;
  const T* gates = nullptr;   // [B, GH] as left by the forward step (simple RNN: unused, h_next)
  const T* extra = nullptr;   // [B, H] GRU only
  const T* h_prev = nullptr;  // [B, H]
  const T* h_next = nullptr;  // [B, H]
  const T* c_prev = nullptr;  // [B, H] LSTM only
  const T* c_next = nullptr;  // [B, H] LSTM only
  /// [B, H] dL/dh_t, everything that reaches h_t.
  const T* grad_h = nullptr;
  /// [B, H] LSTM only. In: dL/dc_t. Out: dL/dc_{t-1}.
  T* grad_c = nullptr;
  /// [B, GH] out: dL/d(W_ih x_t + b_ih), the input-side pre-activations.
  T* grad_gates_input = nullptr;
  /// [B, GH] out: dL/d(W_hh h_{t-1} + b_hh). May alias grad_gates_input for every cell but
  /// the GRU, whose new-gate gradient differs on the two sides.
  T* grad_gates_hidden = nullptr;
  /// [B, H] out: the part of dL/dh_{t-1} that does not pass through W_hh.
  T* grad_h_prev = nullptr;
  const std::uint8_t* active = nullptr;
};

/// Simple RNN: h' = act(W_ih x + b_ih + W_hh h + b_hh), act = tanh or relu.
template <class T>
struct RnnCell {
  static void forward(const ForwardStep<T>& s, bool relu) noexcept;
  static void backward(const BackwardStep<T>& s, bool relu) noexcept;
};

/// LSTM, gates (i, f, g, o) as in PyTorch: c' = f*c + i*g, h' = o*tanh(c').
template <class T>
struct LstmCell {
  static void forward(const ForwardStep<T>& s) noexcept;
  static void backward(const BackwardStep<T>& s) noexcept;
};

/// GRU, gates (r, z, n) with PyTorch/cuDNN semantics:
/// n = tanh(W_in x + b_in + r * (W_hn h + b_hn)), h' = (1 - z) * n + z * h.
template <class T>
struct GruCell {
  static void forward(const ForwardStep<T>& s) noexcept;
  static void backward(const BackwardStep<T>& s) noexcept;
};

RNNKIT_END_NAMESPACE
