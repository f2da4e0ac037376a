// The per-element math of the sigmoid (multi-label) head, written once for the CPU engine
// (src/model.cpp) and the CUDA backend's head kernel (cuda/kernels.hpp). Computed in double
// for float and double models alike, as the other losses are.
#pragma once

#include <cmath>

#include "rnnkit/gate_math.hpp"  // RNNKIT_HD

RNNKIT_BEGIN_NAMESPACE
namespace head_math {

/// The logistic function of z, without overflow for any finite z.
RNNKIT_HD inline double sigmoid(double z) {
  if (z >= 0.0) return 1.0 / (1.0 + exp(-z));
  const double e = exp(z);
  return e / (1.0 + e);
}

/// Binary cross-entropy of logit z against a target y in [0, 1], as PyTorch's
/// BCEWithLogitsLoss computes it per element: max(z, 0) - z y + log(1 + exp(-|z|)).
RNNKIT_HD inline double bce_with_logit(double z, double y) {
  return (z > 0.0 ? z : 0.0) - z * y + log1p(exp(-fabs(z)));
}

}  // namespace head_math
RNNKIT_END_NAMESPACE
