// Simple RNN cell: h' = act(W_ih x + b_ih + W_hh h + b_hh), act = tanh or relu.
#include "rnnkit/gate_math.hpp"
#include "row_ops.hpp"

RNNKIT_BEGIN_NAMESPACE

using cells::is_active;

template <class T>
void RnnCell<T>::forward(const ForwardStep<T>& s, bool relu) noexcept {
  const Index h = s.hidden;
  for (Index b = 0; b < s.batch; ++b) {
    if (!is_active(s.active, b)) {
      cells::carry_state(s, b);
      continue;
    }
    if (relu) {
      cells::activate(s, b, h, 0, cells::Relu{});
    } else {
      cells::activate(s, b, h, 0, cells::Tanh{});
    }
    ArrayMap<T>(s.h_next + b * s.state_rows(), h) = cells::gate(s.gates, b, h, h, 0);
  }
}

template <class T>
void RnnCell<T>::backward(const BackwardStep<T>& s, bool relu) noexcept {
  const Index h = s.hidden;
  for (Index b = 0; b < s.batch; ++b) {
    if (!is_active(s.active, b)) {
      cells::pass_gradient(s, b, h);
      continue;
    }
    const ConstArrayMap<T> out(s.h_next + b * h, h);
    const ConstArrayMap<T> dh(s.grad_h + b * h, h);
    ArrayMap<T> dpre(s.grad_gates_input + b * h, h);
    if (relu) {
      dpre = (out > T(0)).select(dh, T(0));
    } else {
      dpre = gate_math::tanh_grad(dh, out);
    }
    ArrayMap<T>(s.grad_h_prev + b * h, h).setZero();
  }
}

template struct RnnCell<float>;
template struct RnnCell<double>;

RNNKIT_END_NAMESPACE
