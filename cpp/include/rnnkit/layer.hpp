// The layer driver: runs any cell through time over a stack of layers and directions,
// forward and backward (BPTT). The matrix products happen here, fused over gates and, where
// the data allows, over all time steps; the cells do the element-wise rest.
#pragma once

#include <array>
#include <cstdint>
#include <mutex>
#include <optional>
#include <vector>

#include "rnnkit/layer_args.hpp"
#include "rnnkit/packed_gemm.hpp"
#include "rnnkit/parallel.hpp"
#include "rnnkit/spec.hpp"
#include "rnnkit/tensor.hpp"

RNNKIT_BEGIN_NAMESPACE

/// How a call's packed weights are kept for later calls.
enum class KeepPacked {
  No,       // repacked by every call (training: the weights change between calls)
  Checked,  // kept with a copy of the values packed; a call repacks when its weights differ
  Frozen,   // kept with the address of the values packed, which the caller promises never change
};

/// Weights packed for products and kept between calls, with what tells a later call whether
/// they still hold its weights (see KeepPacked).
template <class T>
struct KeptPacking {
  std::optional<PackedRows<T>> packed;
  AlignedVector<T> source;        // Checked: a copy of the values packed
  const T* frozen_at = nullptr;   // Frozen: where the values packed lie, and their row stride
  Index frozen_stride = 0;

  std::size_t bytes() const noexcept {
    return (packed ? packed->bytes() : 0) + source.capacity() * sizeof(T);
  }
};

/// What a training forward keeps for the backward pass. Opaque to callers.
template <class T>
struct Tape {
  struct Direction {
    AlignedVector<T> gates;   // [T, B, GH] activated gates, indexed by time
    AlignedVector<T> states;  // [T+1, B, H] h; forward: h_{-1} first, reverse: h_{T} last
    AlignedVector<T> cells;   // [T+1, B, H] c (LSTM)
    AlignedVector<T> extra;   // [T, B, H] W_hn h + b_hn (GRU)
    // A unidirectional top layer's training forward keeps its states [h_{-1}; out] in the
    // output's memory instead (`states` then stays empty): the output is h. `in_output` is
    // where; `caller_output` says the memory is the caller's out, which the caller may change
    // before backward, so backward checks it against `output_fingerprint` and, where it
    // changed, runs the layer again into `states` (restore_states).
    T* in_output = nullptr;
    bool caller_output = false;
    std::uint64_t output_fingerprint = 0;

    T* state_data() noexcept { return in_output != nullptr ? in_output : states.data(); }
    const T* state_data() const noexcept { return in_output != nullptr ? in_output : states.data(); }
  };
  struct Layer {
    AlignedVector<T> input;          // [T, B, D_in] what the layer saw (after dropout)
    AlignedVector<T> dropout_scale;  // [T, B, D_in] 0 or 1/(1-p) per element; empty if none
    std::vector<Direction> directions;
  };

  /// Memory a call needs only while it runs. Kept with the tape so that a caller who passes the
  /// same tape again allocates nothing for the same sizes: fresh memory costs a page fault per
  /// 4 KiB on first touch, which took a third of an LSTM forward of 26 MB of buffers
  /// (bench/NOTES.md, 2026-11-27).
  /// One (layer, direction)'s packed weights, kept for later calls (KeptPacking says how a call
  /// knows they still hold its weights). Comparing with a copy reads the weights twice; packing
  /// them cost 7% of an LSTM B=16 T=25 H=512 forward and 22% at B=4, and the comparison 7% at
  /// B=4 (bench/NOTES.md, 2026-11-27).
  struct Packed {
    KeptPacking<T> ih, hh;  // W_ih [GH, D], W_hh [GH, H]
    // The forward split by hidden units: thread i's rows of W_hh (its units of every gate), at i.
    std::vector<KeptPacking<T>> hh_units;
    // The same for W_ih, where those threads project their own units' gates.
    std::vector<KeptPacking<T>> ih_units;
    // Backward packs W_ih^T and W_hh^T into the memory of ih and hh (a training forward repacks
    // those on its next call anyway) and leaves it here, for the next forward to pack into.
    AlignedVector<T> ih_spare, hh_spare;
    // How the packed weights are kept for the next call: checked against a copy (inference),
    // trusted by address (inference on frozen weights), or not at all (training updates the
    // weights between calls, so a training forward repacks into the kept memory).
    KeepPacked keep = KeepPacked::Checked;
  };

