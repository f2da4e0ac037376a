// Gradient clipping over a set of buffers, with the semantics of PyTorch's
// torch.nn.utils.clip_grad_norm_ and clip_grad_value_.
#pragma once

#include <vector>

#include "rnnkit/tensor.hpp"

RNNKIT_BEGIN_NAMESPACE

template <class T>
struct Buffer {
  T* data = nullptr;
  Index size = 0;
};

/// The norm of all buffers taken together, as if concatenated (norm_type may be +inf).
template <class T>
double total_norm(const std::vector<Buffer<T>>& buffers, double norm_type);

/// Scales every buffer by min(1, max_norm / (norm + 1e-6)) and returns the norm before.
/// Non-finite norms propagate into the buffers, as in PyTorch.
template <class T>
double clip_norm(const std::vector<Buffer<T>>& buffers, double max_norm, double norm_type);

/// Clamps every element into [-clip_value, clip_value].
template <class T>
void clip_value(const std::vector<Buffer<T>>& buffers, double clip_value);

RNNKIT_END_NAMESPACE
