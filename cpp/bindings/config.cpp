// Build and machine facts: SIMD level of this build, what the CPU supports, Eigen, OpenMP.
#include <algorithm>
#include <cstdlib>
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

/// The thread count OMP_NUM_THREADS asks for now (the first entry of a list such as "4,2"), or
/// 0 where it is unset or not a positive integer. getenv reads the process environment, which
/// Python's os.environ assignments update as well (through putenv); at about 50 ns it is 40x
/// cheaper than os.environ.get on a missing key, which raises and catches a KeyError inside.
int env_threads() {
  const char* p = std::getenv("OMP_NUM_THREADS");
  if (p == nullptr) return 0;
  while (*p == ' ' || *p == '\t') ++p;
  if (*p == '+') ++p;
  long n = 0;
  bool digits = false;
  for (; *p >= '0' && *p <= '9'; ++p) {
    n = std::min(n * 10 + (*p - '0'), 1L << 30);
    digits = true;
  }
  while (*p == ' ' || *p == '\t') ++p;
  if (!digits || (*p != '\0' && *p != ',')) return 0;
  return static_cast<int>(n);
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
  m.def("env_threads", &env_threads,
        "OMP_NUM_THREADS as it is now (its first entry), or 0 where unset or not a positive integer.");
  m.def("default_threads", &default_threads,
        "Threads a call uses by default: OpenMP's maximum (OMP_NUM_THREADS, else the cores).");
}

}  // namespace rnnkit_py
