// Products with a matrix that stays the same over many calls: the recurrent weights of a
// time loop.
//
// Eigen's general matrix product packs both operands into its GEBP panel layout on every call.
// In a time loop the recurrent product h_{t-1} W_hh^T has a small left operand (the batch rows)
// and a large right one (the 4H x H weights of an LSTM), so most of each step's memory traffic
// was re-packing weights that do not change: reading them, writing the panels, reading those.
// PackedRows packs the weights once per forward call, in the same panel layout, and each step
// then packs only the small operand and runs Eigen's GEBP micro-kernel on the stored panels
// (1.3-2.5x faster per product for 8-32 rows and H = 256-512 on AVX2).
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <utility>
#include <vector>

#include "rnnkit/tensor.hpp"

RNNKIT_BEGIN_NAMESPACE

/// A matrix A [rows, depth] packed for products out = B A^T with B [n, depth].
template <class T>
class PackedRows {
 public:
  /// Row blocks of A (the unit of work when threads split one product) and depth blocks.
  static constexpr Index kBlockRows = 512 / static_cast<Index>(sizeof(T));  // 128 floats, 64 doubles
  static constexpr Index kBlockDepth = 256;

  /// `a` holds A row-major ([rows, depth]), or with `transposed` A^T row-major ([depth, rows]).
  /// `storage` is memory to pack into (its capacity is reused; release() gives it back).
  PackedRows(const T* a, Index rows, Index depth, bool transposed = false, AlignedVector<T> storage = {})
      : rows_(rows), depth_(depth), panels_(std::move(storage)) {
    if (transposed) {
      pack_all<PackLhsColMajor>(ColMapper(a, rows));
    } else {
      pack_all<PackLhs>(LhsMapper(a, depth));
    }
  }

  /// The panels' memory, for the next PackedRows to pack into (this one is empty after).
  AlignedVector<T> release() && noexcept { return std::move(panels_); }

  Index rows() const noexcept { return rows_; }
  /// Memory the panels hold.
  std::size_t bytes() const noexcept { return panels_.capacity() * sizeof(T); }
  Index depth() const noexcept { return depth_; }
  Index row_blocks() const noexcept { return (rows_ + kBlockRows - 1) / kBlockRows; }

  /// Scratch elements one thread's product with `n` rows of B needs.
  static Index scratch_size(Index n) noexcept { return round_up(kBlockDepth * (n + Traits::nr)); }

  /// out[r, first_row:last_row] (+)= B[r, :] A[first_row:last_row, :]^T for r < n, where the row
  /// range covers A's row blocks [first_block, last_block). B is row-major with leading dimension
  /// `depth`, out row-major with leading dimension `ld_out`; `scratch` holds scratch_size(n).
  /// Adds to out with `accumulate`, else overwrites it.
  void multiply(const T* b, Index n, T* out, Index ld_out, T* scratch, Index first_block, Index last_block,
                bool accumulate = false) const {
    const Index first_row = first_block * kBlockRows;
    const Index last_row = std::min(rows_, last_block * kBlockRows);
    if (!accumulate) {
      for (Index r = 0; r < n; ++r) std::fill(out + r * ld_out + first_row, out + r * ld_out + last_row, T(0));
    }
    const RhsMapper rhs(b, depth_);  // B^T, column-major [depth, n]
    const ResMapper res(out, ld_out);  // out^T, column-major [rows, n]
    const Index depth_blocks = (depth_ + kBlockDepth - 1) / kBlockDepth;
    PackRhs pack;
    Gebp gebp;
    for (Index k = 0, kb = 0; k < depth_; k += kBlockDepth, ++kb) {
      const Index kc = block_extent(k, depth_, kBlockDepth);
      pack(scratch, rhs.getSubMapper(k, 0), kc, n);
      for (Index ib = first_block; ib < last_block; ++ib) {
        const Index i = ib * kBlockRows;
        gebp(res.getSubMapper(i, 0), panels_.data() + offsets_[static_cast<std::size_t>(ib * depth_blocks + kb)],
             scratch, block_extent(i, rows_, kBlockRows), kc, n, T(1));
      }
    }
  }

 private:
  template <class Pack, class Mapper>
  void pack_all(const Mapper& lhs) {
    Index total = 0;
    for (Index i = 0; i < rows_; i += kBlockRows) {
      for (Index k = 0; k < depth_; k += kBlockDepth) {
        offsets_.push_back(total);
        total += round_up(block_extent(i, rows_, kBlockRows) * block_extent(k, depth_, kBlockDepth));
      }
    }
    panels_.resize(static_cast<std::size_t>(total));
    Pack pack;
    std::size_t b = 0;
    for (Index i = 0; i < rows_; i += kBlockRows) {
      for (Index k = 0; k < depth_; k += kBlockDepth) {
        pack(panels_.data() + offsets_[b++], lhs.getSubMapper(i, k), block_extent(k, depth_, kBlockDepth),
             block_extent(i, rows_, kBlockRows));
      }
    }
  }

  using Traits = Eigen::internal::gebp_traits<T, T>;
  using LhsMapper = Eigen::internal::const_blas_data_mapper<T, Index, Eigen::RowMajor>;
  using RhsMapper = Eigen::internal::const_blas_data_mapper<T, Index, Eigen::ColMajor>;
  using ResMapper = Eigen::internal::blas_data_mapper<T, Index, Eigen::ColMajor>;
  using PackLhs = Eigen::internal::gemm_pack_lhs<T, Index, LhsMapper, Traits::mr, Traits::LhsProgress,
                                                 typename Traits::LhsPacket4Packing, Eigen::RowMajor>;
  using ColMapper = Eigen::internal::const_blas_data_mapper<T, Index, Eigen::ColMajor>;
  using PackLhsColMajor = Eigen::internal::gemm_pack_lhs<T, Index, ColMapper, Traits::mr, Traits::LhsProgress,
                                                         typename Traits::LhsPacket4Packing, Eigen::ColMajor>;
  using PackRhs = Eigen::internal::gemm_pack_rhs<T, Index, RhsMapper, Traits::nr, Eigen::ColMajor>;
  using Gebp = Eigen::internal::gebp_kernel<T, T, Index, ResMapper, Traits::mr, Traits::nr, false, false>;

  /// Panels start on 64-byte boundaries, as Eigen's own packing buffers do.
  static Index round_up(Index n) noexcept {
    constexpr Index per_line = 64 / static_cast<Index>(sizeof(T));
    return (n + per_line - 1) / per_line * per_line;
  }
  static Index block_extent(Index start, Index total, Index block) noexcept {
    return std::min(start + block, total) - start;
  }

  Index rows_;
  Index depth_;
  std::vector<Index> offsets_;  // of each (row block, depth block) panel, row blocks outer
  AlignedVector<T> panels_;
};

RNNKIT_END_NAMESPACE
