// The layer driver: stacking, directions, variable lengths and dropout around the cells, for
// the forward pass (the backward pass is in layer_backward.cpp, the streaming step in
// layer_step.cpp).
//
// Per (layer, direction) the forward pass is: the input projection, one product for many steps'
// inputs at a time, then per step one recurrent product and one fused element-wise cell step.
// The backward pass mirrors it and forms the weight gradients as products over many steps. The
// products themselves, and how a direction uses its threads, are in direction_ops.hpp.
#include "rnnkit/layer.hpp"

#include <algorithm>
#include <memory>
#include <optional>
#include <stdexcept>
#include <vector>

#include "direction_ops.hpp"
#include "layer_ops.hpp"
#include "rnnkit/cells.hpp"
#include "rnnkit/packed_gemm.hpp"
#include "rnnkit/parallel.hpp"
#include "rnnkit/random.hpp"
#include "rnnkit/row_dots.hpp"

RNNKIT_BEGIN_NAMESPACE

namespace {

using namespace direction_ops;  // NOLINT: the direction's context and products, split out for length
using namespace layer_ops;      // NOLINT: time-major copies and the cell dispatch

/// Forward time loop over batch rows [b0, b0 + rows).
template <class T>
void forward_rows(const DirectionContext<T>& c, typename Tape<T>::Direction& tape, const StateLayout<T>& layout,
                  T* output, Index b0, Index rows, int step_threads, const PackedRows<T>* w_hh,
                  const StepProjection<T>& projection) {
  const Index steps = c.steps, batch = c.batch, h = c.hidden(), gh = c.gate_width();
  const Index dirs = c.spec.directions();
  const bool lstm = c.spec.cell == CellKind::Lstm;
  const bool gru = c.spec.cell == CellKind::Gru;
  AlignedVector<T> rec(static_cast<std::size_t>(rows * gh));
  AlignedVector<T> scratch(w_hh != nullptr ? static_cast<std::size_t>(w_hh->row_blocks() *
                                                                     PackedRows<T>::scratch_size(rows))
                                           : 0);
  // Inputs projected as the loop goes (projection.w_ih): `chunk` steps at a time. With the whole
  // batch the chunk's rows are contiguous; with some of it, they are gathered into chunk_x and
  // their gates kept in chunk_gates, where the cell runs (training copies the activated gates
  // to the tape after it), so that training and inference run the cell at the same addresses.
  // Inference keeps no gates: they stay in chunk_gates there too, placed like the tape's.
  const PackedRows<T>* w_ih = projection.w_ih;
  const Index default_chunk = std::max<Index>(1, projection_chunk_rows<T>(gh, c.input_width) / rows);
  const Index chunk = w_ih == nullptr ? 1 : projection.chunk_steps > 0 ? projection.chunk_steps : default_chunk;
  const bool gather = chunk > 1 && rows < batch;
  const bool buffered = gather || (w_ih != nullptr && !projection.keep);
  const Index d = c.input_width;
  AlignedVector<T> ih_scratch(w_ih != nullptr ? static_cast<std::size_t>(PackedRows<T>::scratch_size(chunk * rows))
                                              : 0);
  AlignedVector<T> chunk_x(gather ? static_cast<std::size_t>(chunk * rows * d) : 0);
  AlignedVector<T> chunk_gates(buffered ? static_cast<std::size_t>(chunk * rows * gh + StateLayout<T>::kAlign) : 0);
  T* chunk_base = chunk_gates.data();
  ChunkSteps cs{0, 0};
  for (Index s = 0; s < steps; ++s) {
    const Index t = c.reverse ? steps - 1 - s : s;
    const Slots slot = slots(c.reverse, t);
    const T* h_prev = tape.state_data() + layout.state(slot.prev) + b0 * h;
    if (w_ih != nullptr && s % chunk == 0) {
      cs = chunk_steps(c.reverse, steps, s, chunk);
      // (a pipeline runs forward only: the chunk's last step is cs.first + cs.count - 1)
      if (projection.input_ready != nullptr && !projection.input_ready->wait_for(cs.first + cs.count)) return;
      const Index first_row = cs.first * batch + b0;
      // Not gathered, the chunk is all rows of its steps (or one step): its first row sits
      // where the tape's would, modulo a packet, and so do the others.
      if (buffered) chunk_base = chunk_gates.data() + (gather ? 0 : first_row * gh % StateLayout<T>::kAlign);
      if (gather) {
        for (Index i = 0; i < cs.count; ++i) {
          std::copy_n(projection.input + (first_row + i * batch) * d, rows * d, chunk_x.data() + i * rows * d);
        }
      }
      project_rows(*w_ih, c.b_ih, gather ? chunk_x.data() : projection.input + first_row * d, cs.count * rows,
                   buffered ? chunk_base : tape.gates.data() + first_row * gh, gh, ih_scratch.data());
    }
    const Index tape_row = t * batch + b0;
    T* const gates = buffered ? chunk_base + (t - cs.first) * rows * gh : tape.gates.data() + tape_row * gh;
    if (s == 0 && c.zero_start) {
      std::fill(rec.begin(), rec.end(), T(0));
    } else {
      recurrent_product(c, h_prev, rows, rec.data(), step_threads, w_hh, scratch.data());
    }

    ForwardStep<T> step;
    step.batch = rows;
    step.hidden = h;
    step.gates = gates;
    step.recurrent = rec.data();
    step.bias_hh = c.b_hh;
    step.h_prev = h_prev;
    step.h_next = tape.state_data() + layout.state(slot.next) + b0 * h;
    if (lstm) {
      step.c_prev = tape.cells.data() + layout.state(slot.prev) + b0 * h;
      step.c_next = tape.cells.data() + layout.state(slot.next) + b0 * h;
    }
    if (gru) step.extra = tape.extra.data() + layout.extra(t) + b0 * h;
    step.active = c.active == nullptr ? nullptr : c.active_at(t) + b0;
    cell_forward(c.spec.cell, step);
    if (buffered && projection.keep) std::copy_n(gates, rows * gh, tape.gates.data() + tape_row * gh);

    for (Index r = 0; r < rows && tape.in_output == nullptr; ++r) {  // (in the output: h_next is there)
      if (step.active != nullptr && step.active[r] == 0) continue;  // output stays zero
      std::copy_n(step.h_next + r * h, h, output + (t * batch + b0 + r) * dirs * h + (c.reverse ? h : 0));
    }
    if (projection.output_written != nullptr) projection.output_written->publish(s + 1);
  }
}

/// One of forward_units' parts of the hidden units: units [j0, j1) of every gate, with its
/// rows of W_hh (and of W_ih) and its buffers, and its share of each step.
template <class T>
class UnitPart {
 public:
  UnitPart(const DirectionContext<T>& c, typename Tape<T>::Direction& tape, T* output,
           typename Tape<T>::Packed& cache, const T* input, const StateLayout<T>& layout, bool training,
           Index part, Index parts)
      : c_(c), tape_(tape), output_(output), input_(input), layout_(layout), training_(training) {
    const Index h = c.hidden(), batch = c.batch, gates = c.spec.gates();
    const Index blocks = (h + kUnitBlock - 1) / kUnitBlock;
    j0_ = std::min(h, blocks * part / parts * kUnitBlock);
    nj_ = std::min(h, blocks * (part + 1) / parts * kUnitBlock) - j0_;
    width_ = gates * nj_;
    // This part's rows of W_hh, gate by gate (gate k's units [j0, j1) are rows
    // [k*H + j0, k*H + j1)), packed as one matrix: a step's slice of the recurrent product, laid
    // out [B, gates * nj] as the cell takes it, is one product (bench/NOTES.md, 2026-11-27 late).
    const auto slice_bytes = static_cast<std::size_t>(width_ * h) * sizeof(T);
    const auto p = static_cast<std::size_t>(part);
    if (nj_ > 0 && (batch > kMaxGemvRows || worth_packing(c.steps, batch, slice_bytes))) {
      packed_ = &packed_row_groups(cache.hh_units[p], c.w_hh + j0_ * h, gates, h, nj_, h, cache.keep);
      scratch_.resize(static_cast<std::size_t>(PackedRows<T>::scratch_size(batch)));
    }
    // The same rows of W_ih, for projecting `chunk` steps of this part's gates at a time into a
    // buffer of its own, [chunk * B, gates * nj]: each step's rows of it are that step's gates.
    if (nj_ > 0 && input != nullptr) {
      packed_ih_ = &packed_row_groups(cache.ih_units[p], c.w_ih + j0_ * c.input_width, gates, h, nj_,
                                      c.input_width, cache.keep);
      chunk_ = std::max<Index>(1, projection_chunk_rows<T>(width_, c.input_width) / batch);
      ih_scratch_.resize(static_cast<std::size_t>(PackedRows<T>::scratch_size(chunk_ * batch)));
      chunk_gates_.resize(static_cast<std::size_t>(chunk_ * batch * width_));
    } else {
      gate_slice_.resize(static_cast<std::size_t>(batch * width_));
    }
    rec_.resize(static_cast<std::size_t>(batch * width_));
    if (c.spec.cell == CellKind::Gru) extra_.resize(static_cast<std::size_t>(batch * nj_));
    bias_ = gathered(c.b_hh);
    bias_ih_ = gathered(c.b_ih);
  }

