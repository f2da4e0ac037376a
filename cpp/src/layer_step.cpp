// The streaming step: one time step of a unidirectional stack for a batch, from a given state
// (or zeros), with no allocation after the first call of a size (the workspace keeps its buffers).
#include <algorithm>
#include <stdexcept>

#include "direction_ops.hpp"
#include "layer_ops.hpp"
#include "rnnkit/cells.hpp"
#include "rnnkit/layer.hpp"

RNNKIT_BEGIN_NAMESPACE

using namespace direction_ops;  // NOLINT: the direction's context and products
using namespace layer_ops;      // NOLINT: the cell dispatch

template <class T>
void step(const LayerSpec& spec, const StepArgs<T>& args, StepWorkspace<T>& ws, int n_threads) {
  spec.validate();
  if (spec.bidirectional) throw std::invalid_argument("step() needs a unidirectional stack");
  if (args.batch <= 0) throw std::invalid_argument("x must hold at least one sequence");
  const Index batch = args.batch, h = spec.hidden_size, gh = spec.gate_width(), state_size = batch * h;
  const bool lstm = spec.cell == CellKind::Lstm;
  ws.gates.resize(static_cast<std::size_t>(batch * gh));
  ws.rec.resize(ws.gates.size());
  ws.input.resize(static_cast<std::size_t>(state_size));
  if (spec.cell == CellKind::Gru) ws.extra.resize(static_cast<std::size_t>(state_size));

  // A step's splits do not change its results: after a pause, a small step runs on this thread.
  const int threads = ws.pace.alone(call_flops(spec, 1, batch)) ? 1 : n_threads;
  const T* input = args.x;
  for (Index l = 0; l < spec.num_layers; ++l) {
    const DirectionContext<T> c(spec, 1, batch, l, 0, args.params, nullptr, threads);
    project_inputs(c, input, ws.gates.data(), threads);
    const T* h_prev = args.h0 != nullptr ? args.h0 + l * state_size : nullptr;
    if (h_prev == nullptr) {
      std::fill_n(args.h_n + l * state_size, state_size, T(0));  // zero state, read below
      h_prev = args.h_n + l * state_size;
    }
    if (args.h0 == nullptr) {
      std::fill(ws.rec.begin(), ws.rec.end(), T(0));  // a zero state's product
    } else {
      recurrent_product(c, h_prev, batch, ws.rec.data(), plan_loop(c).step_threads);
    }

    ForwardStep<T> st;
    st.batch = batch;
    st.hidden = h;
    st.gates = ws.gates.data();
    st.recurrent = ws.rec.data();
    st.bias_hh = c.b_hh;
    st.h_prev = h_prev;
    st.h_next = ws.input.data();
    if (lstm) {
      st.c_prev = args.c0 != nullptr ? args.c0 + l * state_size : nullptr;
      if (st.c_prev == nullptr) {
        std::fill_n(args.c_n + l * state_size, state_size, T(0));
        st.c_prev = args.c_n + l * state_size;
      }
      st.c_next = args.c_n + l * state_size;  // may alias c_prev: each element is read before written
    }
    if (spec.cell == CellKind::Gru) st.extra = ws.extra.data();
    cell_forward(spec.cell, st);
    std::copy(ws.input.begin(), ws.input.end(), args.h_n + l * state_size);
    input = args.h_n + l * state_size;
  }
  std::copy_n(args.h_n + (spec.num_layers - 1) * state_size, state_size, args.out);
  ws.pace.call_ended();
}

template void step(const LayerSpec&, const StepArgs<float>&, StepWorkspace<float>&, int);
template void step(const LayerSpec&, const StepArgs<double>&, StepWorkspace<double>&, int);

RNNKIT_END_NAMESPACE
