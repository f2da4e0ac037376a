// What a trainable model is: a recurrent stack with a dense read-out and a loss, and the
// batches it reads. Shared by the CPU engine (model.hpp) and the device backend; free of
// Eigen so nvcc can read it.
//
// The flat parameter buffer holds the stack's parameters (param_layout order), then the head's
// weight [n_outputs, F] and bias [n_outputs], where F = directions * hidden_size, then, for
// models that read token ids, the embedding table [vocab_size, input_size].
#pragma once

#include <algorithm>
#include <cstdint>
#include <stdexcept>

#include "rnnkit/spec.hpp"

RNNKIT_BEGIN_NAMESPACE

/// SoftmaxCrossEntropy: one label per row among n_outputs classes. SquaredError: n_outputs
/// values per row (half the squared error, averaged over rows and outputs). SigmoidBinaryCrossEntropy:
/// n_outputs independent yes/no targets in [0, 1] per row (multi-label), each through a sigmoid,
/// averaged over rows and outputs (PyTorch's BCEWithLogitsLoss).
enum class Loss { SoftmaxCrossEntropy, SquaredError, SigmoidBinaryCrossEntropy };
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
/// [0, n_outputs). Regression and multi-label: values [B, n_outputs] or [B, T, n_outputs]
/// (multi-label: each in [0, 1]). Entries past a
/// sequence's length are ignored. `weights` (optional, finite and >= 0), one per output row
/// like the labels ([B] or [B, T]), weigh the rows' losses: the batch's loss is their weighted mean.
template <class T>
struct Targets {
  const std::int64_t* labels = nullptr;
  const T* values = nullptr;
  const T* weights = nullptr;
};

/// The denominator of a batch's loss: the total weight of its output rows that count (valid
/// 1 or 0 per row; weights nullptr: each row weighs 1), or 1 where that is 0 (loss and
/// gradients are then 0). The loss is the weighted mean over those rows (PyTorch's
/// CrossEntropyLoss(weight=...), scikit-learn's MLP).
template <class T>
double weighted_row_count(const T* valid, const T* weights, Index rows) noexcept {
  double count = 0.0;
  for (Index r = 0; r < rows; ++r) {
    count += static_cast<double>(valid[r]) * (weights != nullptr ? static_cast<double>(weights[r]) : 1.0);
  }
  return count == 0.0 ? 1.0 : count;
}

/// Valid steps of sequence b.
template <class T>
Index valid_steps(const Batch<T>& batch, Index b) noexcept {
  return batch.lengths != nullptr ? static_cast<Index>(batch.lengths[b]) : batch.steps;
}

/// The estimators' input scaling: out[r, k] = T((x[r, k] - mean[k]) / scale[k]) for `rows` rows
/// of `cols` values, computed in double as numpy computes it (X is T or double). Returns whether
/// every result is finite (a NaN/Inf input, or one too large for T once scaled, is not).
template <class T, class X>
bool standardise(const X* x, Index rows, Index cols, const double* mean, const double* scale, T* out) noexcept {
  int bad = 0;  // an int accumulator, branch-free: the loop vectorises (a bool one stays scalar)
  for (Index r = 0; r < rows; ++r) {
    for (Index k = 0; k < cols; ++k) {
      const T z = static_cast<T>((static_cast<double>(x[r * cols + k]) - mean[k]) / scale[k]);
      out[r * cols + k] = z;
      bad |= (z - z) != T(0);
    }
  }
  return bad == 0;
}

/// Looks token ids up in the embedding table: out [B, T, D], padding steps left as zeros.
/// Throws std::invalid_argument for an id outside [0, vocab_size).
template <class T>
void embed_tokens(const ModelSpec& spec, const T* table, const Batch<T>& batch, T* out) {
  const Index D = spec.rnn.input_size, steps = batch.steps;
  std::fill_n(out, batch.batch * steps * D, T(0));
  for (Index b = 0; b < batch.batch; ++b) {
    for (Index t = 0; t < valid_steps(batch, b); ++t) {
      const std::int64_t id = batch.tokens[b * steps + t];
      if (id < 0 || id >= spec.vocab_size) throw std::invalid_argument("token ids must lie in [0, vocab_size)");
      std::copy_n(table + id * D, D, out + (b * steps + t) * D);
    }
  }
}

/// Adds each valid step's input gradient (grad_x [B, T, D]) to its token's embedding row.
template <class T>
void add_embedding_grads(const ModelSpec& spec, const Batch<T>& batch, const T* grad_x, T* table_grad) {
  const Index D = spec.rnn.input_size, steps = batch.steps;
  for (Index b = 0; b < batch.batch; ++b) {
    for (Index t = 0; t < valid_steps(batch, b); ++t) {
      T* row = table_grad + batch.tokens[b * steps + t] * D;
      const T* g = grad_x + (b * steps + t) * D;
      for (Index k = 0; k < D; ++k) row[k] += g[k];
    }
  }
}

RNNKIT_END_NAMESPACE
