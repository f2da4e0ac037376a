// The trainable model (stack + dense head + loss) used by the estimators.
#include "rnnkit/model.hpp"

#include <optional>
#include <string>

#include "bindings.hpp"
#include "model_calls.hpp"
#include "workspaces.hpp"

namespace rnnkit_py {

namespace {

using rnnkit::Index;
using rnnkit::ModelSpec;

template <class T>
using Array = py::array_t<T, py::array::c_style>;

template <class T>
void register_dtype(py::module_& m, const std::string& suffix) {
  using Workspace = rnnkit::ModelWorkspace<T>;
  py::class_<Workspace>(m, ("ModelWorkspace_" + suffix).c_str(), py::module_local(),
                        "Memory reused by model calls (opaque); one call at a time.")
      .def(py::init<>())
      .def_property_readonly("nbytes", &workspace_bytes<T>, "Memory the workspace holds, in bytes.");

  m.def(("model_predict_" + suffix).c_str(),
        [](const ModelSpec& spec, const Array<T>& params, const py::array& x, const std::optional<Ints>& lengths,
           int n_threads, py::object workspace) {
          expect_param_count(spec, params, "params");
          const auto b = batch_of<T>(spec, x, lengths);
          Array<T> out(output_shape(spec, b));
          T* o = out.mutable_data();
          auto [claimed, lock] = claim<Workspace>(std::move(workspace));
          Workspace& ws = claimed.template cast<Workspace&>();
          {
            py::gil_scoped_release release;
            rnnkit::predict(spec, params.data(), b, o, n_threads, ws);
          }
          return out;
        },
        py::arg("spec"), py::arg("params"), py::arg("x"), py::arg("lengths"), py::arg("n_threads"),
        py::arg("workspace") = py::none(),
        "Model outputs; `workspace` (a ModelWorkspace or None) is memory to reuse.");

  m.def(("model_loss_and_grad_" + suffix).c_str(),
        [](const ModelSpec& spec, const Array<T>& params, const py::array& x, const std::optional<Ints>& lengths,
           const std::optional<Ints>& labels, const std::optional<Array<T>>& values, Array<T>& grads,
           double dropout, std::uint64_t dropout_key, int n_threads, py::object workspace) {
          expect_param_count(spec, params, "params");
          expect_param_count(spec, grads, "grads");
          const auto b = batch_of<T>(spec, x, lengths);
          const rnnkit::Targets<T> targets = targets_of<T>(spec, b, labels, values);
          T* g = grads.mutable_data();
          auto [claimed, lock] = claim<Workspace>(std::move(workspace));
          Workspace& ws = claimed.template cast<Workspace&>();
          py::gil_scoped_release release;
          return rnnkit::loss_and_grad(spec, params.data(), b, targets, g, dropout, dropout_key, n_threads, ws);
        },
        py::arg("spec"), py::arg("params"), py::arg("x"), py::arg("lengths"), py::arg("labels"),
        py::arg("values"), py::arg("grads").noconvert(), py::arg("dropout"), py::arg("dropout_key"),
        py::arg("n_threads"), py::arg("workspace") = py::none(),
        "Mean loss and its gradient (into grads); `workspace` (a ModelWorkspace or None) is memory to reuse.");
}

}  // namespace

void register_model(py::module_& m) {
  py::class_<ModelSpec>(m, "ModelSpec", py::module_local(), "A recurrent stack with a dense head and a loss.")
      .def(py::init([](const rnnkit::LayerSpec& rnn, Index n_outputs, const std::string& loss,
                       const std::string& readout, Index vocab_size) {
             return model_spec_of(rnn, n_outputs, loss, readout, vocab_size);
           }),
           py::arg("rnn"), py::arg("n_outputs"), py::arg("loss"), py::arg("readout"), py::arg("vocab_size") = 0)
      .def_readonly("rnn", &ModelSpec::rnn)
      .def_readonly("n_outputs", &ModelSpec::n_outputs)
      .def_property_readonly("loss", [](const ModelSpec& s) {
        return s.loss == rnnkit::Loss::SoftmaxCrossEntropy ? "cross_entropy" : "squared_error";
      })
      .def_property_readonly("readout", [](const ModelSpec& s) {
        return s.readout == rnnkit::Readout::Last ? "last" : "sequence";
      })
      .def_property_readonly("param_count", &ModelSpec::param_count)
      .def_property_readonly("head_offset", &ModelSpec::head_offset)
      .def_property_readonly("features", &ModelSpec::features)
      .def_property_readonly("embedding_offset", &ModelSpec::embedding_offset)
      .def_readonly("vocab_size", &ModelSpec::vocab_size);
  register_dtype<float>(m, "float32");
  register_dtype<double>(m, "float64");
}

}  // namespace rnnkit_py
