// The CUDA executor of the device driver (driver.hpp): memory from the stream-ordered
// allocator, cuBLAS for every GEMM, one thread per element for the kernels. Every CUDA and
// cuBLAS status is checked; a failure throws DeviceError (DeviceOutOfMemory for a failed
// allocation) and RAII frees whatever the call had allocated, so the stack stays usable.
// TF32 tensor-core math is off unless the caller allows it: float32 results then match the
// CPU engine to float32 rounding.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <memory>
#include <string>
#include <utility>

#include "model_driver.hpp"

RNNKIT_BEGIN_NAMESPACE
namespace device {
namespace {

[[noreturn]] void fail(cudaError_t status, const char* what) {
  const std::string msg = std::string(what) + ": " + cudaGetErrorName(status) + " (" + cudaGetErrorString(status) + ")";
  if (status == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();  // not sticky: clear it so the next call starts clean
    throw DeviceOutOfMemory("CUDA out of memory: " + msg);
  }
  throw DeviceError("CUDA error in " + msg);
}

void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) fail(status, what);
}

void check(cublasStatus_t status, const char* what) {
  if (status == CUBLAS_STATUS_SUCCESS) return;
  if (status == CUBLAS_STATUS_ALLOC_FAILED) throw DeviceOutOfMemory(std::string("cuBLAS out of memory in ") + what);
  throw DeviceError(std::string("cuBLAS error in ") + what + ": " + cublasGetStatusString(status));
}

/// The device, stream and cuBLAS handle of one stack, shared with the buffers it allocated.
struct Context {
  int device = 0;
  cudaStream_t stream = nullptr;
  cublasHandle_t blas = nullptr;

  Context(int index, bool allow_tf32) : device(index) {
    check(cudaSetDevice(device), "cudaSetDevice");
    check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreate");
    const cublasStatus_t created = cublasCreate(&blas);
    if (created != CUBLAS_STATUS_SUCCESS) {
      cudaStreamDestroy(stream);
      check(created, "cublasCreate");
    }
    check(cublasSetStream(blas, stream), "cublasSetStream");
    check(cublasSetMathMode(blas, allow_tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH), "cublasSetMathMode");
  }
  ~Context() {
    cudaSetDevice(device);
    cudaStreamSynchronize(stream);
    cublasDestroy(blas);
    cudaStreamDestroy(stream);
  }
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;
};

template <class F>
__global__ void run_kernel(Index n, F f) {
  const Index i = static_cast<Index>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) f(i);
}

/// Page-locks a large host range for the one copy that reads or writes it: then the copy is a
/// DMA at the bus's speed, where a pageable copy goes through the driver's staging buffers at a
/// fraction of it (on an H200 host: 55 GB/s against 6 GB/s up and 9 GB/s down, and locking
/// costs about as much as a 25 GB/s pass over the pages). Small ranges, and ranges the driver
/// will not lock (already locked, say), are copied as they are.
class PinnedRange {
 public:
  static constexpr std::size_t kMinBytes = std::size_t{1} << 20;

  PinnedRange(const void* host, std::size_t size, bool read_only) {
    if (size < kMinBytes) return;
    auto* p = const_cast<void*>(host);  // cudaHostRegister takes void*; read_only says it is not written
    if (cudaHostRegister(p, size, read_only ? cudaHostRegisterReadOnly : cudaHostRegisterDefault) == cudaSuccess) {
      host_ = p;
    } else {
      (void)cudaGetLastError();  // not sticky: the pageable copy goes ahead
    }
  }
  ~PinnedRange() {
    if (host_ != nullptr) cudaHostUnregister(host_);
  }
  PinnedRange(const PinnedRange&) = delete;
  PinnedRange& operator=(const PinnedRange&) = delete;
  bool locked() const noexcept { return host_ != nullptr; }

 private:
  void* host_ = nullptr;
};

/// A fused recurrence (recurrence.hpp): block b runs sequence b through every step, a barrier
/// after each phase. At most 1024 threads, so at most 64 registers each.
template <class P>
__global__ void __launch_bounds__(1024) run_recurrence(Index steps, P program) {
  extern __shared__ __align__(16) unsigned char shared_bytes[];
  auto* shared = reinterpret_cast<typename P::value_type*>(shared_bytes);
  const Index b = blockIdx.x;
  for (Index n = 0; n < steps; ++n) {
#pragma unroll
    for (int phase = 0; phase < P::kPhases; ++phase) {
      const Index size = program.size(phase);
      for (Index i = threadIdx.x; i < size; i += blockDim.x) program.run(phase, b, n, i, shared);
      __syncthreads();
    }
  }
}

