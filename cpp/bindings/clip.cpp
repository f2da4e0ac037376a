// Gradient clipping over a list of float arrays, modified in place.
#include "rnnkit/clip.hpp"

#include <vector>

#include "bindings.hpp"

namespace rnnkit_py {

namespace {

template <class T>
std::vector<rnnkit::Buffer<T>> buffers(const py::list& arrays) {
  std::vector<rnnkit::Buffer<T>> out;
  for (const auto& item : arrays) {
    auto a = py::reinterpret_borrow<py::array>(item);
    if (!(a.flags() & py::array::c_style) || !a.writeable()) {
      throw py::value_error("grads: every array must be writeable and C-contiguous");
    }
    out.push_back({static_cast<T*>(a.mutable_data()), static_cast<rnnkit::Index>(a.size())});
  }
  return out;
}

template <class T>
void register_dtype(py::module_& m, const char* suffix) {
  m.def((std::string("clip_norm_") + suffix).c_str(),
        [](const py::list& arrays, double max_norm, double norm_type) {
          const auto bufs = buffers<T>(arrays);
          py::gil_scoped_release release;
          return rnnkit::clip_norm(bufs, max_norm, norm_type);
        },
        py::arg("arrays"), py::arg("max_norm"), py::arg("norm_type"));
  m.def((std::string("total_norm_") + suffix).c_str(),
        [](const py::list& arrays, double norm_type) {
          const auto bufs = buffers<T>(arrays);
          py::gil_scoped_release release;
          return rnnkit::total_norm(bufs, norm_type);
        },
        py::arg("arrays"), py::arg("norm_type"));
  m.def((std::string("clip_value_") + suffix).c_str(),
        [](const py::list& arrays, double clip_value) {
          const auto bufs = buffers<T>(arrays);
          py::gil_scoped_release release;
          rnnkit::clip_value(bufs, clip_value);
        },
        py::arg("arrays"), py::arg("clip_value"));
}

}  // namespace

void register_clip(py::module_& m) {
  register_dtype<float>(m, "float32");
  register_dtype<double>(m, "float64");
}

}  // namespace rnnkit_py
