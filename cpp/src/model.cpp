// Dense read-out and loss on top of the layer driver.
#include "rnnkit/model.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "rnnkit/head_math.hpp"
#include "row_exact.hpp"

RNNKIT_BEGIN_NAMESPACE

namespace {

/// What the head reads: [rows, F], one row per sequence (Last) or per (sequence, step); the
/// memory is the workspace's.
template <class T>
struct Features {
  const T* values = nullptr;
  const T* valid = nullptr;  // [rows] 1 where the row counts in the loss, else 0
  Index rows = 0;
};

/// Runs the stack (its record in ws.tape when training) and gathers the head's input rows.
template <class T>
Features<T> run_stack(const ModelSpec& spec, const T* params, const Batch<T>& batch, bool training, double dropout,
                      std::uint64_t key, int n_threads, ModelWorkspace<T>& ws, bool frozen_weights = false) {
  const LayerSpec& rnn = spec.rnn;
  const Index B = batch.batch, steps = batch.steps, H = rnn.hidden_size, dirs = rnn.directions();
  const Index F = spec.features(), states = rnn.num_layers * dirs;
  ws.out.resize(static_cast<std::size_t>(B * steps * F));
  ws.h_n.resize(static_cast<std::size_t>(states * B * H));
  ws.c_n.resize(rnn.cell == CellKind::Lstm ? ws.h_n.size() : 0);

  // Token ids: look the inputs up in the embedding table.
  if (spec.vocab_size > 0) {
    ws.embedded.resize(static_cast<std::size_t>(B * steps * rnn.input_size));
    embed_tokens(spec, params + spec.embedding_offset(), batch, ws.embedded.data());
  }

  ForwardArgs<T> args;
  args.params = params;
  args.x = spec.vocab_size > 0 ? ws.embedded.data() : batch.x;
  args.steps = steps;
  args.batch = B;
  args.lengths = batch.lengths;
  args.out = ws.out.data();
  args.h_n = ws.h_n.data();
  args.c_n = ws.c_n.empty() ? nullptr : ws.c_n.data();
  ForwardOptions options;
  options.batch_first = true;
  options.training = training;
  options.dropout = dropout;
  options.dropout_key = key;
  options.n_threads = n_threads;
  options.frozen_weights = frozen_weights;
  forward(rnn, args, options, ws.tape);

  Features<T> f;
  if (spec.readout == Readout::Last) {
    f.rows = B;
    ws.features.resize(static_cast<std::size_t>(B * F));
    ws.valid.assign(static_cast<std::size_t>(B), T(1));
    for (Index d = 0; d < dirs; ++d) {
      const T* top = ws.h_n.data() + ((rnn.num_layers - 1) * dirs + d) * B * H;
      for (Index b = 0; b < B; ++b) std::copy_n(top + b * H, H, ws.features.data() + b * F + d * H);
    }
    f.values = ws.features.data();
  } else {
    f.rows = B * steps;
    f.values = ws.out.data();
    ws.valid.assign(static_cast<std::size_t>(f.rows), T(1));
    if (batch.lengths != nullptr) {
      for (Index b = 0; b < B; ++b) {
        for (Index t = batch.lengths[b]; t < steps; ++t) ws.valid[static_cast<std::size_t>(b * steps + t)] = T(0);
      }
    }
  }
  f.valid = ws.valid.data();
  return f;
}

/// logits[rows, n_out] = features W^T + b, then (with `probabilities`) softmax for cross-entropy
/// models and the sigmoid of each logit for multi-label ones.
template <class T>
void head_forward(const ModelSpec& spec, const T* params, const Features<T>& f, T* out, bool probabilities = true) {
  const Index F = spec.features(), n_out = spec.n_outputs;
  const ConstMatrixMap<T> w(params + spec.head_offset(), n_out, F);
  const ConstRowMap<T> bias(params + spec.head_offset() + n_out * F, n_out);
  MatrixMap<T> y(out, f.rows, n_out);
  y.noalias() = ConstMatrixMap<T>(f.values, f.rows, F) * w.transpose();
  y.rowwise() += bias;
  if (probabilities && spec.loss == Loss::SoftmaxCrossEntropy) {
    for (Index r = 0; r < f.rows; ++r) {
      auto row = y.row(r).array();
      assign_by_position(row, (row - row.maxCoeff()).exp());
      row /= sum_by_position(row.data(), n_out);
    }
  } else if (probabilities && spec.loss == Loss::SigmoidBinaryCrossEntropy) {
    T* values = y.data();  // element by element, in double: no result depends on alignment
    for (Index i = 0; i < f.rows * n_out; ++i) values[i] = static_cast<T>(head_math::sigmoid(values[i]));
  }
  for (Index r = 0; r < f.rows; ++r) {
    if (f.valid[r] == T(0)) y.row(r).setZero();
  }
}

}  // namespace

