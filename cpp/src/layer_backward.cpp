// The layer driver's backward pass (back-propagation through time): per layer, top to bottom,
// and per direction, the steps in reverse over chunks of about kGradChunkRows rows, each chunk's
// weight gradients and dL/d(input) one product; dropout's masks applied on the way down.
#include <algorithm>
#include <optional>
#include <stdexcept>
#include <vector>

#include "direction_ops.hpp"
#include "layer_ops.hpp"
#include "rnnkit/cells.hpp"
#include "rnnkit/layer.hpp"
#include "rnnkit/packed_gemm.hpp"
#include "rnnkit/parallel.hpp"

RNNKIT_BEGIN_NAMESPACE

namespace {

using namespace direction_ops;  // NOLINT: the direction's context and products, split out for length
using namespace layer_ops;      // NOLINT: time-major copies and the cell dispatch

/// Threads that split each step's product with W_hh by hidden units (small batches, a thread's
/// units [starts[i], starts[i+1]) and its rows of W_hh^T packed, parts[i]), in one parallel
/// region over the steps: one thread runs the step's cell, then each adds its units' columns of
/// dG W_hh to dL/dh_{t-1}. Two barriers a step, no parallel region per step.
template <class T>
struct UnitTeam {
  int threads = 1;
  std::vector<Index> starts;
  std::vector<std::optional<PackedRows<T>>> parts;
};

/// Step s's cell backward over batch rows [b0, b0 + rows): dh (working memory) = dh_carry plus
/// the step's output gradient; the gate gradients go into dgx / dgh (from t_first on) and the
/// non-recurrent part of dL/dh_{t-1} into dh_carry. Returns the step's rows of dgh.
template <class T>
T* backward_cell(const DirectionContext<T>& c, const typename Tape<T>::Direction& tape, const T* grad_output,
                 T* dgx, T* dgh, T* dh_carry, T* dc, T* dh, Index b0, Index rows, Index s, Index t_first) {
  const Index steps = c.steps, batch = c.batch, h = c.hidden(), gh = c.gate_width();
  const Index dirs = c.spec.directions(), state_size = batch * h;
  const bool lstm = c.spec.cell == CellKind::Lstm;
  const bool gru = c.spec.cell == CellKind::Gru;
  const Index t = c.reverse ? steps - 1 - s : s;
  const Slots slot = slots(c.reverse, t);
  const std::uint8_t* active = c.active == nullptr ? nullptr : c.active_at(t) + b0;

  // Everything that reaches h_t: the carried gradient plus this step's output gradient.
  std::copy_n(dh_carry, rows * h, dh);
  if (grad_output != nullptr) {
    for (Index r = 0; r < rows; ++r) {
      if (active != nullptr && active[r] == 0) continue;
      const T* g = grad_output + (t * batch + b0 + r) * dirs * h + (c.reverse ? h : 0);
      ArrayMap<T>(dh + r * h, h) += ConstArrayMap<T>(g, h);
    }
  }

  BackwardStep<T> step;
  step.batch = rows;
  step.hidden = h;
  step.gates = c.spec.simple_rnn() ? nullptr : tape.gates.data() + (t * batch + b0) * gh;  // RNN: h_next
  step.h_prev = tape.state_data() + slot.prev * state_size + b0 * h;
  step.h_next = tape.state_data() + slot.next * state_size + b0 * h;
  if (lstm) {
    step.c_prev = tape.cells.data() + slot.prev * state_size + b0 * h;
    step.c_next = tape.cells.data() + slot.next * state_size + b0 * h;
    step.grad_c = dc;
  }
  if (gru) step.extra = tape.extra.data() + t * state_size + b0 * h;
  step.grad_h = dh;
  step.grad_gates_input = dgx + ((t - t_first) * batch + b0) * gh;
  step.grad_gates_hidden = dgh + ((t - t_first) * batch + b0) * gh;
  step.grad_h_prev = dh_carry;
  step.active = active;
  cell_backward(c.spec.cell, step);
  return step.grad_gates_hidden;
}

/// Steps of the backward loop run over batch rows [b0, b0 + rows), s from s_end - 1 down to
/// s_begin (t = s, or T-1-s in reverse); dh_carry, dc and dh ([rows, H] working memory) hold
/// those rows, `scratch` the packed product's panels (sized here on the first chunk). dgx and
/// dgh hold the gate gradients of the steps from t_first on. With a `team`, its threads split
/// each step's product by hidden units (and step_threads, w_hh_t and scratch go unused).
template <class T>
void backward_rows(const DirectionContext<T>& c, const typename Tape<T>::Direction& tape,
                   const T* grad_output, T* dgx, T* dgh, T* dh_carry, T* dc, T* dh, AlignedVector<T>& scratch,
                   Index b0, Index rows, int step_threads, const PackedRows<T>* w_hh_t, Index s_begin, Index s_end,
                   Index t_first, const UnitTeam<T>* team = nullptr) {
  if (team == nullptr || team->threads <= 1) {
    if (w_hh_t != nullptr) {
      scratch.resize(static_cast<std::size_t>(w_hh_t->row_blocks() * PackedRows<T>::scratch_size(rows)));
    }
    for (Index s = s_end - 1; s >= s_begin; --s) {
      const T* g = backward_cell(c, tape, grad_output, dgx, dgh, dh_carry, dc, dh, b0, rows, s, t_first);
      recurrent_product_backward(c, g, rows, dh_carry, step_threads, w_hh_t, scratch.data());
    }
    return;
  }
#ifdef _OPENMP
#pragma omp parallel num_threads(team->threads)
  {
    // A thread takes parts id, id + nt, ... (all of them, should the region get fewer threads).
    const auto first = static_cast<std::size_t>(omp_get_thread_num());
    const auto stride = static_cast<std::size_t>(omp_get_num_threads());
    const Index h = c.hidden(), gh = c.gate_width();
    AlignedVector<T> own_scratch(static_cast<std::size_t>(PackedRows<T>::scratch_size(rows)));
    for (Index s = s_end - 1; s >= s_begin; --s) {
      const Index t = c.reverse ? c.steps - 1 - s : s;
#pragma omp single
      backward_cell(c, tape, grad_output, dgx, dgh, dh_carry, dc, dh, b0, rows, s, t_first);
      // (the single's implicit barrier: the step's gate gradients are whole)
      for (std::size_t id = first; id < team->parts.size(); id += stride) {
        const std::optional<PackedRows<T>>& part = team->parts[id];
        if (!part) continue;
        part->multiply(dgh + ((t - t_first) * c.batch + b0) * gh, rows, dh_carry + team->starts[id], h,
                       own_scratch.data(), 0, part->row_blocks(), true);
      }
#pragma omp barrier
    }
  }
#else
  (void)step_threads;
  (void)w_hh_t;
  (void)scratch;
  (void)s_begin;
  (void)s_end;
  (void)t_first;
  throw std::logic_error("backward_rows: a unit team needs OpenMP");
#endif
}

/// Back-propagates one direction of one layer. Adds dL/d(input) into grad_input and the
/// parameter gradients into grad_params; writes the initial-state gradients. Uses its own
/// gate-gradient buffers and (layer, direction)'s packing `cache` only, so that the two
/// directions of a layer can run at once, each with its own grad_input.
template <class T>
void backward_direction(const DirectionContext<T>& c, const typename Tape<T>::Direction& tape,
                        const T* input, const T* grad_output, const BackwardArgs<T>& args,
                        T* grad_input, T* grad_params, typename Tape<T>::GateGrads& gate_grads,
                        typename Tape<T>::Packed& cache) {
  const Index steps = c.steps, batch = c.batch, h = c.hidden(), gh = c.gate_width();
  const bool lstm = c.spec.cell == CellKind::Lstm;
  const bool gru = c.spec.cell == CellKind::Gru;
  const Index state_size = batch * h;
  const Index k = c.state_index();

  // The gate gradients of a chunk of steps at a time (about kGradChunkRows rows): the weight
  // gradients and dL/d(input) are one product per chunk, and the buffer stays a fraction of the
  // activations instead of another T x B x GH. Every row of both is written (rows past their
  // length with zeros), so no clearing.
  const bool small_weights = gh * (c.input_width + h) <= kSmallWeights;
  const Index chunk_rows = small_weights ? kGradChunkRows / 2 : kGradChunkRows;
  const Index chunk = std::min(steps, std::max<Index>(1, chunk_rows / batch));
  gate_grads.input.resize(static_cast<std::size_t>(chunk * batch * gh));
  if (gru) gate_grads.hidden.resize(gate_grads.input.size());
  T* dgx = gate_grads.input.data();
  T* dgh = gru ? gate_grads.hidden.data() : dgx;

  AlignedVector<T> dh_carry(static_cast<std::size_t>(state_size), T(0));
  AlignedVector<T> dc(lstm ? static_cast<std::size_t>(state_size) : 0, T(0));
  if (args.grad_h_n != nullptr) std::copy_n(args.grad_h_n + k * state_size, state_size, dh_carry.data());
  if (lstm && args.grad_c_n != nullptr) std::copy_n(args.grad_c_n + k * state_size, state_size, dc.data());

  const LoopPlan plan = plan_loop(c);
  // W_hh^T and W_ih^T are packed into the memory of the forward's W_hh and W_ih panels, which
  // a training forward packs again on its next call anyway: two weight-sized buffers fewer at
  // the step's peak (bench/NOTES.md, 2026-11-27, night).
  std::optional<PackedRows<T>> w_hh_t;  // W_hh^T [H, GH], packed once for all steps
  const Index rows_per_thread = batch / plan.batch_threads;
  const bool pack_hh = rows_per_thread > kMaxGemvRows || worth_packing_transposed(steps, rows_per_thread);
  // Where the forward splits the hidden units between threads, so do the steps' products here:
  // each thread packs its units' rows of W_hh^T (bench/NOTES.md, 2026-11-27 late).
  UnitTeam<T> team;
#ifdef _OPENMP
  if (plan.batch_threads == 1 && plan.unit_threads > 1 && pack_hh) {
    team.threads = plan.unit_threads;
    const Index blocks = (h + kUnitBlock - 1) / kUnitBlock;
    for (int i = 0; i <= team.threads; ++i) team.starts.push_back(std::min(h, blocks * i / team.threads * kUnitBlock));
    team.parts.resize(static_cast<std::size_t>(team.threads));
#pragma omp parallel for num_threads(team.threads) schedule(static, 1)
    for (int i = 0; i < team.threads; ++i) {
      const auto k = static_cast<std::size_t>(i);
      const Index j0 = team.starts[k], nj = team.starts[k + 1] - j0;
      if (nj > 0) team.parts[k].emplace(c.w_hh + j0, nj, gh, true, AlignedVector<T>{}, 1, h);
    }
  }
#endif
  if (pack_hh && team.threads <= 1) {
    w_hh_t.emplace(c.w_hh, h, gh, true, lend_memory(cache.hh, &cache.hh_spare),
                   PackedRows<T>::pack_threads(h, gh, c.n_threads));
  }
  // dL/d(input) += dG_x W_ih, with W_ih^T packed (as the input projection packs W_ih).
  PackedRows<T> w_ih_t(c.w_ih, c.input_width, gh, true, lend_memory(cache.ih, &cache.ih_spare),
                       PackedRows<T>::pack_threads(c.input_width, gh, c.n_threads));

  const DirectionParams p = direction_params(c.spec, c.layer, c.reverse ? 1 : 0);
  MatrixMap<T> dw_ih(grad_params + p.weight_ih, gh, c.input_width);
  MatrixMap<T> dw_hh(grad_params + p.weight_hh, gh, h);
  const T* h_prev_all = tape.state_data() + (c.reverse ? state_size : 0);  // row t*B+b: h before step t
  // The row blocks' working memory, made before the chunks: a block owns the rows from its first
  // row b0 of dh, and panels[b0], which it sizes on its first chunk.
  AlignedVector<T> dh(static_cast<std::size_t>(state_size));
  std::vector<AlignedVector<T>> panels(static_cast<std::size_t>(batch));
  for (Index s_end = steps; s_end > 0; s_end -= chunk) {
    const Index s_begin = std::max<Index>(0, s_end - chunk);
    const Index t_first = c.reverse ? steps - s_end : s_begin;
    parallel_blocks(batch, plan.batch_threads, 1, [&](Index b0, Index n) {
      backward_rows(c, tape, grad_output, dgx, dgh, dh_carry.data() + b0 * h, lstm ? dc.data() + b0 * h : nullptr,
                    dh.data() + b0 * h, panels[static_cast<std::size_t>(b0)], b0, n, plan.step_threads,
                    w_hh_t ? &*w_hh_t : nullptr, s_begin, s_end, t_first, &team);
    });

    // Weight and bias gradients of the chunk's steps at once.
    const Index first_row = t_first * batch, n_rows = (s_end - s_begin) * batch;
    const ConstMatrixMap<T> gx(dgx, n_rows, gh);
    const ConstMatrixMap<T> ghid(dgh, n_rows, gh);
    const ConstMatrixMap<T> x(input + first_row * c.input_width, n_rows, c.input_width);
    const ConstMatrixMap<T> hp(h_prev_all + first_row * h, n_rows, h);
    const int w_threads =
        c.n_threads > 1 ? threads_for(2.0 * n_rows * gh * (c.input_width + h), gh / 16, c.n_threads) : 1;
    parallel_blocks(gh, w_threads, 16, [&](Index r0, Index n) {
      add_weight_gradient(dw_ih.middleRows(r0, n), gx.middleCols(r0, n), x, small_weights);
      add_weight_gradient(dw_hh.middleRows(r0, n), ghid.middleCols(r0, n), hp, small_weights);
    });
    if (c.spec.bias) {
      add_column_sums<T>(gx, grad_params + p.bias_ih);
      add_column_sums<T>(ghid, grad_params + p.bias_hh);
    }
    const int x_threads =
        c.n_threads > 1 ? threads_for(2.0 * n_rows * gh * c.input_width, n_rows, c.n_threads) : 1;
    packed_product(w_ih_t, dgx, n_rows, grad_input + first_row * c.input_width, c.input_width, true, x_threads);
  }
  if (w_hh_t) cache.hh_spare = std::move(*w_hh_t).release();
  cache.ih_spare = std::move(w_ih_t).release();

  std::copy(dh_carry.begin(), dh_carry.end(), args.grad_h0 + k * state_size);
  if (lstm && args.grad_c0 != nullptr) std::copy(dc.begin(), dc.end(), args.grad_c0 + k * state_size);
}

}  // namespace

