// Argument checking of the model calls (predict, loss_and_grad), shared by the CPU module's
// bindings and the device modules': both read the same arrays into rnnkit::Batch / Targets.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "bindings.hpp"
#include "rnnkit/model_spec.hpp"

namespace rnnkit_py {

using Ints = py::array_t<std::int64_t, py::array::c_style>;

/// The Python-side name of each loss.
inline const char* loss_name(rnnkit::Loss loss) {
  switch (loss) {
    case rnnkit::Loss::SoftmaxCrossEntropy: return "cross_entropy";
    case rnnkit::Loss::SquaredError: return "squared_error";
    case rnnkit::Loss::SigmoidBinaryCrossEntropy: return "binary_cross_entropy";
  }
  return "";
}

/// A validated ModelSpec from the Python-side names of its loss ("cross_entropy",
/// "squared_error" or "binary_cross_entropy") and read-out ("last" or "sequence").
inline rnnkit::ModelSpec model_spec_of(const rnnkit::LayerSpec& rnn, rnnkit::Index n_outputs, const std::string& loss,
                                       const std::string& readout, rnnkit::Index vocab_size) {
  rnnkit::ModelSpec s;
  s.vocab_size = vocab_size;
  s.rnn = rnn;
  s.n_outputs = n_outputs;
  if (loss == "cross_entropy") {
    s.loss = rnnkit::Loss::SoftmaxCrossEntropy;
  } else if (loss == "squared_error") {
    s.loss = rnnkit::Loss::SquaredError;
  } else if (loss == "binary_cross_entropy") {
    s.loss = rnnkit::Loss::SigmoidBinaryCrossEntropy;
  } else {
    throw py::value_error("loss must be 'cross_entropy', 'squared_error' or 'binary_cross_entropy'");
  }
  if (readout == "last") {
    s.readout = rnnkit::Readout::Last;
  } else if (readout == "sequence") {
    s.readout = rnnkit::Readout::Sequence;
  } else {
    throw py::value_error("output must be 'last' or 'sequence'");
  }
  s.validate();
  return s;
}

/// Checks x ([B, T, D] floats, or [B, T] token ids with an embedding) and lengths [B].
template <class T>
rnnkit::Batch<T> batch_of(const rnnkit::ModelSpec& spec, const py::array& x, const std::optional<Ints>& lengths) {
  using Floats = py::array_t<T, py::array::c_style>;
  rnnkit::Batch<T> b;
  if (spec.vocab_size > 0) {
    if (x.ndim() != 2 || x.shape(0) < 1 || x.shape(1) < 1 || !py::isinstance<Ints>(x) ||
        !(x.flags() & py::array::c_style)) {
      throw py::value_error("x: expected a non-empty C-contiguous (B, T) int64 array of token ids");
    }
    b.tokens = static_cast<const std::int64_t*>(x.data());
  } else {
    if (x.ndim() != 3 || x.shape(2) != spec.rnn.input_size || x.shape(0) < 1 || x.shape(1) < 1 ||
        !py::isinstance<Floats>(x) || !(x.flags() & py::array::c_style)) {
      throw py::value_error("x: expected a non-empty C-contiguous (B, T, input_size) array of the model's dtype");
    }
    b.x = static_cast<const T*>(x.data());
  }
  b.batch = x.shape(0);
  b.steps = x.shape(1);
  if (lengths) {
    if (lengths->ndim() != 1 || lengths->shape(0) != b.batch) throw py::value_error("lengths: expected shape (B,)");
    b.lengths = lengths->data();
  }
  return b;
}

/// Checks the targets of a batch: one label per output row, or n_outputs values per row.
template <class T>
rnnkit::Targets<T> targets_of(const rnnkit::ModelSpec& spec, const rnnkit::Batch<T>& b,
                              const std::optional<Ints>& labels,
                              const std::optional<py::array_t<T, py::array::c_style>>& values,
                              const std::optional<py::array_t<T, py::array::c_style>>& weights) {
  const rnnkit::Index rows = spec.readout == rnnkit::Readout::Sequence ? b.batch * b.steps : b.batch;
  rnnkit::Targets<T> targets;
  if (spec.loss == rnnkit::Loss::SoftmaxCrossEntropy) {
    if (!labels || labels->size() != rows) throw py::value_error("y: expected one label per output row");
    targets.labels = labels->data();
  } else {
    if (!values || values->size() != rows * spec.n_outputs) throw py::value_error("y: wrong number of targets");
    targets.values = values->data();
    if (spec.loss == rnnkit::Loss::SigmoidBinaryCrossEntropy) {
      for (py::ssize_t i = 0; i < values->size(); ++i) {
        const T v = targets.values[i];
        if (!(v >= T(0) && v <= T(1))) throw py::value_error("y: multi-label targets must lie in [0, 1]");
      }
    }
  }
  if (weights) {
    if (weights->size() != rows) {
      throw py::value_error("weights: expected one weight per output row, shaped as the labels: (B,) or (B, T)");
    }
    for (py::ssize_t i = 0; i < rows; ++i) {
      const T w = weights->data()[i];
      if (!(w >= T(0)) || w - w != T(0)) throw py::value_error("weights: expected finite weights >= 0");
    }
    targets.weights = weights->data();
  }
  return targets;
}

/// Shape of a model's outputs for a batch: (B, n_outputs) or (B, T, n_outputs).
template <class T>
std::vector<py::ssize_t> output_shape(const rnnkit::ModelSpec& spec, const rnnkit::Batch<T>& b) {
  if (spec.readout == rnnkit::Readout::Sequence) return {b.batch, b.steps, spec.n_outputs};
  return {b.batch, spec.n_outputs};
}

/// Throws ValueError unless `a` holds exactly the model's parameter count.
template <class A>
void expect_param_count(const rnnkit::ModelSpec& spec, const A& a, const char* name) {
  if (a.size() != spec.param_count()) throw py::value_error(std::string(name) + ": wrong size for this model");
}

}  // namespace rnnkit_py