template <class T>
void predict(const ModelSpec& spec, const T* params, const Batch<T>& batch, T* out, int n_threads,
             ModelWorkspace<T>& ws, bool frozen_weights) {
  spec.validate();
  const Features<T> f = run_stack(spec, params, batch, false, 0.0, 0, n_threads, ws, frozen_weights);
  // Computed in an aligned buffer, not in `out` (the caller's, aligned anyhow): the vectorised exp
  // rounds differently from its scalar head, so results would depend on where `out` lies.
  ws.head.resize(static_cast<std::size_t>(f.rows * spec.n_outputs));
  head_forward(spec, params, f, ws.head.data());
  std::copy(ws.head.begin(), ws.head.end(), out);
}

template <class T, class X>
void predict_step(const ModelSpec& spec, const T* params, const StepInput<T, X>& input, StepArgs<T> args, T* out,
                  int n_threads, ModelStepWorkspace<T>& ws) {
  spec.validate();
  if (spec.vocab_size > 0) throw std::invalid_argument("predict_step reads real-valued inputs, not token ids");
  const Index B = args.batch, D = spec.rnn.input_size, H = spec.rnn.hidden_size;
  ws.x.resize(static_cast<std::size_t>(B * D));
  if (!standardise(input.x, B, D, input.mean, input.scale, ws.x.data())) {
    throw std::invalid_argument("x contains NaN or Inf (after standardisation)");
  }
  ws.top.resize(static_cast<std::size_t>(B * H));
  args.params = params;
  args.x = ws.x.data();
  args.out = ws.top.data();
  step(spec.rnn, args, ws.stack, n_threads);

  // The head reads the top layer's new state, as predict() reads that step's row of the stack's
  // outputs (Sequence) or the final state (Last); in an aligned buffer, as there.
  ws.valid.assign(static_cast<std::size_t>(B), T(1));
  Features<T> f;
  f.values = ws.top.data();
  f.valid = ws.valid.data();
  f.rows = B;
  ws.head.resize(static_cast<std::size_t>(B * spec.n_outputs));
  head_forward(spec, params, f, ws.head.data());
  int bad = 0;
  for (const T v : ws.head) bad |= (v - v) != T(0);
  if (bad) {
    throw std::invalid_argument("the model's outputs overflowed to NaN/Inf for this input: training probably diverged");
  }
  std::copy(ws.head.begin(), ws.head.end(), out);
}

