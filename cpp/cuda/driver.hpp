// The device backend's layer driver, written once over an executor that supplies memory,
// copies, GEMMs (row-major) and kernel launches: CudaExec (cuBLAS + CUDA kernels) or
// HostExec (plain loops + Eigen, for tests on machines without a GPU). It follows the CPU
// engine's plan (src/layer.cpp): per (layer, direction) one GEMM for all steps' input
// projections, then the recurrence: per step one recurrent GEMM and one fused element-wise
// kernel, or, where W_hh is small, every step in one launch (recurrence.hpp); the backward
// mirrors it and finishes with the weight gradients as GEMMs over all steps.
//
// Executor interface (see HostExec in host_stack.cpp for the reference implementation):
//   Buffer<U>              owning device array: data(), size(), default-constructible, movable
//   alloc<U>(n)            uninitialised buffer      zero(p, n)       copy(dst, src, n)
//   upload(dst, host, n)   host -> device            download(host, src, n) device -> host
//   launch(n, functor)     functor(i) for i in [0, n)
//   recurrence(blocks, steps, program)   a fused recurrence (recurrence.hpp)
//   gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)   row-major C = a op(A) op(B) + b C
//   activate()             make the executor's device current   synchronize()
#pragma once

#include <memory>
#include <stdexcept>
#include <typeinfo>
#include <utility>
#include <vector>

#include "device_stack.hpp"
#include "kernels.hpp"
#include "recurrence.hpp"

RNNKIT_BEGIN_NAMESPACE
namespace device {

template <class Exec, class T>
class Stack final : public DeviceStack<T> {
  template <class U>
  using Buf = typename Exec::template Buffer<U>;

  struct Direction {
    Buf<T> gates;   // [T, B, GH] activated gates
    Buf<T> states;  // [T+1, B, H]; forward: h_{-1} first, reverse: h_T last (as the CPU tape)
    Buf<T> cells;   // [T+1, B, H] LSTM
    Buf<T> extra;   // [T, B, H] GRU
  };
  struct Layer {
    Buf<T> input;          // [T, B, D_in] after dropout
    Buf<T> dropout_scale;  // [T, B, D_in], empty without dropout
    std::vector<Direction> directions;
  };
  struct Tape final : DeviceTape {
    Index steps_ = 0, batch_ = 0;
    bool batch_first = false;
    Buf<std::uint8_t> active;  // [T, B], empty when every sequence spans all steps
    std::vector<Layer> layers;
    Index steps() const noexcept override { return steps_; }
    Index batch() const noexcept override { return batch_; }
  };

 public:
  /// `total_params` >= param_count(spec) when the stack's parameters start a larger buffer
  /// (a model's stack + head + embedding).
  Stack(const LayerSpec& spec, Exec exec, Index total_params = -1) : spec_(spec), exec_(std::move(exec)) {
    spec_.validate();
    exec_.activate();
    params_ = exec_.template alloc<T>(total_params < 0 ? param_count(spec_) : total_params);
    exec_.zero(params_.data(), params_.size());
  }

  const LayerSpec& spec() const noexcept override { return spec_; }

  void upload_params(const T* host_params) override {
    exec_.activate();
    exec_.upload(params_.data(), host_params, params_.size());
    exec_.synchronize();
  }

  std::unique_ptr<DeviceTape> forward(const ForwardArgs<T>& args, const ForwardOptions& options) override {
    if (args.steps <= 0 || args.batch <= 0) throw std::invalid_argument("x must have at least one step and one sequence");
    exec_.activate();
    const Index steps = args.steps, batch = args.batch, dirs = spec_.directions();
    const Index states = spec_.num_layers * dirs * batch * spec_.hidden_size;
    Buf<T> h0, c0;
    if (args.h0 != nullptr) h0 = uploaded(args.h0, states);
    if (args.c0 != nullptr) c0 = uploaded(args.c0, states);
    Outputs o = forward_device(to_device_time_major(args.x, steps, batch, spec_.input_size, options.batch_first),
                               args.lengths, h0, c0, steps, batch, options);
    from_device_time_major(o.out, args.out, steps, batch, dirs * spec_.hidden_size, options.batch_first);
    exec_.download(args.h_n, o.h_n.data(), states);
    if (is_lstm() && args.c_n != nullptr) exec_.download(args.c_n, o.c_n.data(), states);
    exec_.synchronize();
    return std::move(o.tape);
  }

