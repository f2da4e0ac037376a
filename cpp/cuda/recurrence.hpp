// The recurrence of one (layer, direction): the buffers a step reads and writes, by step, and
// the fused form that runs every step of one sequence in one block.
//
// Step by step (any size), per step: a GEMM for h_{t-1} W_hh^T over the batch, then the cell
// kernel (CellForward); backward: the cell kernel (CellBackward), then dgh W_hh into the carry.
// Each step costs a GEMM call and a kernel launch, some 10 us of host time on a GPU, which
// dominates when W_hh is small.
//
// Fused (small W_hh): one launch for all steps. Block b runs sequence b; per step, the program's
// phases, each over its indices, with a block-wide barrier after each:
//   forward   rec = h_{t-1}[b, :] W_hh^T (block-shared), then CellForward on (b, j) for all j
//   backward  CellBackward on (b, j) for all j, then carry[b, :] += dgh_t[b, :] W_hh
// the dot products split into parts summed in a phase of their own (FusedForward, FusedBackward).
// Sequences do not interact within a step, so blocks need no grid-wide synchronisation. Each
// block reads W_hh once per step (from L2): worth it while W_hh is small (fused_recurrence).
// The executor runs a program with `recurrence(blocks, steps, program)`: the CUDA one as a
// kernel with __syncthreads() after each phase, the host one as loops in that order.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels.hpp"

RNNKIT_BEGIN_NAMESPACE
namespace device {

/// Whether one direction's recurrence over `batch` sequences runs fused: W_hh at most 256 KiB,
/// and the W_hh reads of all blocks together at most 16 MiB per step (beyond that a batched
/// GEMM per step does the same work with fewer reads).
inline bool fused_recurrence(Index gate_width, Index hidden, Index batch, std::size_t value_bytes) {
  const auto weight_bytes = static_cast<std::size_t>(gate_width * hidden) * value_bytes;
  const auto all_blocks = static_cast<std::size_t>(batch) * weight_bytes;
  return weight_bytes <= (std::size_t{256} << 10) && all_blocks <= (std::size_t{16} << 20);
}

/// One direction's tape: what the forward writes and the backward reads, by step. V is T in
/// the forward and const T in the backward.
template <class V>
struct DirectionTape {
  CellKind cell;
  Index hidden, batch, steps;
  bool reverse;
  V* gates;   // [T, B, GH]: x_t W_ih^T in, activated gates out
  V* states;  // [T+1, B, H]: forward h_{-1} first, reverse h_T last
  V* cells;   // [T+1, B, H] LSTM
  V* extra;   // [T, B, H] GRU

  RNNKIT_HD Index gate_width() const { return gate_count(cell) * hidden; }
  /// Where step t's previous and next state lie in `states` / `cells`.
  RNNKIT_HD Index prev(Index t) const { return reverse ? t + 1 : t; }
  RNNKIT_HD Index next(Index t) const { return reverse ? t : t + 1; }
  RNNKIT_HD V* state_at(V* base, Index slot) const { return base + slot * batch * hidden; }
};

/// One direction's forward over all steps; step(t) is step t's CellForward.
template <class T>
struct ForwardPass {
  DirectionTape<T> tape;
  const T* bias_ih;            // [GH] or nullptr
  const T* bias_hh;            // [GH] or nullptr
  const std::uint8_t* active;  // [T, B] or nullptr
  T* out;                      // [T, B, out_stride] at this direction's first column
  Index out_stride;

  /// The time index of the n-th step run.
  RNNKIT_HD Index time(Index n) const { return tape.reverse ? tape.steps - 1 - n : n; }
  RNNKIT_HD const T* h_prev(Index t) const { return tape.state_at(tape.states, tape.prev(t)); }

  RNNKIT_HD CellForward<T> step(Index t, const T* rec, Index rec_stride) const {
    const DirectionTape<T>& d = tape;
    CellForward<T> f{};
    f.cell = d.cell;
    f.hidden = d.hidden;
    f.gates = d.gates + t * d.batch * d.gate_width();
    f.rec = rec;
    f.rec_stride = rec_stride;
    f.bias_ih = bias_ih;
    f.bias_hh = bias_hh;
    f.h_prev = d.state_at(d.states, d.prev(t));
    f.h_next = d.state_at(d.states, d.next(t));
    if (d.cell == CellKind::Lstm) {
      f.c_prev = d.state_at(d.cells, d.prev(t));
      f.c_next = d.state_at(d.cells, d.next(t));
    }
    if (d.cell == CellKind::Gru) f.extra = d.state_at(d.extra, t);
    f.active = active != nullptr ? active + t * d.batch : nullptr;
    f.out = out + t * d.batch * out_stride;
    f.out_stride = out_stride;
    return f;
  }
};

/// One direction's backward over all steps; step(t) is step t's CellBackward.
template <class T>
struct BackwardPass {
  DirectionTape<const T> tape;
  const T* grad_out;           // [T, B, out_stride] at this direction's first column, or nullptr
  Index out_stride;
  T* carry;                    // [B, H] dL/dh in flight
  T* dc;                       // [B, H] LSTM: dL/dc in flight
  T* dgx;                      // [T, B, GH]
  T* dgh;                      // [T, B, GH]; may alias dgx
  const std::uint8_t* active;  // [T, B] or nullptr

