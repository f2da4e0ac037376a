// LSTM cell, gates in PyTorch's order (input, forget, cell, output):
//   i = sigmoid(.), f = sigmoid(.), g = tanh(.), o = sigmoid(.)
//   c' = f * c + i * g,   h' = o * tanh(c')
#include "rnnkit/gate_math.hpp"
#include "row_ops.hpp"

RNNKIT_BEGIN_NAMESPACE

using cells::gate;
using cells::is_active;

template <class T>
void LstmCell<T>::forward(const ForwardStep<T>& s) noexcept {
  const Index h = s.hidden;
  const Index gh = 4 * h;
  for (Index b = 0; b < s.batch; ++b) {
    if (!is_active(s.active, b)) {
      cells::carry_state(s, b);
      continue;
    }
    cells::activate(s, b, gh, 0, cells::Logistic{});
    cells::activate(s, b, gh, 1, cells::Logistic{});
    cells::activate(s, b, gh, 2, cells::Tanh{});
    cells::activate(s, b, gh, 3, cells::Logistic{});
    const auto i = gate(s.gates, b, gh, h, 0);
    const auto f = gate(s.gates, b, gh, h, 1);
    const auto g = gate(s.gates, b, gh, h, 2);
    const auto o = gate(s.gates, b, gh, h, 3);
    const Index row = b * s.state_rows();
    const ConstArrayMap<T> c_prev(s.c_prev + row, h);
    ArrayMap<T> c_next(s.c_next + row, h);
    assign_by_position(c_next, gate_math::lstm_cell(f, c_prev, i, g));
    assign_by_position(ArrayMap<T>(s.h_next + row, h), o * c_next.tanh());
  }
}

template <class T>
void LstmCell<T>::backward(const BackwardStep<T>& s) noexcept {
  const Index h = s.hidden;
  const Index gh = 4 * h;
  for (Index b = 0; b < s.batch; ++b) {
    if (!is_active(s.active, b)) {
      cells::pass_gradient(s, b, gh);
      continue;  // dc passes through unchanged
    }
    const auto i = gate(s.gates, b, gh, h, 0);
    const auto f = gate(s.gates, b, gh, h, 1);
    const auto g = gate(s.gates, b, gh, h, 2);
    const auto o = gate(s.gates, b, gh, h, 3);
    const ConstArrayMap<T> c_prev(s.c_prev + b * h, h);
    const ConstArrayMap<T> c_next(s.c_next + b * h, h);
    const ConstArrayMap<T> dh(s.grad_h + b * h, h);
    ArrayMap<T> dc(s.grad_c + b * h, h);

    // tanh(c_t) in this row of grad_h_prev, which is only zeroed at the end: no allocation per
    // row and step (grad_h_prev never aliases the inputs read here).
    ArrayMap<T> tanh_c(s.grad_h_prev + b * h, h);
    tanh_c = c_next.tanh();
    dc = gate_math::lstm_grad_cell(dc, dh, o, tanh_c);  // total dL/dc_t
    gate(s.grad_gates_input, b, gh, h, 0) = gate_math::lstm_grad_i(dc, g, i);
    gate(s.grad_gates_input, b, gh, h, 1) = gate_math::lstm_grad_f(dc, c_prev, f);
    gate(s.grad_gates_input, b, gh, h, 2) = gate_math::lstm_grad_g(dc, i, g);
    gate(s.grad_gates_input, b, gh, h, 3) = gate_math::lstm_grad_o(dh, tanh_c, o);
    dc *= f;  // dL/dc_{t-1}
    tanh_c.setZero();
  }
}

template struct LstmCell<float>;
template struct LstmCell<double>;

RNNKIT_END_NAMESPACE
