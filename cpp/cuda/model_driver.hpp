// The device backend's model: a Stack (driver.hpp) with a dense head and a loss, following
// the CPU engine's model (src/model.cpp) step for step. Token embeddings are looked up, and
// their gradients summed, on the device from the resident table; the host only groups a
// batch's token ids (TokenRows).
// train_step also clips the gradient and steps the optimizer on the device (the updates of
// rnnkit/optim_math.hpp, shared with the CPU), whose state stays there between steps.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "driver.hpp"

RNNKIT_BEGIN_NAMESPACE
namespace device {

template <class Exec, class T>
class Model final : public DeviceModel<T> {
  template <class U>
  using Buf = typename Exec::template Buffer<U>;
  using StackType = Stack<Exec, T>;

 public:
  Model(const ModelSpec& spec, Exec exec) : spec_(spec), stack_((spec.validate(), spec.rnn), std::move(exec),
                                                                 spec.param_count()) {}

  const ModelSpec& spec() const noexcept override { return spec_; }

  void predict(const T* params, const Batch<T>& batch, T* out) override {
    Exec& ex = stack_.exec();
    ex.activate();
    Head head = run(params, batch, false, 0.0, 0, true);
    ex.launch(head.rows, HeadRows<T>{spec_.loss, false, spec_.n_outputs, head.logits.data(),
                                     head.valid.data(), nullptr, nullptr, head.count, nullptr});
    ex.download(out, head.logits.data(), head.logits.size());
    ex.synchronize();
  }

  double loss_and_grad(const T* params, const Batch<T>& batch, const Targets<T>& targets, T* grads, double dropout,
                       std::uint64_t dropout_key) override {
    Exec& ex = stack_.exec();
    ex.activate();
    Gradient g = gradient(params, batch, targets, dropout, dropout_key, true);
    ex.download(grads, g.grad.data(), g.grad.size());
    ex.synchronize();
    return g.loss;
  }

  void set_optimizer_state(int slot, const T* host) override {
    Buf<T>& buf = state_slot(slot);
    Exec& ex = stack_.exec();
    ex.activate();
    if (buf.size() == 0) buf = ex.template alloc<T>(spec_.param_count());
    ex.upload(buf.data(), host, buf.size());
    ex.synchronize();
  }

  void get_optimizer_state(int slot, T* host) override {
    Buf<T>& buf = state_slot(slot);
    if (buf.size() == 0) throw std::logic_error("get_optimizer_state: slot " + std::to_string(slot) + " was never set");
    Exec& ex = stack_.exec();
    ex.activate();
    ex.download(host, buf.data(), buf.size());
    ex.synchronize();
  }

  double train_step(T* params, const Batch<T>& batch, const Targets<T>& targets, const TrainSettings& s) override {
    const std::array<bool, kSlots> needed = slots_needed(s);
    for (int k = 0; k < kSlots; ++k) {
      if (needed[k] && state_[k].size() == 0) {
        throw std::logic_error("train_step: the optimizer's state is not on the device (set_optimizer_state)");
      }
    }
    Exec& ex = stack_.exec();
    ex.activate();
    Gradient g = gradient(params, batch, targets, s.dropout, s.dropout_key, !s.params_resident);
    if (!std::isfinite(g.loss)) return g.loss;
    T* grad = g.grad.data();
    const Index n = g.grad.size();
    if (s.clip_by_value) ex.launch(n, optim_math::ClampUpdate<T>{grad, static_cast<T>(s.clip_value)});
    if (s.clip_by_norm) {
      const double coef = optim_math::clip_coefficient(std::sqrt(sum_of_squares(grad, n)), s.max_norm);
      if (coef != 1.0) ex.launch(n, Scale<T>{grad, static_cast<T>(coef)});
    }
    T* p = stack_.params();
    T *s0 = state_[0].data(), *s1 = state_[1].data(), *s2 = state_[2].data();
    switch (s.optimizer) {
      case OptimizerKind::Sgd:
        ex.launch(n, optim_math::SgdUpdate<T>(p, grad, s0, s.step == 1, s.sgd));
        break;
      case OptimizerKind::Adam:
        ex.launch(n, optim_math::AdamUpdate<T>(p, grad, s0, s1, s2, s.step, s.adam));
        break;
      case OptimizerKind::Rmsprop:
        ex.launch(n, optim_math::RmspropUpdate<T>(p, grad, s0, s1, s2, s.rmsprop));
        break;
    }
    ex.download(params, p, n);
    ex.synchronize();
    return g.loss;
  }

