// Arguments of the layer driver's forward and backward calls: plain pointers to dense
// row-major arrays owned by the caller. Shared by the CPU engine (layer.hpp) and the device
// backend (cpp/cuda), so both take the same arguments; free of Eigen so nvcc can read it.
#pragma once

#include <cstddef>
#include <cstdint>

#include "rnnkit/abi.hpp"

RNNKIT_BEGIN_NAMESPACE

/// Alignment, in bytes, of the slot before out that ForwardOptions::out_keeps_states offers: a
/// multiple of every SIMD level's EIGEN_MAX_ALIGN_BYTES (checked in layer.cpp).
constexpr std::size_t kStatesSlotAlign = 64;

/// Outputs (T x B x H values) from which a training forward keeps the top layer's states in the
/// caller's out (ForwardOptions::out_keeps_states); a caller need not offer the slot below.
/// There the states' copy weighs little, and the fingerprints of out that forward and backward
/// take would cost a few % of the step.
constexpr Index kMinStatesInCallerOutput = Index{1} << 15;

struct ForwardOptions {
  bool batch_first = false;
  /// Keep a tape for backward, and apply dropout between layers.
  bool training = false;
  /// Probability of zeroing an element of each layer's output but the last (training only).
  double dropout = 0.0;
  /// Selects the dropout masks: the same key gives the same masks.
  std::uint64_t dropout_key = 0;
  int n_threads = 1;
  /// The caller's promise that the weights at this address never change (a frozen layer's
  /// read-only buffer): inference then keeps packed weights by their address, with no copy to
  /// compare them with at every call.
  bool frozen_weights = false;
  /// The caller's offer, for a training call in time-major order: the B * H values before
  /// args.out are memory the call may use and start on a kStatesSlotAlign boundary (aligned as
  /// the tape's own states: the cells round alike at both), and the caller keeps out alive,
  /// changed or not, until its last backward. A unidirectional top layer then keeps its states
  /// there (the output is h) instead of in a copy: T * B * H values fewer at the training step's
  /// peak.
  bool out_keeps_states = false;
};

/// Arrays of a forward call; all dense row-major, owned by the caller.
template <class T>
struct ForwardArgs {
  const T* params = nullptr;          // flat buffer, layout of param_layout(spec)
  const T* x = nullptr;               // [T, B, D], or [B, T, D] with batch_first
  Index steps = 0;
  Index batch = 0;
  const T* h0 = nullptr;              // [L*dirs, B, H], or nullptr for zeros
  const T* c0 = nullptr;              // [L*dirs, B, H] (LSTM), or nullptr for zeros
  const std::int64_t* lengths = nullptr;  // [B] each in [1, T], or nullptr for all T
  T* out = nullptr;                   // [T, B, dirs*H], or [B, T, dirs*H] with batch_first
  T* h_n = nullptr;                   // [L*dirs, B, H]
  T* c_n = nullptr;                   // [L*dirs, B, H] (LSTM), may be nullptr otherwise
};

/// Arrays of a backward call. Gradients of parameters are added to grad_params.
template <class T>
struct BackwardArgs {
  const T* params = nullptr;     // the same values the forward used
  const T* grad_out = nullptr;   // like out, or nullptr for zeros
  const T* grad_h_n = nullptr;   // [L*dirs, B, H], or nullptr for zeros
  const T* grad_c_n = nullptr;   // [L*dirs, B, H] (LSTM), or nullptr for zeros
  T* grad_x = nullptr;           // like x
  T* grad_h0 = nullptr;          // [L*dirs, B, H]
  T* grad_c0 = nullptr;          // [L*dirs, B, H] (LSTM), may be nullptr otherwise
  T* grad_params = nullptr;      // like params; accumulated into
};

RNNKIT_END_NAMESPACE
