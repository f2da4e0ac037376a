// A recurrent stack with a dense read-out and a loss: what the estimators train (the CPU
// engine's implementation; model_spec.hpp says what the model is).
#pragma once

#include <cstdint>
#include <mutex>

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

/// Memory of predict_step() calls, kept between them: later calls of the same batch size
/// allocate nothing. One workspace serves one call at a time.
template <class T>
struct ModelStepWorkspace {
  StepWorkspace<T> stack;
  AlignedVector<T> x;      // [B, D] the standardised inputs
  AlignedVector<T> top;    // [B, H] the top layer's new state
  AlignedVector<T> valid;  // [B] ones
  AlignedVector<T> head;   // [B, n_outputs]
  std::mutex busy;         // held by the call using the workspace
};

/// The inputs of one step of a batch of streams, and the map from the caller's feature scale to
/// the model's (standardise(), model_spec.hpp; X is T or double).
template <class T, class X>
struct StepInput {
  const X* x = nullptr;  // [B, D]
  const double* mean = nullptr;
  const double* scale = nullptr;
};

/// One more time step of each stream through a unidirectional model: the stack's step (its
/// state in and out as in step(); args.x and args.out are the workspace's), then the head on the
/// top layer's new state: out [B, n_outputs], class probabilities for cross-entropy models, the
/// (standardised) predictions for squared-error ones. The same arithmetic as the step's row of
/// predict(). Throws std::invalid_argument for a bidirectional stack, an embedding model, an
/// input that is NaN/Inf once standardised, or outputs that overflow (as predict's callers do).
template <class T, class X>
void predict_step(const ModelSpec& spec, const T* params, const StepInput<T, X>& input, StepArgs<T> args, T* out,
                  int n_threads, ModelStepWorkspace<T>& workspace);

/// Model outputs for a batch: [B, n_outputs] (Last) or [B, T, n_outputs] (Sequence), class
/// probabilities for cross-entropy models and predictions for squared-error ones. Steps past a
/// sequence's length are zero.
/// `frozen_weights`: the caller's promise that the parameters at `params` never change (a
/// frozen model's read-only buffer; ForwardOptions::frozen_weights).
template <class T>
void predict(const ModelSpec& spec, const T* params, const Batch<T>& batch, T* out, int n_threads,
             ModelWorkspace<T>& workspace, bool frozen_weights = false);

/// Mean loss of the batch (cross-entropy, or half the mean squared error over outputs) and
/// its gradient, written into grads (same layout as params; overwritten). Dropout between
/// layers is applied with `dropout` and `dropout_key`.
template <class T>
double loss_and_grad(const ModelSpec& spec, const T* params, const Batch<T>& batch,
                     const Targets<T>& targets, T* grads, double dropout, std::uint64_t dropout_key,
                     int n_threads, ModelWorkspace<T>& workspace);

RNNKIT_END_NAMESPACE
