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
#include <type_traits>
#include <utility>
#include <vector>

#include "rnnkit/parallel.hpp"
#include "rnnkit/tensor.hpp"

RNNKIT_BEGIN_NAMESPACE

/// A matrix A [rows, depth] packed for products out = B A^T with B [n, depth].
template <class T>
class PackedRows {
 public:
  /// Row blocks of A (the unit of work when threads split one product) and depth blocks.
  static constexpr Index kBlockRows = 512 / static_cast<Index>(sizeof(T));  // 128 floats, 64 doubles
  static constexpr Index kBlockDepth = 256;

  /// `a` holds A row-major ([rows, depth]), or with `transposed` A^T row-major ([depth, rows]),
  /// its rows `ld` values apart (0: packed tight, depth or rows), so that A can be a block of a
  /// larger matrix. `storage` is memory to pack into (its capacity is reused; release() gives it
  /// back). `threads` pack row blocks in parallel.
  PackedRows(const T* a, Index rows, Index depth, bool transposed = false, AlignedVector<T> storage = {},
             int threads = 1, Index ld = 0)
      : rows_(rows), depth_(depth), panels_(std::move(storage)) {
    if (transposed) {
      pack_all<PackLhsColMajor>(ColMapper(a, ld > 0 ? ld : rows), threads);
      find_groups<PackLhsColMajor, ColMapper>();
    } else {
      pack_all<PackLhs>(LhsMapper(a, ld > 0 ? ld : depth), threads);
      find_groups<PackLhs, LhsMapper>();
    }
  }

  /// Threads worth packing a [rows, depth] matrix with, of `n_threads`: one per 64 K values
  /// (packing runs at about 1 ns per value on one core, so a thread gets 64 us or more). A
  /// training step packs its weights at every call, on one thread until 512 K values: W_hh of
  /// 1 MB (H=512 tanh RNN, GRU) packed on two threads made the B=16 T=25 D=H=512 step 3-5%
  /// faster at two threads, 9 of 10 alternating processes (bench/NOTES.md, 2026-11-30 stop 37).
  static int pack_threads(Index rows, Index depth, int n_threads) noexcept {
    constexpr Index kValuesPerThread = Index{1} << 16;
    return static_cast<int>(std::clamp<Index>(rows * depth / kValuesPerThread, 1, n_threads));
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
    // GEBP takes the rows of B in groups of nr (4), and the rows after the last whole group one
    // at a time, each a pass over all of A's panels (3 rows cost about three one-row products:
    // W 2048 x 512, 7 rows 272 us against 183 for 8). Those rows go through multiply_few, all in
    // one pass.
    const Index tail = n % Traits::nr, whole = n - tail;
    if (whole > 0) {
      const RhsMapper rhs(b, depth_);  // B^T, column-major [depth, n]
      const ResMapper res(out, ld_out);  // out^T, column-major [rows, n]
      const Index depth_blocks = (depth_ + kBlockDepth - 1) / kBlockDepth;
      PackRhs pack;
      Gebp gebp;
      for (Index k = 0, kb = 0; k < depth_; k += kBlockDepth, ++kb) {
        const Index kc = block_extent(k, depth_, kBlockDepth);
        pack(scratch, rhs.getSubMapper(k, 0), kc, whole);
        for (Index ib = first_block; ib < last_block; ++ib) {
          const Index i = ib * kBlockRows;
          gebp(res.getSubMapper(i, 0), panels_.data() + offsets_[static_cast<std::size_t>(ib * depth_blocks + kb)],
               scratch, block_extent(i, rows_, kBlockRows), kc, whole, T(1));
        }
      }
    }
    static_assert(Traits::nr <= 4, "a tail of at most three rows");
    const T* b_tail = b + whole * depth_;
    T* out_tail = out + whole * ld_out;
    switch (tail) {
      case 1: multiply_few<1>(b_tail, out_tail, ld_out, first_block, last_block); break;
      case 2: multiply_few<2>(b_tail, out_tail, ld_out, first_block, last_block); break;
      case 3: multiply_few<3>(b_tail, out_tail, ld_out, first_block, last_block); break;
      default: break;
    }
  }