  /// This part's share of step s: its slice of the recurrent product and its units' update.
  void step(Index s) {
    const DirectionContext<T>& c = c_;
    const Index steps = c.steps, batch = c.batch, h = c.hidden(), gh = c.gate_width(), gates = c.spec.gates();
    const Index j0 = j0_, nj = nj_, width = width_;
    const bool lstm = c.spec.cell == CellKind::Lstm;
    const bool gru = c.spec.cell == CellKind::Gru;
    const bool keep_gates = training_ && !c.spec.simple_rnn();  // for backward, as forward_direction keeps them
    const Index t = c.reverse ? steps - 1 - s : s;
    const Slots slot = slots(c.reverse, t);
    const T* states_prev = tape_.state_data() + layout_.state(slot.prev);
    // The tape's gates of this step: projected up front, or kept for backward.
    T* step_gates = packed_ih_ == nullptr || keep_gates ? tape_.gates.data() + t * batch * gh : nullptr;
    const std::uint8_t* active = c.active == nullptr ? nullptr : c.active_at(t);
    if (packed_ih_ != nullptr && s % chunk_ == 0) {  // this part's columns of the next chunk's gates
      cs_ = chunk_steps(c.reverse, steps, s, chunk_);
      project_rows(*packed_ih_, bias_ih_.empty() ? nullptr : bias_ih_.data(),
                   input_ + cs_.first * batch * c.input_width, cs_.count * batch, chunk_gates_.data(), width,
                   ih_scratch_.data());
    }
    if (nj == 0) return;
    T* my_gates = packed_ih_ != nullptr ? chunk_gates_.data() + (t - cs_.first) * batch * width : gate_slice_.data();
    if (s == 0 && c.zero_start) {  // a zero state: its product is zero
      std::fill(rec_.begin(), rec_.end(), T(0));
    } else if (packed_ != nullptr) {  // rec = h_{t-1} (this part's rows of W_hh)^T
      packed_->multiply(states_prev, batch, rec_.data(), width, scratch_.data(), 0, packed_->row_blocks());
    } else {
      for (Index k = 0; k < gates; ++k) {
        dot_rows(c.w_hh + (k * h + j0) * h, nj, h, states_prev, h, batch, rec_.data() + k * nj, width);
      }
    }
    for (Index b = 0; b < batch && packed_ih_ == nullptr; ++b) {
      for (Index k = 0; k < gates; ++k) {
        std::copy_n(step_gates + b * gh + k * h + j0, nj, gate_slice_.data() + b * width + k * nj);
      }
    }
    // The cell reads and writes this part's units of the states in place, rows H apart.
    T* const states_next = tape_.state_data() + layout_.state(slot.next);
    ForwardStep<T> step;
    step.batch = batch;
    step.hidden = nj;
    step.state_stride = h;
    step.gates = my_gates;
    step.recurrent = rec_.data();
    step.bias_hh = bias_.empty() ? nullptr : bias_.data();
    step.h_prev = states_prev + j0;
    step.h_next = states_next + j0;
    if (lstm) {
      step.c_prev = tape_.cells.data() + layout_.state(slot.prev) + j0;
      step.c_next = tape_.cells.data() + layout_.state(slot.next) + j0;
    }
    if (gru) step.extra = extra_.data();
    step.active = active;
    cell_forward(c.spec.cell, step);
    const Index dirs = c.spec.directions(), state_size = batch * h;
    for (Index b = 0; b < batch; ++b) {
      if (gru && training_) std::copy_n(extra_.data() + b * nj, nj, tape_.extra.data() + t * state_size + b * h + j0);
      for (Index k = 0; k < gates && keep_gates; ++k) {
        std::copy_n(my_gates + b * width + k * nj, nj, step_gates + b * gh + k * h + j0);
      }
      if (tape_.in_output != nullptr || (active != nullptr && active[b] == 0)) continue;  // output stays zero
      std::copy_n(states_next + b * h + j0, nj, output_ + (t * batch + b) * dirs * h + (c.reverse ? h : 0) + j0);
    }
  }

