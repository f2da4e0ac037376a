// Argument checking and result arrays of the forward / backward calls, shared by the CPU
// module's bindings and the device modules' (rnnkit._cuda, rnnkit._device_host): both take
// the same numpy arrays and fill the same rnnkit::ForwardArgs / BackwardArgs.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "bindings.hpp"
#include "rnnkit/layer_args.hpp"
#include "rnnkit/spec.hpp"

namespace rnnkit_py {

template <class T>
using Array = py::array_t<T, py::array::c_style>;
using Lengths = py::array_t<std::int64_t, py::array::c_style>;

inline rnnkit::CellKind parse_cell(const std::string& name) {
  using rnnkit::CellKind;
  if (name == "rnn_tanh") return CellKind::RnnTanh;
  if (name == "rnn_relu") return CellKind::RnnRelu;
  if (name == "lstm") return CellKind::Lstm;
  if (name == "gru") return CellKind::Gru;
  throw py::value_error("cell must be one of 'rnn_tanh', 'rnn_relu', 'lstm', 'gru', got '" + name + "'");
}

/// The Python-side name of a cell.
inline std::string cell_name(rnnkit::CellKind cell) {
  switch (cell) {
    case rnnkit::CellKind::RnnTanh: return "rnn_tanh";
    case rnnkit::CellKind::RnnRelu: return "rnn_relu";
    case rnnkit::CellKind::Lstm: return "lstm";
    case rnnkit::CellKind::Gru: return "gru";
  }
  return "";
}

/// A validated LayerSpec from the Python-side cell name and sizes.
inline rnnkit::LayerSpec layer_spec_of(const std::string& cell, rnnkit::Index input_size, rnnkit::Index hidden_size,
                                       rnnkit::Index num_layers, bool bidirectional, bool bias) {
  rnnkit::LayerSpec s;
  s.cell = parse_cell(cell);
  s.input_size = input_size;
  s.hidden_size = hidden_size;
  s.num_layers = num_layers;
  s.bidirectional = bidirectional;
  s.bias = bias;
  s.validate();
  return s;
}

/// `obj` as a C-contiguous, aligned array of T, or nothing (it would need a conversion).
template <class T>
std::optional<Array<T>> plain_array(py::handle obj) {
  if (!Array<T>::check_(obj)) return std::nullopt;
  auto arr = py::reinterpret_borrow<Array<T>>(obj);
  constexpr int kAligned = py::detail::npy_api::NPY_ARRAY_ALIGNED_;
  if ((arr.flags() & kAligned) == 0) return std::nullopt;
  return arr;
}

/// A streaming state's data: h, and c for an LSTM (nullptr: zeros).
template <class T>
struct PlainState {
  const T* h = nullptr;
  const T* c = nullptr;
};

/// The state a step call was given (None, an array, or for an LSTM a tuple (h, c)) when each
/// array is a plain_array of exactly the shape `dims`, else nothing (it needs the checks and
/// conversions of the Python side). The data stay alive through the caller's references.
template <class T>
std::optional<PlainState<T>> plain_state(py::handle state, bool lstm, std::initializer_list<rnnkit::Index> dims) {
  PlainState<T> s;
  if (state.is_none()) return s;
  auto data = [&](py::handle a) -> const T* {
    const std::optional<Array<T>> arr = plain_array<T>(a);
    if (!arr || arr->ndim() != static_cast<py::ssize_t>(dims.size())) return nullptr;
    py::ssize_t i = 0;
    for (const rnnkit::Index d : dims) {
      if (arr->shape(i++) != d) return nullptr;
    }
    return arr->data();
  };
  if (lstm) {
    if (!PyTuple_CheckExact(state.ptr()) || PyTuple_GET_SIZE(state.ptr()) != 2) return std::nullopt;
    s.h = data(PyTuple_GET_ITEM(state.ptr(), 0));
    s.c = data(PyTuple_GET_ITEM(state.ptr(), 1));
    if (s.h == nullptr || s.c == nullptr) return std::nullopt;
  } else {
    s.h = data(state);
    if (s.h == nullptr) return std::nullopt;
  }
  return s;
}

/// Throws ValueError unless `a` has exactly the shape `dims`.
template <class A>
void expect_shape(const A& a, std::initializer_list<rnnkit::Index> dims, const char* name) {
  bool ok = a.ndim() == static_cast<py::ssize_t>(dims.size());
  rnnkit::Index i = 0;
  for (const rnnkit::Index d : dims) {
    if (!ok) break;
    ok = a.shape(i++) == d;
  }
  if (!ok) throw py::value_error(std::string(name) + ": array has the wrong shape for this layer");
}

/// Throws ValueError if one of the `n` values at `p` is a NaN or an infinity.
template <class T>
void expect_finite(const T* p, py::ssize_t n, const char* name) {
  // v - v is 0 for a finite v and NaN for NaN or +-Inf: a branch-free pass that vectorises
  // (an early-exit isfinite loop does not), as fast as numpy's isfinite().all() on large inputs.
  // (An int accumulator: with a bool one GCC 12 leaves the loop scalar, 6x slower.)
  int bad = 0;
  for (py::ssize_t i = 0; i < n; ++i) bad |= (p[i] - p[i]) != T(0);
  if (bad) throw py::value_error(std::string(name) + " contains NaN or Inf");
}

/// Throws ValueError if `a` holds a NaN or an infinity.
template <class T>
void expect_finite(const Array<T>& a, const char* name) {
  expect_finite(a.data(), a.size(), name);
}

template <class A>
auto data_or_null(const std::optional<A>& a) -> decltype(a->data()) {
  return a ? a->data() : nullptr;
}

/// A checked forward call: its arguments and the arrays it fills.
template <class T>
struct ForwardCall {
  Array<T> out, h_n;
  std::optional<Array<T>> c_n;
  rnnkit::ForwardArgs<T> args;
  rnnkit::ForwardOptions options;

