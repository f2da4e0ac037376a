// The trainable model (stack + dense head + loss) used by the estimators.
#include "rnnkit/model.hpp"

#include <memory>
#include <mutex>
#include <optional>
#include <type_traits>
#include <vector>
#include <string>

#include "bindings.hpp"
#include "layer_calls.hpp"
#include "model_calls.hpp"
#include "workspaces.hpp"

namespace rnnkit_py {

namespace {

using rnnkit::Index;
using rnnkit::ModelSpec;

/// One step of a model on plain arrays (see model_step_* below); None where the arguments need
/// the Python side's conversions and checks.
template <class T, class X>
py::object model_step(const ModelSpec& spec, const Array<T>& params, const Array<X>& x, py::handle state_obj,
                      const Array<double>& x_mean, const Array<double>& x_scale,
                      const std::optional<Array<double>>& y_mean, const std::optional<Array<double>>& y_scale,
                      rnnkit::ModelStepWorkspace<T>& workspace, int n_threads) {
  const Index D = spec.rnn.input_size, H = spec.rnn.hidden_size, L = spec.rnn.num_layers, K = spec.n_outputs;
  const bool unbatched = x.ndim() == 1, lstm = spec.rnn.cell == rnnkit::CellKind::Lstm;
  if (x.ndim() < 1 || x.ndim() > 2 || x.shape(x.ndim() - 1) != D || x.size() == 0 || spec.rnn.bidirectional ||
      spec.vocab_size > 0) {
    return py::none();
  }
  expect_param_count(spec, params, "params");
  expect_shape(x_mean, {D}, "x_mean");
  expect_shape(x_scale, {D}, "x_scale");
  if (y_mean) expect_shape(*y_mean, {K}, "y_mean");
  if (y_scale) expect_shape(*y_scale, {K}, "y_scale");
  const Index B = unbatched ? 1 : x.shape(0);
  const std::optional<PlainState<T>> state =
      unbatched ? plain_state<T>(state_obj, lstm, {L, H}) : plain_state<T>(state_obj, lstm, {L, B, H});
  if (!state) return py::none();
  if (state->h != nullptr) expect_finite(state->h, L * B * H, "state");
  if (state->c != nullptr) expect_finite(state->c, L * B * H, "state");

  using Shape = std::vector<py::ssize_t>;
  Array<T> out(unbatched ? Shape{K} : Shape{B, K});
  const Shape state_shape = unbatched ? Shape{L, H} : Shape{L, B, H};
  Array<T> h_n(state_shape);
  std::optional<Array<T>> c_n;
  if (lstm) c_n.emplace(state_shape);
  rnnkit::StepArgs<T> args;
  args.batch = B;
  args.h0 = state->h;
  args.c0 = state->c;
  args.h_n = h_n.mutable_data();
  args.c_n = c_n ? c_n->mutable_data() : nullptr;
  const rnnkit::StepInput<T, X> input{x.data(), x_mean.data(), x_scale.data()};
  {
    // Calls from other threads bring their own workspaces; should two share one, the second
    // gets a fresh one instead of waiting with the GIL held.
    std::unique_lock<std::mutex> lock(workspace.busy, std::try_to_lock);
    std::unique_ptr<rnnkit::ModelStepWorkspace<T>> fresh;
    if (!lock.owns_lock()) fresh = std::make_unique<rnnkit::ModelStepWorkspace<T>>();
    py::gil_scoped_release release;
    rnnkit::predict_step(spec, params.data(), input, args, out.mutable_data(), n_threads,
                         fresh ? *fresh : workspace);
  }
  py::object result = out;
  if (y_mean && y_scale) {  // back to the targets' scale, in double
    Array<double> y(unbatched ? Shape{K} : Shape{B, K});
    const T* raw = out.data();
    double* v = y.mutable_data();
    const double *scale = y_scale->data(), *shift = y_mean->data();
    for (Index b = 0; b < B; ++b) {
      for (Index k = 0; k < K; ++k) v[b * K + k] = static_cast<double>(raw[b * K + k]) * scale[k] + shift[k];
    }
    result = y;
  }
  py::object new_state = lstm ? py::object(py::make_tuple(h_n, *c_n)) : py::object(h_n);
  return py::make_tuple(result, new_state);
}

template <class T>
void register_dtype(py::module_& m, const std::string& suffix) {
  using Workspace = rnnkit::ModelWorkspace<T>;
  py::class_<Workspace>(m, ("ModelWorkspace_" + suffix).c_str(), py::module_local(),
                        "Memory reused by model calls (opaque); one call at a time.")
      .def(py::init<>())
      .def_property_readonly("nbytes", &workspace_bytes<T>, "Memory the workspace holds, in bytes.");

  m.def(("model_predict_" + suffix).c_str(),
        [](const ModelSpec& spec, const Array<T>& params, const py::array& x_in, const std::optional<Ints>& lengths,
           int n_threads, py::object workspace, bool frozen_weights, const std::optional<Array<double>>& x_mean,
           const std::optional<Array<double>>& x_scale) -> py::object {
          expect_param_count(spec, params, "params");
          py::array x = x_in;
          if (x_mean && x_scale) {  // the estimators' input scaling, here rather than in numpy
            const auto b = batch_of<T>(spec, x_in, lengths);  // checks x: (B, T, D) of T
            const Index D = spec.rnn.input_size;
            expect_shape(*x_mean, {D}, "x_mean");
            expect_shape(*x_scale, {D}, "x_scale");
            Array<T> scaled(std::vector<py::ssize_t>{b.batch, b.steps, D});
            if (!rnnkit::standardise(b.x, b.batch * b.steps, D, x_mean->data(), x_scale->data(),
                                     scaled.mutable_data())) {
              return py::none();  // not finite once scaled: the caller says why
            }
            x = std::move(scaled);
          }
          const auto b = batch_of<T>(spec, x, lengths);
          Array<T> out(output_shape(spec, b));
          T* o = out.mutable_data();
          // Only for a read-only array: a converted copy (writeable) is never trusted by address.
          const bool frozen = frozen_weights && !params.writeable();
          auto [claimed, lock] = claim<Workspace>(std::move(workspace));
          Workspace& ws = claimed.template cast<Workspace&>();
          {
            py::gil_scoped_release release;
            rnnkit::predict(spec, params.data(), b, o, n_threads, ws, frozen);
          }
          return std::move(out);
        },
        py::arg("spec"), py::arg("params"), py::arg("x"), py::arg("lengths"), py::arg("n_threads"),
        py::arg("workspace") = py::none(), py::arg("frozen_weights") = false, py::arg("x_mean") = py::none(),
        py::arg("x_scale") = py::none(),
        "Model outputs; `workspace` (a ModelWorkspace or None) is memory to reuse; `frozen_weights`: the "
        "caller promises that `params` (read-only) never changes (its packed weights are kept by address). "
        "With x_mean and x_scale, x is first standardised ((x - mean) / scale in float64, then the dtype), "
        "and None is returned where a value is not finite after that.");

  using StepWorkspace = rnnkit::ModelStepWorkspace<T>;
  py::class_<StepWorkspace>(m, ("ModelStepWorkspace_" + suffix).c_str(), py::module_local(),
                            "Memory reused by model_step calls (opaque).")
      .def(py::init<>());

  m.def(("model_step_" + suffix).c_str(),
        [](const ModelSpec& spec, const Array<T>& params, py::handle x, py::handle state, const Array<double>& x_mean,
           const Array<double>& x_scale, const std::optional<Array<double>>& y_mean,
           const std::optional<Array<double>>& y_scale, StepWorkspace& workspace, int n_threads) -> py::object {
          if (const auto xd = plain_array<double>(x)) {
            return model_step<T, double>(spec, params, *xd, state, x_mean, x_scale, y_mean, y_scale, workspace,
                                         n_threads);
          }
          if constexpr (!std::is_same_v<T, double>) {
            if (const auto xt = plain_array<T>(x)) {
              return model_step<T, T>(spec, params, *xt, state, x_mean, x_scale, y_mean, y_scale, workspace,
                                      n_threads);
            }
          }
          return py::none();
        },
        py::arg("spec"), py::arg("params"), py::arg("x"), py::arg("state"), py::arg("x_mean"), py::arg("x_scale"),
        py::arg("y_mean"), py::arg("y_scale"), py::arg("workspace"), py::arg("n_threads"),
        "One more time step of each stream of a unidirectional real-valued-input model: x (B, D) or (D,) of "
        "float64 or the model's dtype, standardised with x_mean / x_scale; state None, (L, B, H) / (L, H) arrays "
        "or for LSTM a tuple of two. Returns (outputs, state): class probabilities in the model's dtype, or with "
        "y_mean / y_scale the predictions on the targets' scale in float64. None for arguments that need "
        "conversion. Raises ValueError for NaN/Inf.");

  m.def(("model_loss_and_grad_" + suffix).c_str(),
        [](const ModelSpec& spec, const Array<T>& params, const py::array& x, const std::optional<Ints>& lengths,
           const std::optional<Ints>& labels, const std::optional<Array<T>>& values, Array<T>& grads,
           double dropout, std::uint64_t dropout_key, int n_threads, py::object workspace,
           const std::optional<Array<T>>& weights) {
          expect_param_count(spec, params, "params");
          expect_param_count(spec, grads, "grads");
          const auto b = batch_of<T>(spec, x, lengths);
          const rnnkit::Targets<T> targets = targets_of<T>(spec, b, labels, values, weights);
          T* g = grads.mutable_data();
          auto [claimed, lock] = claim<Workspace>(std::move(workspace));
          Workspace& ws = claimed.template cast<Workspace&>();
          py::gil_scoped_release release;
          return rnnkit::loss_and_grad(spec, params.data(), b, targets, g, dropout, dropout_key, n_threads, ws);
        },
        py::arg("spec"), py::arg("params"), py::arg("x"), py::arg("lengths"), py::arg("labels"),
        py::arg("values"), py::arg("grads").noconvert(), py::arg("dropout"), py::arg("dropout_key"),
        py::arg("n_threads"), py::arg("workspace") = py::none(), py::arg("weights") = py::none(),
        "Mean loss and its gradient (into grads); `workspace` (a ModelWorkspace or None) is memory to reuse; "
        "`weights` (one per output row, as the labels; the model's dtype) or None weigh the rows' losses.");
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
      .def_property_readonly("loss", [](const ModelSpec& s) { return loss_name(s.loss); })
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