 private:
  /// The values of `b` (a bias, [GH]) for this part's gate columns, in the same order.
  AlignedVector<T> gathered(const T* b) const {
    AlignedVector<T> out(b != nullptr ? static_cast<std::size_t>(width_) : 0);
    for (Index k = 0; k < c_.spec.gates() && b != nullptr; ++k) {
      std::copy_n(b + k * c_.hidden() + j0_, nj_, out.data() + k * nj_);
    }
    return out;
  }

  const DirectionContext<T>& c_;
  typename Tape<T>::Direction& tape_;
  T* output_;
  const T* input_;
  const StateLayout<T>& layout_;
  bool training_;
  Index j0_ = 0, nj_ = 0, width_ = 0, chunk_ = 1;
  const PackedRows<T>* packed_ = nullptr;
  const PackedRows<T>* packed_ih_ = nullptr;
  AlignedVector<T> scratch_, ih_scratch_, chunk_gates_, gate_slice_, rec_, extra_;
  AlignedVector<T> bias_, bias_ih_;
  ChunkSteps cs_{0, 0};
};

/// Forward time loop with the hidden units split into `parts` (small batches): each part owns
/// units [j0, j1) of every gate for the whole loop, so it computes its slice of each step's
/// recurrent product (from its own rows of W_hh, packed once, or a matrix-vector product for one
/// sequence) and its units' cell update. OpenMP's threads take the parts in turn, with a barrier
/// per step that makes the new state whole; `on_this_thread` runs every part here instead, step
/// by step, with the same results. With `input` (else projected up front) each part also
/// projects its units' gates, projection_chunk_rows() rows at a time, from its own rows of W_ih,
/// packed once. States go where `layout` puts them; only `training` writes the activated gates
/// and GRU's extra values back.
template <class T>
void forward_units(const DirectionContext<T>& c, typename Tape<T>::Direction& tape, T* output, int parts,
                   typename Tape<T>::Packed& cache, const T* input, const StateLayout<T>& layout, bool training,
                   [[maybe_unused]] bool on_this_thread) {
  cache.hh_units.resize(static_cast<std::size_t>(parts));  // each part fills its own entry
  if (input != nullptr) cache.ih_units.resize(cache.hh_units.size());
  const auto run = [&](Index first, Index stride) {
    std::vector<std::unique_ptr<UnitPart<T>>> mine;
    for (Index p = first; p < parts; p += stride) {
      mine.push_back(std::make_unique<UnitPart<T>>(c, tape, output, cache, input, layout, training, p, parts));
    }
    for (Index s = 0; s < c.steps; ++s) {
      for (const auto& part : mine) part->step(s);
#ifdef _OPENMP
      if (stride > 1) {
#pragma omp barrier
      }
#endif
    }
  };
#ifdef _OPENMP
  if (!on_this_thread) {
#pragma omp parallel num_threads(parts)
    run(omp_get_thread_num(), omp_get_num_threads());
    return;
  }
#endif
  run(0, 1);
}

/// Runs one direction of one layer over all steps, writing its half of `output`
/// ([T, B, dirs*H], pre-zeroed) and its final state. With `states_in_output` (training, one
/// direction, output = states_in_output + B*H) the tape keeps its states [h_{-1}; output] there
/// (output then needs no zeroing: every row is written, rows past a length zeroed at the end).
/// In a pipeline (pipeline_layers), `input_ready` tells how far the layer below has written
/// `input` (nullptr for the first layer) and `output_written` takes how far this one has.
template <class T>
void forward_direction(const DirectionContext<T>& c, const T* input, const ForwardArgs<T>& args,
                       T* output, typename Tape<T>::Direction& tape, typename Tape<T>::Scratch& scratch,
                       bool training, bool frozen_weights, T* states_in_output = nullptr,
                       const StepProgress* input_ready = nullptr, StepProgress* output_written = nullptr) {
  const Index steps = c.steps, batch = c.batch, h = c.hidden(), gh = c.gate_width();
  const bool lstm = c.spec.cell == CellKind::Lstm;
  const bool gru = c.spec.cell == CellKind::Gru;
  const Index state_size = batch * h;

  const LoopPlan plan = plan_loop(c);
  // A pipelined layer reads its input as the layer below writes it: projected as the loop goes.
  const bool project_in_loop = input_ready != nullptr ||
                               (plan.unit_threads <= 1 && plan.batch_threads == c.n_threads &&
                                batch / plan.batch_threads >= kMinStepProjectionRows &&
                                steps * batch > kMaxGemvProjectionRows);
  // Split by hidden units, each thread projects its own units' gates (no pass of its own, no
  // thread waiting for another's half of the projection).
  const bool units_project = plan.unit_threads > 1 && steps * batch > kMaxGemvProjectionRows;
  // Inference keeps a ring of state slots (two are enough for the loop split by units too: a
  // slot is rewritten two steps after it was read, across the step's barrier). The gates are kept
  // for backward, except a simple RNN's, whose activated gate is h itself; where
  // they are projected in the loop, gates not kept need no [T, B, GH] buffer.
  const StateLayout<T> layout{state_size, !training};
  const bool keep_gates = training && !c.spec.simple_rnn();
  if (keep_gates || !(project_in_loop || units_project)) {
    tape.gates.resize(static_cast<std::size_t>(steps * batch * gh));
  }
  tape.in_output = states_in_output;
  tape.caller_output = false;
  if (states_in_output != nullptr) {
    AlignedVector<T>().swap(tape.states);  // an earlier call's, not needed
  } else {
    tape.states.resize(layout.states_size(steps));
  }
  if (lstm) tape.cells.resize(layout.states_size(steps));
  if (gru) tape.extra.resize(layout.extra_size(steps));

  if (scratch.packed.size() <= static_cast<std::size_t>(c.state_index())) {
    scratch.packed.resize(static_cast<std::size_t>(c.state_index() + 1));
  }
  auto& cache = scratch.packed[static_cast<std::size_t>(c.state_index())];
  cache.keep = training ? KeepPacked::No : frozen_weights ? KeepPacked::Frozen : KeepPacked::Checked;
  StepProjection<T> projection;
  projection.output_written = output_written;
  if (project_in_loop) {
    projection.w_ih = &packed_weights(cache.ih, c.w_ih, gh, c.input_width, cache.keep, &cache.ih_spare,
                                      plan.other_threads);
    projection.input = input;
    projection.keep = keep_gates;
    projection.input_ready = input_ready;
    projection.chunk_steps = input_ready != nullptr ? kPipelineChunkSteps : 0;
  } else if (!units_project) {
    project_inputs(c, input, tape.gates.data(), plan.other_threads, &cache);
  }

  // Initial state into the slot the first step reads.
  const Index first = c.reverse ? steps : 0;
  const Index k = c.state_index();
  T* h_first = tape.state_data() + layout.state(first);
  if (args.h0 != nullptr) {
    std::copy_n(args.h0 + k * state_size, state_size, h_first);
  } else {
    std::fill_n(h_first, state_size, T(0));
  }
  if (lstm) {
    T* c_first = tape.cells.data() + layout.state(first);
    if (args.c0 != nullptr) {
      std::copy_n(args.c0 + k * state_size, state_size, c_first);
    } else {
      std::fill_n(c_first, state_size, T(0));
    }
  }

  if (plan.unit_threads > 1) {
    forward_units(c, tape, output, plan.unit_threads, cache, units_project ? input : nullptr, layout, training,
                  plan.on_this_thread);
  } else {
    // Over several steps the recurrent weights are packed once instead of by every step's product.
    const PackedRows<T>* w_hh = nullptr;
    const Index rows = batch / plan.batch_threads;  // per thread, at least
    if (rows > kMaxGemvRows || worth_packing(steps, rows, static_cast<std::size_t>(gh * h) * sizeof(T))) {
      w_hh = &packed_weights(cache.hh, c.w_hh, gh, h, cache.keep, &cache.hh_spare, plan.other_threads);
    }
    const auto rows_loop = [&](Index b0, Index rows) {
      forward_rows(c, tape, layout, output, b0, rows, plan.step_threads, w_hh, projection);
    };
    parallel_blocks(batch, plan.batch_threads, 1, rows_loop, plan.on_this_thread);
  }

  // Rows past their length carried their state, so the last slot holds each final state.
  const Index last = c.reverse ? 0 : steps;
  std::copy_n(tape.state_data() + layout.state(last), state_size, args.h_n + k * state_size);
  if (lstm && args.c_n != nullptr) {
    std::copy_n(tape.cells.data() + layout.state(last), state_size, args.c_n + k * state_size);
  }
  // States kept in the output carried theirs past each length: the output is zero there.
  // (Backward never reads those rows' values: their gate gradients are zero.)
  if (states_in_output != nullptr && c.active != nullptr) {
    for (Index t = 0; t < steps; ++t) {
      for (Index b = 0; b < batch; ++b) {
        if (c.active_at(t)[b] == 0) std::fill_n(output + (t * batch + b) * h, h, T(0));
      }
    }
  }
}

}  // namespace