template <class T>
double loss_and_grad(const ModelSpec& spec, const T* params, const Batch<T>& batch,
                     const Targets<T>& targets, T* grads, double dropout, std::uint64_t dropout_key,
                     int n_threads, ModelWorkspace<T>& ws) {
  spec.validate();
  const LayerSpec& rnn = spec.rnn;
  const Index F = spec.features(), n_out = spec.n_outputs, B = batch.batch, H = rnn.hidden_size;
  const Index dirs = rnn.directions();
  const Features<T> f = run_stack(spec, params, batch, true, dropout, dropout_key, n_threads, ws);

  // Head forward, loss, and dL/dlogits (rows that do not count get zero gradient). The
  // multi-label loss reads the logits (as BCEWithLogitsLoss: no log of a rounded probability).
  const bool multi_label = spec.loss == Loss::SigmoidBinaryCrossEntropy;
  ws.head.resize(static_cast<std::size_t>(f.rows * n_out));
  head_forward(spec, params, f, ws.head.data(), !multi_label);
  // The weighted mean over the rows that count (weighted_row_count). A weight of 1 (or none)
  // multiplies exactly: unweighted, the arithmetic is the same bit for bit.
  const auto weight = [&](Index r) { return targets.weights != nullptr ? targets.weights[r] : T(1); };
  const double count = weighted_row_count(f.valid, targets.weights, f.rows);
  double loss = 0.0;
  MatrixMap<T> g(ws.head.data(), f.rows, n_out);
  for (Index r = 0; r < f.rows; ++r) {
    if (f.valid[r] == T(0)) continue;
    const T w = weight(r);
    if (spec.loss == Loss::SoftmaxCrossEntropy) {
      const std::int64_t label = targets.labels[r];
      if (label < 0 || label >= n_out) throw std::invalid_argument("labels must lie in [0, n_outputs)");
      loss -= static_cast<double>(w) * std::log(std::max(static_cast<double>(g(r, label)), 1e-300));
      g(r, label) -= T(1);
      g.row(r) *= w;
      g.row(r) /= static_cast<T>(count);
    } else if (multi_label) {
      for (Index k = 0; k < n_out; ++k) {
        const double z = static_cast<double>(g(r, k)), y = static_cast<double>(targets.values[r * n_out + k]);
        loss += static_cast<double>(w) * head_math::bce_with_logit(z, y);
        g(r, k) = static_cast<T>(static_cast<double>(w) * (head_math::sigmoid(z) - y) / (count * static_cast<double>(n_out)));
      }
    } else {
      for (Index k = 0; k < n_out; ++k) {
        const double diff = static_cast<double>(g(r, k)) - static_cast<double>(targets.values[r * n_out + k]);
        loss += 0.5 * static_cast<double>(w) * diff * diff;
        g(r, k) = static_cast<T>(static_cast<double>(w) * diff / (count * static_cast<double>(n_out)));
      }
    }
  }
  loss /= spec.loss == Loss::SoftmaxCrossEntropy ? count : count * static_cast<double>(n_out);

  // Head gradients and dL/dfeatures.
  std::fill_n(grads, spec.param_count(), T(0));
  const ConstMatrixMap<T> feats(f.values, f.rows, F);
  const ConstMatrixMap<T> w(params + spec.head_offset(), n_out, F);
  MatrixMap<T>(grads + spec.head_offset(), n_out, F).noalias() = g.transpose() * feats;
  add_column_sums<T>(g, grads + spec.head_offset() + n_out * F);  // grads were zeroed above
  ws.grad_features.resize(static_cast<std::size_t>(f.rows * F));
  MatrixMap<T>(ws.grad_features.data(), f.rows, F).noalias() = g * w;

  // Back through the stack.
  const Index states = rnn.num_layers * dirs;
  ws.grad_x.resize(static_cast<std::size_t>(B * batch.steps * rnn.input_size));
  ws.grad_h0.resize(static_cast<std::size_t>(states * B * H));
  ws.grad_c0.resize(rnn.cell == CellKind::Lstm ? ws.grad_h0.size() : 0);
  BackwardArgs<T> args;
  args.params = params;
  args.grad_x = ws.grad_x.data();
  args.grad_h0 = ws.grad_h0.data();
  args.grad_c0 = ws.grad_c0.empty() ? nullptr : ws.grad_c0.data();
  args.grad_params = grads;
  if (spec.readout == Readout::Last) {
    ws.grad_h_n.assign(static_cast<std::size_t>(states * B * H), T(0));
    for (Index d = 0; d < dirs; ++d) {
      T* top = ws.grad_h_n.data() + ((rnn.num_layers - 1) * dirs + d) * B * H;
      for (Index b = 0; b < B; ++b) std::copy_n(ws.grad_features.data() + b * F + d * H, H, top + b * H);
    }
    args.grad_h_n = ws.grad_h_n.data();
  } else {
    args.grad_out = ws.grad_features.data();  // [B, T, F], zero past each length
  }
  backward(ws.tape, args, n_threads);

  // The embedding rows used by the batch receive their inputs' gradients.
  if (spec.vocab_size > 0) add_embedding_grads(spec, batch, ws.grad_x.data(), grads + spec.embedding_offset());
  return loss;
}

template void predict(const ModelSpec&, const float*, const Batch<float>&, float*, int, ModelWorkspace<float>&,
                      bool);
template void predict_step(const ModelSpec&, const float*, const StepInput<float, float>&, StepArgs<float>, float*, int,
                           ModelStepWorkspace<float>&);
template void predict_step(const ModelSpec&, const float*, const StepInput<float, double>&, StepArgs<float>, float*,
                           int, ModelStepWorkspace<float>&);
template void predict_step(const ModelSpec&, const double*, const StepInput<double, double>&, StepArgs<double>,
                           double*, int, ModelStepWorkspace<double>&);
template void predict(const ModelSpec&, const double*, const Batch<double>&, double*, int, ModelWorkspace<double>&,
                      bool);
template double loss_and_grad(const ModelSpec&, const float*, const Batch<float>&, const Targets<float>&, float*,
                              double, std::uint64_t, int, ModelWorkspace<float>&);
template double loss_and_grad(const ModelSpec&, const double*, const Batch<double>&, const Targets<double>&,
                              double*, double, std::uint64_t, int, ModelWorkspace<double>&);

RNNKIT_END_NAMESPACE