class CudaExec {
 public:
  template <class U>
  class Buffer {
   public:
    Buffer() = default;
    Buffer(std::shared_ptr<Context> ctx, Index n) : ctx_(std::move(ctx)), size_(n) {
      if (n > 0) {
        void* p = nullptr;
        check(cudaMallocAsync(&p, static_cast<std::size_t>(n) * sizeof(U), ctx_->stream), "cudaMallocAsync");
        data_ = static_cast<U*>(p);
      }
    }
    Buffer(Buffer&& other) noexcept { swap(other); }
    Buffer& operator=(Buffer&& other) noexcept {
      Buffer(std::move(other)).swap(*this);
      return *this;
    }
    Buffer(const Buffer&) = delete;
    Buffer& operator=(const Buffer&) = delete;
    ~Buffer() {
      if (data_ != nullptr) cudaFreeAsync(data_, ctx_->stream);
    }
    U* data() noexcept { return data_; }
    const U* data() const noexcept { return data_; }
    Index size() const noexcept { return size_; }

   private:
    void swap(Buffer& other) noexcept {
      std::swap(ctx_, other.ctx_);
      std::swap(data_, other.data_);
      std::swap(size_, other.size_);
    }
    std::shared_ptr<Context> ctx_;
    U* data_ = nullptr;
    Index size_ = 0;
  };

  CudaExec(int device, bool allow_tf32) : ctx_(std::make_shared<Context>(device, allow_tf32)) {}

  template <class U>
  Buffer<U> alloc(Index n) {
    return Buffer<U>(ctx_, n);
  }
  template <class U>
  void zero(U* dst, Index n) {
    if (n > 0) check(cudaMemsetAsync(dst, 0, bytes<U>(n), ctx_->stream), "cudaMemsetAsync");
  }
  template <class U>
  void copy(U* dst, const U* src, Index n) {
    if (n > 0) check(cudaMemcpyAsync(dst, src, bytes<U>(n), cudaMemcpyDeviceToDevice, ctx_->stream), "cudaMemcpyAsync");
  }
  template <class U>
  void upload(U* dst, const U* host, Index n) {
    if (n <= 0) return;
    // From pageable memory the copy is staged before the call returns, so `host` may go; from
    // locked memory the DMA reads it until the copy ends, so the call waits for that.
    const PinnedRange pinned(host, bytes<U>(n), true);
    check(cudaMemcpyAsync(dst, host, bytes<U>(n), cudaMemcpyHostToDevice, ctx_->stream), "upload");
    if (pinned.locked()) synchronize();
  }
  template <class U>
  void download(U* host, const U* src, Index n) {
    if (n <= 0) return;
    const PinnedRange pinned(host, bytes<U>(n), false);
    check(cudaMemcpyAsync(host, src, bytes<U>(n), cudaMemcpyDeviceToHost, ctx_->stream), "download");
    synchronize();
  }
  template <class F>
  void launch(Index n, const F& f) {
    if (n <= 0) return;
    constexpr int kThreads = 256;
    const Index blocks = (n + kThreads - 1) / kThreads;
    run_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, ctx_->stream>>>(n, f);
    check(cudaGetLastError(), "kernel launch");
  }
  template <class P>
  void recurrence(Index blocks, Index steps, const P& program) {
    if (blocks <= 0 || steps <= 0) return;
    Index widest = 1;
    for (int phase = 0; phase < P::kPhases; ++phase) widest = std::max(widest, program.size(phase));
    const Index threads = std::min<Index>(1024, (widest + 31) / 32 * 32);
    const std::size_t shared = bytes<typename P::value_type>(program.shared_size());
    run_recurrence<<<static_cast<unsigned>(blocks), static_cast<unsigned>(threads), shared, ctx_->stream>>>(steps,
                                                                                                           program);
    check(cudaGetLastError(), "recurrence launch");
  }
  /// Row-major C = alpha op(A) op(B) + beta C, as column-major C^T = op(B)^T op(A)^T.
  template <class T>
  void gemm(bool ta, bool tb, Index m, Index n, Index k, T alpha, const T* a, Index lda, const T* b, Index ldb,
            T beta, T* c, Index ldc) {
    if (m <= 0 || n <= 0) return;
    const cublasOperation_t op_a = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasOperation_t op_b = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    const int mi = narrow(m), ni = narrow(n), ki = narrow(k);
    if constexpr (std::is_same_v<T, float>) {
      check(cublasSgemm(ctx_->blas, op_b, op_a, ni, mi, ki, &alpha, b, narrow(ldb), a, narrow(lda), &beta, c,
                        narrow(ldc)),
            "cublasSgemm");
    } else {
      check(cublasDgemm(ctx_->blas, op_b, op_a, ni, mi, ki, &alpha, b, narrow(ldb), a, narrow(lda), &beta, c,
                        narrow(ldc)),
            "cublasDgemm");
    }
  }
  void activate() { check(cudaSetDevice(ctx_->device), "cudaSetDevice"); }
  void synchronize() { check(cudaStreamSynchronize(ctx_->stream), "cudaStreamSynchronize"); }

