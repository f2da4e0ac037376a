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

/// A stack with a dense head and a loss (what the estimators train), on the device: the
/// device counterpart of rnnkit::predict / rnnkit::loss_and_grad (model.hpp), with the same
/// arguments. Each call copies the parameters and the batch to the device once.
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