static_assert(kStatesSlotAlign % EIGEN_MAX_ALIGN_BYTES == 0, "the offered slot must be aligned as AlignedVector");

template <class T>
void forward(const LayerSpec& spec, const ForwardArgs<T>& args, const ForwardOptions& options, Tape<T>& tape) {
  spec.validate();
  if (args.steps <= 0 || args.batch <= 0) throw std::invalid_argument("x must have at least one step and one sequence");
  if (!(options.dropout >= 0.0 && options.dropout < 1.0)) throw std::invalid_argument("dropout must be in [0, 1)");
  const Index steps = args.steps, batch = args.batch, h = spec.hidden_size, dirs = spec.directions();
  const Index num_layers = spec.num_layers;

  tape.spec = spec;
  tape.steps = steps;
  tape.batch = batch;
  tape.batch_first = options.batch_first;
  tape.active.clear();
  if (args.lengths != nullptr) {
    tape.active.resize(static_cast<std::size_t>(steps * batch));
    for (Index b = 0; b < batch; ++b) {
      const std::int64_t len = args.lengths[b];
      if (len < 1 || len > steps) throw std::invalid_argument("lengths must lie in [1, T]");
      for (Index t = 0; t < steps; ++t) tape.active[t * batch + b] = t < len ? 1 : 0;
    }
  }
  const std::uint8_t* active = tape.active.empty() ? nullptr : tape.active.data();
  auto& scratch = tape.scratch;
  tape.training = options.training;
  tape.zero_start = args.h0 == nullptr;
  tape.n_threads = options.n_threads;
  if (options.training) tape.layers.resize(static_cast<std::size_t>(num_layers));

  // Layer 0's input, time-major: the caller's array itself where it already is and nothing
  // needs keeping; the tape keeps a copy for backward.
  const T* input = args.x;
  if (options.training || options.batch_first) {
    AlignedVector<T>& dst = options.training ? tape.layers[0].input : scratch.input;
    dst.resize(static_cast<std::size_t>(steps * batch * spec.input_size));
    to_time_major(args.x, dst.data(), steps, batch, spec.input_size, options.batch_first);
    input = dst.data();
  }
  const bool use_dropout = options.training && options.dropout > 0.0;
  const bool after_pause = !options.training && tape.pace.alone(call_flops(spec, steps, batch));
  // In the caller's (time-major) order the top layer writes straight into args.out (backward
  // does not read it): copying a finished output over cost 4% of a mid-sized forward, and its
  // buffer as much memory again.
  const bool direct = !options.batch_first;
  const auto output_size = static_cast<std::size_t>(steps * batch * dirs * h);
  // A unidirectional stack at a small batch on two threads or more runs its layers at once (on
  // two of them), each a few steps behind the one below; after a pause, one after the other on
  // this thread, with the same plan (so the same bits).
  const bool pipelined = pipeline_layers(spec, batch, options.n_threads, use_dropout);
  if (pipelined && !options.training) scratch.stack_outputs.resize(static_cast<std::size_t>(num_layers - 1));
  if (scratch.packed.size() < static_cast<std::size_t>(num_layers * dirs)) {
    scratch.packed.resize(static_cast<std::size_t>(num_layers * dirs));  // before any thread indexes it
  }
  struct LayerIo {
    const T* input;
    T* out;
    T* states_at;
    AlignedVector<T>* output;  // out's buffer (nullptr: the caller's)
  };
  // Layer l's output buffer, sized and (where lengths end early) zeroed.
  const auto prepare = [&](Index l, const T* layer_input) {
    const bool top = l + 1 == num_layers;
    // Training: each output is the next layer's kept input. Inference: two buffers alternate,
    // except in a pipeline, where each layer below the top has its own.
    AlignedVector<T>& output = options.training && !top ? tape.layers[static_cast<std::size_t>(l + 1)].input
                               : pipelined && !top      ? scratch.stack_outputs[static_cast<std::size_t>(l)]
                               : layer_input == scratch.output.data() ? scratch.input
                                                                      : scratch.output;
    // A unidirectional top layer's training states [h_{-1}; out] in the output's memory: the
    // caller's where it offers the slot before out, else the time-major buffer's, one slot
    // longer (bench/NOTES.md, 2026-11-27 night session 2).
    const bool states_in_output =
        options.training && top && dirs == 1 &&
        (!direct || (options.out_keeps_states && static_cast<Index>(output_size) >= kMinStatesInCallerOutput));
    const Index state_size = batch * h;
    LayerIo io{layer_input, args.out, nullptr, nullptr};
    if (!(top && direct)) {
      output.resize(output_size + (states_in_output ? static_cast<std::size_t>(state_size) : 0));
      io.out = output.data() + (states_in_output ? state_size : 0);
      io.output = &output;
    }
    io.states_at = states_in_output ? io.out - state_size : nullptr;
    // Past a length: zero (states kept in out are zeroed there after the loop instead, which
    // writes every row of out).
    if (active != nullptr && io.states_at == nullptr) std::fill_n(io.out, output_size, T(0));
    if (options.training) {
      tape.layers[static_cast<std::size_t>(l)].directions.resize(static_cast<std::size_t>(dirs));
      if (!top) tape.layers[static_cast<std::size_t>(l + 1)].dropout_scale.clear();  // a reused tape's masks
    }
    return io;
  };
  // Direction d of layer l on `threads` threads (in a pipeline: its tape is its parity's).
  const auto run_direction = [&](Index l, Index d, const LayerIo& io, int threads, const StepProgress* input_ready,
                                 StepProgress* output_written) {
    DirectionContext<T> c(spec, steps, batch, l, d, args.params, active, threads);
    c.zero_start = args.h0 == nullptr;
    c.after_pause = after_pause;
    auto& dir_tape = options.training
                         ? tape.layers[static_cast<std::size_t>(l)].directions[static_cast<std::size_t>(d)]
                         : scratch.directions[static_cast<std::size_t>(pipelined ? l % 2 : d)];
    forward_direction(c, io.input, args, io.out, dir_tape, scratch, options.training, options.frozen_weights,
                      io.states_at, input_ready, output_written);
    if (io.states_at != nullptr && direct) {
      dir_tape.caller_output = true;
      dir_tape.output_fingerprint = fingerprint(io.out, output_size);
    }
  };
  if (pipelined) {
    std::vector<LayerIo> io;
    for (Index l = 0; l < num_layers; ++l) io.push_back(prepare(l, l == 0 ? input : io.back().out));
    run_pipeline(num_layers, after_pause, [&](Index l, const StepProgress* below, StepProgress& written) {
      run_direction(l, 0, io[static_cast<std::size_t>(l)], 1, below, &written);
    });
    input = io.back().out;
  }
  for (Index l = 0; l < num_layers && !pipelined; ++l) {
    const bool top = l + 1 == num_layers;
    const LayerIo io = prepare(l, input);
    // Directions with fewer threads than the call run at once; after a pause, one after the
    // other on this thread, with the same plan (so the same bits).
    const int direction_threads = threads_per_direction(spec, batch, options.n_threads);
    const bool at_once = direction_threads < options.n_threads && !after_pause;
    const auto run = [&](Index d) { run_direction(l, d, io, direction_threads, nullptr, nullptr); };
    if (at_once) {
      run_each_on_its_thread(2, run);
    } else {
      for (Index d = 0; d < dirs; ++d) run(d);
    }
    if (use_dropout && !top) {
      auto& scale = tape.layers[static_cast<std::size_t>(l + 1)].dropout_scale;
      AlignedVector<T>& output = *io.output;
      scale.resize(output.size());
      const T keep = T(1) / static_cast<T>(1.0 - options.dropout);
      for (std::size_t i = 0; i < output.size(); ++i) {
        const bool drop = uniform01(options.dropout_key, static_cast<std::uint64_t>(l), i) < options.dropout;
        scale[i] = drop ? T(0) : keep;
        output[i] *= scale[i];
      }
    }
    input = io.out;
  }
  if (!direct) from_time_major(input, args.out, steps, batch, dirs * h, options.batch_first);
  tape.pace.call_ended();
}

