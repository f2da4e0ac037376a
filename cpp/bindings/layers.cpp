// Recurrent layers: the spec, the parameter layout, and forward / backward per dtype.
#include "rnnkit/layer.hpp"

#include <cmath>
#include <optional>
#include <string>

#include "bindings.hpp"

namespace rnnkit_py {

namespace {

using rnnkit::CellKind;
using rnnkit::Index;
using rnnkit::LayerSpec;

template <class T>
using Array = py::array_t<T, py::array::c_style>;
using Lengths = py::array_t<std::int64_t, py::array::c_style>;

CellKind parse_cell(const std::string& name) {
  if (name == "rnn_tanh") return CellKind::RnnTanh;
  if (name == "rnn_relu") return CellKind::RnnRelu;
  if (name == "lstm") return CellKind::Lstm;
  if (name == "gru") return CellKind::Gru;
  throw py::value_error("cell must be one of 'rnn_tanh', 'rnn_relu', 'lstm', 'gru', got '" + name + "'");
}

/// Throws ValueError unless `a` has exactly the shape `dims`.
template <class T>
void expect_shape(const Array<T>& a, std::initializer_list<Index> dims, const char* name) {
  bool ok = a.ndim() == static_cast<py::ssize_t>(dims.size());
  Index i = 0;
  for (const Index d : dims) {
    if (!ok) break;
    ok = a.shape(i++) == d;
  }
  if (!ok) throw py::value_error(std::string(name) + ": array has the wrong shape for this layer");
}

/// Throws ValueError if `a` holds a NaN or an infinity.
template <class T>
void expect_finite(const Array<T>& a, const char* name) {
  const T* p = a.data();
  for (py::ssize_t i = 0, n = a.size(); i < n; ++i) {
    if (!std::isfinite(p[i])) throw py::value_error(std::string(name) + " contains NaN or Inf");
  }
}

template <class T>
const T* data_or_null(const std::optional<Array<T>>& a) {
  return a ? a->data() : nullptr;
}

template <class T>
void register_dtype(py::module_& m, const std::string& suffix) {
  using Tape = rnnkit::Tape<T>;
  py::class_<Tape>(m, ("Tape_" + suffix).c_str(), py::module_local(),
                   "What a training forward keeps for backward (opaque).")
      .def_property_readonly("steps", [](const Tape& t) { return t.steps; })
      .def_property_readonly("batch", [](const Tape& t) { return t.batch; });

  m.def(("forward_" + suffix).c_str(),
        [](const LayerSpec& spec, const Array<T>& params, const Array<T>& x, bool batch_first,
           const std::optional<Array<T>>& h0, const std::optional<Array<T>>& c0,
           const std::optional<Lengths>& lengths, bool training, double dropout,
           std::uint64_t dropout_key, int n_threads) {
          if (x.ndim() != 3) throw py::value_error("x: expected a 3-D array");
          const Index steps = batch_first ? x.shape(1) : x.shape(0);
          const Index batch = batch_first ? x.shape(0) : x.shape(1);
          const Index h = spec.hidden_size, dirs = spec.directions(), states = spec.num_layers * dirs;
          expect_shape(params, {rnnkit::param_count(spec)}, "params");
          if (x.shape(2) != spec.input_size) throw py::value_error("x: last dimension must be input_size");
          if (h0) expect_shape(*h0, {states, batch, h}, "h0");
          if (c0) expect_shape(*c0, {states, batch, h}, "c0");
          if (lengths) expect_shape(*lengths, {batch}, "lengths");

          const bool lstm = spec.cell == CellKind::Lstm;
          Array<T> out(batch_first ? std::vector<py::ssize_t>{batch, steps, dirs * h}
                                   : std::vector<py::ssize_t>{steps, batch, dirs * h});
          Array<T> h_n({states, batch, h});
          std::optional<Array<T>> c_n;
          if (lstm) c_n.emplace(std::vector<py::ssize_t>{states, batch, h});

          rnnkit::ForwardArgs<T> args;
          args.params = params.data();
          args.x = x.data();
          args.steps = steps;
          args.batch = batch;
          args.h0 = data_or_null(h0);
          args.c0 = data_or_null(c0);
          args.lengths = lengths ? lengths->data() : nullptr;
          args.out = out.mutable_data();
          args.h_n = h_n.mutable_data();
          args.c_n = c_n ? c_n->mutable_data() : nullptr;
          rnnkit::ForwardOptions options;
          options.batch_first = batch_first;
          options.training = training;
          options.dropout = dropout;
          options.dropout_key = dropout_key;
          options.n_threads = n_threads;

          std::unique_ptr<Tape> tape;
          {
            py::gil_scoped_release release;
            tape = rnnkit::forward(spec, args, options);
          }
          py::object c_obj = c_n ? py::object(*c_n) : py::object(py::none());
          py::object tape_obj = tape ? py::cast(std::move(tape)) : py::object(py::none());
          return py::make_tuple(out, h_n, c_obj, tape_obj);
        },
        py::arg("spec"), py::arg("params"), py::arg("x"), py::arg("batch_first"), py::arg("h0"),
        py::arg("c0"), py::arg("lengths"), py::arg("training"), py::arg("dropout"),
        py::arg("dropout_key"), py::arg("n_threads"),
        "Runs the stack. Returns (out, h_n, c_n or None, tape or None).");

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
          // Checked here rather than in Python: at batch 1 a numpy call per array costs more than the step.
          expect_finite(x, "x");
          if (h0) expect_finite(*h0, "h0");
          if (c0) expect_finite(*c0, "c0");
          const bool lstm = spec.cell == CellKind::Lstm;
          Array<T> out({batch, h});
          Array<T> h_n({layers, batch, h});
          std::optional<Array<T>> c_n;
          if (lstm) c_n.emplace(std::vector<py::ssize_t>{layers, batch, h});
          rnnkit::StepArgs<T> args;
          args.params = params.data();
          args.x = x.data();
          args.batch = batch;
          args.h0 = data_or_null(h0);
          args.c0 = lstm ? data_or_null(c0) : nullptr;
          args.out = out.mutable_data();
          args.h_n = h_n.mutable_data();
          args.c_n = c_n ? c_n->mutable_data() : nullptr;
          {
            py::gil_scoped_release release;
            rnnkit::step(spec, args, workspace, n_threads);
          }
          py::object c_obj = c_n ? py::object(*c_n) : py::object(py::none());
          return py::make_tuple(out, h_n, c_obj);
        },
        py::arg("spec"), py::arg("params"), py::arg("x"), py::arg("h0"), py::arg("c0"), py::arg("workspace"),
        py::arg("n_threads"), "One step of a unidirectional stack. Returns (out, h_n, c_n or None).");