 private:
  /// multiply() for C (1-3) rows of B, straight from B (no packing) in one pass over A's panels.
  /// With one row, GEBP's one-column loop keeps three accumulators (one 24-row group) and waits
  /// on each FMA's latency; here the even and odd steps of k go to separate accumulators, twice
  /// the FMAs in flight (bench/NOTES.md, 2026-11-27, evening). Two or three rows have two or
  /// three times the chains already.
  template <int C>
  void multiply_few(const T* b, T* out, Index ld_out, Index first_block, Index last_block) const {
    const Index depth_blocks = (depth_ + kBlockDepth - 1) / kBlockDepth;
    for (Index ib = first_block; ib < last_block; ++ib) {
      const Index i0 = ib * kBlockRows;
      const std::vector<Index>& groups = block_extent(i0, rows_, kBlockRows) == kBlockRows ? groups_full_ : groups_last_;
      for (Index k = 0, kb = 0; k < depth_; k += kBlockDepth, ++kb) {
        const Index kc = block_extent(k, depth_, kBlockDepth);
        const T* panel = panels_.data() + offsets_[static_cast<std::size_t>(ib * depth_blocks + kb)];
        Index i = 0;
        for (const Index g : groups) {
          const T* p = panel + i * kc;
          T* y = out + i0 + i;
          switch (g / kPacket * kPacket == g ? g / kPacket : 0) {
            case 1: group_product<1, C>(p, kc, b + k, depth_, y, ld_out); break;
            case 2: group_product<2, C>(p, kc, b + k, depth_, y, ld_out); break;
            case 3: group_product<3, C>(p, kc, b + k, depth_, y, ld_out); break;
            default:  // groups narrower than a packet (or of other widths): scalar
              for (Index c = 0; c < C; ++c) {
                for (Index r = 0; r < g; ++r) {
                  T sum = T(0);
                  for (Index q = 0; q < kc; ++q) sum += p[q * g + r] * b[c * depth_ + k + q];
                  y[c * ld_out + r] += sum;
                }
              }
          }
          i += g;
        }
      }
    }
  }

  /// y[c * ldy :][0 : NV packets] += P x[c * ldx :] for c < C, one group of NV packets of rows,
  /// packed [kc][NV * kPacket]. One row of x: even and odd k in separate accumulators.
  template <int NV, int C>
  static void group_product(const T* p, Index kc, const T* x, Index ldx, T* y, Index ldy) noexcept {
    using Eigen::internal::padd;
    using Eigen::internal::pmadd;
    using Eigen::internal::ploadu;
    using Eigen::internal::pset1;
    using Eigen::internal::pstoreu;
    static_assert(NV >= 1 && NV <= 3 && C >= 1 && C <= 3, "groups of 1-3 packets, 1-3 rows of x");
    constexpr Index g = NV * kPacket;
    const Packet zero = pset1<Packet>(T(0));
    // a: row 0 of x (even k where C == 1), b: row 1 (odd k of row 0 where C == 1), c: row 2
    Packet a0 = zero, a1 = zero, a2 = zero, b0 = zero, b1 = zero, b2 = zero, c0 = zero, c1 = zero, c2 = zero;
    const auto add = [](const T* e, const Packet& v, Packet& s0, Packet& s1, Packet& s2) {
      s0 = pmadd(ploadu<Packet>(e), v, s0);
      if constexpr (NV >= 2) s1 = pmadd(ploadu<Packet>(e + kPacket), v, s1);
      if constexpr (NV >= 3) s2 = pmadd(ploadu<Packet>(e + 2 * kPacket), v, s2);
    };
    const auto store = [](T* out, const Packet& s0, const Packet& s1, const Packet& s2) {
      pstoreu(out, padd(ploadu<Packet>(out), s0));
      if constexpr (NV >= 2) pstoreu(out + kPacket, padd(ploadu<Packet>(out + kPacket), s1));
      if constexpr (NV >= 3) pstoreu(out + 2 * kPacket, padd(ploadu<Packet>(out + 2 * kPacket), s2));
    };
    if constexpr (C == 1) {
      Index q = 0;
      for (; q + 2 <= kc; q += 2) {
        add(p + q * g, pset1<Packet>(x[q]), a0, a1, a2);
        add(p + (q + 1) * g, pset1<Packet>(x[q + 1]), b0, b1, b2);
      }
      if (q < kc) add(p + q * g, pset1<Packet>(x[q]), a0, a1, a2);
      store(y, padd(a0, b0), padd(a1, b1), padd(a2, b2));
    } else {
      const T* x1 = x + ldx;
      const T* x2 = x + (C == 3 ? 2 * ldx : 0);
      for (Index q = 0; q < kc; ++q) {
        const T* e = p + q * g;
        add(e, pset1<Packet>(x[q]), a0, a1, a2);
        add(e, pset1<Packet>(x1[q]), b0, b1, b2);
        if constexpr (C == 3) add(e, pset1<Packet>(x2[q]), c0, c1, c2);
      }
      store(y, a0, a1, a2);
      store(y + ldy, b0, b1, b2);
      if constexpr (C == 3) store(y + 2 * ldy, c0, c1, c2);
    }
  }