  void backward(const DeviceTape& base, const BackwardArgs<T>& args) override {
    const Tape* tape = dynamic_cast<const Tape*>(&base);
    if (tape == nullptr) throw std::invalid_argument("backward: the tape comes from another stack type");
    exec_.activate();
    const Index steps = tape->steps_, batch = tape->batch_, h = spec_.hidden_size, dirs = spec_.directions();
    const Index states = spec_.num_layers * dirs * batch * h;
    Buf<T> grad_output, g_hn, g_cn;
    if (args.grad_out != nullptr) {
      grad_output = to_device_time_major(args.grad_out, steps, batch, dirs * h, tape->batch_first);
    }
    if (args.grad_h_n != nullptr) g_hn = uploaded(args.grad_h_n, states);
    if (args.grad_c_n != nullptr && is_lstm()) g_cn = uploaded(args.grad_c_n, states);
    const Index count = param_count(spec_);
    Buf<T> grad_params = exec_.template alloc<T>(count);
    exec_.zero(grad_params.data(), count);
    Gradients g = backward_device(*tape, std::move(grad_output), g_hn, g_cn, grad_params.data());
    from_device_time_major(g.x, args.grad_x, steps, batch, spec_.input_size, tape->batch_first);
    if (args.grad_h0 != nullptr) exec_.download(args.grad_h0, g.h0.data(), states);
    if (is_lstm() && args.grad_c0 != nullptr) exec_.download(args.grad_c0, g.c0.data(), states);
    std::vector<T> host_grads(static_cast<std::size_t>(count));
    exec_.download(host_grads.data(), grad_params.data(), count);
    exec_.synchronize();
    for (std::size_t i = 0; i < host_grads.size(); ++i) args.grad_params[i] += host_grads[i];
  }

  // ---- Device-level calls, for models built on the stack (model_driver.hpp). Arrays are
  // time-major device buffers; parameters are the resident ones.
  using TapeHandle = std::unique_ptr<Tape>;
  struct Outputs {
    Buf<T> out;  // [T, B, dirs*H]
    Buf<T> h_n;  // [L*dirs, B, H]
    Buf<T> c_n;  // [L*dirs, B, H] LSTM
    TapeHandle tape;  // training only
  };
  struct Gradients {
    Buf<T> x;   // [T, B, D]
    Buf<T> h0;  // [L*dirs, B, H]
    Buf<T> c0;  // [L*dirs, B, H] LSTM
  };

  Exec& exec() noexcept { return exec_; }
  const T* params() const noexcept { return params_.data(); }
  T* params() noexcept { return params_.data(); }
  Index total_params() const noexcept { return params_.size(); }

  /// Runs the stack over `input` ([T, B, D] on the device); `lengths` is a host array or nullptr,
  /// `h0` / `c0` device buffers or empty for zeros.
  Outputs forward_device(Buf<T> input, const std::int64_t* lengths, const Buf<T>& h0, const Buf<T>& c0,
                         Index steps, Index batch, const ForwardOptions& options) {
    if (steps <= 0 || batch <= 0) throw std::invalid_argument("x must have at least one step and one sequence");
    if (!(options.dropout >= 0.0 && options.dropout < 1.0)) throw std::invalid_argument("dropout must be in [0, 1)");
    const Index h = spec_.hidden_size, dirs = spec_.directions();
    const Index states = spec_.num_layers * dirs * batch * h;
    auto tape = std::make_unique<Tape>();
    tape->steps_ = steps;
    tape->batch_ = batch;
    tape->batch_first = options.batch_first;
    if (lengths != nullptr) tape->active = active_mask(lengths, steps, batch);
    const std::uint8_t* active = tape->active.size() > 0 ? tape->active.data() : nullptr;
    tape->layers.resize(static_cast<std::size_t>(spec_.num_layers));

    Outputs o;
    o.h_n = exec_.template alloc<T>(states);
    o.c_n = exec_.template alloc<T>(is_lstm() ? states : 0);
    const bool use_dropout = options.training && options.dropout > 0.0;
    Direction scratch;  // reused across directions when nothing is kept
    for (Index l = 0; l < spec_.num_layers; ++l) {
      Layer& layer = tape->layers[static_cast<std::size_t>(l)];
      Buf<T> output = exec_.template alloc<T>(steps * batch * dirs * h);
      exec_.zero(output.data(), output.size());
      if (options.training) layer.directions.resize(static_cast<std::size_t>(dirs));
      for (Index d = 0; d < dirs; ++d) {
        Direction& dir = options.training ? layer.directions[static_cast<std::size_t>(d)] : scratch;
        forward_direction(l, d, steps, batch, input.data(), output.data(), dir, h0, c0, o.h_n, o.c_n, active);
      }
      if (use_dropout && l + 1 < spec_.num_layers) {
        Buf<T> scale = exec_.template alloc<T>(output.size());
        const T keep = T(1) / static_cast<T>(1.0 - options.dropout);
        exec_.launch(output.size(), Dropout<T>{options.dropout_key, static_cast<std::uint64_t>(l), options.dropout,
                                               keep, output.data(), scale.data()});
        tape->layers[static_cast<std::size_t>(l + 1)].dropout_scale = std::move(scale);
      }
      if (options.training) layer.input = std::move(input);
      input = std::move(output);
    }
    o.out = std::move(input);
    if (options.training) o.tape = std::move(tape);
    return o;
  }

