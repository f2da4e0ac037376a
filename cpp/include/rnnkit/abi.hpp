// Namespace macros that keep each per-ISA build of the core distinct.
//
// The extension is compiled once per SIMD level (generic, AVX2, AVX-512) into separate
// modules; giving every build its own inline namespace means no two builds ever share a
// symbol, even if they were linked into one image.
#pragma once

#include <cstddef>

#ifndef RNNKIT_ISA_NS
#define RNNKIT_ISA_NS isa_default
#endif

/// Functions written once for the CPU engine and the CUDA kernels (gate_math.hpp, optim_math.hpp).
#if defined(__CUDACC__)
#define RNNKIT_HD __host__ __device__
#else
#define RNNKIT_HD
#endif

#define RNNKIT_BEGIN_NAMESPACE namespace rnnkit { inline namespace RNNKIT_ISA_NS {
#define RNNKIT_END_NAMESPACE } }

RNNKIT_BEGIN_NAMESPACE
/// Sizes and offsets (signed, like Eigen's and numpy's).
using Index = std::ptrdiff_t;
RNNKIT_END_NAMESPACE