  /// The row groups Eigen's packing lays out, in order, each [k][group] from row i at i * kc
  /// within a panel: found by packing a probe of two columns whose every value is its row, where
  /// a group's second column starts by repeating its first row. For full row blocks and the last.
  template <class Pack, class Mapper>
  void find_groups() {
    const auto groups_of = [](Index rows) {
      // A [rows, 2] with A(r, k) = r, laid out as the mapper reads it: column-major (stride
      // rows) for a transposed source, row-major (stride 2) otherwise.
      constexpr bool col_major = std::is_same_v<Mapper, ColMapper>;
      AlignedVector<T> probe(static_cast<std::size_t>(2 * rows)), packed(probe.size());
      for (Index r = 0; r < rows; ++r) {
        for (Index k = 0; k < 2; ++k) probe[static_cast<std::size_t>(col_major ? k * rows + r : 2 * r + k)] = T(r);
      }
      Pack pack;
      pack(packed.data(), Mapper(probe.data(), col_major ? rows : 2), 2, rows);
      std::vector<Index> groups;
      for (Index i = 0; i < rows;) {
        Index g = 1;
        while (i + g < rows && packed[static_cast<std::size_t>(2 * i + g)] != T(i)) ++g;
        groups.push_back(g);
        i += g;
      }
      return groups;
    };
    groups_full_ = groups_of(std::min(rows_, kBlockRows));
    groups_last_ = groups_of(block_extent((row_blocks() - 1) * kBlockRows, rows_, kBlockRows));
  }

  template <class Pack, class Mapper>
  void pack_all(const Mapper& lhs, int threads) {
    Index total = 0;
    for (Index i = 0; i < rows_; i += kBlockRows) {
      for (Index k = 0; k < depth_; k += kBlockDepth) {
        offsets_.push_back(total);
        total += round_up(block_extent(i, rows_, kBlockRows) * block_extent(k, depth_, kBlockDepth));
      }
    }
    panels_.resize(static_cast<std::size_t>(total));
    const Index depth_blocks = (depth_ + kBlockDepth - 1) / kBlockDepth;
    parallel_blocks(row_blocks(), threads, 1, [&](Index first, Index count) {
      Pack pack;
      for (Index ib = first; ib < first + count; ++ib) {
        const Index i = ib * kBlockRows;
        for (Index k = 0, kb = 0; k < depth_; k += kBlockDepth, ++kb) {
          pack(panels_.data() + offsets_[static_cast<std::size_t>(ib * depth_blocks + kb)], lhs.getSubMapper(i, k),
               block_extent(k, depth_, kBlockDepth), block_extent(i, rows_, kBlockRows));
        }
      }
    });
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

  using Packet = typename Eigen::internal::packet_traits<T>::type;
  static constexpr Index kPacket = Eigen::internal::packet_traits<T>::size;

  Index rows_;
  Index depth_;
  std::vector<Index> offsets_;  // of each (row block, depth block) panel, row blocks outer
  std::vector<Index> groups_full_, groups_last_;  // Eigen's row groups in a full and the last row block
  AlignedVector<T> panels_;
};

RNNKIT_END_NAMESPACE