  /// `states_slot`: for a training call in time-major order, `out` is a view into a buffer one
  /// step longer, aligned, whose first step the call may use (ForwardOptions::out_keeps_states);
  /// the caller keeps `out` until its backward.
  ForwardCall(const rnnkit::LayerSpec& spec, const Array<T>& params, const Array<T>& x, bool batch_first,
              const std::optional<Array<T>>& h0, const std::optional<Array<T>>& c0,
              const std::optional<Lengths>& lengths, bool training, double dropout, std::uint64_t dropout_key,
              bool states_slot = false) {
    using rnnkit::Index;
    if (x.ndim() != 3) throw py::value_error("x: expected a 3-D array");
    const Index steps = batch_first ? x.shape(1) : x.shape(0);
    const Index batch = batch_first ? x.shape(0) : x.shape(1);
    const Index h = spec.hidden_size, dirs = spec.directions(), states = spec.num_layers * dirs;
    expect_shape(params, {rnnkit::param_count(spec)}, "params");
    if (x.shape(2) != spec.input_size) throw py::value_error("x: last dimension must be input_size");
    if (h0) expect_shape(*h0, {states, batch, h}, "h0");
    if (c0) expect_shape(*c0, {states, batch, h}, "c0");
    if (lengths) expect_shape(*lengths, {batch}, "lengths");
    expect_finite(x, "x");  // here rather than in Python: numpy's check costs 1.7 us at batch 1

    options.out_keeps_states = states_slot && training && !batch_first && dirs == 1 &&
                               steps * batch * h >= rnnkit::kMinStatesInCallerOutput;
    if (options.out_keeps_states) {
      constexpr std::size_t bytes = rnnkit::kStatesSlotAlign;
      const py::ssize_t slot = batch * h;
      Array<T> buffer(std::vector<py::ssize_t>{(steps + 1) * slot + static_cast<py::ssize_t>(bytes / sizeof(T))});
      const auto address = reinterpret_cast<std::uintptr_t>(buffer.data());
      const auto skip = static_cast<py::ssize_t>((bytes - address % bytes) % bytes / sizeof(T));
      const std::vector<py::ssize_t> shape{steps, batch, h};
      const auto item = static_cast<py::ssize_t>(sizeof(T));
      out = Array<T>(shape, {batch * h * item, h * item, item}, buffer.data() + skip + slot, buffer);
    } else {
      out = Array<T>(batch_first ? std::vector<py::ssize_t>{batch, steps, dirs * h}
                                 : std::vector<py::ssize_t>{steps, batch, dirs * h});
    }
    h_n = Array<T>({states, batch, h});
    if (spec.cell == rnnkit::CellKind::Lstm) c_n.emplace(std::vector<py::ssize_t>{states, batch, h});

    args.params = params.data();
    args.x = x.data();
    args.steps = steps;
    args.batch = batch;
    args.h0 = data_or_null(h0);
    args.c0 = data_or_null(c0);
    args.lengths = data_or_null(lengths);
    args.out = out.mutable_data();
    args.h_n = h_n.mutable_data();
    args.c_n = c_n ? c_n->mutable_data() : nullptr;
    options.batch_first = batch_first;
    options.training = training;
    options.dropout = dropout;
    options.dropout_key = dropout_key;
  }

