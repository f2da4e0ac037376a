// A recurrent stack with a dense read-out and a loss: what the estimators train.
//
// The flat parameter buffer holds the stack's parameters (param_layout order), then the head's
// weight [n_outputs, F] and bias [n_outputs], where F = directions * hidden_size, then, for
// models that read token ids, the embedding table [vocab_size, input_size].
#pragma once

#include <cstdint>

#include "rnnkit/layer.hpp"

RNNKIT_BEGIN_NAMESPACE

enum class Loss { SoftmaxCrossEntropy, SquaredError };
enum class Readout {
  Last,      // one output per sequence, read from the final states of the top layer
  Sequence,  // one output per valid time step, read from the top layer's outputs
};

struct ModelSpec {
  LayerSpec rnn;
  Index n_outputs = 1;
  Loss loss = Loss::SquaredError;
  Readout readout = Readout::Last;
  /// Token-id input through a trained embedding table when > 0; real-valued input when 0.
  Index vocab_size = 0;

  Index features() const noexcept { return rnn.directions() * rnn.hidden_size; }
  Index head_offset() const noexcept;       // where the head's weight starts in the flat buffer
  Index embedding_offset() const noexcept;  // where the embedding table starts
  Index param_count() const noexcept;       // stack + head + embedding
  void validate() const;
};

/// A batch, batch-first: x [B, T, D] (or, with an embedding, tokens [B, T] of ids in
/// [0, vocab_size)), lengths [B] in [1, T] or nullptr for all T.
template <class T>
struct Batch {
  const T* x = nullptr;
  const std::int64_t* tokens = nullptr;
  Index steps = 0;
  Index batch = 0;
  const std::int64_t* lengths = nullptr;
};

/// Targets of a batch. Classification: labels [B] (Last) or [B, T] (Sequence), each in
/// [0, n_outputs). Regression: values [B, n_outputs] or [B, T, n_outputs]. Entries past a
/// sequence's length are ignored.
template <class T>
struct Targets {
  const std::int64_t* labels = nullptr;
  const T* values = nullptr;
};

/// Model outputs for a batch: [B, n_outputs] (Last) or [B, T, n_outputs] (Sequence), class
/// probabilities for cross-entropy models and predictions for squared-error ones. Steps past a
/// sequence's length are zero.
template <class T>
void predict(const ModelSpec& spec, const T* params, const Batch<T>& batch, T* out, int n_threads);

/// Mean loss of the batch (cross-entropy, or half the mean squared error over outputs) and
/// its gradient, written into grads (same layout as params; overwritten). Dropout between
/// layers is applied with `dropout` and `dropout_key`.
template <class T>
double loss_and_grad(const ModelSpec& spec, const T* params, const Batch<T>& batch,
                     const Targets<T>& targets, T* grads, double dropout, std::uint64_t dropout_key,
                     int n_threads);

RNNKIT_END_NAMESPACE