namespace layer_ops {

template <class T>
void restore_states(Tape<T>& tape, const T* params) {
  const LayerSpec& spec = tape.spec;
  const Index l = spec.num_layers - 1, steps = tape.steps, batch = tape.batch, state_size = batch * spec.hidden_size;
  auto& layer = tape.layers[static_cast<std::size_t>(l)];
  auto& dir = layer.directions.front();
  const std::uint8_t* active = tape.active.empty() ? nullptr : tape.active.data();
  DirectionContext<T> c(spec, steps, batch, l, 0, params, active, tape.n_threads);
  c.zero_start = tape.zero_start;
  // The initial state as the forward had it: h_{-1} in the slot before the caller's out (which
  // out does not show), c_{-1} in the tape's first cell slot; both at this direction's index.
  const auto slots = static_cast<std::size_t>((c.state_index() + 1) * state_size);
  const auto at = static_cast<std::size_t>(c.state_index() * state_size);
  AlignedVector<T> h0(slots), c0(spec.cell == CellKind::Lstm ? slots : 0), h_n(slots), c_n(c0.size());
  std::copy_n(dir.state_data(), state_size, h0.data() + at);
  if (!c0.empty()) std::copy_n(dir.cells.data(), state_size, c0.data() + at);
  ForwardArgs<T> args;
  args.params = params;
  args.steps = steps;
  args.batch = batch;
  args.h0 = h0.data();
  args.c0 = c0.empty() ? nullptr : c0.data();
  args.h_n = h_n.data();
  args.c_n = c_n.empty() ? nullptr : c_n.data();
  AlignedVector<T> out(static_cast<std::size_t>(steps * state_size), T(0));
  forward_direction(c, layer.input.data(), args, out.data(), dir, tape.scratch, true, false);
}

template void restore_states(Tape<float>&, const float*);
template void restore_states(Tape<double>&, const double*);

}  // namespace layer_ops

template void forward(const LayerSpec&, const ForwardArgs<float>&, const ForwardOptions&, Tape<float>&);
template void forward(const LayerSpec&, const ForwardArgs<double>&, const ForwardOptions&, Tape<double>&);

RNNKIT_END_NAMESPACE
