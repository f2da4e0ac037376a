// GRU cell with PyTorch / cuDNN semantics, gates in the order (reset, update, new):
//   r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
//   z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
//   n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
//   h' = (1 - z) * n + z * h
#include "rnnkit/gate_math.hpp"
#include "row_ops.hpp"

RNNKIT_BEGIN_NAMESPACE

using cells::gate;
using cells::is_active;

template <class T>
void GruCell<T>::forward(const ForwardStep<T>& s) noexcept {
  const Index h = s.hidden;
  const Index gh = 3 * h;
  for (Index b = 0; b < s.batch; ++b) {
    if (!is_active(s.active, b)) {
      cells::carry_state(s, b);
      continue;
    }
    cells::activate(s, b, gh, 0, cells::Logistic{});
    cells::activate(s, b, gh, 1, cells::Logistic{});
    const auto r = gate(s.gates, b, gh, h, 0);
    const auto z = gate(s.gates, b, gh, h, 1);
    auto n = gate(s.gates, b, gh, h, 2);
    ArrayMap<T> hn(s.extra + b * h, h);
    const auto rec_n = gate(s.recurrent, b, gh, h, 2);
    if (s.bias_hh != nullptr) {
      hn = rec_n + cells::bias_block(s.bias_hh, h, 2);
    } else {
      hn = rec_n;
    }
    assign_by_position(n, gate_math::gru_new_pre(n, r, hn).tanh());
    const Index row = b * s.state_rows();
    const ConstArrayMap<T> h_prev(s.h_prev + row, h);
    assign_by_position(ArrayMap<T>(s.h_next + row, h), gate_math::gru_hidden(z, n, h_prev));
  }
}

template <class T>
void GruCell<T>::backward(const BackwardStep<T>& s) noexcept {
  const Index h = s.hidden;
  const Index gh = 3 * h;
  for (Index b = 0; b < s.batch; ++b) {
    if (!is_active(s.active, b)) {
      cells::pass_gradient(s, b, gh);
      continue;
    }
    const auto r = gate(s.gates, b, gh, h, 0);
    const auto z = gate(s.gates, b, gh, h, 1);
    const auto n = gate(s.gates, b, gh, h, 2);
    const ConstArrayMap<T> hn(s.extra + b * h, h);
    const ConstArrayMap<T> h_prev(s.h_prev + b * h, h);
    const ConstArrayMap<T> dh(s.grad_h + b * h, h);

    auto dn = gate(s.grad_gates_input, b, gh, h, 2);
    dn = gate_math::gru_grad_n(dh, z, n);
    gate(s.grad_gates_input, b, gh, h, 0) = gate_math::gru_grad_r(dn, hn, r);
    gate(s.grad_gates_input, b, gh, h, 1) = gate_math::gru_grad_z(dh, h_prev, n, z);
    gate(s.grad_gates_hidden, b, gh, h, 0) = gate(s.grad_gates_input, b, gh, h, 0);
    gate(s.grad_gates_hidden, b, gh, h, 1) = gate(s.grad_gates_input, b, gh, h, 1);
    gate(s.grad_gates_hidden, b, gh, h, 2) = dn * r;
    ArrayMap<T>(s.grad_h_prev + b * h, h) = dh * z;
  }
}

template struct GruCell<float>;
template struct GruCell<double>;

RNNKIT_END_NAMESPACE
