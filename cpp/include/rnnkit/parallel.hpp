// OpenMP helpers: split a loop into contiguous blocks, one per thread, only where the work
// pays for the threads. Thread counts are passed per call; nothing global is changed.
#pragma once

#include <algorithm>

#include "rnnkit/tensor.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

RNNKIT_BEGIN_NAMESPACE

/// Below this many floating-point operations a matrix product stays on one thread.
inline constexpr double kMinFlopsPerThread = 2.0e5;

/// Threads worth using for `flops` of work split into at most `max_blocks` blocks.
inline int threads_for(double flops, Index max_blocks, int n_threads) noexcept {
  const auto by_work = static_cast<Index>(flops / kMinFlopsPerThread);
  return static_cast<int>(std::max<Index>(1, std::min<Index>({static_cast<Index>(n_threads), by_work, max_blocks})));
}

/// Calls body(begin, count) over [0, n) split into `threads` contiguous blocks whose
/// boundaries fall on multiples of `align`.
template <class Body>
void parallel_blocks(Index n, int threads, Index align, const Body& body) {
  if (threads <= 1 || n <= align) {
    body(Index{0}, n);
    return;
  }
  const Index chunks = (n + align - 1) / align;
#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
  {
    const Index t = omp_get_thread_num();
    const Index nt = omp_get_num_threads();
    const Index c0 = chunks * t / nt;
    const Index c1 = chunks * (t + 1) / nt;
    const Index begin = std::min(n, c0 * align);
    const Index end = std::min(n, c1 * align);
    if (end > begin) body(begin, end - begin);
  }
#else
  (void)chunks;
  body(Index{0}, n);
#endif
}

RNNKIT_END_NAMESPACE
