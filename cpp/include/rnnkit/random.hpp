// Counter-based random numbers for dropout: element i of mask `stream` under `key` is a pure
// function of (key, stream, i), so masks are reproducible whatever the thread count.
#pragma once

#include <cstdint>

#include "rnnkit/abi.hpp"

RNNKIT_BEGIN_NAMESPACE

/// SplitMix64 finaliser: a bijective mix of a 64-bit word.
constexpr std::uint64_t mix64(std::uint64_t z) noexcept {
  z += 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

/// Uniform double in [0, 1) for element `i` of stream `stream`.
constexpr double uniform01(std::uint64_t key, std::uint64_t stream, std::uint64_t i) noexcept {
  const std::uint64_t z = mix64(mix64(key ^ mix64(stream)) + i);
  return static_cast<double>(z >> 11) * 0x1.0p-53;
}

RNNKIT_END_NAMESPACE