  /// Backward's gate gradients for one direction's chunk of steps.
  struct GateGrads {
    AlignedVector<T> input;   // [chunk, B, GH] dL/d(gates) on the input side
    AlignedVector<T> hidden;  // GRU: on the hidden side (the others use `input` for both)
  };

  struct Scratch {
    std::vector<Packed> packed;   // per (layer, direction), in state order
    AlignedVector<T> input;       // inference: a layer's time-major input
    AlignedVector<T> output;      // a layer's time-major output (inference, and the top layer)
    std::array<Direction, 2> directions;  // inference: each direction's (a pipeline's: each layer parity's)
    std::vector<AlignedVector<T>> stack_outputs;  // inference, layers pipelined: each lower layer's output
    std::array<GateGrads, 2> gate_grads;  // backward: the first; each direction's where they run at once
    AlignedVector<T> grad_input;  // backward: dL/d(a layer's input)
    AlignedVector<T> grad_input_reverse;  // backward, directions at once: the reverse direction's share
    AlignedVector<T> grad_output; // backward: dL/d(a layer's output)
  };

  LayerSpec spec;
  bool training = false;  // whether the last forward kept what backward needs
  bool zero_start = false;  // the last forward started from zeros (no h0 given)
  int n_threads = 1;        // the last forward's
  Index steps = 0;
  Index batch = 0;
  bool batch_first = false;
  std::vector<std::uint8_t> active;  // [T, B]; empty when every sequence spans all T steps
  std::vector<Layer> layers;         // training only (an inference call leaves them for reuse)
  Scratch scratch;
  CallPace pace;                     // when the last forward ended
  std::mutex busy;                   // held by the call using the tape (callers that share tapes)
};

/// Scratch memory of step(), kept by the caller between calls so that streaming allocates
/// nothing after the first call of a given size.
template <class T>
struct StepWorkspace {
  AlignedVector<T> gates;   // [B, GH]
  AlignedVector<T> rec;     // [B, GH]
  AlignedVector<T> input;   // [B, H] the layer below's new state
  AlignedVector<T> extra;   // [B, H] GRU
  CallPace pace;            // when the last step ended
};

/// Arrays of a step call: one time step of a unidirectional stack for a batch.
template <class T>
struct StepArgs {
  const T* params = nullptr;
  const T* x = nullptr;     // [B, D]
  Index batch = 0;
  const T* h0 = nullptr;    // [L, B, H], or nullptr for zeros
  const T* c0 = nullptr;    // [L, B, H] (LSTM), or nullptr for zeros
  T* out = nullptr;         // [B, H] the top layer's new state
  T* h_n = nullptr;         // [L, B, H]
  T* c_n = nullptr;         // [L, B, H] (LSTM)
};

/// Advances every layer by one step: the same arithmetic as one step of forward(), for
/// streaming and autoregressive use. Throws std::invalid_argument for a bidirectional stack.
template <class T>
void step(const LayerSpec& spec, const StepArgs<T>& args, StepWorkspace<T>& workspace, int n_threads);

/// Runs the stack over a batch of sequences, filling `tape` (what backward needs when
/// options.training; else only its scratch). The tape's memory is reused: pass the same tape to
/// calls of the same sizes and they allocate nothing after the first. Throws
/// std::invalid_argument on inconsistent sizes.
template <class T>
void forward(const LayerSpec& spec, const ForwardArgs<T>& args, const ForwardOptions& options, Tape<T>& tape);

/// Back-propagates through time from the gradients of the outputs and final states; uses the
/// tape's scratch memory (the tape's record is only read: backward may run again).
template <class T>
void backward(Tape<T>& tape, const BackwardArgs<T>& args, int n_threads);

RNNKIT_END_NAMESPACE
