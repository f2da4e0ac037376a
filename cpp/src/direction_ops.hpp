// One (layer, direction) of the layer driver: its fixed context, how its time loop uses
// threads, and its matrix products (input projection, recurrent products, packed weights).
// Internal to cpp/src/layer.cpp, which holds the time loops that use these.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <optional>

#include "rnnkit/layer.hpp"
#include "rnnkit/packed_gemm.hpp"
#include "rnnkit/parallel.hpp"
#include "rnnkit/row_dots.hpp"

RNNKIT_BEGIN_NAMESPACE

namespace direction_ops {

/// Where the state before and after the step at time t lives in Direction::states.
/// Forward runs t = 0..T-1 and keeps h_{t-1} at slot t; reverse runs t = T-1..0 and keeps
/// the state it started time t from at slot t+1.
struct Slots {
  Index prev;
  Index next;
};
inline Slots slots(bool reverse, Index t) noexcept {
  return reverse ? Slots{t + 1, t} : Slots{t, t + 1};
}

/// Offsets of the slots in Direction::states and ::cells, and of GRU's step values in ::extra.
/// Training keeps every slot and step for backward. Inference (`ring`) keeps a few slots, used
/// in turn: the [T+1, B, H] history it used to write went through memory only to be dropped
/// (bench/NOTES.md, 2026-11-27, night). A ring slot sits at the same offset modulo the widest
/// packet as the training slot, so that the cells' vectorised loops peel the same elements in
/// both modes and inference equals training bit for bit; there are as many ring slots as it
/// takes for each to keep one such offset (two when a state is a whole number of packets), so
/// that threads working on rows of the same slot never write into each other's.
template <class T>
struct StateLayout {
  static constexpr Index kAlign = EIGEN_MAX_ALIGN_BYTES / static_cast<Index>(sizeof(T));
  Index state_size = 0;
  bool ring = false;

  Index slots() const noexcept { return std::max<Index>(2, kAlign / std::gcd(state_size, kAlign)); }
  Index stride() const noexcept { return (state_size + kAlign - 1) / kAlign * kAlign + kAlign; }
  /// Offset of state slot `idx` (0..T), and of step t's extra values.
  Index state(Index idx) const noexcept {
    return ring ? idx % slots() * stride() + idx * state_size % kAlign : idx * state_size;
  }
  Index extra(Index t) const noexcept { return state(t); }
  std::size_t states_size(Index steps) const noexcept {
    return static_cast<std::size_t>(ring ? slots() * stride() : (steps + 1) * state_size);
  }
  std::size_t extra_size(Index steps) const noexcept {
    return static_cast<std::size_t>(ring ? slots() * stride() : steps * state_size);
  }
};

/// Everything one (layer, direction) needs, fixed for a call.
template <class T>
struct DirectionContext {
  const LayerSpec& spec;
  Index steps;
  Index batch;
  Index input_width;
  Index layer;
  bool reverse;
  const T* w_ih;
  const T* w_hh;
  const T* b_ih;  // nullptr without bias
  const T* b_hh;  // nullptr without bias
  const std::uint8_t* active;  // [T, B] or nullptr
  int n_threads;
  /// The state before the first step is zero (no initial state given): that step's recurrent
  /// product is zero, and the forward skips it.
  bool zero_start = false;
  /// A small inference call after a pause (CallPace): it runs on the calling thread alone,
  /// with the same results, and leaves OpenMP's workers asleep (plan_loop).
  bool after_pause = false;

  Index hidden() const noexcept { return spec.hidden_size; }
  Index gate_width() const noexcept { return spec.gate_width(); }
  Index state_index() const noexcept { return layer * spec.directions() + (reverse ? 1 : 0); }
  const std::uint8_t* active_at(Index t) const noexcept {
    return active == nullptr ? nullptr : active + t * batch;
  }

