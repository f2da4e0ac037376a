// Row-wise evaluation whose bits depend on an element's place in its row, never on the row's
// address.
//
// Eigen evaluates a dynamic-size array expression in packets from the destination's first
// aligned address, and the elements before it and after the last whole packet one at a time
// with the functor's scalar code. For some functions the two are different formulas: exp (float
// and double) and double logistic take std::exp on the scalar path and Eigen's polynomial on the
// packet path, float logistic below -9 too, and they differ in the last bit for a few % of
// inputs. Its reductions peel the same way, so a row's sum depended on its alignment as well.
// A batch row that does not start on a packet boundary (a GRU's rows lie 3H values apart) then
// got other bits than the same sequence run alone.
#pragma once

#include <cstdint>
#include <type_traits>

#include <Eigen/Core>

#include "rnnkit/abi.hpp"

RNNKIT_BEGIN_NAMESPACE

/// dst = e for a row (a dynamic-size array view and an expression of its length, element-wise:
/// output i reads inputs at i only, so dst may be one of them). Packets start at the row's first
/// element; the scalar tail of fewer than a packet's values follows. Whether an element takes
/// the packet or the scalar code then depends on its index alone. A row that starts on a packet
/// boundary takes Eigen's own loop, whose packets start there too.
template <class Dst, class E>
void assign_by_position(Dst&& dst, const E& e) {
  static_assert(std::decay_t<Dst>::InnerStrideAtCompileTime == 1, "a contiguous row");
  using Scalar = typename std::decay_t<Dst>::Scalar;
  using Packet = typename Eigen::internal::packet_traits<Scalar>::type;
  constexpr Index width = Eigen::internal::packet_traits<Scalar>::size;
  Scalar* const out = dst.data();
  if (reinterpret_cast<std::uintptr_t>(out) % (width * sizeof(Scalar)) == 0) {
    dst = e;
    return;
  }
  using Source = Eigen::internal::evaluator<E>;
  const Source src(e);
  const Index n = dst.size();
  Index i = 0;
  if constexpr ((Source::Flags & Eigen::PacketAccessBit) != 0) {
    for (; i + width <= n; i += width) {
      Eigen::internal::pstoreu(out + i, src.template packet<Eigen::Unaligned, Packet>(i));
    }
  }
  for (; i < n; ++i) out[i] = src.coeff(i);
}

/// Sum of x[0..n) in an order set by n alone: whole packets from x[0], their lanes, then the
/// tail in order.
template <class T>
T sum_by_position(const T* x, Index n) noexcept {
  using Packet = typename Eigen::internal::packet_traits<T>::type;
  constexpr Index width = Eigen::internal::packet_traits<T>::size;
  Packet acc = Eigen::internal::pset1<Packet>(T(0));
  Index i = 0;
  for (; i + width <= n; i += width) acc = Eigen::internal::padd(acc, Eigen::internal::ploadu<Packet>(x + i));
  T sum = Eigen::internal::predux(acc);
  for (; i < n; ++i) sum += x[i];
  return sum;
}

RNNKIT_END_NAMESPACE
