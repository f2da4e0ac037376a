// The device backend's interface: a recurrent stack whose parameters, activations and tape
// live in device memory. Callers pass host arrays in the CPU engine's argument structs
// (ForwardArgs / BackwardArgs); each call copies its inputs to the device once and its
// results back once, never per step.
//
// Two implementations share one driver (driver.hpp): the CUDA one (cuda_stack.cu, cuBLAS +
// kernels, built only with RNNKIT_CUDA=ON) and a host one (host_stack.cpp) that runs the
// very same driver, kernels and GEMM calls on the CPU, so that the driver's logic is tested
// on every machine, with or without a GPU.
#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>

#include "rnnkit/layer_args.hpp"
#include "rnnkit/model_spec.hpp"
#include "rnnkit/optim_math.hpp"
#include "rnnkit/spec.hpp"

RNNKIT_BEGIN_NAMESPACE

/// A device call failed (launch failure, bad device, driver too old, ...).
class DeviceError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A device allocation failed; the stack and its parameters are unchanged.
class DeviceOutOfMemory : public DeviceError {
 public:
  using DeviceError::DeviceError;
};

/// What a training forward keeps on the device for backward. Opaque.
class DeviceTape {
 public:
  virtual ~DeviceTape() = default;
  virtual Index steps() const noexcept = 0;
  virtual Index batch() const noexcept = 0;
};

template <class T>
class DeviceStack {
 public:
  virtual ~DeviceStack() = default;
  virtual const LayerSpec& spec() const noexcept = 0;
  /// Copies the flat parameter buffer (param_layout order) to the device.
  void set_params(const T* host_params) {
    frozen_source_ = nullptr;
    upload_params(host_params);
  }
  /// set_params for frozen weights (the caller's promise that the values at `host_params` never
  /// change, ForwardOptions::frozen_weights): no copy where the resident ones came from there.
  void set_frozen_params(const T* host_params) {
    if (host_params == frozen_source_) return;
    frozen_source_ = nullptr;  // stays unset should the copy throw
    upload_params(host_params);
    frozen_source_ = host_params;
  }
  /// Runs the stack with the resident parameters (args.params is ignored: call set_params).
  /// Host arrays in and out, as rnnkit::forward. Returns the tape when options.training.
  virtual std::unique_ptr<DeviceTape> forward(const ForwardArgs<T>& args, const ForwardOptions& options) = 0;
  /// BPTT from `tape`; parameter gradients are added to args.grad_params (host).
  virtual void backward(const DeviceTape& tape, const BackwardArgs<T>& args) = 0;

 protected:
  virtual void upload_params(const T* host_params) = 0;

 private:
  const T* frozen_source_ = nullptr;  // where the resident parameters came from, if frozen
};

enum class OptimizerKind { Sgd, Adam, Rmsprop };

/// What DeviceModel::train_step does after the gradients, in this order: clip_grad_value_,
/// clip_grad_norm_ (2-norm), then one optimizer step (rnnkit.optim's semantics).
struct TrainSettings {
  double dropout = 0.0;
  std::uint64_t dropout_key = 0;
  bool clip_by_value = false;
  double clip_value = 0.0;
  bool clip_by_norm = false;
  double max_norm = 0.0;
  OptimizerKind optimizer = OptimizerKind::Sgd;
  SgdOptions sgd;
  AdamOptions adam;
  RmspropOptions rmsprop;
  std::int64_t step = 1;  // the optimizer's step count, from 1 (SGD's first sets its momentum)
  /// The caller's promise that the host parameters hold what the last train_step left in them
  /// and on the device, unchanged since (predict's copies of those same values aside): the
  /// parameters are then not copied to the device again.
  bool params_resident = false;
};

/// A stack with a dense head and a loss (what the estimators train), on the device: the
/// device counterpart of rnnkit::predict / rnnkit::loss_and_grad (model.hpp), with the same
/// arguments, and whole training steps (train_step). Each call copies the batch to the device
/// once, and the parameters once unless train_step is told they are resident.
template <class T>
class DeviceModel {
 public:
  virtual ~DeviceModel() = default;
  virtual const ModelSpec& spec() const noexcept = 0;
  /// Outputs [B, n_outputs] or [B, T, n_outputs], as rnnkit::predict.
  virtual void predict(const T* params, const Batch<T>& batch, T* out) = 0;
  /// Mean loss of the batch; its gradient overwrites `grads` (host), as rnnkit::loss_and_grad.
  virtual double loss_and_grad(const T* params, const Batch<T>& batch, const Targets<T>& targets, T* grads,
                               double dropout, std::uint64_t dropout_key) = 0;

  /// The optimizer's state lives on the device between train_steps, in up to kStateSlots
  /// buffers of one value per parameter, in rnnkit.optim's order: SGD momentum_buffer; Adam
  /// exp_avg, exp_avg_sq, max_exp_avg_sq; RMSprop square_avg, grad_avg, momentum_buffer.
  static constexpr int kStateSlots = 3;
  /// Copies a state buffer (host, one value per parameter) to the device.
  virtual void set_optimizer_state(int slot, const T* host) = 0;
  /// Copies a state buffer back; throws std::logic_error for a slot never set.
  virtual void get_optimizer_state(int slot, T* host) = 0;
  /// One whole training step on the device: loss_and_grad, the clipping and the optimizer
  /// step of `settings`, with the resident optimizer state (set_optimizer_state first).
  /// `params` (host) is read, then overwritten with the stepped parameters. Where the loss is
  /// not finite nothing is stepped: `params` and the state are left as they were.
  virtual double train_step(T* params, const Batch<T>& batch, const Targets<T>& targets,
                            const TrainSettings& settings) = 0;
};

/// Facts about the device runtime for show_config() and for clear errors.
struct DeviceInfo {
  bool compiled = false;       // this module drives a real device
  int runtime_version = 0;     // e.g. 13000
  int driver_version = 0;      // 0 when no driver is loaded
  int device_count = 0;
  std::string error;           // why no device can be used, empty when one can
};

/// The implementation behind this module (CUDA or host simulation).
DeviceInfo device_info();
/// Name of device `index`, or "" when it does not exist.
std::string device_name(int index);
/// Throws DeviceError (with the reason) unless device `index` can be used.
template <class T>
std::unique_ptr<DeviceStack<T>> make_device_stack(const LayerSpec& spec, int device_index, bool allow_tf32);

template <class T>
std::unique_ptr<DeviceModel<T>> make_device_model(const ModelSpec& spec, int device_index, bool allow_tf32);

RNNKIT_END_NAMESPACE