  /// BPTT from device gradients (`grad_output` time-major, or empty; `g_hn` / `g_cn` or empty);
  /// the stack's parameter gradients are added to the device array `grad_params`.
  Gradients backward_device(const Tape& tape, Buf<T> grad_output, const Buf<T>& g_hn, const Buf<T>& g_cn,
                            T* grad_params) {
    if (tape.layers.empty() || tape.layers.front().directions.empty()) {
      throw std::invalid_argument("backward: the tape holds no training forward");
    }
    const Index steps = tape.steps_, batch = tape.batch_, h = spec_.hidden_size, dirs = spec_.directions();
    const Index states = spec_.num_layers * dirs * batch * h, rows = steps * batch;
    const std::uint8_t* active = tape.active.size() > 0 ? tape.active.data() : nullptr;
    Gradients g;
    g.h0 = exec_.template alloc<T>(states);
    g.c0 = exec_.template alloc<T>(is_lstm() ? states : 0);
    Buf<T> ones;
    if (spec_.bias) {
      ones = exec_.template alloc<T>(rows);
      exec_.launch(rows, Fill<T>{ones.data(), T(1)});
    }
    for (Index l = spec_.num_layers - 1; l >= 0; --l) {
      const Layer& layer = tape.layers[static_cast<std::size_t>(l)];
      Buf<T> grad_input = exec_.template alloc<T>(rows * spec_.layer_input_size(l));
      exec_.zero(grad_input.data(), grad_input.size());
      for (Index d = 0; d < dirs; ++d) {
        backward_direction(l, d, steps, batch, layer, layer.directions[static_cast<std::size_t>(d)],
                           grad_output.size() > 0 ? grad_output.data() : nullptr, g_hn, g_cn, g.h0, g.c0, ones,
                           grad_input.data(), grad_params, active);
      }
      if (layer.dropout_scale.size() > 0) {
        exec_.launch(grad_input.size(), Multiply<T>{grad_input.data(), layer.dropout_scale.data()});
      }
      grad_output = std::move(grad_input);
    }
    g.x = std::move(grad_output);
    return g;
  }

  Buf<T> uploaded(const T* host, Index n) {
    Buf<T> buf = exec_.template alloc<T>(n);
    exec_.upload(buf.data(), host, n);
    return buf;
  }

  /// A host [T, B, F] (or [B, T, F]) array as a time-major device array.
  Buf<T> to_device_time_major(const T* host, Index steps, Index batch, Index width, bool batch_first) {
    Buf<T> raw = uploaded(host, steps * batch * width);
    if (!batch_first) return raw;
    Buf<T> out = exec_.template alloc<T>(raw.size());
    exec_.launch(raw.size(), SwapLeadingAxes<T>{raw.data(), out.data(), batch, steps, width});
    return out;
  }

  /// Downloads a time-major device array into a host [T, B, F] (or [B, T, F]) array.
  void from_device_time_major(const Buf<T>& src, T* host, Index steps, Index batch, Index width, bool batch_first) {
    if (!batch_first) {
      exec_.download(host, src.data(), src.size());
      return;
    }
    Buf<T> out = exec_.template alloc<T>(src.size());
    exec_.launch(src.size(), SwapLeadingAxes<T>{src.data(), out.data(), steps, batch, width});
    exec_.download(host, out.data(), out.size());
  }

