// Optimizer steps on flat buffers, updated in place.
#include "rnnkit/optim.hpp"

#include <string>

#include "bindings.hpp"

namespace rnnkit_py {

namespace {

template <class T>
using Flat = py::array_t<T, py::array::c_style>;

/// Pointer to a writeable C-contiguous array of exactly n elements (nullptr when unused).
template <class T>
T* buffer(Flat<T>& a, py::ssize_t n, const char* name) {
  if (a.size() != n) throw py::value_error(std::string(name) + ": size differs from the parameter's");
  return a.mutable_data();
}

template <class T>
void register_dtype(py::module_& m, const std::string& suffix) {
  m.def(("sgd_step_" + suffix).c_str(),
        [](Flat<T>& param, const Flat<T>& grad, Flat<T>& momentum_buffer, bool first_step, double lr,
           double momentum, double dampening, double weight_decay, bool nesterov, bool maximize) {
          const auto n = param.size();
          if (grad.size() != n) throw py::value_error("grad: size differs from the parameter's");
          T* buf = momentum != 0.0 ? buffer(momentum_buffer, n, "momentum_buffer") : nullptr;
          rnnkit::SgdOptions o{lr, momentum, dampening, weight_decay, nesterov, maximize};
          T* p = param.mutable_data();
          const T* g = grad.data();
          py::gil_scoped_release release;
          rnnkit::sgd_step(p, g, buf, n, first_step, o);
        },
        py::arg("param").noconvert(), py::arg("grad").noconvert(), py::arg("momentum_buffer").noconvert(),
        py::arg("first_step"), py::arg("lr"), py::arg("momentum"), py::arg("dampening"),
        py::arg("weight_decay"), py::arg("nesterov"), py::arg("maximize"));

  m.def(("adam_step_" + suffix).c_str(),
        [](Flat<T>& param, const Flat<T>& grad, Flat<T>& exp_avg, Flat<T>& exp_avg_sq,
           Flat<T>& max_exp_avg_sq, std::int64_t step, double lr, double beta1, double beta2, double eps,
           double weight_decay, bool decoupled, bool amsgrad, bool maximize) {
          const auto n = param.size();
          if (grad.size() != n) throw py::value_error("grad: size differs from the parameter's");
          if (step < 1) throw py::value_error("step must be >= 1");
          T* m1 = buffer(exp_avg, n, "exp_avg");
          T* m2 = buffer(exp_avg_sq, n, "exp_avg_sq");
          T* mx = amsgrad ? buffer(max_exp_avg_sq, n, "max_exp_avg_sq") : nullptr;
          rnnkit::AdamOptions o{lr, beta1, beta2, eps, weight_decay, decoupled, amsgrad, maximize};
          T* p = param.mutable_data();
          const T* g = grad.data();
          py::gil_scoped_release release;
          rnnkit::adam_step(p, g, m1, m2, mx, n, step, o);
        },
        py::arg("param").noconvert(), py::arg("grad").noconvert(), py::arg("exp_avg").noconvert(),
        py::arg("exp_avg_sq").noconvert(), py::arg("max_exp_avg_sq").noconvert(), py::arg("step"),
        py::arg("lr"), py::arg("beta1"), py::arg("beta2"), py::arg("eps"), py::arg("weight_decay"),
        py::arg("decoupled_weight_decay"), py::arg("amsgrad"), py::arg("maximize"));

  m.def(("rmsprop_step_" + suffix).c_str(),
        [](Flat<T>& param, const Flat<T>& grad, Flat<T>& square_avg, Flat<T>& grad_avg,
           Flat<T>& momentum_buffer, double lr, double alpha, double eps, double weight_decay,
           double momentum, bool centered, bool maximize) {
          const auto n = param.size();
          if (grad.size() != n) throw py::value_error("grad: size differs from the parameter's");
          T* sq = buffer(square_avg, n, "square_avg");
          T* ga = centered ? buffer(grad_avg, n, "grad_avg") : nullptr;
          T* buf = momentum > 0.0 ? buffer(momentum_buffer, n, "momentum_buffer") : nullptr;
          rnnkit::RmspropOptions o{lr, alpha, eps, weight_decay, momentum, centered, maximize};
          T* p = param.mutable_data();
          const T* g = grad.data();
          py::gil_scoped_release release;
          rnnkit::rmsprop_step(p, g, sq, ga, buf, n, o);
        },
        py::arg("param").noconvert(), py::arg("grad").noconvert(), py::arg("square_avg").noconvert(),
        py::arg("grad_avg").noconvert(), py::arg("momentum_buffer").noconvert(), py::arg("lr"),
        py::arg("alpha"), py::arg("eps"), py::arg("weight_decay"), py::arg("momentum"),
        py::arg("centered"), py::arg("maximize"));
}

}  // namespace

void register_optim(py::module_& m) {
  register_dtype<float>(m, "float32");
  register_dtype<double>(m, "float64");
}

}  // namespace rnnkit_py
