// The element-wise gate math of every cell, written once for the CPU engine and the CUDA
// backend: each function works on scalars (CUDA kernels, one element per thread) and on
// Eigen array expressions (the CPU cells, a row at a time), so the CPU test suite checks
// the very formulas the device runs. Arguments are the gates *after* their activation.
#pragma once

#include <type_traits>

#include "rnnkit/abi.hpp"

RNNKIT_BEGIN_NAMESPACE
namespace gate_math {

/// The scalar type of a value: itself for float/double, ::Scalar for an Eigen expression.
template <class V, class = void>
struct scalar_of {
  using type = V;
};
template <class V>
struct scalar_of<V, std::void_t<typename V::Scalar>> {
  using type = typename V::Scalar;
};
template <class V>
using scalar_t = typename scalar_of<V>::type;

// ---- LSTM, gates (i, f, g, o): c' = f*c + i*g, h' = o*tanh(c')
template <class F, class C, class I, class G>
RNNKIT_HD auto lstm_cell(const F& f, const C& c_prev, const I& i, const G& g) {
  return f * c_prev + i * g;
}
/// dL/dc_t in total: what came from step t+1 plus the path through h_t = o * tanh(c_t).
template <class DC, class DH, class O, class TC>
RNNKIT_HD auto lstm_grad_cell(const DC& dc, const DH& dh, const O& o, const TC& tanh_c) {
  using S = scalar_t<TC>;
  return dc + dh * o * (S(1) - tanh_c * tanh_c);
}
/// Pre-activation gradients of i, f, g and o from the total dL/dc_t.
template <class DC, class G, class I>
RNNKIT_HD auto lstm_grad_i(const DC& dc, const G& g, const I& i) {
  using S = scalar_t<I>;
  return dc * g * i * (S(1) - i);
}
template <class DC, class C, class F>
RNNKIT_HD auto lstm_grad_f(const DC& dc, const C& c_prev, const F& f) {
  using S = scalar_t<F>;
  return dc * c_prev * f * (S(1) - f);
}
template <class DC, class I, class G>
RNNKIT_HD auto lstm_grad_g(const DC& dc, const I& i, const G& g) {
  using S = scalar_t<G>;
  return dc * i * (S(1) - g * g);
}
template <class DH, class TC, class O>
RNNKIT_HD auto lstm_grad_o(const DH& dh, const TC& tanh_c, const O& o) {
  using S = scalar_t<O>;
  return dh * tanh_c * o * (S(1) - o);
}

// ---- GRU (PyTorch / cuDNN): n = tanh(x_n + r * (W_hn h + b_hn)), h' = (1 - z) * n + z * h
template <class XN, class R, class HN>
RNNKIT_HD auto gru_new_pre(const XN& x_n, const R& r, const HN& hn) {
  return x_n + r * hn;
}
template <class Z, class N, class H>
RNNKIT_HD auto gru_hidden(const Z& z, const N& n, const H& h_prev) {
  using S = scalar_t<Z>;
  return (S(1) - z) * n + z * h_prev;
}
/// dL/d(pre-activation of n).
template <class DH, class Z, class N>
RNNKIT_HD auto gru_grad_n(const DH& dh, const Z& z, const N& n) {
  using S = scalar_t<N>;
  return dh * (S(1) - z) * (S(1) - n * n);
}
template <class DN, class HN, class R>
RNNKIT_HD auto gru_grad_r(const DN& dn, const HN& hn, const R& r) {
  using S = scalar_t<R>;
  return dn * hn * r * (S(1) - r);
}
template <class DH, class H, class N, class Z>
RNNKIT_HD auto gru_grad_z(const DH& dh, const H& h_prev, const N& n, const Z& z) {
  using S = scalar_t<Z>;
  return dh * (h_prev - n) * z * (S(1) - z);
}

// ---- Simple RNN with tanh: h' = tanh(pre)
template <class DH, class Out>
RNNKIT_HD auto tanh_grad(const DH& dh, const Out& out) {
  using S = scalar_t<Out>;
  return dh * (S(1) - out * out);
}

}  // namespace gate_math
RNNKIT_END_NAMESPACE