 private:
  bool is_lstm() const noexcept { return spec_.cell == CellKind::Lstm; }

  Buf<std::uint8_t> active_mask(const std::int64_t* lengths, Index steps, Index batch) {
    std::vector<std::uint8_t> mask(static_cast<std::size_t>(steps * batch));
    for (Index b = 0; b < batch; ++b) {
      const std::int64_t len = lengths[b];
      if (len < 1 || len > steps) throw std::invalid_argument("lengths must lie in [1, T]");
      for (Index t = 0; t < steps; ++t) mask[static_cast<std::size_t>(t * batch + b)] = t < len ? 1 : 0;
    }
    Buf<std::uint8_t> buf = exec_.template alloc<std::uint8_t>(steps * batch);
    exec_.upload(buf.data(), mask.data(), steps * batch);
    return buf;
  }

  const T* param(Index offset) const noexcept { return offset >= 0 ? params_.data() + offset : nullptr; }

  /// A direction's buffers as the recurrence sees them (V: T to write, const T to read).
  template <class V, class Dir>
  DirectionTape<V> tape_of(Dir& dir, Index steps, Index batch, bool reverse) const {
    return DirectionTape<V>{spec_.cell, spec_.hidden_size, batch, steps, reverse,
                            dir.gates.data(), dir.states.data(), dir.cells.data(), dir.extra.data()};
  }

  void forward_direction(Index l, Index d, Index steps, Index batch, const T* input, T* output, Direction& dir,
                         const Buf<T>& h0, const Buf<T>& c0, Buf<T>& h_n, Buf<T>& c_n, const std::uint8_t* active) {
    const Index h = spec_.hidden_size, gh = spec_.gate_width(), width = spec_.layer_input_size(l);
    const Index dirs = spec_.directions(), state = batch * h, rows = steps * batch;
    const Index k = l * dirs + d;
    const bool reverse = d == 1, lstm = is_lstm(), gru = spec_.cell == CellKind::Gru;
    const DirectionParams p = direction_params(spec_, l, d);

    dir.gates = exec_.template alloc<T>(rows * gh);
    dir.states = exec_.template alloc<T>((steps + 1) * state);
    dir.cells = exec_.template alloc<T>(lstm ? (steps + 1) * state : 0);
    dir.extra = exec_.template alloc<T>(gru ? steps * state : 0);

    exec_.gemm(false, true, rows, gh, width, T(1), input, width, param(p.weight_ih), width, T(0), dir.gates.data(), gh);
    const Index first = reverse ? steps : 0;
    if (h0.size() > 0) {
      exec_.copy(dir.states.data() + first * state, h0.data() + k * state, state);
    } else {
      exec_.zero(dir.states.data() + first * state, state);
    }
    if (lstm) {
      if (c0.size() > 0) {
        exec_.copy(dir.cells.data() + first * state, c0.data() + k * state, state);
      } else {
        exec_.zero(dir.cells.data() + first * state, state);
      }
    }

    ForwardPass<T> pass{};
    pass.tape = tape_of<T>(dir, steps, batch, reverse);
    pass.bias_ih = param(p.bias_ih);
    pass.bias_hh = param(p.bias_hh);
    pass.active = active;
    pass.out = output + (reverse ? h : 0);
    pass.out_stride = dirs * h;
    if (fused_recurrence(gh, h, batch, sizeof(T))) {
      Buf<T> weight_hh_t = exec_.template alloc<T>(gh * h);
      exec_.launch(gh * h, SwapLeadingAxes<T>{param(p.weight_hh), weight_hh_t.data(), gh, h, 1});
      exec_.recurrence(batch, steps, FusedForward<T>{pass, weight_hh_t.data(), dot_parts(gh, h)});
    } else {
      Buf<T> rec = exec_.template alloc<T>(batch * gh);
      for (Index n = 0; n < steps; ++n) {
        const Index t = pass.time(n);
        if (n == 0 && h0.size() == 0) {  // the product with the zero initial state: zeros, no GEMM
          exec_.zero(rec.data(), batch * gh);
        } else {
          exec_.gemm(false, true, batch, gh, h, T(1), pass.h_prev(t), h, param(p.weight_hh), h, T(0), rec.data(), gh);
        }
        exec_.launch(state, pass.step(t, rec.data(), gh));
      }
    }
    const Index last = reverse ? 0 : steps;
    exec_.copy(h_n.data() + k * state, dir.states.data() + last * state, state);
    if (lstm) exec_.copy(c_n.data() + k * state, dir.cells.data() + last * state, state);
  }

