// Shared declarations of the binding files. Bindings convert and check arrays, release the
// GIL and call the core; they hold no logic of their own.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

namespace rnnkit_py {

namespace py = pybind11;

void register_layers(py::module_& m);
void register_clip(py::module_& m);
void register_config(py::module_& m);
void register_optim(py::module_& m);
void register_model(py::module_& m);

}  // namespace rnnkit_py