  m.def(("backward_" + suffix).c_str(),
        [](const Tape& tape, const Array<T>& params, const std::optional<Array<T>>& grad_out,
           const std::optional<Array<T>>& grad_h_n, const std::optional<Array<T>>& grad_c_n,
           Array<T>& grad_params, int n_threads) {
          const LayerSpec& spec = tape.spec;
          const Index steps = tape.steps, batch = tape.batch, h = spec.hidden_size;
          const Index dirs = spec.directions(), states = spec.num_layers * dirs;
          expect_shape(params, {rnnkit::param_count(spec)}, "params");
          expect_shape(grad_params, {rnnkit::param_count(spec)}, "grad_params");
          if (grad_out) {
            if (tape.batch_first) {
              expect_shape(*grad_out, {batch, steps, dirs * h}, "grad_out");
            } else {
              expect_shape(*grad_out, {steps, batch, dirs * h}, "grad_out");
            }
          }
          if (grad_h_n) expect_shape(*grad_h_n, {states, batch, h}, "grad_h_n");
          if (grad_c_n) expect_shape(*grad_c_n, {states, batch, h}, "grad_c_n");

          const bool lstm = spec.cell == CellKind::Lstm;
          Array<T> grad_x(tape.batch_first ? std::vector<py::ssize_t>{batch, steps, spec.input_size}
                                           : std::vector<py::ssize_t>{steps, batch, spec.input_size});
          Array<T> grad_h0({states, batch, h});
          std::optional<Array<T>> grad_c0;
          if (lstm) grad_c0.emplace(std::vector<py::ssize_t>{states, batch, h});

          rnnkit::BackwardArgs<T> args;
          args.params = params.data();
          args.grad_out = data_or_null(grad_out);
          args.grad_h_n = data_or_null(grad_h_n);
          args.grad_c_n = lstm ? data_or_null(grad_c_n) : nullptr;
          args.grad_x = grad_x.mutable_data();
          args.grad_h0 = grad_h0.mutable_data();
          args.grad_c0 = grad_c0 ? grad_c0->mutable_data() : nullptr;
          args.grad_params = grad_params.mutable_data();
          {
            py::gil_scoped_release release;
            rnnkit::backward(tape, args, n_threads);
          }
          py::object gc = grad_c0 ? py::object(*grad_c0) : py::object(py::none());
          return py::make_tuple(grad_x, grad_h0, gc);
        },
        py::arg("tape"), py::arg("params"), py::arg("grad_out"), py::arg("grad_h_n"),
        py::arg("grad_c_n"), py::arg("grad_params").noconvert(), py::arg("n_threads"),
        "Back-propagates through time; adds parameter gradients into grad_params. "
        "Returns (grad_x, grad_h0, grad_c0 or None).");
}

}  // namespace

void register_layers(py::module_& m) {
  py::class_<LayerSpec>(m, "LayerSpec", py::module_local(), "A stack of recurrent layers.")
      .def(py::init([](const std::string& cell, Index input_size, Index hidden_size, Index num_layers,
                       bool bidirectional, bool bias) {
             LayerSpec s;
             s.cell = parse_cell(cell);
             s.input_size = input_size;
             s.hidden_size = hidden_size;
             s.num_layers = num_layers;
             s.bidirectional = bidirectional;
             s.bias = bias;
             s.validate();
             return s;
           }),
           py::arg("cell"), py::arg("input_size"), py::arg("hidden_size"), py::arg("num_layers"),
           py::arg("bidirectional"), py::arg("bias"))
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