  /// The time index of the n-th step run (the last step first).
  RNNKIT_HD Index time(Index n) const { return tape.reverse ? n : tape.steps - 1 - n; }

  RNNKIT_HD CellBackward<T> step(Index t) const {
    const DirectionTape<const T>& d = tape;
    const Index gh = d.gate_width();
    CellBackward<T> b{};
    b.cell = d.cell;
    b.hidden = d.hidden;
    b.gates = d.gates + t * d.batch * gh;
    if (d.cell == CellKind::Gru) b.extra = d.state_at(d.extra, t);
    b.h_prev = d.state_at(d.states, d.prev(t));
    b.h_next = d.state_at(d.states, d.next(t));
    if (d.cell == CellKind::Lstm) {
      b.c_prev = d.state_at(d.cells, d.prev(t));
      b.c_next = d.state_at(d.cells, d.next(t));
      b.dc = dc;
    }
    b.grad_out = grad_out != nullptr ? grad_out + t * d.batch * out_stride : nullptr;
    b.out_stride = out_stride;
    b.carry = carry;
    b.dgx = dgx + t * d.batch * gh;
    b.dgh = dgh + t * d.batch * gh;
    b.active = active != nullptr ? active + t * d.batch : nullptr;
    return b;
  }
};

/// How many parts a fused dot product of `length` terms is split into, so that `count` of them
/// keep up to 1024 threads busy with at least two terms each.
inline Index dot_parts(Index count, Index length) {
  const Index by_threads = 1024 / (count > 0 ? count : 1), by_terms = length / 2;
  const Index parts = by_threads < by_terms ? by_threads : by_terms;
  return parts > 1 ? parts : 1;
}

/// The fused forward (see the top of this file), with its dot products split into `parts`:
///   phase 0, (q, g) in [0, parts) x [0, GH): part q of h_{t-1} . W_hh[g, :] into `partial`
///   phase 1, g in [0, GH): rec[g] = the sum of g's parts
///   phase 2, j in [0, H): CellForward on element (b, j); h_t[j] kept in the block for phase 0
template <class T>
struct FusedForward {
  using value_type = T;
  static constexpr int kPhases = 3;
  ForwardPass<T> pass;
  const T* weight_hh_t;  // [H, GH]: W_hh transposed, so that phase 0's reads are coalesced
  Index parts;

  /// Block-shared values: partial [parts, GH], rec [GH], h [H].
  RNNKIT_HD Index shared_size() const { return (parts + 1) * pass.tape.gate_width() + pass.tape.hidden; }
  RNNKIT_HD Index size(int phase) const {
    return phase == 0 ? parts * pass.tape.gate_width() : phase == 1 ? pass.tape.gate_width() : pass.tape.hidden;
  }
  RNNKIT_HD void run(int phase, Index b, Index n, Index i, T* shared) const {
    const Index t = pass.time(n), h = pass.tape.hidden, gh = pass.tape.gate_width();
    T* partial = shared;
    T* rec = partial + parts * gh;
    T* h_block = rec + gh;
    if (phase == 0) {
      const Index q = i / gh, g = i % gh;
      const T* hp = n == 0 ? pass.h_prev(t) + b * h : h_block;
      T acc(0);
      for (Index k = q * h / parts, end = (q + 1) * h / parts; k < end; ++k) acc += hp[k] * weight_hh_t[k * gh + g];
      partial[i] = acc;
    } else if (phase == 1) {
      T acc(0);
      for (Index q = 0; q < parts; ++q) acc += partial[q * gh + i];
      rec[i] = acc;
    } else {
      const CellForward<T> f = pass.step(t, rec, 0);
      f(b * h + i);
      h_block[i] = f.h_next[b * h + i];
    }
  }
};

/// The fused backward (see the top of this file), with its dot products split into `parts`:
///   phase 0, j in [0, H): CellBackward on element (b, j)
///   phase 1, (q, j) in [0, parts) x [0, H): part q of dgh_t[b, :] . W_hh[:, j] into `partial`
///   phase 2, j in [0, H): carry[b, j] += the sum of j's parts
template <class T>
struct FusedBackward {
  using value_type = T;
  static constexpr int kPhases = 3;
  BackwardPass<T> pass;
  const T* weight_hh;  // [GH, H]
  Index parts;

  /// Block-shared values: partial [parts, H].
  RNNKIT_HD Index shared_size() const { return parts * pass.tape.hidden; }
  RNNKIT_HD Index size(int phase) const { return phase == 1 ? parts * pass.tape.hidden : pass.tape.hidden; }
  RNNKIT_HD void run(int phase, Index b, Index n, Index i, T* shared) const {
    const Index t = pass.time(n), h = pass.tape.hidden;
    if (phase == 0) {
      pass.step(t)(b * h + i);
    } else if (phase == 1) {
      const Index gh = pass.tape.gate_width(), q = i / h, j = i % h;
      const T* dg = pass.dgh + (t * pass.tape.batch + b) * gh;
      T acc(0);
      for (Index g = q * gh / parts, end = (q + 1) * gh / parts; g < end; ++g) acc += dg[g] * weight_hh[g * h + j];
      shared[i] = acc;
    } else {
      T acc(0);
      for (Index q = 0; q < parts; ++q) acc += shared[q * h + i];
      pass.carry[b * h + i] += acc;
    }
  }
};

}  // namespace device
RNNKIT_END_NAMESPACE
