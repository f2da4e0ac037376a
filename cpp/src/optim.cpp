// Fused optimizer steps. Each element is updated in one pass, in the same order of
// operations as torch.optim's single-tensor code, so results agree to rounding.
#include "rnnkit/optim.hpp"

#include <algorithm>
#include <cmath>

RNNKIT_BEGIN_NAMESPACE

namespace {

/// torch.lerp: start + w * (end - start), evaluated from the nearer end.
template <class T>
inline T lerp(T start, T end, T weight) noexcept {
  return weight < T(0.5) ? start + weight * (end - start) : end - (end - start) * (T(1) - weight);
}

}  // namespace

template <class T>
void sgd_step(T* param, const T* grad, T* momentum_buffer, Index n, bool first_step,
              const SgdOptions& o) noexcept {
  const T lr = static_cast<T>(o.lr), wd = static_cast<T>(o.weight_decay);
  const T mu = static_cast<T>(o.momentum), damp = T(1) - static_cast<T>(o.dampening);
  for (Index i = 0; i < n; ++i) {
    T d = o.maximize ? -grad[i] : grad[i];
    if (o.weight_decay != 0.0) d += wd * param[i];
    if (o.momentum != 0.0) {
      T& buf = momentum_buffer[i];
      buf = first_step ? d : buf * mu + damp * d;
      d = o.nesterov ? d + mu * buf : buf;
    }
    param[i] -= lr * d;
  }
}

template <class T>
void adam_step(T* param, const T* grad, T* exp_avg, T* exp_avg_sq, T* max_exp_avg_sq, Index n,
               std::int64_t step, const AdamOptions& o) noexcept {
  const double bias_correction1 = 1.0 - std::pow(o.beta1, static_cast<double>(step));
  const double bias_correction2 = 1.0 - std::pow(o.beta2, static_cast<double>(step));
  const T step_size = static_cast<T>(o.lr / bias_correction1);
  const T bc2_sqrt = static_cast<T>(std::sqrt(bias_correction2));
  const T one_minus_beta1 = static_cast<T>(1.0 - o.beta1);
  const T beta2 = static_cast<T>(o.beta2), one_minus_beta2 = static_cast<T>(1.0 - o.beta2);
  const T eps = static_cast<T>(o.eps), wd = static_cast<T>(o.weight_decay);
  const T decay = static_cast<T>(1.0 - o.lr * o.weight_decay);
  for (Index i = 0; i < n; ++i) {
    T g = o.maximize ? -grad[i] : grad[i];
    if (o.weight_decay != 0.0) {
      if (o.decoupled_weight_decay) {
        param[i] *= decay;
      } else {
        g += wd * param[i];
      }
    }
    exp_avg[i] = lerp(exp_avg[i], g, one_minus_beta1);
    exp_avg_sq[i] = exp_avg_sq[i] * beta2 + one_minus_beta2 * g * g;
    T second = exp_avg_sq[i];
    if (o.amsgrad) {
      max_exp_avg_sq[i] = std::max(max_exp_avg_sq[i], exp_avg_sq[i]);
      second = max_exp_avg_sq[i];
    }
    const T denom = std::sqrt(second) / bc2_sqrt + eps;
    param[i] -= step_size * (exp_avg[i] / denom);
  }
}

template <class T>
void rmsprop_step(T* param, const T* grad, T* square_avg, T* grad_avg, T* momentum_buffer, Index n,
                  const RmspropOptions& o) noexcept {
  const T lr = static_cast<T>(o.lr), alpha = static_cast<T>(o.alpha);
  const T one_minus_alpha = static_cast<T>(1.0 - o.alpha), eps = static_cast<T>(o.eps);
  const T wd = static_cast<T>(o.weight_decay), mu = static_cast<T>(o.momentum);
  for (Index i = 0; i < n; ++i) {
    T g = o.maximize ? -grad[i] : grad[i];
    if (o.weight_decay != 0.0) g += wd * param[i];
    square_avg[i] = square_avg[i] * alpha + one_minus_alpha * g * g;
    T avg;
    if (o.centered) {
      grad_avg[i] = lerp(grad_avg[i], g, one_minus_alpha);
      avg = std::sqrt(square_avg[i] - grad_avg[i] * grad_avg[i]) + eps;
    } else {
      avg = std::sqrt(square_avg[i]) + eps;
    }
    if (o.momentum > 0.0) {
      momentum_buffer[i] = momentum_buffer[i] * mu + g / avg;
      param[i] -= lr * momentum_buffer[i];
    } else {
      param[i] -= lr * (g / avg);
    }
  }
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
