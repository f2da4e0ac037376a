// The device backend's element-wise kernels, as functors of one flat index. The CUDA
// executor launches them one thread per index; the host executor (tests) loops over the
// indices. The gate formulas come from rnnkit/gate_math.hpp, shared with the CPU cells.
#pragma once

#include <cmath>
#include <cstdint>

#include "rnnkit/gate_math.hpp"
#include "rnnkit/head_math.hpp"
#include "rnnkit/model_spec.hpp"
#include "rnnkit/random.hpp"
#include "rnnkit/spec.hpp"

RNNKIT_BEGIN_NAMESPACE
namespace device {

// The C math functions by precision, callable on the host and on the device.
RNNKIT_HD inline float exp_of(float x) { return expf(x); }
RNNKIT_HD inline double exp_of(double x) { return exp(x); }
RNNKIT_HD inline float tanh_of(float x) { return tanhf(x); }
RNNKIT_HD inline double tanh_of(double x) { return tanh(x); }

template <class T>
RNNKIT_HD inline T sigmoid(T x) {
  return T(1) / (T(1) + exp_of(-x));
}
template <class T>
RNNKIT_HD inline T activate_tanh(T x) {
  return tanh_of(x);
}

/// One time step of any cell for a batch, element e = (row b, unit j) of [B, H].
/// `gates` holds x_t W_ih^T (no bias) on entry and the activated gates on exit.
template <class T>
struct CellForward {
  CellKind cell;
  Index hidden;
  T* gates;                    // [B, GH]
  const T* rec;                // row b at rec + b * rec_stride: h_{t-1} W_hh^T (no bias)
  Index rec_stride;            // GH; 0 where one row serves (a block's own sequence)
  const T* bias_ih;            // [GH] or nullptr
  const T* bias_hh;            // [GH] or nullptr
  const T* h_prev;             // [B, H]
  T* h_next;                   // [B, H]
  const T* c_prev;             // [B, H] LSTM
  T* c_next;                   // [B, H] LSTM
  T* extra;                    // [B, H] GRU: W_hn h + b_hn, kept for backward
  const std::uint8_t* active;  // [B] or nullptr
  T* out;                      // row b of this step's output at out + b * out_stride
  Index out_stride;

  RNNKIT_HD T pre(Index b, Index k, Index j, bool with_rec) const {
    const Index gh = gate_count(cell) * hidden, col = k * hidden + j;
    T v = gates[b * gh + col];
    if (bias_ih != nullptr) v += bias_ih[col];
    if (with_rec) {
      v += rec[b * rec_stride + col];
      if (bias_hh != nullptr) v += bias_hh[col];
    }
    return v;
  }
  RNNKIT_HD void operator()(Index e) const {
    const Index b = e / hidden, j = e % hidden, gh = gate_count(cell) * hidden;
    T* g = gates + b * gh;
    if (active != nullptr && active[b] == 0) {  // past its length: carry the state
      h_next[e] = h_prev[e];
      if (cell == CellKind::Lstm) c_next[e] = c_prev[e];
      return;
    }
    T h;
    switch (cell) {
      case CellKind::Lstm: {
        const T i = sigmoid(pre(b, 0, j, true)), f = sigmoid(pre(b, 1, j, true));
        const T gg = activate_tanh(pre(b, 2, j, true)), o = sigmoid(pre(b, 3, j, true));
        g[j] = i;
        g[hidden + j] = f;
        g[2 * hidden + j] = gg;
        g[3 * hidden + j] = o;
        const T c = gate_math::lstm_cell(f, c_prev[e], i, gg);
        c_next[e] = c;
        h = o * activate_tanh(c);
        break;
      }
      case CellKind::Gru: {
        const T r = sigmoid(pre(b, 0, j, true)), z = sigmoid(pre(b, 1, j, true));
        T hn = rec[b * rec_stride + 2 * hidden + j];
        if (bias_hh != nullptr) hn += bias_hh[2 * hidden + j];
        const T n = activate_tanh(gate_math::gru_new_pre(pre(b, 2, j, false), r, hn));
        g[j] = r;
        g[hidden + j] = z;
        g[2 * hidden + j] = n;
        extra[e] = hn;
        h = gate_math::gru_hidden(z, n, h_prev[e]);
        break;
      }
      case CellKind::RnnRelu: {
        const T p = pre(b, 0, j, true);
        h = p > T(0) ? p : T(0);
        g[j] = h;
        break;
      }
      default: {
        h = activate_tanh(pre(b, 0, j, true));
        g[j] = h;
        break;
      }
    }
    h_next[e] = h;
    out[b * out_stride + j] = h;
  }
};

/// The backward of one step, element e = (b, j). On entry `carry` holds dL/dh_t from step
/// t+1; on exit the part of dL/dh_{t-1} that does not pass through W_hh (the driver then
/// adds dgh W_hh). `dc` (LSTM) goes from dL/dc_t to dL/dc_{t-1}.
template <class T>
struct CellBackward {
  CellKind cell;
  Index hidden;
  const T* gates;              // [B, GH] activated
  const T* extra;              // [B, H] GRU
  const T* h_prev;             // [B, H]
  const T* h_next;             // [B, H]
  const T* c_prev;             // [B, H] LSTM
  const T* c_next;             // [B, H] LSTM
  const T* grad_out;           // row b at grad_out + b * out_stride, or nullptr
  Index out_stride;
  T* carry;                    // [B, H]
  T* dc;                       // [B, H] LSTM
  T* dgx;                      // [B, GH] dL/d(input-side pre-activations)
  T* dgh;                      // [B, GH] dL/d(hidden-side pre-activations); may alias dgx
  const std::uint8_t* active;  // [B] or nullptr

