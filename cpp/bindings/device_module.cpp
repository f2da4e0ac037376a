// The device backend's module, built twice from this file: rnnkit._cuda (the CUDA
// implementation, only with RNNKIT_CUDA=ON) and rnnkit._device_host (the same driver run on
// the host, always built, for tests). RNNKIT_MODULE_NAME names the module.
#include <algorithm>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "../cuda/device_stack.hpp"
#include "bindings.hpp"
#include "layer_calls.hpp"
#include "model_calls.hpp"

#ifndef RNNKIT_MODULE_NAME
#define RNNKIT_MODULE_NAME _device_host
#endif

namespace rnnkit_py {
namespace {

using rnnkit::DeviceStack;
using rnnkit::DeviceTape;
using rnnkit::Index;
using rnnkit::LayerSpec;

template <class T>
void register_stack(py::module_& m, const std::string& suffix) {
  using Stack = DeviceStack<T>;
  py::class_<Stack>(m, ("Stack_" + suffix).c_str(), py::module_local(),
                    "A recurrent stack whose parameters, activations and tape live on the device.")
      .def(py::init([](const std::string& cell, Index input_size, Index hidden_size, Index num_layers,
                       bool bidirectional, bool bias, int device, bool allow_tf32) {
             const LayerSpec s = layer_spec_of(cell, input_size, hidden_size, num_layers, bidirectional, bias);
             return rnnkit::make_device_stack<T>(s, device, allow_tf32);
           }),
           py::arg("cell"), py::arg("input_size"), py::arg("hidden_size"), py::arg("num_layers"),
           py::arg("bidirectional"), py::arg("bias"), py::arg("device") = 0, py::arg("allow_tf32") = false)
      .def(
          "forward",
          [](Stack& stack, const Array<T>& params, const Array<T>& x, bool batch_first,
             const std::optional<Array<T>>& h0, const std::optional<Array<T>>& c0,
             const std::optional<Lengths>& lengths, bool training, double dropout, std::uint64_t dropout_key,
             bool frozen_weights) {
            ForwardCall<T> call(stack.spec(), params, x, batch_first, h0, c0, lengths, training, dropout, dropout_key);
            std::unique_ptr<DeviceTape> tape;
            {
              py::gil_scoped_release release;
              // As on the CPU, trusted only for a read-only array (a converted copy is writeable).
              if (frozen_weights && !params.writeable()) {
                stack.set_frozen_params(params.data());
              } else {
                stack.set_params(params.data());
              }
              tape = stack.forward(call.args, call.options);
            }
            py::object tape_obj = tape ? py::cast(std::move(tape)) : py::object(py::none());
            return call.result(std::move(tape_obj));
          },
          py::arg("params"), py::arg("x"), py::arg("batch_first"), py::arg("h0"), py::arg("c0"), py::arg("lengths"),
          py::arg("training"), py::arg("dropout"), py::arg("dropout_key"), py::arg("frozen_weights") = false,
          "Copies params to the device (not again for `frozen_weights` from the same read-only array) and runs "
          "the stack. Returns (out, h_n, c_n or None, tape or None).")
      .def(
          "backward",
          [](Stack& stack, const DeviceTape& tape, const Array<T>& params, const std::optional<Array<T>>& grad_out,
             const std::optional<Array<T>>& grad_h_n, const std::optional<Array<T>>& grad_c_n,
             Array<T>& grad_params, bool batch_first, bool accumulate) {
            BackwardCall<T> call(stack.spec(), tape.steps(), tape.batch(), batch_first, params, grad_out, grad_h_n,
                                 grad_c_n, grad_params, accumulate);
            {
              py::gil_scoped_release release;
              stack.set_params(params.data());
              stack.backward(tape, call.args);
            }
            return call.result();
          },
          py::arg("tape"), py::arg("params"), py::arg("grad_out"), py::arg("grad_h_n"), py::arg("grad_c_n"),
          py::arg("grad_params").noconvert(), py::arg("batch_first"), py::arg("accumulate"),
          "Back-propagates through time on the device; adds parameter gradients into grad_params (cleared "
          "first, once the arguments are checked, unless `accumulate`). "
          "Returns (grad_x, grad_h0, grad_c0 or None).");
}

/// TrainSettings from the Python call's arguments; `options` holds the optimizer's keywords as
/// rnnkit.optim names them (missing ones keep their defaults).
inline rnnkit::TrainSettings train_settings(double dropout, std::uint64_t dropout_key, std::optional<double> clip_value,
                                            std::optional<double> max_norm, const std::string& optimizer,
                                            const py::dict& options, std::int64_t step) {
  if (step < 1) throw py::value_error("step must be at least 1");
  rnnkit::TrainSettings s;
  s.dropout = dropout;
  s.dropout_key = dropout_key;
  s.clip_by_value = clip_value.has_value();
  s.clip_value = clip_value.value_or(0.0);
  s.clip_by_norm = max_norm.has_value();
  s.max_norm = max_norm.value_or(0.0);
  s.step = step;
  std::vector<std::string> known;  // the keywords this optimizer takes
  auto real = [&](const char* key, double& field) {
    known.emplace_back(key);
    if (options.contains(key)) field = options[key].cast<double>();
  };
  auto flag = [&](const char* key, bool& field) {
    known.emplace_back(key);
    if (options.contains(key)) field = options[key].cast<bool>();
  };
  if (optimizer == "sgd") {
    rnnkit::SgdOptions& o = s.sgd;
    s.optimizer = rnnkit::OptimizerKind::Sgd;
    real("lr", o.lr);
    real("momentum", o.momentum);
    real("dampening", o.dampening);
    real("weight_decay", o.weight_decay);
    flag("nesterov", o.nesterov);
    flag("maximize", o.maximize);
  } else if (optimizer == "adam") {
    rnnkit::AdamOptions& o = s.adam;
    s.optimizer = rnnkit::OptimizerKind::Adam;
    real("lr", o.lr);
    real("beta1", o.beta1);
    real("beta2", o.beta2);
    real("eps", o.eps);
    real("weight_decay", o.weight_decay);
    flag("decoupled_weight_decay", o.decoupled_weight_decay);
    flag("amsgrad", o.amsgrad);
    flag("maximize", o.maximize);
  } else if (optimizer == "rmsprop") {
    rnnkit::RmspropOptions& o = s.rmsprop;
    s.optimizer = rnnkit::OptimizerKind::Rmsprop;
    real("lr", o.lr);
    real("alpha", o.alpha);
    real("eps", o.eps);
    real("weight_decay", o.weight_decay);
    real("momentum", o.momentum);
    flag("centered", o.centered);
    flag("maximize", o.maximize);
  } else {
    throw py::value_error("optimizer must be 'sgd', 'adam' or 'rmsprop', got '" + optimizer + "'");
  }
  for (const auto& item : options) {
    const std::string key = py::str(item.first);
    if (std::find(known.begin(), known.end(), key) == known.end()) {
      throw py::value_error("options: '" + optimizer + "' takes no option '" + key + "'");
    }
  }
  return s;
}

template <class T>
void register_device_model(py::module_& m, const std::string& suffix) {
  using Model = rnnkit::DeviceModel<T>;
  py::class_<Model>(m, ("Model_" + suffix).c_str(), py::module_local(),
                    "A stack with a dense head and a loss (the estimators' model) on the device.")
      .def(py::init([](const std::string& cell, Index input_size, Index hidden_size, Index num_layers,
                       bool bidirectional, bool bias, Index n_outputs, const std::string& loss,
                       const std::string& readout, Index vocab_size, int device, bool allow_tf32) {
             const LayerSpec rnn = layer_spec_of(cell, input_size, hidden_size, num_layers, bidirectional, bias);
             return rnnkit::make_device_model<T>(model_spec_of(rnn, n_outputs, loss, readout, vocab_size), device,
                                                 allow_tf32);
           }),
           py::arg("cell"), py::arg("input_size"), py::arg("hidden_size"), py::arg("num_layers"),
           py::arg("bidirectional"), py::arg("bias"), py::arg("n_outputs"), py::arg("loss"), py::arg("readout"),
           py::arg("vocab_size") = 0, py::arg("device") = 0, py::arg("allow_tf32") = false)
      .def(
          "predict",
          [](Model& model, const Array<T>& params, const py::array& x, const std::optional<Ints>& lengths) {
            const rnnkit::ModelSpec& spec = model.spec();
            expect_param_count(spec, params, "params");
            const auto b = batch_of<T>(spec, x, lengths);
            Array<T> out(output_shape(spec, b));
            T* o = out.mutable_data();
            {
              py::gil_scoped_release release;
              model.predict(params.data(), b, o);
            }
            return out;
          },
          py::arg("params"), py::arg("x"), py::arg("lengths"), "As rnnkit's model_predict, on the device.")
      .def(
          "loss_and_grad",
          [](Model& model, const Array<T>& params, const py::array& x, const std::optional<Ints>& lengths,
             const std::optional<Ints>& labels, const std::optional<Array<T>>& values, Array<T>& grads,
             double dropout, std::uint64_t dropout_key, const std::optional<Array<T>>& weights) {
            const rnnkit::ModelSpec& spec = model.spec();
            expect_param_count(spec, params, "params");
            expect_param_count(spec, grads, "grads");
            const auto b = batch_of<T>(spec, x, lengths);
            const rnnkit::Targets<T> targets = targets_of<T>(spec, b, labels, values, weights);
            T* g = grads.mutable_data();
            py::gil_scoped_release release;
            return model.loss_and_grad(params.data(), b, targets, g, dropout, dropout_key);
          },
          py::arg("params"), py::arg("x"), py::arg("lengths"), py::arg("labels"), py::arg("values"),
          py::arg("grads").noconvert(), py::arg("dropout"), py::arg("dropout_key"), py::arg("weights") = py::none(),
          "As rnnkit's model_loss_and_grad, on the device. Returns the batch's mean loss.")
      .def(
          "set_optimizer_state",
          [](Model& model, int slot, const Array<T>& state) {
            expect_param_count(model.spec(), state, "state");
            py::gil_scoped_release release;
            model.set_optimizer_state(slot, state.data());
          },
          py::arg("slot"), py::arg("state"), "Copies an optimizer state buffer (one value per parameter) to the device.")
      .def(
          "get_optimizer_state",
          [](Model& model, int slot, Array<T>& state) {
            expect_param_count(model.spec(), state, "state");
            T* out = state.mutable_data();
            py::gil_scoped_release release;
            model.get_optimizer_state(slot, out);
          },
          py::arg("slot"), py::arg("state").noconvert(), "Copies an optimizer state buffer back into `state`.")
      .def(
          "train_step",
          [](Model& model, Array<T>& params, const py::array& x, const std::optional<Ints>& lengths,
             const std::optional<Ints>& labels, const std::optional<Array<T>>& values,
             const std::optional<Array<T>>& weights, double dropout, std::uint64_t dropout_key,
             std::optional<double> clip_value, std::optional<double> max_norm, const std::string& optimizer,
             const py::dict& options, std::int64_t step, bool params_resident) {
            const rnnkit::ModelSpec& spec = model.spec();
            expect_param_count(spec, params, "params");
            const auto b = batch_of<T>(spec, x, lengths);
            const rnnkit::Targets<T> targets = targets_of<T>(spec, b, labels, values, weights);
            rnnkit::TrainSettings settings =
                train_settings(dropout, dropout_key, clip_value, max_norm, optimizer, options, step);
            settings.params_resident = params_resident;
            T* p = params.mutable_data();
            py::gil_scoped_release release;
            return model.train_step(p, b, targets, settings);
          },
          py::arg("params").noconvert(), py::arg("x"), py::arg("lengths"), py::arg("labels"), py::arg("values"),
          py::arg("weights"), py::arg("dropout"), py::arg("dropout_key"), py::arg("clip_value"), py::arg("max_norm"),
          py::arg("optimizer"), py::arg("options"), py::arg("step"), py::arg("params_resident") = false,
          "One training step on the device: the gradient, clip_value then max_norm clipping, and the step of "
          "`optimizer` ('sgd', 'adam' or 'rmsprop', with rnnkit.optim's keyword `options`) with the state set by "
          "set_optimizer_state; `params` is overwritten with the stepped values (`params_resident`: they already "
          "hold what the last train_step left there and on the device, and are not copied in). Returns the batch's mean loss "
          "(where it is not finite, nothing is stepped).");
}

}  // namespace
}  // namespace rnnkit_py