 private:
  static constexpr int kSlots = DeviceModel<T>::kStateSlots;

  /// A batch's loss and its gradient on the device.
  struct Gradient {
    double loss = 0.0;
    Buf<T> grad;
  };

  Gradient gradient(const T* params, const Batch<T>& batch, const Targets<T>& targets, double dropout,
                    std::uint64_t dropout_key, bool upload) {
    Exec& ex = stack_.exec();
    const LayerSpec& rnn = spec_.rnn;
    const Index n_out = spec_.n_outputs, F = spec_.features(), B = batch.batch, steps = batch.steps;
    const bool ce = spec_.loss == Loss::SoftmaxCrossEntropy;
    Head head = run(params, batch, true, dropout, dropout_key, upload);
    const Index rows = head.rows;

    // Targets of the rows that count (the kernel cannot throw: labels are checked here).
    Buf<std::int64_t> labels;
    Buf<T> values;
    if (ce) {
      for (Index r = 0; r < rows; ++r) {
        if (head.valid_host[static_cast<std::size_t>(r)] != T(0) && (targets.labels[r] < 0 || targets.labels[r] >= n_out)) {
          throw std::invalid_argument("labels must lie in [0, n_outputs)");
        }
      }
      labels = ex.template alloc<std::int64_t>(rows);
      ex.upload(labels.data(), targets.labels, rows);
    } else {
      values = stack_.uploaded(targets.values, rows * n_out);
    }
    // The weighted mean over the rows that count, as the CPU engine's (src/model.cpp).
    double count = head.count;
    Buf<T> weights;
    if (targets.weights != nullptr) {
      count = weighted_row_count(head.valid_host.data(), targets.weights, rows);
      weights = stack_.uploaded(targets.weights, rows);
    }
    Buf<double> row_loss = ex.template alloc<double>(rows);
    ex.launch(rows, HeadRows<T>{spec_.loss, true, n_out, head.logits.data(), head.valid.data(), ce ? labels.data() : nullptr,
                                ce ? nullptr : values.data(), count, row_loss.data(),
                                targets.weights != nullptr ? weights.data() : nullptr});
    std::vector<double> losses(static_cast<std::size_t>(rows));
    ex.download(losses.data(), row_loss.data(), rows);
    Gradient result;
    for (const double v : losses) result.loss += v;
    result.loss /= ce ? count : count * static_cast<double>(n_out);

    // Head gradients (dL/dlogits now in head.logits) and dL/dfeatures.
    Buf<T> grad = ex.template alloc<T>(spec_.param_count());
    ex.zero(grad.data(), grad.size());
    const T* w = stack_.params() + spec_.head_offset();
    const T* g = head.logits.data();
    T* head_grad = grad.data() + spec_.head_offset();
    ex.gemm(true, false, n_out, F, rows, T(1), g, n_out, head.features.data(), F, T(0), head_grad, F);
    ex.gemm(false, false, 1, n_out, rows, T(1), head.ones.data(), rows, g, n_out, T(0), head_grad + n_out * F, n_out);
    Buf<T> dfeat = ex.template alloc<T>(rows * F);
    ex.gemm(false, false, rows, F, n_out, T(1), g, n_out, w, F, T(0), dfeat.data(), F);

    // Back through the stack.
    const Index states = rnn.num_layers * rnn.directions() * B * rnn.hidden_size;
    Buf<T> grad_out, grad_h_n;
    if (spec_.readout == Readout::Last) {
      grad_h_n = ex.template alloc<T>(states);
      ex.zero(grad_h_n.data(), states);
      T* top = grad_h_n.data() + (rnn.num_layers - 1) * rnn.directions() * B * rnn.hidden_size;
      ex.launch(rows * F, ScatterLast<T>{dfeat.data(), top, B, rnn.hidden_size, rnn.directions()});
    } else {  // dfeat is [B, T, F]: to time-major
      grad_out = ex.template alloc<T>(rows * F);
      ex.launch(rows * F, SwapLeadingAxes<T>{dfeat.data(), grad_out.data(), B, steps, F});
    }
    auto grads_in = stack_.backward_device(*head.tape, std::move(grad_out), grad_h_n, Buf<T>(), grad.data());
    if (spec_.vocab_size > 0) {
      const TokenRows& tokens = head.tokens;
      const Index distinct = static_cast<Index>(tokens.ids.size());
      Buf<std::int64_t> ids = uploaded_ints(tokens.ids), starts = uploaded_ints(tokens.starts);
      Buf<std::int64_t> rows_of = uploaded_ints(tokens.rows);
      ex.launch(distinct * rnn.input_size,
                EmbeddingGrads<T>{ids.data(), starts.data(), rows_of.data(), grads_in.x.data(), rnn.input_size,
                                  grad.data() + spec_.embedding_offset()});
    }
    result.grad = std::move(grad);
    return result;
  }

