// Optimizer steps over flat parameter buffers, each a fused element-wise loop with the
// semantics of torch.optim's single-tensor implementations (SGD, Adam, AdamW, RMSprop).
#pragma once

#include <cstdint>

#include "rnnkit/tensor.hpp"

RNNKIT_BEGIN_NAMESPACE

struct SgdOptions {
  double lr = 1e-2;
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;
  bool nesterov = false;
  bool maximize = false;
};

struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  /// AdamW: decay the weights directly instead of adding weight_decay * param to the gradient.
  bool decoupled_weight_decay = false;
  bool amsgrad = false;
  bool maximize = false;
};

struct RmspropOptions {
  double lr = 1e-2;
  double alpha = 0.99;
  double eps = 1e-8;
  double weight_decay = 0.0;
  double momentum = 0.0;
  bool centered = false;
  bool maximize = false;
};

/// One SGD step over n elements. `momentum_buffer` ([n], used when momentum != 0) is set
/// from the gradient on the first step (first_step), as PyTorch does.
template <class T>
void sgd_step(T* param, const T* grad, T* momentum_buffer, Index n, bool first_step,
              const SgdOptions& options) noexcept;

/// One Adam/AdamW step; `step` counts from 1. `max_exp_avg_sq` is used only with amsgrad.
template <class T>
void adam_step(T* param, const T* grad, T* exp_avg, T* exp_avg_sq, T* max_exp_avg_sq, Index n,
               std::int64_t step, const AdamOptions& options) noexcept;

/// One RMSprop step. `grad_avg` is used only when centered, `momentum_buffer` only with momentum.
template <class T>
void rmsprop_step(T* param, const T* grad, T* square_avg, T* grad_avg, T* momentum_buffer, Index n,
                  const RmspropOptions& options) noexcept;

RNNKIT_END_NAMESPACE
