// The optimizers' and the gradient clipping's element-wise updates, written once for the CPU
// engine (src/optim.cpp loops over them) and the CUDA backend (one thread per element), so
// that the CPU test suite checks the very arithmetic the device runs. Each update is a functor
// of one flat index over buffers it points into; its constants are worked out once per step
// on the host, in the order of operations of torch.optim's single-tensor implementations.
// No Eigen here: the CUDA module includes this header.
#pragma once

#include <cmath>
#include <cstdint>

#include "rnnkit/abi.hpp"

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

namespace optim_math {

RNNKIT_HD inline float sqrt_of(float x) { return sqrtf(x); }
RNNKIT_HD inline double sqrt_of(double x) { return sqrt(x); }

/// torch.lerp: start + w * (end - start), evaluated from the nearer end.
template <class T>
RNNKIT_HD inline T lerp(T start, T end, T weight) {
  return weight < T(0.5) ? start + weight * (end - start) : end - (end - start) * (T(1) - weight);
}

/// One SGD step. `momentum_buffer` (used with momentum) is set from the gradient on the first
/// step, as PyTorch does.
template <class T>
struct SgdUpdate {
  T* param;
  const T* grad;
  T* momentum_buffer;
  T lr, wd, mu, damp;
  bool maximize, decay, momentum, nesterov, first_step;

  SgdUpdate(T* p, const T* g, T* buf, bool first, const SgdOptions& o)
      : param(p), grad(g), momentum_buffer(buf), lr(static_cast<T>(o.lr)), wd(static_cast<T>(o.weight_decay)),
        mu(static_cast<T>(o.momentum)), damp(T(1) - static_cast<T>(o.dampening)), maximize(o.maximize),
        decay(o.weight_decay != 0.0), momentum(o.momentum != 0.0), nesterov(o.nesterov), first_step(first) {}

  RNNKIT_HD void operator()(Index i) const {
    T d = maximize ? -grad[i] : grad[i];
    if (decay) d += wd * param[i];
    if (momentum) {
      T& buf = momentum_buffer[i];
      buf = first_step ? d : buf * mu + damp * d;
      d = nesterov ? d + mu * buf : buf;
    }
    param[i] -= lr * d;
  }
};

/// One Adam/AdamW step; `step` counts from 1. `max_exp_avg_sq` is used only with amsgrad.
template <class T>
struct AdamUpdate {
  T* param;
  const T* grad;
  T *exp_avg, *exp_avg_sq, *max_exp_avg_sq;
  T step_size, bc2_sqrt, one_minus_beta1, beta2, one_minus_beta2, eps, wd, decay;
  bool maximize, weight_decay, decoupled, amsgrad;

  AdamUpdate(T* p, const T* g, T* avg, T* avg_sq, T* max_avg_sq, std::int64_t step, const AdamOptions& o)
      : param(p), grad(g), exp_avg(avg), exp_avg_sq(avg_sq), max_exp_avg_sq(max_avg_sq),
        step_size(static_cast<T>(o.lr / (1.0 - std::pow(o.beta1, static_cast<double>(step))))),
        bc2_sqrt(static_cast<T>(std::sqrt(1.0 - std::pow(o.beta2, static_cast<double>(step))))),
        one_minus_beta1(static_cast<T>(1.0 - o.beta1)), beta2(static_cast<T>(o.beta2)),
        one_minus_beta2(static_cast<T>(1.0 - o.beta2)), eps(static_cast<T>(o.eps)),
        wd(static_cast<T>(o.weight_decay)), decay(static_cast<T>(1.0 - o.lr * o.weight_decay)),
        maximize(o.maximize), weight_decay(o.weight_decay != 0.0), decoupled(o.decoupled_weight_decay),
        amsgrad(o.amsgrad) {}

  RNNKIT_HD void operator()(Index i) const {
    T g = maximize ? -grad[i] : grad[i];
    if (weight_decay) {
      if (decoupled) {
        param[i] *= decay;
      } else {
        g += wd * param[i];
      }
    }
    exp_avg[i] = lerp(exp_avg[i], g, one_minus_beta1);
    exp_avg_sq[i] = exp_avg_sq[i] * beta2 + one_minus_beta2 * g * g;
    T second = exp_avg_sq[i];
    if (amsgrad) {
      // std::max's choice: the first argument unless the second is larger
      max_exp_avg_sq[i] = max_exp_avg_sq[i] < exp_avg_sq[i] ? exp_avg_sq[i] : max_exp_avg_sq[i];
      second = max_exp_avg_sq[i];
    }
    const T denom = sqrt_of(second) / bc2_sqrt + eps;
    param[i] -= step_size * (exp_avg[i] / denom);
  }
};

/// One RMSprop step. `grad_avg` is used only when centered, `momentum_buffer` only with momentum.
template <class T>
struct RmspropUpdate {
  T* param;
  const T* grad;
  T *square_avg, *grad_avg, *momentum_buffer;
  T lr, alpha, one_minus_alpha, eps, wd, mu;
  bool maximize, decay, centered, momentum;

  RmspropUpdate(T* p, const T* g, T* sq_avg, T* g_avg, T* buf, const RmspropOptions& o)
      : param(p), grad(g), square_avg(sq_avg), grad_avg(g_avg), momentum_buffer(buf), lr(static_cast<T>(o.lr)),
        alpha(static_cast<T>(o.alpha)), one_minus_alpha(static_cast<T>(1.0 - o.alpha)), eps(static_cast<T>(o.eps)),
        wd(static_cast<T>(o.weight_decay)), mu(static_cast<T>(o.momentum)), maximize(o.maximize),
        decay(o.weight_decay != 0.0), centered(o.centered), momentum(o.momentum > 0.0) {}

  RNNKIT_HD void operator()(Index i) const {
    T g = maximize ? -grad[i] : grad[i];
    if (decay) g += wd * param[i];
    square_avg[i] = square_avg[i] * alpha + one_minus_alpha * g * g;
    T avg;
    if (centered) {
      grad_avg[i] = lerp(grad_avg[i], g, one_minus_alpha);
      avg = sqrt_of(square_avg[i] - grad_avg[i] * grad_avg[i]) + eps;
    } else {
      avg = sqrt_of(square_avg[i]) + eps;
    }
    if (momentum) {
      momentum_buffer[i] = momentum_buffer[i] * mu + g / avg;
      param[i] -= lr * momentum_buffer[i];
    } else {
      param[i] -= lr * (g / avg);
    }
  }
};

/// clip_grad_value_: each element clamped into [-limit, limit] (a NaN stays NaN, as torch.clamp).
template <class T>
struct ClampUpdate {
  T* values;
  T limit;
  RNNKIT_HD void operator()(Index i) const {
    const T v = values[i];
    values[i] = v < -limit ? -limit : (limit < v ? limit : v);
  }
};

/// clip_grad_norm_'s coefficient from the 2-norm: min(1, max_norm / (norm + 1e-6)); a NaN norm
/// gives a NaN coefficient, which reaches the gradients as in PyTorch.
inline double clip_coefficient(double norm, double max_norm) {
  const double coef = max_norm / (norm + 1e-6);
  return coef < 1.0 || std::isnan(coef) ? coef : 1.0;
}

}  // namespace optim_math

RNNKIT_END_NAMESPACE
