// The device driver run on the host: the same driver, kernels and GEMM calls as the CUDA
// backend, executed with loops and Eigen. It makes the backend's logic testable on every
// machine (module rnnkit._device_host); only the CUDA executor itself needs a GPU.
#include <algorithm>
#include <cstring>
#include <vector>

#include "model_driver.hpp"
#include "rnnkit/tensor.hpp"

RNNKIT_BEGIN_NAMESPACE
namespace device {
namespace {

class HostExec {
 public:
  template <class U>
  class Buffer {
   public:
    Buffer() = default;
    explicit Buffer(Index n) : data_(static_cast<std::size_t>(n)) {}
    U* data() noexcept { return data_.empty() ? nullptr : data_.data(); }
    const U* data() const noexcept { return data_.empty() ? nullptr : data_.data(); }
    Index size() const noexcept { return static_cast<Index>(data_.size()); }

   private:
    AlignedVector<U> data_;
  };

  template <class U>
  Buffer<U> alloc(Index n) {
    return Buffer<U>(n);
  }
  template <class U>
  void zero(U* dst, Index n) {
    std::fill_n(dst, n, U(0));
  }
  template <class U>
  void copy(U* dst, const U* src, Index n) {
    std::copy_n(src, n, dst);
  }
  template <class U>
  void upload(U* dst, const U* host, Index n) {
    copy(dst, host, n);
  }
  template <class U>
  void download(U* host, const U* src, Index n) {
    copy(host, src, n);
  }
  template <class F>
  void launch(Index n, const F& f) {
    for (Index i = 0; i < n; ++i) f(i);
  }
  /// A fused recurrence (recurrence.hpp): per block and step, each phase over its indices in
  /// turn, in the order the CUDA kernel's barriers guarantee.
  template <class P>
  void recurrence(Index blocks, Index steps, const P& program) {
    std::vector<typename P::value_type> shared(static_cast<std::size_t>(program.shared_size()));
    for (Index b = 0; b < blocks; ++b) {
      for (Index n = 0; n < steps; ++n) {
        for (int phase = 0; phase < P::kPhases; ++phase) {
          for (Index i = 0; i < program.size(phase); ++i) program.run(phase, b, n, i, shared.data());
        }
      }
    }
  }
  /// Row-major C[m, n] = alpha op(A) op(B) + beta C, op(A) [m, k], op(B) [k, n].
  template <class T>
  void gemm(bool ta, bool tb, Index m, Index n, Index k, T alpha, const T* a, Index lda, const T* b, Index ldb,
            T beta, T* c, Index ldc) {
    using Stride = Eigen::OuterStride<>;
    using ConstView = Eigen::Map<const Matrix<T>, Eigen::Unaligned, Stride>;
    Eigen::Map<Matrix<T>, Eigen::Unaligned, Stride> cm(c, m, n, Stride(ldc));
    const ConstView am(a, ta ? k : m, ta ? m : k, Stride(lda));
    const ConstView bm(b, tb ? n : k, tb ? k : n, Stride(ldb));
    Matrix<T> prod(m, n);
    if (ta && tb) {
      prod.noalias() = am.transpose() * bm.transpose();
    } else if (ta) {
      prod.noalias() = am.transpose() * bm;
    } else if (tb) {
      prod.noalias() = am * bm.transpose();
    } else {
      prod.noalias() = am * bm;
    }
    if (beta == T(0)) {
      cm = alpha * prod;
    } else {
      cm = alpha * prod + beta * cm;
    }
  }
  void activate() {}
  void synchronize() {}
};

}  // namespace
}  // namespace device

DeviceInfo device_info() {
  DeviceInfo info;
  info.compiled = false;
  info.device_count = 1;
  return info;
}

std::string device_name(int index) { return index == 0 ? "host simulation of the device backend" : ""; }

template <class T>
std::unique_ptr<DeviceStack<T>> make_device_stack(const LayerSpec& spec, int device_index, bool /*allow_tf32*/) {
  if (device_index != 0) throw DeviceError("the host simulation has one device (index 0)");
  return std::make_unique<device::Stack<device::HostExec, T>>(spec, device::HostExec{});
}

template std::unique_ptr<DeviceStack<float>> make_device_stack(const LayerSpec&, int, bool);
template std::unique_ptr<DeviceStack<double>> make_device_stack(const LayerSpec&, int, bool);

template <class T>
std::unique_ptr<DeviceModel<T>> make_device_model(const ModelSpec& spec, int device_index, bool /*allow_tf32*/) {
  if (device_index != 0) throw DeviceError("the host simulation has one device (index 0)");
  return std::make_unique<device::Model<device::HostExec, T>>(spec, device::HostExec{});
}

template std::unique_ptr<DeviceModel<float>> make_device_model(const ModelSpec&, int, bool);
template std::unique_ptr<DeviceModel<double>> make_device_model(const ModelSpec&, int, bool);

RNNKIT_END_NAMESPACE
