// The extension module. It is built once per SIMD level, under the name in
// RNNKIT_MODULE_NAME (rnnkit._core_generic, rnnkit._core_avx2, rnnkit._core_avx512).
#include "bindings.hpp"

#ifndef RNNKIT_MODULE_NAME
#define RNNKIT_MODULE_NAME _core_generic
#endif

PYBIND11_MODULE(RNNKIT_MODULE_NAME, m) {
  m.doc() = "rnnkit's compiled core: recurrent layers forward and backward, and clipping.";
  rnnkit_py::register_config(m);
  rnnkit_py::register_layers(m);
  rnnkit_py::register_clip(m);
  rnnkit_py::register_optim(m);
  rnnkit_py::register_model(m);
}
