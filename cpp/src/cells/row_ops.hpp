// Row helpers shared by the cells: views of one batch row and the rule for rows past the
// end of their sequence (state carried, gradient passed straight through).
#pragma once

#include <algorithm>

#include "rnnkit/cells.hpp"
#include "../row_exact.hpp"

RNNKIT_BEGIN_NAMESPACE
namespace cells {

/// Gate block `k` (of width H) of row b in a [B, G*H] matrix.
template <class T>
ArrayMap<T> gate(T* base, Index b, Index gh, Index h, Index k) noexcept {
  return ArrayMap<T>(base + b * gh + k * h, h);
}
template <class T>
ConstArrayMap<T> gate(const T* base, Index b, Index gh, Index h, Index k) noexcept {
  return ConstArrayMap<T>(base + b * gh + k * h, h);
}

/// Block k (of width H) of the bias b_hh.
template <class T>
auto bias_block(const T* bias, Index h, Index k) noexcept {
  return ConstArrayMap<T>(bias + k * h, h);
}

/// Gate block k of row b activated in place, in one pass: act(gates + recurrent (+ b_hh)),
/// summed in that order.
template <class T, class Act>
void activate(const ForwardStep<T>& s, Index b, Index gh, Index k, const Act& act) noexcept {
  auto pre = gate(s.gates, b, gh, s.hidden, k);
  const auto rec = gate(static_cast<const T*>(s.recurrent), b, gh, s.hidden, k);
  if (s.bias_hh != nullptr) {
    assign_by_position(pre, act(pre + rec + bias_block(s.bias_hh, s.hidden, k)));
  } else {
    assign_by_position(pre, act(pre + rec));
  }
}

/// The activations, for activate().
struct Logistic {
  template <class E>
  auto operator()(const E& x) const {
    return x.logistic();
  }
};
struct Tanh {
  template <class E>
  auto operator()(const E& x) const {
    return x.tanh();
  }
};
struct Relu {
  template <class E>
  auto operator()(const E& x) const {
    return x.max(typename E::Scalar(0));
  }
};

inline bool is_active(const std::uint8_t* active, Index b) noexcept {
  return active == nullptr || active[b] != 0;
}

/// Forward for an inactive row: the state is carried over unchanged.
template <class T>
void carry_state(const ForwardStep<T>& s, Index b) noexcept {
  const Index h = s.hidden, row = b * s.state_rows();
  std::copy_n(s.h_prev + row, h, s.h_next + row);
  if (s.c_prev != nullptr) std::copy_n(s.c_prev + row, h, s.c_next + row);
}

/// Backward for an inactive row: no gate gradient; dh and dc pass straight to the previous step.
template <class T>
void pass_gradient(const BackwardStep<T>& s, Index b, Index gh) noexcept {
  const Index h = s.hidden;
  std::fill_n(s.grad_gates_input + b * gh, gh, T(0));
  if (s.grad_gates_hidden != s.grad_gates_input) std::fill_n(s.grad_gates_hidden + b * gh, gh, T(0));
  std::copy_n(s.grad_h + b * h, h, s.grad_h_prev + b * h);
}

}  // namespace cells
RNNKIT_END_NAMESPACE
