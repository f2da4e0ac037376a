// Optimizer steps over flat parameter buffers, each a fused element-wise loop with the
// semantics of torch.optim's single-tensor implementations (SGD, Adam, AdamW, RMSprop); the
// per-element updates and the options live in optim_math.hpp, shared with the CUDA backend.
#pragma once

#include <cstdint>

#include "rnnkit/optim_math.hpp"
#include "rnnkit/tensor.hpp"

RNNKIT_BEGIN_NAMESPACE

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
