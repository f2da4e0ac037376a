// Fused optimizer steps: each element updated in one pass by optim_math.hpp's functors, in
// the same order of operations as torch.optim's single-tensor code.
#include "rnnkit/optim.hpp"

RNNKIT_BEGIN_NAMESPACE

template <class T>
void sgd_step(T* param, const T* grad, T* momentum_buffer, Index n, bool first_step,
              const SgdOptions& o) noexcept {
  const optim_math::SgdUpdate<T> update(param, grad, momentum_buffer, first_step, o);
  for (Index i = 0; i < n; ++i) update(i);
}

template <class T>
void adam_step(T* param, const T* grad, T* exp_avg, T* exp_avg_sq, T* max_exp_avg_sq, Index n,
               std::int64_t step, const AdamOptions& o) noexcept {
  const optim_math::AdamUpdate<T> update(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, step, o);
  for (Index i = 0; i < n; ++i) update(i);
}

template <class T>
void rmsprop_step(T* param, const T* grad, T* square_avg, T* grad_avg, T* momentum_buffer, Index n,
                  const RmspropOptions& o) noexcept {
  const optim_math::RmspropUpdate<T> update(param, grad, square_avg, grad_avg, momentum_buffer, o);
  for (Index i = 0; i < n; ++i) update(i);
}

template void sgd_step(float*, const float*, float*, Index, bool, const SgdOptions&) noexcept;
template void sgd_step(double*, const double*, double*, Index, bool, const SgdOptions&) noexcept;
template void adam_step(float*, const float*, float*, float*, float*, Index, std::int64_t,
                        const AdamOptions&) noexcept;
template void adam_step(double*, const double*, double*, double*, double*, Index, std::int64_t,
                        const AdamOptions&) noexcept;
template void rmsprop_step(float*, const float*, float*, float*, float*, Index, const RmspropOptions&) noexcept;
template void rmsprop_step(double*, const double*, double*, double*, double*, Index,
                           const RmspropOptions&) noexcept;

RNNKIT_END_NAMESPACE
