// The trainable model (stack + dense head + loss) used by the estimators.
#include "rnnkit/model.hpp"

#include <optional>
#include <string>

#include "bindings.hpp"

namespace rnnkit_py {

namespace {

using rnnkit::Index;
using rnnkit::ModelSpec;

template <class T>
using Array = py::array_t<T, py::array::c_style>;
using Ints = py::array_t<std::int64_t, py::array::c_style>;

/// Checks x ([B, T, D] floats, or [B, T] token ids with an embedding) and lengths [B].
template <class T>
rnnkit::Batch<T> batch_of(const ModelSpec& spec, const py::array& x, const std::optional<Ints>& lengths) {
  rnnkit::Batch<T> b;
  if (spec.vocab_size > 0) {
    if (x.ndim() != 2 || x.shape(0) < 1 || x.shape(1) < 1 || !py::isinstance<Ints>(x) ||
        !(x.flags() & py::array::c_style)) {
      throw py::value_error("x: expected a non-empty C-contiguous (B, T) int64 array of token ids");
    }
    b.tokens = static_cast<const std::int64_t*>(x.data());
  } else {
    if (x.ndim() != 3 || x.shape(2) != spec.rnn.input_size || x.shape(0) < 1 || x.shape(1) < 1 ||
        !py::isinstance<Array<T>>(x) || !(x.flags() & py::array::c_style)) {
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

template <class T>
void register_dtype(py::module_& m, const std::string& suffix) {
  m.def(("model_predict_" + suffix).c_str(),
        [](const ModelSpec& spec, const Array<T>& params, const py::array& x, const std::optional<Ints>& lengths,
           int n_threads) {
          if (params.size() != spec.param_count()) throw py::value_error("params: wrong size for this model");
          const auto b = batch_of<T>(spec, x, lengths);
          const bool seq = spec.readout == rnnkit::Readout::Sequence;
          Array<T> out(seq ? std::vector<py::ssize_t>{b.batch, b.steps, spec.n_outputs}
                           : std::vector<py::ssize_t>{b.batch, spec.n_outputs});
          T* o = out.mutable_data();
          {
            py::gil_scoped_release release;
            rnnkit::predict(spec, params.data(), b, o, n_threads);
          }
          return out;
        },
        py::arg("spec"), py::arg("params"), py::arg("x"), py::arg("lengths"), py::arg("n_threads"));

  m.def(("model_loss_and_grad_" + suffix).c_str(),
        [](const ModelSpec& spec, const Array<T>& params, const py::array& x, const std::optional<Ints>& lengths,
           const std::optional<Ints>& labels, const std::optional<Array<T>>& values, Array<T>& grads,
           double dropout, std::uint64_t dropout_key, int n_threads) {
          if (params.size() != spec.param_count()) throw py::value_error("params: wrong size for this model");
          if (grads.size() != spec.param_count()) throw py::value_error("grads: wrong size for this model");
          const auto b = batch_of<T>(spec, x, lengths);
          const bool seq = spec.readout == rnnkit::Readout::Sequence;
          const Index rows = seq ? b.batch * b.steps : b.batch;
          rnnkit::Targets<T> targets;
          if (spec.loss == rnnkit::Loss::SoftmaxCrossEntropy) {
            if (!labels || labels->size() != rows) throw py::value_error("y: expected one label per output row");
            targets.labels = labels->data();
          } else {
            if (!values || values->size() != rows * spec.n_outputs) throw py::value_error("y: wrong number of targets");
            targets.values = values->data();
          }
          T* g = grads.mutable_data();
          py::gil_scoped_release release;
          return rnnkit::loss_and_grad(spec, params.data(), b, targets, g, dropout, dropout_key, n_threads);
        },
        py::arg("spec"), py::arg("params"), py::arg("x"), py::arg("lengths"), py::arg("labels"),
        py::arg("values"), py::arg("grads").noconvert(), py::arg("dropout"), py::arg("dropout_key"),
        py::arg("n_threads"));
}

}  // namespace

void register_model(py::module_& m) {
  py::class_<ModelSpec>(m, "ModelSpec", py::module_local(), "A recurrent stack with a dense head and a loss.")
      .def(py::init([](const rnnkit::LayerSpec& rnn, Index n_outputs, const std::string& loss,
                       const std::string& readout, Index vocab_size) {
             ModelSpec s;
             s.vocab_size = vocab_size;
             s.rnn = rnn;
             s.n_outputs = n_outputs;
             if (loss == "cross_entropy") {
               s.loss = rnnkit::Loss::SoftmaxCrossEntropy;
             } else if (loss == "squared_error") {
               s.loss = rnnkit::Loss::SquaredError;
             } else {
               throw py::value_error("loss must be 'cross_entropy' or 'squared_error'");
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
           }),
           py::arg("rnn"), py::arg("n_outputs"), py::arg("loss"), py::arg("readout"), py::arg("vocab_size") = 0)
      .def_property_readonly("param_count", &ModelSpec::param_count)
      .def_property_readonly("head_offset", &ModelSpec::head_offset)
      .def_property_readonly("features", &ModelSpec::features)
      .def_property_readonly("embedding_offset", &ModelSpec::embedding_offset)
      .def_readonly("vocab_size", &ModelSpec::vocab_size);
  register_dtype<float>(m, "float32");
  register_dtype<double>(m, "float64");
}

}  // namespace rnnkit_py