  Buf<T>& state_slot(int slot) {
    if (slot < 0 || slot >= kSlots) throw std::invalid_argument("optimizer state slot must lie in [0, 3)");
    return state_[static_cast<std::size_t>(slot)];
  }

  /// The state slots that `s`'s optimizer reads (optim_math.hpp's updates).
  static std::array<bool, kSlots> slots_needed(const TrainSettings& s) {
    switch (s.optimizer) {
      case OptimizerKind::Sgd:
        return {s.sgd.momentum != 0.0, false, false};
      case OptimizerKind::Adam:
        return {true, true, s.adam.amsgrad};
      case OptimizerKind::Rmsprop:
        return {true, s.rmsprop.centered, s.rmsprop.momentum > 0.0};
    }
    return {true, true, true};
  }

  /// The sum of squares of n device values, in double (clip_grad_norm_'s), parts on the device.
  double sum_of_squares(const T* values, Index n) {
    Exec& ex = stack_.exec();
    const Index parts = std::min<Index>(n, 4096);
    Buf<double> partial = ex.template alloc<double>(parts);
    ex.launch(parts, SquareSums<T>{values, n, parts, partial.data()});
    std::vector<double> host(static_cast<std::size_t>(parts));
    ex.download(host.data(), partial.data(), parts);
    ex.synchronize();
    double sum = 0.0;
    for (const double v : host) sum += v;
    return sum;
  }

  /// A batch's token ids for the device: per time-major row (t, b) its id, -1 past the
  /// sequence's length; and for the table's gradient, each distinct id with the rows that read
  /// it, in the order in which the CPU engine adds them (by sequence, then step).
  struct TokenRows {
    std::vector<std::int64_t> row_ids;  // [T * B]
    std::vector<std::int64_t> ids;      // distinct ids, ascending
    std::vector<std::int64_t> starts;   // [ids + 1]
    std::vector<std::int64_t> rows;     // time-major rows, grouped by id
  };

  /// `for_gradient`: also the grouping by id. Throws std::invalid_argument for an id outside
  /// [0, vocab_size), as embed_tokens does.
  static TokenRows token_rows(const ModelSpec& spec, const Batch<T>& batch, bool for_gradient) {
    const Index B = batch.batch, steps = batch.steps;
    TokenRows t;
    t.row_ids.assign(static_cast<std::size_t>(steps * B), -1);
    std::vector<std::pair<std::int64_t, std::int64_t>> uses;  // (id, time-major row), in (b, t) order
    for (Index b = 0; b < B; ++b) {
      for (Index s = 0; s < valid_steps(batch, b); ++s) {
        const std::int64_t id = batch.tokens[b * steps + s];
        if (id < 0 || id >= spec.vocab_size) throw std::invalid_argument("token ids must lie in [0, vocab_size)");
        t.row_ids[static_cast<std::size_t>(s * B + b)] = id;
        if (for_gradient) uses.emplace_back(id, s * B + b);
      }
    }
    if (!for_gradient) return t;
    // by id; stable, so each id's rows keep their (b, t) order
    std::stable_sort(uses.begin(), uses.end(), [](const auto& x, const auto& y) { return x.first < y.first; });
    for (std::size_t i = 0; i < uses.size(); ++i) {
      if (i == 0 || uses[i].first != uses[i - 1].first) {
        t.ids.push_back(uses[i].first);
        t.starts.push_back(static_cast<std::int64_t>(i));
      }
      t.rows.push_back(uses[i].second);
    }
    t.starts.push_back(static_cast<std::int64_t>(uses.size()));
    return t;
  }