  void backward_direction(Index l, Index d, Index steps, Index batch, const Layer& layer, const Direction& dir,
                          const T* grad_output, const Buf<T>& g_hn, const Buf<T>& g_cn, Buf<T>& grad_h0,
                          Buf<T>& grad_c0, const Buf<T>& ones, T* grad_input, T* grad_params,
                          const std::uint8_t* active) {
    const Index h = spec_.hidden_size, gh = spec_.gate_width(), width = spec_.layer_input_size(l);
    const Index dirs = spec_.directions(), state = batch * h, rows = steps * batch;
    const Index k = l * dirs + d;
    const bool reverse = d == 1, lstm = is_lstm(), gru = spec_.cell == CellKind::Gru;
    const DirectionParams p = direction_params(spec_, l, d);

    Buf<T> dgx = exec_.template alloc<T>(rows * gh);
    Buf<T> dgh_own = exec_.template alloc<T>(gru ? rows * gh : 0);
    T* dgh = gru ? dgh_own.data() : dgx.data();
    Buf<T> carry = exec_.template alloc<T>(state);
    Buf<T> dc = exec_.template alloc<T>(lstm ? state : 0);
    if (g_hn.size() > 0) {
      exec_.copy(carry.data(), g_hn.data() + k * state, state);
    } else {
      exec_.zero(carry.data(), state);
    }
    if (lstm) {
      if (g_cn.size() > 0) {
        exec_.copy(dc.data(), g_cn.data() + k * state, state);
      } else {
        exec_.zero(dc.data(), state);
      }
    }

    BackwardPass<T> pass{};
    pass.tape = tape_of<const T>(dir, steps, batch, reverse);
    pass.grad_out = grad_output != nullptr ? grad_output + (reverse ? h : 0) : nullptr;
    pass.out_stride = dirs * h;
    pass.carry = carry.data();
    pass.dc = dc.data();
    pass.dgx = dgx.data();
    pass.dgh = dgh;
    pass.active = active;
    if (fused_recurrence(gh, h, batch, sizeof(T))) {
      exec_.recurrence(batch, steps, FusedBackward<T>{pass, param(p.weight_hh), dot_parts(h, gh)});
    } else {
      for (Index n = 0; n < steps; ++n) {
        const CellBackward<T> b = pass.step(pass.time(n));
        exec_.launch(state, b);
        exec_.gemm(false, false, batch, h, gh, T(1), b.dgh, gh, param(p.weight_hh), h, T(1), carry.data(), h);
      }
    }
    exec_.copy(grad_h0.data() + k * state, carry.data(), state);
    if (lstm) exec_.copy(grad_c0.data() + k * state, dc.data(), state);

    // Weight and bias gradients over all steps at once; then dL/d(input) += dG_x W_ih.
    const T* h_prev_all = dir.states.data() + (reverse ? state : 0);
    exec_.gemm(true, false, gh, width, rows, T(1), dgx.data(), gh, layer.input.data(), width, T(1),
               grad_params + p.weight_ih, width);
    exec_.gemm(true, false, gh, h, rows, T(1), dgh, gh, h_prev_all, h, T(1), grad_params + p.weight_hh, h);
    if (spec_.bias) {
      exec_.gemm(false, false, 1, gh, rows, T(1), ones.data(), rows, dgx.data(), gh, T(1), grad_params + p.bias_ih, gh);
      exec_.gemm(false, false, 1, gh, rows, T(1), ones.data(), rows, dgh, gh, T(1), grad_params + p.bias_hh, gh);
    }
    exec_.gemm(false, false, rows, width, gh, T(1), dgx.data(), gh, param(p.weight_ih), width, T(1), grad_input, width);
  }

  LayerSpec spec_;
  Exec exec_;
  Buf<T> params_;
};

}  // namespace device
RNNKIT_END_NAMESPACE
