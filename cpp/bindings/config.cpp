// Build and machine facts: SIMD level of this build, what the CPU supports, Eigen, OpenMP.
#include <Eigen/Core>
#include <string>
#include <thread>

#include "bindings.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

#ifndef RNNKIT_SIMD_LEVEL
#define RNNKIT_SIMD_LEVEL "generic"
#endif

namespace rnnkit_py {

namespace {

/// Which SIMD levels this CPU can run, asked of the CPU itself.
py::dict cpu_features() {
  bool avx2 = false;
  bool avx512 = false;
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
  __builtin_cpu_init();
  avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
#endif
  py::dict d;
  d["generic"] = true;
  d["avx2"] = avx2;
  d["avx512"] = avx512;
  return d;
}

int default_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

}  // namespace

void register_config(py::module_& m) {
  m.attr("simd_level") = RNNKIT_SIMD_LEVEL;
  m.attr("eigen_version") = std::to_string(EIGEN_WORLD_VERSION) + "." + std::to_string(EIGEN_MAJOR_VERSION) +
                            "." + std::to_string(EIGEN_MINOR_VERSION);
  m.attr("eigen_simd") = Eigen::SimdInstructionSetsInUse();
#ifdef _OPENMP
  m.attr("openmp") = true;
#else
  m.attr("openmp") = false;
#endif
  m.def("cpu_features", &cpu_features, "Which SIMD levels this CPU supports: {level: bool}.");
  m.def("default_threads", &default_threads,
        "Threads a call uses by default: OpenMP's maximum (OMP_NUM_THREADS, else the cores).");
}

}  // namespace rnnkit_py
