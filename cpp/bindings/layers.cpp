// Recurrent layers: the spec, the parameter layout, and forward / backward per dtype.
#include "rnnkit/layer.hpp"

#include <cmath>
#include <mutex>
#include <optional>
#include <string>

#include "bindings.hpp"
#include "layer_calls.hpp"
#include "workspaces.hpp"

namespace rnnkit_py {

namespace {

using rnnkit::CellKind;
using rnnkit::Index;
using rnnkit::LayerSpec;

/// The arrays one step returns.
template <class T>
struct StepResult {
  Array<T> out, h_n;
  std::optional<Array<T>> c_n;  // LSTM only
  py::object c_or_none() const { return c_n ? py::object(*c_n) : py::object(py::none()); }
};

/// One step of a unidirectional stack on checked arrays.
template <class T>
StepResult<T> run_step(const LayerSpec& spec, const Array<T>& params, const Array<T>& x, const T* h0, const T* c0,
                   rnnkit::StepWorkspace<T>& workspace, int n_threads) {
  const Index batch = x.shape(0), h = spec.hidden_size, layers = spec.num_layers;
  // Checked here rather than in Python: at batch 1 a numpy call per array costs more than the step.
  expect_finite(x, "x");
  const Index state_size = layers * batch * h;
  if (h0 != nullptr) expect_finite(h0, state_size, "h0");
  if (c0 != nullptr) expect_finite(c0, state_size, "c0");
  const bool lstm = spec.cell == CellKind::Lstm;
  StepResult<T> r{Array<T>({batch, h}), Array<T>({layers, batch, h}), std::nullopt};
  if (lstm) r.c_n.emplace(std::vector<py::ssize_t>{layers, batch, h});
  rnnkit::StepArgs<T> args;
  args.params = params.data();
  args.x = x.data();
  args.batch = batch;
  args.h0 = h0;
  args.c0 = lstm ? c0 : nullptr;
  args.out = r.out.mutable_data();
  args.h_n = r.h_n.mutable_data();
  args.c_n = r.c_n ? r.c_n->mutable_data() : nullptr;
  {
    py::gil_scoped_release release;
    rnnkit::step(spec, args, workspace, n_threads);
  }
  return r;
}

template <class T>
void register_dtype(py::module_& m, const std::string& suffix) {
  using Tape = rnnkit::Tape<T>;
  py::class_<Tape>(m, ("Tape_" + suffix).c_str(), py::module_local(),
                   "What a training forward keeps for backward, and the memory a call reuses (opaque).")
      .def(py::init<>())
      .def_property_readonly("steps", [](const Tape& t) { return t.steps; })
      .def_property_readonly("batch", [](const Tape& t) { return t.batch; })
      .def_property_readonly("nbytes", &tape_bytes<T>, "Memory the tape holds, in bytes.");

  m.def(("forward_" + suffix).c_str(),
        [](const LayerSpec& spec, const Array<T>& params, const Array<T>& x, bool batch_first,
           const std::optional<Array<T>>& h0, const std::optional<Array<T>>& c0,
           const std::optional<Lengths>& lengths, bool training, double dropout,
           std::uint64_t dropout_key, int n_threads, py::object tape_obj, bool frozen_weights) {
          ForwardCall<T> call(spec, params, x, batch_first, h0, c0, lengths, training, dropout, dropout_key, true);
          call.options.n_threads = n_threads;
          // Only for a read-only array: a converted copy (writeable) is never trusted by address.
          call.options.frozen_weights = frozen_weights && !params.writeable();
          auto [claimed, lock] = claim<Tape>(std::move(tape_obj));
          Tape& tape = claimed.template cast<Tape&>();
          {
            py::gil_scoped_release release;
            rnnkit::forward(spec, call.args, call.options, tape);
          }
          lock.unlock();
          return call.result(std::move(claimed));
        },
        py::arg("spec"), py::arg("params"), py::arg("x"), py::arg("batch_first"), py::arg("h0"),
        py::arg("c0"), py::arg("lengths"), py::arg("training"), py::arg("dropout"),
        py::arg("dropout_key"), py::arg("n_threads"), py::arg("tape") = py::none(),
        py::arg("frozen_weights") = false,
        "Runs the stack into `tape` (a Tape to reuse, whose memory is kept between calls, or None "
        "for a new one). Returns (out, h_n, c_n or None, tape); the tape serves backward when "
        "`training`; a training call's out (time-major, unidirectional) may hold the states it reads, so "
        "keep out until backward (changing it is allowed: backward then recomputes them). "
        "A tape must not be used by two calls at once. `frozen_weights`: the caller "
        "promises that `params` (read-only) never changes, so that an inference call trusts the "
        "tape's packed weights by their address instead of comparing them with a copy.");

  using Workspace = rnnkit::StepWorkspace<T>;
  py::class_<Workspace>(m, ("StepWorkspace_" + suffix).c_str(), py::module_local(),
                        "Scratch memory reused by step() calls (opaque).")
      .def(py::init<>());

  m.def(("step_" + suffix).c_str(),
        [](const LayerSpec& spec, const Array<T>& params, const Array<T>& x, const std::optional<Array<T>>& h0,
           const std::optional<Array<T>>& c0, Workspace& workspace, int n_threads) {
          if (x.ndim() != 2 || x.shape(1) != spec.input_size) throw py::value_error("x: expected a (B, input_size) array");
          const Index batch = x.shape(0), h = spec.hidden_size, layers = spec.num_layers;
          expect_shape(params, {rnnkit::param_count(spec)}, "params");
          if (h0) expect_shape(*h0, {layers, batch, h}, "h0");
          if (c0) expect_shape(*c0, {layers, batch, h}, "c0");
          const StepResult<T> r = run_step(spec, params, x, data_or_null(h0), data_or_null(c0), workspace, n_threads);
          return py::make_tuple(r.out, r.h_n, r.c_or_none());
        },
        py::arg("spec"), py::arg("params"), py::arg("x"), py::arg("h0"), py::arg("c0"), py::arg("workspace"),
        py::arg("n_threads"), "One step of a unidirectional stack. Returns (out, h_n, c_n or None).");

  // The streaming loop's call: every check in C++ (at batch 1 Python's own checks cost about
  // as much as an LSTM step at H = 64), and the result in the layer's (y, state) form.
  m.def(("step_fast_" + suffix).c_str(),
        [](const LayerSpec& spec, const Array<T>& params, py::handle x_obj, py::handle state_obj, Workspace& workspace,
           int n_threads) -> py::object {
          const bool lstm = spec.cell == CellKind::Lstm;
          const Index layers = spec.num_layers, h = spec.hidden_size;
          const std::optional<Array<T>> x = plain_array<T>(x_obj);
          if (!x || x->ndim() != 2 || x->shape(1) != spec.input_size || x->shape(0) < 1 ||
              spec.bidirectional || params.size() != rnnkit::param_count(spec)) {
            return py::none();
          }
          const Index batch = x->shape(0);
          const std::optional<PlainState<T>> state = plain_state<T>(state_obj, lstm, {layers, batch, h});
          if (!state) return py::none();
          const StepResult<T> r = run_step(spec, params, *x, state->h, state->c, workspace, n_threads);
          if (lstm) return py::make_tuple(r.out, py::make_tuple(r.h_n, *r.c_n));
          return py::make_tuple(r.out, r.h_n);
        },
        py::arg("spec"), py::arg("params"), py::arg("x"), py::arg("state"), py::arg("workspace"), py::arg("n_threads"),
        "step() for arguments that need no conversion: C-contiguous aligned arrays of the dtype, x (B, input_size), "
        "the state (L, B, H) or for LSTM a tuple of two. Returns (y, state), or None for other arguments. Raises "
        "ValueError for NaN/Inf.");

  m.def(("backward_" + suffix).c_str(),
        [](Tape& tape, const Array<T>& params, const std::optional<Array<T>>& grad_out,
           const std::optional<Array<T>>& grad_h_n, const std::optional<Array<T>>& grad_c_n,
           Array<T>& grad_params, bool accumulate, int n_threads) {
          BackwardCall<T> call(tape.spec, tape.steps, tape.batch, tape.batch_first, params, grad_out, grad_h_n,
                               grad_c_n, grad_params, accumulate);
          {
            py::gil_scoped_release release;
            const std::lock_guard<std::mutex> lock(tape.busy);  // a forward may be refilling it
            rnnkit::backward(tape, call.args, n_threads);
          }
          return call.result();
        },
        py::arg("tape"), py::arg("params"), py::arg("grad_out"), py::arg("grad_h_n"),
        py::arg("grad_c_n"), py::arg("grad_params").noconvert(), py::arg("accumulate"), py::arg("n_threads"),
        "Back-propagates through time; adds parameter gradients into grad_params (cleared first, once "
        "the arguments are checked, unless `accumulate`). "
        "Returns (grad_x, grad_h0, grad_c0 or None).");
}

}  // namespace

void register_layers(py::module_& m) {
  py::class_<LayerSpec>(m, "LayerSpec", py::module_local(), "A stack of recurrent layers.")
      .def(py::init([](const std::string& cell, Index input_size, Index hidden_size, Index num_layers,
                       bool bidirectional, bool bias) {
             return layer_spec_of(cell, input_size, hidden_size, num_layers, bidirectional, bias);
           }),
           py::arg("cell"), py::arg("input_size"), py::arg("hidden_size"), py::arg("num_layers"),
           py::arg("bidirectional"), py::arg("bias"))
      .def_property_readonly("cell", [](const LayerSpec& s) { return cell_name(s.cell); })
      .def_readonly("input_size", &LayerSpec::input_size)
      .def_readonly("hidden_size", &LayerSpec::hidden_size)
      .def_readonly("num_layers", &LayerSpec::num_layers)
      .def_readonly("bidirectional", &LayerSpec::bidirectional)
      .def_readonly("bias", &LayerSpec::bias)
      .def_property_readonly("gates", &LayerSpec::gates);

  m.def("param_layout",
        [](const LayerSpec& spec) {
          py::list out;
          for (const auto& p : rnnkit::param_layout(spec)) {
            py::tuple shape = p.cols == 0 ? py::tuple(py::make_tuple(p.rows)) : py::tuple(py::make_tuple(p.rows, p.cols));
            out.append(py::make_tuple(p.name, p.offset, shape));
          }
          return out;
        },
        py::arg("spec"), "[(name, offset, shape)] in PyTorch's state_dict order.");
  m.def("param_count", &rnnkit::param_count, py::arg("spec"));

  register_dtype<float>(m, "float32");
  register_dtype<double>(m, "float64");
}

}  // namespace rnnkit_py