  DirectionContext(const LayerSpec& s, Index t, Index b, Index l, Index dir, const T* params,
                   const std::uint8_t* act, int threads)
      : spec(s), steps(t), batch(b), input_width(s.layer_input_size(l)), layer(l), reverse(dir == 1),
        active(act), n_threads(threads) {
    const DirectionParams p = direction_params(s, l, dir);
    w_ih = params + p.weight_ih;
    w_hh = params + p.weight_hh;
    b_ih = p.bias_ih >= 0 ? params + p.bias_ih : nullptr;
    b_hh = p.bias_hh >= 0 ? params + p.bias_hh : nullptr;
  }
};

/// Bytes of W_hh up to which a packed product with 1 row beats dot_rows by enough to pay for
/// packing (or, for a trainable layer's kept packing, for comparing the weights with their
/// copy, which reads twice as much and costs about as much); with 4 rows, while W_hh stays in
/// L2 (512 KB on Zen 2-3, 1-2 MB on Zen 4 and Intel's server cores).
inline constexpr std::size_t kPackingPaysBytes = std::size_t{256} << 10;
inline constexpr std::size_t kFourRowPackingPaysBytes = std::size_t{512} << 10;

/// Whether packing W_hh (`w_bytes`, the rows this product uses) once per call (PackedRows) pays
/// over `steps` products with `rows` rows each (callers pack always above kMaxGemvRows rows).
/// Measured per product on one AVX2 core (bench/NOTES.md, 2026-11-29), dot_rows / packed for
/// 1-4 rows: W 512 x 128 (256 KB) 3.0 / 2.8, 5.8 / 6.7, 5.9 / 10.1, 7.5 / 5.7 us, packing 10 us;
/// W 1024 x 256 14.6 / 14.6, 23 / 31, 22 / 45, 27 / 23 us, packing 44 us; W 2048 x 512 60 / 65,
/// 93 / 121, 88 / 189, 101 / 95 us, packing 250 us. So up to three rows never pack; four pack
/// over 8 steps or more while W_hh stays in L2, beyond it (where both stream W from L3 and the
/// packed product saves a few %) over 64 steps; one row packs over 64 steps, up to 256 KB only
/// (at 400-430 KB, B=1 T=100 ran up to 11% slower packed, B=4 T=25 2-11% faster: stop 29).
/// The choice depends on the shapes alone, never on whether the weights are frozen: a frozen
/// copy gives the same bits as its layer.
/// The AVX-512 build packs four rows past L2 too: on Zen 4 (AMD EPYC family 25 model 17, one
/// core), LSTM D=H=512 at B=4 T=25, dot_rows against packed, frozen layer, four alternating
/// processes: 5.2-6.1 ms against 4.5-4.9 (and the trainable layer, which compares its weights with
/// the packing's copy, 5.7-6.5 against 5.1-5.7), at B=8 over two threads (four rows each) 5.6-6.4
/// against 4.4-5.1 (bench/NOTES.md, 2026-11-30). The rule follows the build, not the machine,
/// so a build's bits stay the same everywhere it runs.
#if defined(__AVX512F__)
inline constexpr bool kFourRowsPackPastL2 = true;
#else
inline constexpr bool kFourRowsPackPastL2 = false;
#endif

inline bool worth_packing(Index steps, Index rows, std::size_t w_bytes) noexcept {
  constexpr Index kFourRowSteps = 8, kLongSteps = 64;
  if (rows >= 4) {
    const bool fits = kFourRowsPackPastL2 || w_bytes <= kFourRowPackingPaysBytes;
    return steps >= kFourRowSteps && (fits || steps >= kLongSteps);
  }
  return rows == 1 && steps >= kLongSteps && w_bytes <= kPackingPaysBytes;
}

/// The same for W_hh^T in backward, where the unpacked product is Eigen's vector-matrix product
/// per row (a strided walk over W_hh): 2+ rows pack once steps * (rows - 1) >= 16, one row over
/// 64 steps or more (bench/NOTES.md, 2026-11-25).
inline bool worth_packing_transposed(Index steps, Index rows) noexcept {
  constexpr Index kBreakEven = 16, kOneRowSteps = 64;
  return rows == 1 ? steps >= kOneRowSteps : steps * (rows - 1) >= kBreakEven;
}

/// Floating-point operations of an inference call: each layer's products with its inputs and
/// with its state.
inline double call_flops(const LayerSpec& spec, Index steps, Index batch) noexcept {
  double flops = 0.0;
  for (Index l = 0; l < spec.num_layers; ++l) {
    flops += 2.0 * static_cast<double>(spec.directions() * steps * batch * spec.gate_width()) *
             static_cast<double>(spec.layer_input_size(l) + spec.hidden_size);
  }
  return flops;
}

/// Batch rows per thread below which plan_loop does not split the batch, and the FLOP of one
/// step's recurrent product below which it does not split the hidden units (plan_loop says why).
constexpr Index kMinRowsPerThread = 4;
constexpr double kMinUnitStepFlops = 0.25e6;

/// Whether one step of `batch` rows is too small for plan_loop to split at any thread count: too
/// few rows to split the batch, and a recurrent product too small to split the hidden units.
inline bool small_step(const LayerSpec& spec, Index batch) noexcept {
  return batch < 2 * kMinRowsPerThread &&
         2.0 * static_cast<double>(batch * spec.gate_width() * spec.hidden_size) < kMinUnitStepFlops;
}

/// Whether the layers of a stack run at once, each a few steps behind the one below (a pipeline,
/// on two threads: run_pipeline): one direction, two layers or more, two threads or more and a
/// small batch, whose steps are too small to split between threads (bench/NOTES.md, 2026-11-30
/// stop 36; from three threads, stop 37). Dropout between layers is applied to a whole layer's
/// output after it, so it keeps them one after the other.
inline bool pipeline_layers(const LayerSpec& spec, Index batch, int n_threads, bool dropout) noexcept {
  return !spec.bidirectional && spec.num_layers >= 2 && n_threads >= 2 && !dropout && small_step(spec, batch);
}

/// Threads each direction of a layer runs on, forward and backward. The two directions of a
/// bidirectional layer are independent: for a small batch on two threads each takes one and
/// they run at once (a B=1 T=100 H=128 BiLSTM's forward 0.62-0.67 -> 0.34-0.36 ms on Zen 4, its
/// training step with backward's directions at once too 1.29-1.90 -> 0.93-1.19; a B=32 one
/// trained up to 5% slower, so larger batches keep both threads per direction: bench/NOTES.md,
/// 2026-11-30 stops 35 and 36). With more threads they run at once where one direction's loop
/// would use no more than two of them anyway (8 rows split in two, or a step too small to split),
/// which leaves the other threads idle but no longer runs the directions one after the other on
/// a single thread (stop 37).
inline int threads_per_direction(const LayerSpec& spec, Index batch, int n_threads) noexcept {
  constexpr Index kMaxBatchAtOnce = 8;
  if (!spec.bidirectional || n_threads < 2 || batch > kMaxBatchAtOnce) return n_threads;
  const bool loop_uses_two_at_most = n_threads == 2 || batch == 2 * kMinRowsPerThread || small_step(spec, batch);
  return loop_uses_two_at_most ? 1 : n_threads;
}

/// Steps a pipelined layer projects at a time: the layer above starts that many steps behind.
constexpr Index kPipelineChunkSteps = 8;

/// Rows up to which an unpacked product is dot_rows (Eigen's general product would re-pack the
/// weights at every call).
constexpr Index kMaxGemvRows = 4;

/// Rows of B per call of PackedRows::multiply in packed_product: their packed depth block
/// (kBlockDepth x 64 values) stays in L2 while every weight panel passes over it. Eigen's general
/// product packs far more rows per block for a long operand: [1600, 512] x [512, 2048] ran at
/// 83 GFLOP/s there and at 92 in chunks of 64 rows, one AVX2 core (bench/NOTES.md, 2026-11-27).
constexpr Index kPackedChunkRows = 64;

/// Rows (steps x batch rows) of inputs the time loop projects at a time, onto the gates of
/// W_ih [w_rows, depth]: W_ih's panels are read once per chunk. Where W_ih is larger than
/// kLargeProjectionBytes (several times a core's L2, so each chunk re-reads it from L3), chunks
/// are four times longer, when their gate buffer is then no larger than W_ih (depth >= 256).
/// LSTM D=H=512, projection 64 -> 256 rows, alternating in one process, 1 / 2 threads: B=64
/// 88.3 -> 84.4 / 43.2 -> 41.6 ms, B=16 21.3 -> 20.9 / 12.2 -> 11.1 ms; layers with W_ih in L2
/// (B=64 T=100 D=32 H=128, B=32 T=50 D=64 H=256) within 2% either way (bench/NOTES.md,
/// 2026-11-28). Every row's gates come out the same bit for bit at any chunk length.
template <class T>
Index projection_chunk_rows(Index w_rows, Index depth) noexcept {
  constexpr std::size_t kLargeProjectionBytes = std::size_t{2} << 20;
  constexpr Index kLongChunk = 4 * kPackedChunkRows;
  const auto bytes = static_cast<std::size_t>(w_rows) * static_cast<std::size_t>(depth) * sizeof(T);
  return bytes >= kLargeProjectionBytes && depth >= kLongChunk ? kLongChunk : kPackedChunkRows;
}

/// out[rows, A.rows()] (+)= B A^T for a long B (row-major [rows, A.depth()]), in chunks of
/// kPackedChunkRows rows; threads take whole chunks, or, with fewer chunks than threads, blocks
/// of A's rows. Adds to out with `accumulate`, else overwrites it.
template <class T>
void packed_product(const PackedRows<T>& a, const T* b, Index rows, T* out, Index ld_out, bool accumulate,
                    int threads) {
  const Index chunks = (rows + kPackedChunkRows - 1) / kPackedChunkRows;
  const bool split_rows = chunks >= threads;
  parallel_blocks(split_rows ? rows : a.row_blocks(), threads, split_rows ? kPackedChunkRows : 1,
                  [&](Index first, Index count) {
    const Index r_begin = split_rows ? first : 0, r_end = split_rows ? first + count : rows;
    const Index blk_begin = split_rows ? 0 : first, blk_end = split_rows ? a.row_blocks() : first + count;
    AlignedVector<T> scratch(static_cast<std::size_t>(PackedRows<T>::scratch_size(kPackedChunkRows)));
    for (Index r = r_begin; r < r_end; r += kPackedChunkRows) {
      const Index n = std::min(kPackedChunkRows, r_end - r);
      a.multiply(b + r * a.depth(), n, out + r * ld_out, ld_out, scratch.data(), blk_begin, blk_end, accumulate);
    }
  });
}

/// Rows (steps x batch) of gate gradients backward holds at once (at least one step): the weight
/// gradients are one product per chunk, and the buffer is about 256 x GH instead of T x B x GH
/// (an LSTM at B=64 T=200 H=256: 1 MB instead of 52 MB, as much as all the activations its tape
/// keeps). 256 and 1024 rows ran the training step equally fast, at one and two threads, and
/// both faster than the whole T x B at once, whose buffer left the cache before the products
/// read it (bench/NOTES.md, 2026-11-27).
constexpr Index kGradChunkRows = 256;

/// Weights of a direction (GH x (D + H) values) up to which backward takes chunks of half as
/// many rows and forms the weight gradients in pieces (add_weight_gradient): there the chunk's
/// buffer and the products' packing buffers weigh as much as a good part of the activations.
/// Larger weights outweigh both, and each chunk reads and writes all their gradients, which
/// fewer, larger chunks do less often (bench/NOTES.md, 2026-11-27 night session 2).
constexpr Index kSmallWeights = Index(1) << 19;

/// dw (+)= g^T x, [M, K] += [N, M]^T [N, K], with `pieces` in blocks of dw of at most
/// kWeightGradPiece rows and columns. Eigen packs a product's operands into buffers sized from
/// its blocking, taken from the heap above 128 KiB (EIGEN_STACK_ALLOCATION_LIMIT), per product:
/// at N = 256 an LSTM's dW_ih and dW_hh (H = 256) took 1.3 MB per chunk, at the training step's
/// peak. With N <= kGradChunkRows / 2 and blocks of 256, both buffers stay on the stack.
constexpr Index kWeightGradPiece = 256;

template <class Dst, class G, class X>
void add_weight_gradient(Dst&& dw, const G& g, const X& x, bool pieces) {
  if (!pieces) {
    dw.noalias() += g.transpose() * x;
    return;
  }
  for (Index i = 0; i < dw.rows(); i += kWeightGradPiece) {
    const Index m = std::min(kWeightGradPiece, dw.rows() - i);
    for (Index j = 0; j < dw.cols(); j += kWeightGradPiece) {
      const Index k = std::min(kWeightGradPiece, dw.cols() - j);
      dw.block(i, j, m, k).noalias() += g.middleCols(i, m).transpose() * x.middleCols(j, k);
    }
  }
}

/// Up to this many input rows (steps x batch) the input projection is dot_rows (W_ih read once
/// per 4 rows): packing all of W_ih first costs more (bench/NOTES.md, 2026-11-27: 16 rows of
/// W 2048 x 512, dot_rows 515 us, packing 272 + packed product 348 us).
constexpr Index kMaxGemvProjectionRows = 16;

/// The memory of `kept`'s packed weights (left empty), or where it has none, `spare`'s.
template <class T>
AlignedVector<T> lend_memory(KeptPacking<T>& kept, AlignedVector<T>* spare) {
  AlignedVector<T> memory;
  if (kept.packed) {
    memory = std::move(*kept.packed).release();
    kept.packed.reset();
  } else if (spare != nullptr) {
    memory.swap(*spare);
  }
  kept.frozen_at = nullptr;
  return memory;
}

/// From this many values a comparison of kept weights with the caller's is split across the
/// call's threads: memcmp reads both at one core's bandwidth, 0.2-0.3 ms for an LSTM's W_ih at
/// D=H=512 (4 MB, and its copy) (bench/NOTES.md, 2026-11-27, night session 3).
constexpr Index kMinValuesPerCompareThread = Index{1} << 18;

/// Whether `copy` ([groups, slice] contiguous) holds, byte for byte, the `groups` slices of
/// `slice` values of `w`, slice k at w + k * slice_stride; compared by up to `threads`.
template <class T>
bool same_values(const T* copy, const T* w, Index groups, Index slice, Index slice_stride, int threads) {
  const Index n = groups * slice;
  const int used = static_cast<int>(std::clamp<Index>(n / kMinValuesPerCompareThread, 1, threads));
  std::atomic<bool> same{true};
  parallel_blocks(n, used, 16, [&](Index begin, Index count) {
    // [begin, begin + count) of the copy, slice by slice (a slice may start inside the range)
    for (Index i = begin; i < begin + count && same.load(std::memory_order_relaxed);) {
      const Index k = i / slice, in_slice = i - k * slice;
      const Index len = std::min(slice - in_slice, begin + count - i);
      if (std::memcmp(copy + i, w + k * slice_stride + in_slice, static_cast<std::size_t>(len) * sizeof(T)) != 0) {
        same.store(false, std::memory_order_relaxed);
      }
      i += len;
    }
  });
  return same.load();
}

/// `groups` slices of `count` rows of `w` ([*, depth] row-major), slice k from row k * stride,
/// packed as one [groups * count, depth] matrix: `kept`'s when it still holds these values (as
/// `keep` tells: compared with its copy, or for frozen weights, from the same address), else
/// repacked into its memory (or, where it has none, into `spare`'s) by up to `threads`. One
/// slice packs straight from `w`; several are gathered first, which gives a thread that owns
/// some units of every gate one product for all of them.
template <class T>
const PackedRows<T>& packed_row_groups(KeptPacking<T>& kept, const T* w, Index groups, Index stride, Index count,
                                       Index depth, KeepPacked keep, AlignedVector<T>* spare = nullptr,
                                       int threads = 1) {
  const Index rows = groups * count, slice = count * depth;
  const auto n = static_cast<std::size_t>(groups * slice);
  const bool shaped = kept.packed && kept.packed->rows() == rows && kept.packed->depth() == depth;
  if (keep == KeepPacked::Frozen && shaped && kept.frozen_at == w && kept.frozen_stride == stride) {
    return *kept.packed;
  }
  if (keep == KeepPacked::Checked && shaped && kept.frozen_at == nullptr && kept.source.size() == n &&
      same_values(kept.source.data(), w, groups, slice, stride * depth, threads)) {
    return *kept.packed;
  }
  AlignedVector<T> storage = lend_memory(kept, spare);
  if (keep == KeepPacked::Checked || groups > 1) {
    kept.source.resize(n);
    for (Index k = 0; k < groups; ++k) std::copy_n(w + k * stride * depth, slice, kept.source.data() + k * slice);
  }
  kept.packed.emplace(groups > 1 ? kept.source.data() : w, rows, depth, false, std::move(storage),
                      PackedRows<T>::pack_threads(rows, depth, threads));
  if (keep != KeepPacked::Checked) AlignedVector<T>().swap(kept.source);
  if (keep == KeepPacked::Frozen) {
    kept.frozen_at = w;
    kept.frozen_stride = stride;
  }
  return *kept.packed;
}

/// `w` ([rows, depth] row-major) packed and kept as packed_row_groups keeps one slice.
template <class T>
const PackedRows<T>& packed_weights(KeptPacking<T>& kept, const T* w, Index rows, Index depth, KeepPacked keep,
                                    AlignedVector<T>* spare = nullptr, int threads = 1) {
  return packed_row_groups(kept, w, 1, rows, rows, depth, keep, spare, threads);
}

/// gates[T*B, GH] = input[T*B, D] W_ih^T + b_ih, split over rows (or, for a few rows, over gate
/// columns, so that each thread streams only its part of W_ih) between up to `n_threads`; either
/// split gives the same results. Beyond a few rows W_ih is packed, kept in `cache` when given.
template <class T>
void project_inputs(const DirectionContext<T>& c, const T* input, T* gates, int n_threads,
                    typename Tape<T>::Packed* cache = nullptr) {
  const Index rows = c.steps * c.batch;
  const Index gh = c.gate_width();
  if (rows <= kMaxGemvProjectionRows) {
    const int threads =
        n_threads > 1 ? threads_for(2.0 * rows * gh * c.input_width, gh / 16, n_threads) : 1;
    parallel_blocks(gh, threads, 16, [&](Index j0, Index n) {
      dot_rows(c.w_ih + j0 * c.input_width, n, c.input_width, input, c.input_width, rows, gates + j0, gh);
      if (c.b_ih == nullptr) return;
      for (Index r = 0; r < rows; ++r) {
        ArrayMap<T>(gates + r * gh + j0, n) += ConstArrayMap<T>(c.b_ih + j0, n);
      }
    });
    return;
  }
  // Beyond that, W_ih packed once and multiplied in row chunks (packed_product), the bias first.
  std::optional<PackedRows<T>> local;
  const PackedRows<T>& w = cache != nullptr ? packed_weights(cache->ih, c.w_ih, gh, c.input_width, cache->keep,
                                                             &cache->ih_spare, n_threads)
                                            : local.emplace(c.w_ih, gh, c.input_width);
  if (c.b_ih != nullptr) {
    for (Index r = 0; r < rows; ++r) std::copy_n(c.b_ih, gh, gates + r * gh);
  }
  const int threads = n_threads > 1 ? threads_for(2.0 * rows * gh * c.input_width, rows, n_threads) : 1;
  packed_product(w, input, rows, gates, gh, c.b_ih != nullptr, threads);
}

/// From this many batch rows per thread (every thread running its own time loop), the forward
/// projects the inputs of projection_chunk_rows() rows at a time, just before the recurrence
/// reaches them, instead of all steps up front: the cell then reads gates still in cache, where
/// a [T, B, GH] buffer written up front had passed through memory (bench/NOTES.md, 2026-11-27,
/// evening).
constexpr Index kMinStepProjectionRows = 4;

/// The forward's input projection as the loop goes: W_ih packed (nullptr: projected up front)
/// and the layer's time-major input.
template <class T>
struct StepProjection {
  const PackedRows<T>* w_ih = nullptr;
  const T* input = nullptr;
  bool keep = true;  // whether the tape keeps the gates (training)
  // In a pipeline (pipeline_layers): steps projected at a time (else projection_chunk_rows), how
  // far the layer below has written the input, and where this layer says how far it has written.
  Index chunk_steps = 0;
  const StepProgress* input_ready = nullptr;
  StepProgress* output_written = nullptr;
};

/// The steps a loop projecting `chunk` steps at a time projects at its step s (s counts in the
/// loop's order; the reverse direction walks t down): `count` steps from the earliest, `first`.
struct ChunkSteps {
  Index first;
  Index count;
};
inline ChunkSteps chunk_steps(bool reverse, Index steps, Index s, Index chunk) noexcept {
  const Index count = std::min(chunk, steps - s);
  return {reverse ? steps - s - count : s, count};
}

/// out[r, :w.rows()] = bias + x[r, :] W^T for r < n (x rows w.depth() apart, out rows `ld_out`
/// apart; no bias when nullptr), W packed; `scratch` holds PackedRows<T>::scratch_size(n).
template <class T>
void project_rows(const PackedRows<T>& w, const T* bias, const T* x, Index n, T* out, Index ld_out, T* scratch) {
  if (bias != nullptr) {
    for (Index r = 0; r < n; ++r) std::copy_n(bias, w.rows(), out + r * ld_out);
  }
  w.multiply(x, n, out, ld_out, scratch, 0, w.row_blocks(), bias != nullptr);
}

/// Hidden units are split between threads in blocks of this many (a vector of floats or more).
constexpr Index kUnitBlock = 16;

/// How the time loop of one direction uses its threads.
struct LoopPlan {
  int batch_threads = 1;  // independent row blocks, each running the whole time loop alone
  int step_threads = 1;   // threads splitting each step's recurrent product by columns
  int unit_threads = 1;   // forward: threads each owning a slice of the hidden units for the whole loop
  int other_threads = 1;  // for the input projection and for packing or comparing weights
  bool on_this_thread = false;  // the batch or unit split's parts run here, one after another
};

/// Splitting the batch needs no synchronisation between steps, so it is preferred; each step's
/// product is split only when one step is large (big hidden size, small batch), since every
/// split step costs a barrier, and a barrier waits for the slowest thread (badly so when
/// another process holds a core).
template <class T>
LoopPlan plan_loop(const DirectionContext<T>& c) {
  LoopPlan plan;
  if (c.n_threads <= 1) return plan;
  constexpr double kMinStepFlops = 4.0e6;
  const double step_flops = 2.0 * c.batch * c.gate_width() * c.hidden();
  plan.other_threads = c.n_threads;
  if (c.batch >= 2 * kMinRowsPerThread) {
    plan.batch_threads = static_cast<int>(std::min<Index>(c.n_threads, c.batch / kMinRowsPerThread));
  } else {
    // The backward splits each large step's product by columns, a parallel region per step
    // (smaller steps ran slower than on one thread, bench/NOTES.md 2026-11-25).
    if (step_flops >= kMinStepFlops) plan.step_threads = threads_for(step_flops, c.gate_width() / 16, c.n_threads);
    // The forward splits the hidden units between threads for the whole time loop: one barrier
    // per step, no parallel region per step, and the cell runs on every thread. A per-step
    // barrier stalls whenever a thread loses its core: on 2026-11-25, in the benchmark's process
    // (other thread pools alive), steps under 4 MFLOP were bimodal; on 2026-11-27, two
    // alternating runs from 0.5 MFLOP were steady and up to 1.8x faster; once each thread's
    // gates were one product, from 0.25 MFLOP 1.4-1.8x faster, and slower at 0.13 for a tanh
    // RNN (bench/NOTES.md).
    if (step_flops >= kMinUnitStepFlops) {
      plan.unit_threads = static_cast<int>(std::min<Index>(c.n_threads, c.hidden() / kUnitBlock));
    }
  }
  // A small call after a pause keeps the batch or unit split's parts, whose rows take other
  // kernels than one whole product would (other bits), but runs them all on this thread; the
  // column splits, which change no bits, it does not make.
  if (c.after_pause) {
    plan.on_this_thread = true;
    plan.step_threads = 1;
    plan.other_threads = 1;
  }
  return plan;
}

/// rec[rows, GH] = h[rows, H] W_hh^T, split over gate columns across `threads`; from the packed
/// weights where the caller packed them (`scratch`: packed->row_blocks() * scratch_size(rows)).
template <class T>
void recurrent_product(const DirectionContext<T>& c, const T* h, Index rows, T* rec, int threads,
                       const PackedRows<T>* packed = nullptr, T* scratch = nullptr) {
  const Index gh = c.gate_width();
  if (packed != nullptr) {
    const Index per_thread = PackedRows<T>::scratch_size(rows);
    parallel_blocks(packed->row_blocks(), threads, 1, [&](Index b0, Index nb) {
      packed->multiply(h, rows, rec, gh, scratch + b0 * per_thread, b0, b0 + nb);
    });
    return;
  }
  if (rows <= kMaxGemvRows) {
    parallel_blocks(gh, threads, 16, [&](Index j0, Index n) {
      dot_rows(c.w_hh + j0 * c.hidden(), n, c.hidden(), h, c.hidden(), rows, rec + j0, gh);
    });
    return;
  }
  const ConstMatrixMap<T> hm(h, rows, c.hidden());
  const ConstMatrixMap<T> w(c.w_hh, gh, c.hidden());
  MatrixMap<T> r(rec, rows, gh);
  parallel_blocks(gh, threads, 16, [&](Index j0, Index n) {
    r.middleCols(j0, n).noalias() = hm * w.middleRows(j0, n).transpose();
  });
}

/// carry[rows, H] += dg[rows, GH] W_hh, split over hidden columns across `threads`; from the packed
/// W_hh^T where the caller packed it (`scratch`: packed->row_blocks() * scratch_size(rows)).
template <class T>
void recurrent_product_backward(const DirectionContext<T>& c, const T* dg, Index rows, T* carry, int threads,
                                const PackedRows<T>* packed = nullptr, T* scratch = nullptr) {
  const Index gh = c.gate_width(), h = c.hidden();
  if (packed != nullptr) {
    const Index per_thread = PackedRows<T>::scratch_size(rows);
    parallel_blocks(packed->row_blocks(), threads, 1, [&](Index b0, Index nb) {
      packed->multiply(dg, rows, carry, h, scratch + b0 * per_thread, b0, b0 + nb, true);
    });
    return;
  }
  const ConstMatrixMap<T> g(dg, rows, gh);
  const ConstMatrixMap<T> w(c.w_hh, gh, h);
  MatrixMap<T> out(carry, rows, h);
  parallel_blocks(h, threads, 16, [&](Index j0, Index n) {
    if (rows <= kMaxGemvRows) {  // a vector-matrix product per row, as in recurrent_product
      for (Index r = 0; r < rows; ++r) out.row(r).segment(j0, n).noalias() += g.row(r) * w.middleCols(j0, n);
    } else {
      out.middleCols(j0, n).noalias() += g * w.middleCols(j0, n);
    }
  });
}

}  // namespace direction_ops

RNNKIT_END_NAMESPACE
