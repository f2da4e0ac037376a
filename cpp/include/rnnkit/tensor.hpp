// Eigen views over caller-owned memory. Everything is row-major, matching numpy and PyTorch.
#pragma once

#include <Eigen/Core>
#include <cstddef>
#include <vector>

#include "rnnkit/abi.hpp"

RNNKIT_BEGIN_NAMESPACE

template <class T>
using Matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// Storage for workspaces and tapes, aligned for the widest SIMD load. Alignment matters
/// beyond speed: Eigen peels unaligned heads off its loops, so the same data at another
/// address can round differently; aligned buffers keep repeated calls bit-identical.
template <class T>
using AlignedVector = std::vector<T, Eigen::aligned_allocator<T>>;

/// Mutable / read-only view of a dense row-major [rows, cols] block.
template <class T>
using MatrixMap = Eigen::Map<Matrix<T>>;
template <class T>
using ConstMatrixMap = Eigen::Map<const Matrix<T>>;

/// Views whose rows are `stride` elements apart (a column slice of a wider matrix).
template <class T>
using StridedMap = Eigen::Map<Matrix<T>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <class T>
using ConstStridedMap = Eigen::Map<const Matrix<T>, Eigen::Unaligned, Eigen::OuterStride<>>;

/// One-dimensional array views (for element-wise gate math).
template <class T>
using ArrayMap = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
template <class T>
using ConstArrayMap = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;

/// Row-vector view (a bias broadcast over rows).
template <class T>
using ConstRowMap = Eigen::Map<const Eigen::Matrix<T, 1, Eigen::Dynamic>>;

/// dst[j] += sum over rows of m(:, j). The sums are formed in aligned scratch memory, so the
/// result does not depend on where the caller's dst happens to sit (Eigen would otherwise
/// vectorise differently, and round differently, for a differently aligned destination).
template <class T, class Derived>
void add_column_sums(const Eigen::MatrixBase<Derived>& m, T* dst) {
  AlignedVector<T> sums(static_cast<std::size_t>(m.cols()));
  Eigen::Map<Eigen::Matrix<T, 1, Eigen::Dynamic>>(sums.data(), m.cols()).noalias() =
      m.colwise().sum();
  for (Index j = 0; j < m.cols(); ++j) dst[j] += sums[static_cast<std::size_t>(j)];
}

RNNKIT_END_NAMESPACE