  Buf<std::int64_t> uploaded_ints(const std::vector<std::int64_t>& host) {
    Exec& ex = stack_.exec();
    Buf<std::int64_t> buf = ex.template alloc<std::int64_t>(static_cast<Index>(host.size()));
    ex.upload(buf.data(), host.data(), static_cast<Index>(host.size()));
    return buf;
  }

  /// The stack's run and the head's logits for a batch.
  struct Head {
    Index rows = 0;
    double count = 0.0;
    std::vector<T> valid_host;
    Buf<T> valid, ones, features, logits;
    typename StackType::TapeHandle tape;
    TokenRows tokens;  // models with a vocabulary
  };

  /// `upload`: copy `params` to the device first (else the resident ones are current).
  Head run(const T* params, const Batch<T>& batch, bool training, double dropout, std::uint64_t key, bool upload) {
    Exec& ex = stack_.exec();
    const LayerSpec& rnn = spec_.rnn;
    const Index B = batch.batch, steps = batch.steps, D = rnn.input_size, F = spec_.features();
    const Index n_out = spec_.n_outputs, H = rnn.hidden_size, dirs = rnn.directions();
    if (B <= 0 || steps <= 0) throw std::invalid_argument("x must have at least one step and one sequence");
    Head head;
    if (spec_.vocab_size > 0) head.tokens = token_rows(spec_, batch, training);  // checks the ids first
    if (upload) ex.upload(stack_.params(), params, spec_.param_count());

    Buf<T> input;
    if (spec_.vocab_size > 0) {  // looked up in the resident table
      Buf<std::int64_t> ids = uploaded_ints(head.tokens.row_ids);
      input = ex.template alloc<T>(steps * B * D);
      ex.launch(steps * B * D, EmbedRows<T>{ids.data(), stack_.params() + spec_.embedding_offset(), D, input.data()});
    } else {
      input = stack_.to_device_time_major(batch.x, steps, B, D, true);
    }
    ForwardOptions options;
    options.training = training;
    options.dropout = dropout;
    options.dropout_key = key;
    auto o = stack_.forward_device(std::move(input), batch.lengths, Buf<T>(), Buf<T>(), steps, B, options);
    head.tape = std::move(o.tape);
    if (spec_.readout == Readout::Last) {
      head.rows = B;
      head.features = ex.template alloc<T>(B * F);
      const T* top = o.h_n.data() + (rnn.num_layers - 1) * dirs * B * H;
      ex.launch(B * F, GatherLast<T>{top, head.features.data(), B, H, dirs});
      head.valid_host.assign(static_cast<std::size_t>(B), T(1));
    } else {  // rows in (sequence, step) order, as the targets
      head.rows = B * steps;
      head.features = ex.template alloc<T>(head.rows * F);
      ex.launch(head.rows * F, SwapLeadingAxes<T>{o.out.data(), head.features.data(), steps, B, F});
      head.valid_host.assign(static_cast<std::size_t>(head.rows), T(1));
      for (Index b = 0; b < B; ++b) {
        for (Index t = valid_steps(batch, b); t < steps; ++t) head.valid_host[static_cast<std::size_t>(b * steps + t)] = T(0);
      }
    }
    for (const T v : head.valid_host) head.count += static_cast<double>(v);
    head.valid = stack_.uploaded(head.valid_host.data(), head.rows);
    head.ones = ex.template alloc<T>(head.rows);
    ex.launch(head.rows, Fill<T>{head.ones.data(), T(1)});

    // logits = features W^T + 1 b^T
    const T* w = stack_.params() + spec_.head_offset();
    head.logits = ex.template alloc<T>(head.rows * n_out);
    ex.gemm(false, true, head.rows, n_out, F, T(1), head.features.data(), F, w, F, T(0), head.logits.data(), n_out);
    ex.gemm(false, false, head.rows, n_out, 1, T(1), head.ones.data(), 1, w + n_out * F, n_out, T(1),
            head.logits.data(), n_out);
    return head;
  }

  ModelSpec spec_;
  StackType stack_;
  std::array<Buf<T>, kSlots> state_;  // the optimizer's, kept between train_steps
};

}  // namespace device
RNNKIT_END_NAMESPACE
