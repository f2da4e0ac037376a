// A recurrent stack with a dense read-out and a loss: what the estimators train (the CPU
// engine's implementation; model_spec.hpp says what the model is).
#pragma once

#include <cstdint>

#include "rnnkit/layer.hpp"
#include "rnnkit/model_spec.hpp"

RNNKIT_BEGIN_NAMESPACE

/// Model outputs for a batch: [B, n_outputs] (Last) or [B, T, n_outputs] (Sequence), class
/// probabilities for cross-entropy models and predictions for squared-error ones. Steps past a
/// sequence's length are zero.
template <class T>
void predict(const ModelSpec& spec, const T* params, const Batch<T>& batch, T* out, int n_threads);

/// Mean loss of the batch (cross-entropy, or half the mean squared error over outputs) and
/// its gradient, written into grads (same layout as params; overwritten). Dropout between
/// layers is applied with `dropout` and `dropout_key`.
template <class T>
double loss_and_grad(const ModelSpec& spec, const T* params, const Batch<T>& batch,
                     const Targets<T>& targets, T* grads, double dropout, std::uint64_t dropout_key,
                     int n_threads);

RNNKIT_END_NAMESPACE
