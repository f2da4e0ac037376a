// OpenMP helpers: split a loop into contiguous blocks, one per thread, only where the work
// pays for the threads; run tasks each on a thread of its own, or as a pipeline. Thread counts
// are passed per call; nothing global is changed.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <deque>
#include <exception>
#include <thread>
#include <vector>

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

/// Calls body(begin, count) for each of `threads` contiguous blocks of [0, n) whose boundaries
/// fall on multiples of `align` (fewer where [0, n) has fewer such pieces). The blocks depend on
/// `threads` alone: OpenMP's threads take them in turn (all of them, should the region get
/// fewer threads), and `on_this_thread` runs them here, one after another, waking none.
template <class Body>
void parallel_blocks(Index n, int threads, Index align, const Body& body,
                     [[maybe_unused]] bool on_this_thread = false) {
  const Index pieces = (n + align - 1) / align;
  const Index blocks = std::min<Index>(std::max(threads, 1), pieces);
  if (blocks <= 1) {
    body(Index{0}, n);
    return;
  }
  const auto run = [&](Index b) {
    const Index begin = std::min(n, pieces * b / blocks * align);
    const Index end = std::min(n, pieces * (b + 1) / blocks * align);
    if (end > begin) body(begin, end - begin);
  };
#ifdef _OPENMP
  if (!on_this_thread) {
#pragma omp parallel num_threads(static_cast<int>(blocks))
    {
      for (Index b = omp_get_thread_num(); b < blocks; b += omp_get_num_threads()) run(b);
    }
    return;
  }
#endif
  for (Index b = 0; b < blocks; ++b) run(b);
}

/// Calls task(i) for i in [0, n), each on a thread of its own (in turn on this one without
/// OpenMP). An exception thrown by a task is rethrown here once all have ended (the first one,
/// by index); it cannot leave an OpenMP region.
template <class Task>
void run_each_on_its_thread(Index n, const Task& task) {
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(n));
  const auto guarded = [&](Index i) {
    try {
      task(i);
    } catch (...) {
      errors[static_cast<std::size_t>(i)] = std::current_exception();
    }
  };
#ifdef _OPENMP
#pragma omp parallel for num_threads(static_cast<int>(n)) schedule(static, 1)
  for (Index i = 0; i < n; ++i) guarded(i);
#else
  for (Index i = 0; i < n; ++i) guarded(i);
#endif
  for (const auto& e : errors) {
    if (e) std::rethrow_exception(e);
  }
}

/// How many steps of a layer's output are written, for the layer above it in a pipeline, and
/// whether any layer of the pipeline failed (so that none waits forever for it). Each on a cache
/// line of its own: two layers' counters on one line would pass it between their cores at every
/// step.
class alignas(64) StepProgress {
 public:
  void publish(Index steps) noexcept { steps_.store(steps, std::memory_order_release); }
  void fail() noexcept { failed_->store(true, std::memory_order_release); }
  /// Waits until `steps` steps are written; false if a layer failed meanwhile.
  bool wait_for(Index steps) const noexcept {
    for (unsigned spins = 0; steps_.load(std::memory_order_acquire) < steps; ++spins) {
      if (failed_->load(std::memory_order_acquire)) return false;
      if (spins >= kSpinsBeforeYield) std::this_thread::yield();
    }
    return true;
  }
  explicit StepProgress(std::atomic<bool>* failed) noexcept : failed_(failed) {}

 private:
  static constexpr unsigned kSpinsBeforeYield = 1u << 12;
  std::atomic<Index> steps_{0};
  std::atomic<bool>* failed_;
};

/// Runs layer(l, below, written) for each of a pipeline's `layers`: on two threads, the even
/// layers on one and the odd on the other, each thread its layers in order, each layer waiting
/// in its loop for the steps of the one below (`below`; nullptr for the first) and saying in
/// `written` how far it has got; all in order on this thread where OpenMP gives one thread, or
/// with `on_this_thread`. A layer's exception stops the layers that wait on it and is rethrown
/// here (the lowest layer's).
template <class Layer>
void run_pipeline(Index layers, bool on_this_thread, const Layer& layer) {
  std::atomic<bool> failed{false};
  std::deque<StepProgress> written;  // (StepProgress does not move)
  for (Index l = 0; l < layers; ++l) written.emplace_back(&failed);
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(layers));
  const auto run = [&](int thread, int threads) {
    for (Index l = thread; l < layers; l += threads) {
      const auto i = static_cast<std::size_t>(l);
      try {
        layer(l, l > 0 ? &written[i - 1] : nullptr, written[i]);
      } catch (...) {
        errors[i] = std::current_exception();
        written[i].fail();
        return;
      }
    }
  };
#ifdef _OPENMP
  if (!on_this_thread) {
#pragma omp parallel num_threads(2)
    run(omp_get_thread_num(), omp_get_num_threads());
  } else {
    run(0, 1);
  }
#else
  (void)on_this_thread;
  run(0, 1);
#endif
  for (const auto& e : errors) {
    if (e) std::rethrow_exception(e);
  }
}

/// When the calls of one workspace end, to tell whether the next follows a pause. After a
/// parallel region OpenMP's worker threads spin for a while (libgomp: GOMP_SPINCOUNT, 300,000
/// rounds, about 5 ms on a Zen 3 core), then sleep, and a region that must wake them can cost
/// far more than a small call's work: on a 2-vCPU VM, where the woken worker was put on the
/// core of the thread that woke it and each spun in OpenMP's barrier for the other, a 0.2 ms
/// forward took 4-8 ms when called every 20 ms (bench/NOTES.md, 2026-11-29 stop 29).
class CallPace {
 public:
  /// Whether a call of `flops` floating-point operations should run on the calling thread
  /// alone: a small one, after the last call ended longer ago than the workers surely spin (or
  /// before any call).
  bool alone(double flops) const noexcept {
    return flops <= kMaxFlops && Clock::now() - last_end_ > kWorkersSpin;
  }
  void call_ended() noexcept { last_end_ = Clock::now(); }

 private:
  using Clock = std::chrono::steady_clock;
  static constexpr std::chrono::microseconds kWorkersSpin{1000};
  /// 1.5-3 ms on one core. Where idle cores wake fast, such a call may take up to twice as long
  /// as with its threads; on the VMs measured, waking them cost 4-8 ms, and a split by hidden
  /// units, whose every step waits for both threads, up to 30 ms.
  static constexpr double kMaxFlops = 128e6;
  Clock::time_point last_end_{};
};

RNNKIT_END_NAMESPACE
