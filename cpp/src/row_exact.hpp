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

#include <type_traits>

#include <Eigen/Core>

#include "rnnkit/abi.hpp"

RNNKIT_BEGIN_NAMESPACE

/// dst = e for a row (a dynamic-size array view and an expression of its length), in packets
/// from the row's first element instead of its first aligned address: fixed-size segments,
/// which Eigen loads unaligned and never peels, then the scalar tail of fewer than a packet's
/// values. Whether an element takes the packet or the scalar code depends on its index alone.
template <class Dst, class E>
void assign_by_position(Dst&& dst, const E& e) {
  using Scalar = typename std::decay_t<Dst>::Scalar;
  constexpr Index width = Eigen::internal::packet_traits<Scalar>::size;
  const Index n = dst.size(), end = n / width * width;
  for (Index i = 0; i < end; i += width) dst.template segment<width>(i) = e.template segment<width>(i);
  if (end < n) dst.tail(n - end) = e.tail(n - end);
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