PYBIND11_MODULE(RNNKIT_MODULE_NAME, m) {
  namespace py = pybind11;
  using rnnkit_py::register_stack;
  using rnnkit_py::register_device_model;
  m.doc() = "rnnkit's device backend: recurrent stacks whose memory lives on the device.";

  // Translators are tried newest first: out-of-memory (a DeviceError) becomes MemoryError.
  py::register_exception<rnnkit::DeviceError>(m, "DeviceError", PyExc_RuntimeError);
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const rnnkit::DeviceOutOfMemory& e) {
      PyErr_SetString(PyExc_MemoryError, e.what());
    }
  });

  py::class_<rnnkit::DeviceTape>(m, "DeviceTape", py::module_local(),
                                 "What a training forward keeps on the device for backward (opaque).")
      .def_property_readonly("steps", &rnnkit::DeviceTape::steps)
      .def_property_readonly("batch", &rnnkit::DeviceTape::batch);

  m.def("info", [] {
    const rnnkit::DeviceInfo info = rnnkit::device_info();
    py::dict d;
    d["compiled"] = info.compiled;
    d["runtime_version"] = info.runtime_version;
    d["driver_version"] = info.driver_version;
    d["device_count"] = info.device_count;
    d["error"] = info.error;
    return d;
  }, "Facts about the device runtime: compiled, runtime_version, driver_version, device_count, error.");
  m.def("device_name", &rnnkit::device_name, py::arg("index"));

  register_stack<float>(m, "float32");
  register_stack<double>(m, "float64");
  register_device_model<float>(m, "float32");
  register_device_model<double>(m, "float64");
}