  RNNKIT_HD void operator()(Index e) const {
    const Index b = e / hidden, j = e % hidden, gates_n = gate_count(cell), gh = gates_n * hidden;
    const bool is_active = active == nullptr || active[b] != 0;
    T dh = carry[e];
    if (!is_active) {  // no gate gradient; dh (and dc) pass straight to the previous step
      for (Index k = 0; k < gates_n; ++k) {
        dgx[b * gh + k * hidden + j] = T(0);
        dgh[b * gh + k * hidden + j] = T(0);
      }
      return;
    }
    if (grad_out != nullptr) dh += grad_out[b * out_stride + j];
    const T* g = gates + b * gh;
    T* gx = dgx + b * gh;
    T* gh_ = dgh + b * gh;
    switch (cell) {
      case CellKind::Lstm: {
        const T i = g[j], f = g[hidden + j], gg = g[2 * hidden + j], o = g[3 * hidden + j];
        const T tanh_c = activate_tanh(c_next[e]);
        const T dct = gate_math::lstm_grad_cell(dc[e], dh, o, tanh_c);
        gx[j] = gate_math::lstm_grad_i(dct, gg, i);
        gx[hidden + j] = gate_math::lstm_grad_f(dct, c_prev[e], f);
        gx[2 * hidden + j] = gate_math::lstm_grad_g(dct, i, gg);
        gx[3 * hidden + j] = gate_math::lstm_grad_o(dh, tanh_c, o);
        dc[e] = dct * f;
        carry[e] = T(0);
        break;
      }
      case CellKind::Gru: {
        const T r = g[j], z = g[hidden + j], n = g[2 * hidden + j];
        const T dn = gate_math::gru_grad_n(dh, z, n);
        const T dr = gate_math::gru_grad_r(dn, extra[e], r);
        const T dz = gate_math::gru_grad_z(dh, h_prev[e], n, z);
        gx[j] = dr;
        gx[hidden + j] = dz;
        gx[2 * hidden + j] = dn;
        gh_[j] = dr;
        gh_[hidden + j] = dz;
        gh_[2 * hidden + j] = dn * r;
        carry[e] = dh * z;
        break;
      }
      case CellKind::RnnRelu:
        gx[j] = h_next[e] > T(0) ? dh : T(0);
        carry[e] = T(0);
        break;
      default:
        gx[j] = gate_math::tanh_grad(dh, h_next[e]);
        carry[e] = T(0);
        break;
    }
  }
};

/// dst[j, i, :] = src[i, j, :] for src of shape [n0, n1, width] (batch-first <-> time-major).
template <class T>
struct SwapLeadingAxes {
  const T* src;
  T* dst;
  Index n0, n1, width;
  RNNKIT_HD void operator()(Index e) const {
    const Index k = e % width, ij = e / width, j = ij % n1, i = ij / n1;
    dst[(j * n0 + i) * width + k] = src[e];
  }
};

/// Inverted dropout of element e of layer `layer`'s output, with the CPU engine's masks.
template <class T>
struct Dropout {
  std::uint64_t key;
  std::uint64_t layer;
  double p;
  T keep;
  T* data;
  T* scale;  // kept for backward
  RNNKIT_HD void operator()(Index e) const {
    const T s = uniform01(key, layer, static_cast<std::uint64_t>(e)) < p ? T(0) : keep;
    scale[e] = s;
    data[e] *= s;
  }
};

template <class T>
struct Multiply {
  T* data;
  const T* by;
  RNNKIT_HD void operator()(Index e) const { data[e] *= by[e]; }
};

template <class T>
struct Scale {
  T* data;
  T by;
  RNNKIT_HD void operator()(Index e) const { data[e] *= by; }
};

/// Part p of a sum of squares over n values, in double: values p, p + parts, p + 2 parts, ...
/// (neighbouring threads read neighbouring values). The host adds the parts.
template <class T>
struct SquareSums {
  const T* values;
  Index n, parts;
  double* out;  // [parts]
  RNNKIT_HD void operator()(Index p) const {
    double sum = 0.0;
    for (Index i = p; i < n; i += parts) sum += static_cast<double>(values[i]) * static_cast<double>(values[i]);
    out[p] = sum;
  }
};

template <class T>
struct Fill {
  T* data;
  T value;
  RNNKIT_HD void operator()(Index e) const { data[e] = value; }
};

/// The embedding lookup into time-major rows: out[r, :] = table[ids[r], :], zeros where
/// ids[r] < 0 (past a sequence's length).
template <class T>
struct EmbedRows {
  const std::int64_t* ids;  // [rows]
  const T* table;           // [vocab, width]
  Index width;
  T* out;  // [rows, width]
  RNNKIT_HD void operator()(Index e) const {
    const std::int64_t id = ids[e / width];
    out[e] = id < 0 ? T(0) : table[id * width + e % width];
  }
};

/// The embedding table's gradient, element e = (distinct id u, column k): the rows of grad_x
/// that read id u summed from zero in the CPU engine's order (add_embedding_grads: by
/// sequence, then step), into the table's row (the other rows are left as they are, zero).
template <class T>
struct EmbeddingGrads {
  const std::int64_t* ids;     // [U] distinct ids
  const std::int64_t* starts;  // [U + 1] id u's rows are rows[starts[u] .. starts[u + 1])
  const std::int64_t* rows;    // time-major rows of grad_x
  const T* grad_x;             // [rows, width]
  Index width;
  T* table_grad;  // [vocab, width]
  RNNKIT_HD void operator()(Index e) const {
    const Index u = e / width, k = e % width;
    T sum = T(0);
    for (std::int64_t i = starts[u]; i < starts[u + 1]; ++i) sum += grad_x[rows[i] * width + k];
    table_grad[ids[u] * width + k] = sum;
  }
};

/// The head's input for a "last" read-out: feat[b, d*H + j] = top layer's h_n[d, b, j].
template <class T>
struct GatherLast {
  const T* top;  // [dirs, B, H], the top layer's final states
  T* feat;       // [B, dirs*H]
  Index batch, hidden, dirs;
  RNNKIT_HD void operator()(Index e) const {
    const Index width = dirs * hidden, b = e / width, d = (e % width) / hidden, j = e % hidden;
    feat[e] = top[(d * batch + b) * hidden + j];
  }
};

/// The inverse of GatherLast: the head's input gradient into the top layer's dL/dh_n.
template <class T>
struct ScatterLast {
  const T* dfeat;  // [B, dirs*H]
  T* top;          // [dirs, B, H]
  Index batch, hidden, dirs;
  RNNKIT_HD void operator()(Index r) const {
    const Index width = dirs * hidden, b = r / width, d = (r % width) / hidden, j = r % hidden;
    top[(d * batch + b) * hidden + j] = dfeat[r];
  }
};

/// The head's per-row finish, one thread per output row: softmax for cross-entropy models,
/// sigmoids for multi-label ones (not when training: their loss reads the logits), zeros for
/// rows that do not count (past a sequence's length); when training, the row's loss
/// (cross-entropy, binary cross-entropy or half the squared error) and dL/dlogits in place,
/// over `count` rows (times n_out for the last two), as the CPU engine's (src/model.cpp).
template <class T>
struct HeadRows {
  Loss loss;
  bool training;
  Index n_out;
  T* y;                          // [rows, n_out] logits in; probabilities / dL/dlogits out
  const T* valid;                // [rows] 1 or 0
  const std::int64_t* labels;    // [rows] (cross-entropy)
  const T* values;               // [rows, n_out] (squared error, multi-label)
  double count;                  // rows that count (their total weight, with weights)
  double* row_loss;              // [rows] (training)
  const T* weights = nullptr;    // [rows] loss weights (training), or none

