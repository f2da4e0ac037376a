// Gradient clipping (torch.nn.utils.clip_grad_norm_ / clip_grad_value_ semantics).
#include "rnnkit/clip.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "rnnkit/optim_math.hpp"

RNNKIT_BEGIN_NAMESPACE

template <class T>
double total_norm(const std::vector<Buffer<T>>& buffers, double norm_type) {
  if (std::isinf(norm_type)) {
    double biggest = 0.0;
    for (const auto& b : buffers) {
      for (Index i = 0; i < b.size; ++i) {
        const double v = std::abs(static_cast<double>(b.data[i]));
        if (std::isnan(v)) return std::numeric_limits<double>::quiet_NaN();
        biggest = std::max(biggest, v);
      }
    }
    return biggest;
  }
  double sum = 0.0;
  for (const auto& b : buffers) {
    const ConstArrayMap<T> a(b.data, b.size);
    if (norm_type == 2.0) {
      sum += a.template cast<double>().square().sum();
    } else if (norm_type == 1.0) {
      sum += a.template cast<double>().abs().sum();
    } else {
      sum += a.template cast<double>().abs().pow(norm_type).sum();
    }
  }
  return norm_type == 1.0 ? sum : std::pow(sum, 1.0 / norm_type);
}

template <class T>
double clip_norm(const std::vector<Buffer<T>>& buffers, double max_norm, double norm_type) {
  const double norm = total_norm(buffers, norm_type);
  const double coef = optim_math::clip_coefficient(norm, max_norm);
  if (coef == 1.0) return norm;
  for (const auto& b : buffers) ArrayMap<T>(b.data, b.size) *= static_cast<T>(coef);
  return norm;
}

template <class T>
void clip_value(const std::vector<Buffer<T>>& buffers, double clip_value) {
  for (const auto& b : buffers) {
    const optim_math::ClampUpdate<T> clamp{b.data, static_cast<T>(clip_value)};
    for (Index i = 0; i < b.size; ++i) clamp(i);
  }
}

template double total_norm(const std::vector<Buffer<float>>&, double);
template double total_norm(const std::vector<Buffer<double>>&, double);
template double clip_norm(const std::vector<Buffer<float>>&, double, double);
template double clip_norm(const std::vector<Buffer<double>>&, double, double);
template void clip_value(const std::vector<Buffer<float>>&, double);
template void clip_value(const std::vector<Buffer<double>>&, double);

RNNKIT_END_NAMESPACE