  /// (out, h_n, c_n or None, tape or None)
  py::tuple result(py::object tape) const {
    py::object c_obj = c_n ? py::object(*c_n) : py::object(py::none());
    return py::make_tuple(out, h_n, c_obj, std::move(tape));
  }
};

/// A checked backward call: its arguments and the arrays it fills.
template <class T>
struct BackwardCall {
  Array<T> grad_x, grad_h0;
  std::optional<Array<T>> grad_c0;
  rnnkit::BackwardArgs<T> args;

  BackwardCall(const rnnkit::LayerSpec& spec, rnnkit::Index steps, rnnkit::Index batch, bool batch_first,
               const Array<T>& params, const std::optional<Array<T>>& grad_out,
               const std::optional<Array<T>>& grad_h_n, const std::optional<Array<T>>& grad_c_n,
               Array<T>& grad_params, bool accumulate) {
    using rnnkit::Index;
    const Index h = spec.hidden_size, dirs = spec.directions(), states = spec.num_layers * dirs;
    expect_shape(params, {rnnkit::param_count(spec)}, "params");
    expect_shape(grad_params, {rnnkit::param_count(spec)}, "grad_params");
    if (grad_out) {
      if (batch_first) {
        expect_shape(*grad_out, {batch, steps, dirs * h}, "grad_out");
      } else {
        expect_shape(*grad_out, {steps, batch, dirs * h}, "grad_out");
      }
      expect_finite(*grad_out, "grad_out");
    }
    if (grad_h_n) expect_shape(*grad_h_n, {states, batch, h}, "grad_h_n");
    if (grad_c_n) expect_shape(*grad_c_n, {states, batch, h}, "grad_c_n");

    const bool lstm = spec.cell == rnnkit::CellKind::Lstm;
    grad_x = Array<T>(batch_first ? std::vector<py::ssize_t>{batch, steps, spec.input_size}
                                  : std::vector<py::ssize_t>{steps, batch, spec.input_size});
    grad_h0 = Array<T>({states, batch, h});
    if (lstm) grad_c0.emplace(std::vector<py::ssize_t>{states, batch, h});

    args.params = params.data();
    args.grad_out = data_or_null(grad_out);
    args.grad_h_n = data_or_null(grad_h_n);
    args.grad_c_n = lstm ? data_or_null(grad_c_n) : nullptr;
    args.grad_x = grad_x.mutable_data();
    args.grad_h0 = grad_h0.mutable_data();
    args.grad_c0 = grad_c0 ? grad_c0->mutable_data() : nullptr;
    args.grad_params = grad_params.mutable_data();
    // Cleared only once every argument passed its checks: a refused call leaves the gradients.
    if (!accumulate) std::fill_n(args.grad_params, grad_params.size(), T(0));
  }

  /// (grad_x, grad_h0, grad_c0 or None)
  py::tuple result() const {
    py::object gc = grad_c0 ? py::object(*grad_c0) : py::object(py::none());
    return py::make_tuple(grad_x, grad_h0, gc);
  }
};

}  // namespace rnnkit_py