  RNNKIT_HD void operator()(Index r) const {
    T* row = y + r * n_out;
    if (valid[r] == T(0)) {
      for (Index k = 0; k < n_out; ++k) row[k] = T(0);
      if (training) row_loss[r] = 0.0;
      return;
    }
    const bool cross_entropy = loss == Loss::SoftmaxCrossEntropy;
    const bool multi_label = loss == Loss::SigmoidBinaryCrossEntropy;
    if (multi_label && !training) {
      for (Index k = 0; k < n_out; ++k) row[k] = static_cast<T>(head_math::sigmoid(static_cast<double>(row[k])));
    }
    if (cross_entropy) {
      T top = row[0];
      for (Index k = 1; k < n_out; ++k) top = row[k] > top ? row[k] : top;
      T sum = T(0);
      for (Index k = 0; k < n_out; ++k) {
        row[k] = exp_of(row[k] - top);
        sum += row[k];
      }
      for (Index k = 0; k < n_out; ++k) row[k] /= sum;
    }
    if (!training) return;
    // As the CPU engine's loss (src/model.cpp): a weight of 1 multiplies exactly.
    const T w = weights != nullptr ? weights[r] : T(1);
    if (cross_entropy) {
      const Index label = static_cast<Index>(labels[r]);
      const double p = static_cast<double>(row[label]);
      row_loss[r] = -static_cast<double>(w) * log(p > 1e-300 ? p : 1e-300);
      row[label] -= T(1);
      for (Index k = 0; k < n_out; ++k) row[k] = row[k] * w / static_cast<T>(count);
    } else if (multi_label) {
      double acc = 0.0;
      for (Index k = 0; k < n_out; ++k) {
        const double z = static_cast<double>(row[k]), y = static_cast<double>(values[r * n_out + k]);
        acc += static_cast<double>(w) * head_math::bce_with_logit(z, y);
        row[k] = static_cast<T>(static_cast<double>(w) * (head_math::sigmoid(z) - y) / (count * static_cast<double>(n_out)));
      }
      row_loss[r] = acc;
    } else {
      double acc = 0.0;
      for (Index k = 0; k < n_out; ++k) {
        const double diff = static_cast<double>(row[k]) - static_cast<double>(values[r * n_out + k]);
        acc += 0.5 * static_cast<double>(w) * diff * diff;
        row[k] = static_cast<T>(static_cast<double>(w) * diff / (count * static_cast<double>(n_out)));
      }
      row_loss[r] = acc;
    }
  }
};

}  // namespace device
RNNKIT_END_NAMESPACE
