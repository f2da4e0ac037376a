// The recurrence of one (layer, direction): the buffers a step reads and writes, by step, and
// the fused form that runs every step of one sequence in one block.
//
// Step by step (any size), per step: a GEMM for h_{t-1} W_hh^T over the batch, then the cell
// kernel (CellForward); backward: the cell kernel (CellBackward), then dgh W_hh into the carry.
// Each step costs a GEMM call and a kernel launch, some 10 us of host time on a GPU, which
// dominates when W_hh is small.
//
// Fused (small W_hh): one launch for all steps. Block b runs sequence b; per step, phase 0 and
// phase 1 below, each over its indices, with a block-wide barrier after each:
//   forward   phase 0, g in [0, GH): rec[g] = h_{t-1}[b, :] . W_hh[g, :]   (block-shared rec)
//             phase 1, j in [0, H):  CellForward on element (b, j), rec from the block
//   backward  phase 0, j in [0, H):  CellBackward on element (b, j)
//             phase 1, j in [0, H):  carry[b, j] += dgh_t[b, :] . W_hh[:, j]
// Sequences do not interact within a step, so blocks need no grid-wide synchronisation. Each
// block reads W_hh once per step (from L2): worth it while W_hh is small (fused_recurrence).
// The executor runs a program with `recurrence(blocks, steps, shared, program)`: the CUDA one
// as a kernel with __syncthreads() between the phases, the host one as loops in that order.
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
  return weight_bytes <= (std::size_t{256} << 10) && static_cast<std::size_t>(batch) * weight_bytes <= (std::size_t{16} << 20);
}

/// One direction's forward buffers over all steps; step(t) is step t's CellForward.
template <class T>
struct ForwardPass {
  CellKind cell;
  Index hidden, batch, steps;
  bool reverse;
  T* gates;                    // [T, B, GH]: x_t W_ih^T in, activated gates out
  T* states;                   // [T+1, B, H]: forward h_{-1} first, reverse h_T last
  T* cells;                    // [T+1, B, H] LSTM
  T* extra;                    // [T, B, H] GRU
  const T* bias_ih;            // [GH] or nullptr
  const T* bias_hh;            // [GH] or nullptr
  const std::uint8_t* active;  // [T, B] or nullptr
  T* out;                      // [T, B, out_stride] at this direction's first column
  Index out_stride;

  RNNKIT_HD Index gate_width() const { return gate_count(cell) * hidden; }
  /// The time index of the n-th step run.
  RNNKIT_HD Index time(Index n) const { return reverse ? steps - 1 - n : n; }
  RNNKIT_HD Index prev(Index t) const { return reverse ? t + 1 : t; }
  RNNKIT_HD const T* h_prev(Index t) const { return states + prev(t) * batch * hidden; }

  RNNKIT_HD CellForward<T> step(Index t, const T* rec, Index rec_stride) const {
    const Index state = batch * hidden, next = reverse ? t : t + 1;
    CellForward<T> f{};
    f.cell = cell;
    f.hidden = hidden;
    f.gates = gates + t * batch * gate_width();
    f.rec = rec;
    f.rec_stride = rec_stride;
    f.bias_ih = bias_ih;
    f.bias_hh = bias_hh;
    f.h_prev = states + prev(t) * state;
    f.h_next = states + next * state;
    if (cell == CellKind::Lstm) {
      f.c_prev = cells + prev(t) * state;
      f.c_next = cells + next * state;
    }
    if (cell == CellKind::Gru) f.extra = extra + t * state;
    f.active = active != nullptr ? active + t * batch : nullptr;
    f.out = out + t * batch * out_stride;
    f.out_stride = out_stride;
    return f;
  }
};

/// One direction's backward buffers over all steps; step(t) is step t's CellBackward.
template <class T>
struct BackwardPass {
  CellKind cell;
  Index hidden, batch, steps;
  bool reverse;
  const T* gates;              // [T, B, GH] activated
  const T* extra;              // [T, B, H] GRU
  const T* states;             // [T+1, B, H] as ForwardPass
  const T* cells;              // [T+1, B, H] LSTM
  const T* grad_out;           // [T, B, out_stride] at this direction's first column, or nullptr
  Index out_stride;
  T* carry;                    // [B, H] dL/dh in flight
  T* dc;                       // [B, H] LSTM: dL/dc in flight
  T* dgx;                      // [T, B, GH]
  T* dgh;                      // [T, B, GH]; may alias dgx
  const std::uint8_t* active;  // [T, B] or nullptr

  RNNKIT_HD Index gate_width() const { return gate_count(cell) * hidden; }
  /// The time index of the n-th step run (the last step first).
  RNNKIT_HD Index time(Index n) const { return reverse ? n : steps - 1 - n; }

  RNNKIT_HD CellBackward<T> step(Index t) const {
    const Index state = batch * hidden, prev = reverse ? t + 1 : t, next = reverse ? t : t + 1;
    CellBackward<T> b{};
    b.cell = cell;
    b.hidden = hidden;
    b.gates = gates + t * batch * gate_width();
    if (cell == CellKind::Gru) b.extra = extra + t * state;
    b.h_prev = states + prev * state;
    b.h_next = states + next * state;
    if (cell == CellKind::Lstm) {
      b.c_prev = cells + prev * state;
      b.c_next = cells + next * state;
      b.dc = dc;
    }
    b.grad_out = grad_out != nullptr ? grad_out + t * batch * out_stride : nullptr;
    b.out_stride = out_stride;
    b.carry = carry;
    b.dgx = dgx + t * batch * gate_width();
    b.dgh = dgh + t * batch * gate_width();
    b.active = active != nullptr ? active + t * batch : nullptr;
    return b;
  }
};

/// The fused forward (see the top of this file); needs GH values of block-shared memory.
template <class T>
struct FusedForward {
  using value_type = T;
  ForwardPass<T> pass;
  const T* weight_hh_t;  // [H, GH]: W_hh transposed, so that phase 0's reads are coalesced

  RNNKIT_HD Index size(int phase) const { return phase == 0 ? pass.gate_width() : pass.hidden; }
  RNNKIT_HD void run(int phase, Index b, Index n, Index i, T* shared) const {
    const Index t = pass.time(n), h = pass.hidden;
    if (phase == 0) {
      const Index gh = pass.gate_width();
      const T* hp = pass.h_prev(t) + b * h;
      T acc(0);
      for (Index k = 0; k < h; ++k) acc += hp[k] * weight_hh_t[k * gh + i];
      shared[i] = acc;
    } else {
      pass.step(t, shared, 0)(b * h + i);
    }
  }
};

/// The fused backward (see the top of this file); needs no shared memory.
template <class T>
struct FusedBackward {
  using value_type = T;
  BackwardPass<T> pass;
  const T* weight_hh;  // [GH, H]

  RNNKIT_HD Index size(int /*phase*/) const { return pass.hidden; }
  RNNKIT_HD void run(int phase, Index b, Index n, Index i, T* /*shared*/) const {
    const Index t = pass.time(n), h = pass.hidden;
    if (phase == 0) {
      pass.step(t)(b * h + i);
    } else {
      const Index gh = pass.gate_width();
      const T* dg = pass.dgh + (t * pass.batch + b) * gh;
      T acc(0);
      for (Index g = 0; g < gh; ++g) acc += dg[g] * weight_hh[g * h + i];
      pass.carry[b * h + i] += acc;
    }
  }
};

}  // namespace device
RNNKIT_END_NAMESPACE