template <class T>
void backward(Tape<T>& tape, const BackwardArgs<T>& args, int n_threads) {
  if (!tape.training) throw std::invalid_argument("backward needs the tape of a training forward");
  const LayerSpec& spec = tape.spec;
  const Index steps = tape.steps, batch = tape.batch, h = spec.hidden_size, dirs = spec.directions();
  const std::uint8_t* active = tape.active.empty() ? nullptr : tape.active.data();
  auto& scratch = tape.scratch;

  // In the caller's (time-major) order the caller's dL/d(out) is read, and layer 0's dL/dx
  // written, in place: no copies, and no buffers of their size.
  const bool direct = !tape.batch_first;
  const T* grad_output = nullptr;
  if (args.grad_out != nullptr && direct) {
    grad_output = args.grad_out;
  } else if (args.grad_out != nullptr) {
    scratch.grad_output.resize(static_cast<std::size_t>(steps * batch * dirs * h));
    to_time_major(args.grad_out, scratch.grad_output.data(), steps, batch, dirs * h, tape.batch_first);
    grad_output = scratch.grad_output.data();
  }
  // The top layer's states in the caller's out: where the caller changed out since (say
  // `g = out; g -= target`), that layer runs again into the tape's own memory.
  auto& top = tape.layers.back().directions.front();
  if (top.caller_output && fingerprint(top.in_output + batch * h, steps * batch * h) != top.output_fingerprint) {
    restore_states(tape, args.params);
  }
  for (Index l = spec.num_layers - 1; l >= 0; --l) {
    const auto& layer = tape.layers[static_cast<std::size_t>(l)];
    const auto input_size = static_cast<std::size_t>(steps * batch * spec.layer_input_size(l));
    T* grad_input = args.grad_x;
    if (l == 0 && direct) {
      std::fill_n(grad_input, input_size, T(0));
    } else {
      scratch.grad_input.assign(input_size, T(0));
      grad_input = scratch.grad_input.data();
    }
    // Directions with fewer threads than the call run at once (as in forward); the reverse one
    // then adds its dL/d(input) into a buffer of its own, added to the other's after both.
    const int direction_threads = threads_per_direction(spec, batch, n_threads);
    const bool at_once = direction_threads < n_threads;
    if (at_once) scratch.grad_input_reverse.assign(input_size, T(0));
    if (scratch.packed.size() < static_cast<std::size_t>((l + 1) * dirs)) {
      scratch.packed.resize(static_cast<std::size_t>((l + 1) * dirs));  // before any thread indexes it
    }
    const auto run_direction = [&](Index d) {
      const DirectionContext<T> c(spec, steps, batch, l, d, args.params, active, direction_threads);
      const auto own = static_cast<std::size_t>(at_once ? d : 0);
      backward_direction(c, layer.directions[static_cast<std::size_t>(d)], layer.input.data(), grad_output, args,
                         at_once && d == 1 ? scratch.grad_input_reverse.data() : grad_input, args.grad_params,
                         scratch.gate_grads[own], scratch.packed[static_cast<std::size_t>(c.state_index())]);
    };
    if (at_once) {
      run_each_on_its_thread(2, run_direction);
      ArrayMap<T>(grad_input, static_cast<Index>(input_size)) +=
          ConstArrayMap<T>(scratch.grad_input_reverse.data(), static_cast<Index>(input_size));
    } else {
      for (Index d = 0; d < dirs; ++d) run_direction(d);
    }
    if (!layer.dropout_scale.empty()) {
      ArrayMap<T>(grad_input, static_cast<Index>(input_size)) *=
          ConstArrayMap<T>(layer.dropout_scale.data(), static_cast<Index>(layer.dropout_scale.size()));
    }
    if (l == 0) {
      if (!direct) from_time_major(grad_input, args.grad_x, steps, batch, spec.input_size, tape.batch_first);
    } else {
      std::swap(scratch.grad_output, scratch.grad_input);  // this layer's dL/d(input) feeds the one below
      grad_output = scratch.grad_output.data();
    }
  }
  // Its workers spin after it as after a forward: an inference call right after it is not
  // after a pause (it ran alone on the calling thread, 1.7-1.9x slower, in a loop of training
  // steps and inference calls on one tape: bench/NOTES.md, 2026-11-30 stop 36).
  tape.pace.call_ended();
}

template void backward(Tape<float>&, const BackwardArgs<float>&, int);
template void backward(Tape<double>&, const BackwardArgs<double>&, int);

RNNKIT_END_NAMESPACE
