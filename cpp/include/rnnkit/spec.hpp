// What a recurrent layer stack is: its cell, sizes and options, and where each parameter
// lives in the one flat parameter buffer.
#pragma once

#include <string>
#include <vector>

#include "rnnkit/abi.hpp"

RNNKIT_BEGIN_NAMESPACE

enum class CellKind { RnnTanh, RnnRelu, Lstm, Gru };

/// Number of gate blocks stacked in the fused [G*H, D] weight matrices.
constexpr Index gate_count(CellKind cell) noexcept {
  switch (cell) {
    case CellKind::Lstm: return 4;
    case CellKind::Gru: return 3;
    default: return 1;
  }
}

/// A stack of recurrent layers, laid out as torch.nn.RNN / LSTM / GRU.
struct LayerSpec {
  CellKind cell = CellKind::Lstm;
  Index input_size = 0;
  Index hidden_size = 0;
  Index num_layers = 1;
  bool bidirectional = false;
  bool bias = true;

  Index directions() const noexcept { return bidirectional ? 2 : 1; }
  /// A simple RNN: one gate, whose activated value is h itself.
  bool simple_rnn() const noexcept { return cell == CellKind::RnnTanh || cell == CellKind::RnnRelu; }
  Index gates() const noexcept { return gate_count(cell); }
  Index gate_width() const noexcept { return gates() * hidden_size; }
  /// Width of layer `layer`'s input: input_size for the first, directions*H above.
  Index layer_input_size(Index layer) const noexcept {
    return layer == 0 ? input_size : directions() * hidden_size;
  }

  /// Throws std::invalid_argument when a size is not positive.
  void validate() const;
};

/// One named parameter inside the flat buffer: a [rows, cols] matrix, or a [rows] vector
/// when cols == 0.
struct ParamInfo {
  std::string name;
  Index offset = 0;
  Index rows = 0;
  Index cols = 0;
  Index size() const noexcept { return cols == 0 ? rows : rows * cols; }
};

/// The parameters of one (layer, direction), as offsets into the flat buffer.
struct DirectionParams {
  Index weight_ih = 0;  // [G*H, D_in]
  Index weight_hh = 0;  // [G*H, H]
  Index bias_ih = -1;   // [G*H], -1 without bias
  Index bias_hh = -1;   // [G*H], -1 without bias
};

/// Names (PyTorch's: weight_ih_l0, ..., bias_hh_l1_reverse), offsets and shapes, in
/// PyTorch's state_dict order.
std::vector<ParamInfo> param_layout(const LayerSpec& spec);

/// Offsets of the parameters of one (layer, direction).
DirectionParams direction_params(const LayerSpec& spec, Index layer, Index direction);

/// Total number of scalars in the flat parameter buffer.
Index param_count(const LayerSpec& spec);

RNNKIT_END_NAMESPACE
