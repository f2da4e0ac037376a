// A recurrent stack with a dense read-out and a loss: what the estimators train (the CPU
// engine's implementation; model_spec.hpp says what the model is).
#pragma once

#include <cstdint>

#include "rnnkit/layer.hpp"
#include "rnnkit/model_spec.hpp"

RNNKIT_BEGIN_NAMESPACE

/// Memory a model call needs, kept by a caller who passes it to later calls: those of the same
/// sizes then allocate nothing (fresh memory costs a page fault per 4 KiB, bench/NOTES.md,
/// 2026-11-27). One workspace serves one call at a time.
template <class T>
struct ModelWorkspace {
  Tape<T> tape;                 // the stack's
  AlignedVector<T> out;         // [B, T, F] the stack's outputs
  AlignedVector<T> h_n, c_n;    // [L * dirs, B, H]
  AlignedVector<T> embedded;    // [B, T, D] looked-up token vectors
  AlignedVector<T> features;    // [B, F] the last states (Readout::Last)
  AlignedVector<T> valid;       // [rows] 1 where a head row counts, else 0
  AlignedVector<T> head;        // [rows, n_outputs] outputs, or dL/dlogits
  AlignedVector<T> grad_features, grad_x, grad_h0, grad_c0, grad_h_n;
};

/// Model outputs for a batch: [B, n_outputs] (Last) or [B, T, n_outputs] (Sequence), class
/// probabilities for cross-entropy models and predictions for squared-error ones. Steps past a
/// sequence's length are zero.
template <class T>
void predict(const ModelSpec& spec, const T* params, const Batch<T>& batch, T* out, int n_threads,
             ModelWorkspace<T>& workspace);

/// Mean loss of the batch (cross-entropy, or half the mean squared error over outputs) and
/// its gradient, written into grads (same layout as params; overwritten). Dropout between
/// layers is applied with `dropout` and `dropout_key`.
template <class T>
double loss_and_grad(const ModelSpec& spec, const T* params, const Batch<T>& batch,
                     const Targets<T>& targets, T* grads, double dropout, std::uint64_t dropout_key,
                     int n_threads, ModelWorkspace<T>& workspace);

RNNKIT_END_NAMESPACE