 private:
  template <class U>
  static std::size_t bytes(Index n) noexcept {
    return static_cast<std::size_t>(n) * sizeof(U);
  }
  static int narrow(Index v) {
    if (v > 0x7fffffff) throw DeviceError("a matrix dimension exceeds cuBLAS's 32-bit limit");
    return static_cast<int>(v);
  }
  std::shared_ptr<Context> ctx_;
};

}  // namespace
}  // namespace device

DeviceInfo device_info() {
  DeviceInfo info;
  info.compiled = true;
  cudaRuntimeGetVersion(&info.runtime_version);
  if (cudaDriverGetVersion(&info.driver_version) != cudaSuccess) info.driver_version = 0;
  const cudaError_t status = cudaGetDeviceCount(&info.device_count);
  if (status != cudaSuccess) {
    info.device_count = 0;
    info.error = std::string(cudaGetErrorName(status)) + ": " + cudaGetErrorString(status);
    (void)cudaGetLastError();
  } else if (info.device_count == 0) {
    info.error = "no CUDA device found";
  }
  if (info.driver_version != 0 && info.driver_version < info.runtime_version && info.error.empty()) {
    info.error = "the CUDA driver (" + std::to_string(info.driver_version) + ") is older than the runtime rnnkit was built with (" +
                 std::to_string(info.runtime_version) + ")";
  }
  return info;
}

std::string device_name(int index) {
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, index) != cudaSuccess) {
    (void)cudaGetLastError();
    return "";
  }
  return prop.name;
}

namespace {
/// Throws DeviceError, saying why, unless device `device_index` can be used.
void require_device(int device_index) {
  const DeviceInfo info = device_info();
  if (!info.error.empty()) throw DeviceError("CUDA is not usable: " + info.error);
  if (device_index < 0 || device_index >= info.device_count) {
    throw DeviceError("CUDA device " + std::to_string(device_index) + " does not exist (" +
                      std::to_string(info.device_count) + " found)");
  }
}
}  // namespace

template <class T>
std::unique_ptr<DeviceStack<T>> make_device_stack(const LayerSpec& spec, int device_index, bool allow_tf32) {
  require_device(device_index);
  return std::make_unique<device::Stack<device::CudaExec, T>>(spec, device::CudaExec(device_index, allow_tf32));
}

template std::unique_ptr<DeviceStack<float>> make_device_stack(const LayerSpec&, int, bool);
template std::unique_ptr<DeviceStack<double>> make_device_stack(const LayerSpec&, int, bool);

template <class T>
std::unique_ptr<DeviceModel<T>> make_device_model(const ModelSpec& spec, int device_index, bool allow_tf32) {
  require_device(device_index);
  return std::make_unique<device::Model<device::CudaExec, T>>(spec, device::CudaExec(device_index, allow_tf32));
}

template std::unique_ptr<DeviceModel<float>> make_device_model(const ModelSpec&, int, bool);
template std::unique_ptr<DeviceModel<double>> make_device_model(const ModelSpec&, int, bool);

RNNKIT_END_NAMESPACE
