#include "rnnkit/model_spec.hpp"
#include "rnnkit/spec.hpp"

#include <stdexcept>

RNNKIT_BEGIN_NAMESPACE

void LayerSpec::validate() const {
  if (input_size <= 0) throw std::invalid_argument("input_size must be positive");
  if (hidden_size <= 0) throw std::invalid_argument("hidden_size must be positive");
  if (num_layers <= 0) throw std::invalid_argument("num_layers must be positive");
}

namespace {

/// Visits every (layer, direction) in PyTorch's order, with the offsets of its parameters.
/// Returns the number of parameters.
template <class Visit>
Index walk(const LayerSpec& spec, const Visit& visit) {
  const Index gh = spec.gate_width();
  Index offset = 0;
  for (Index layer = 0; layer < spec.num_layers; ++layer) {
    for (Index dir = 0; dir < spec.directions(); ++dir) {
      DirectionParams p;
      p.weight_ih = offset;
      offset += gh * spec.layer_input_size(layer);
      p.weight_hh = offset;
      offset += gh * spec.hidden_size;
      if (spec.bias) {
        p.bias_ih = offset;
        offset += gh;
        p.bias_hh = offset;
        offset += gh;
      }
      visit(layer, dir, p);
    }
  }
  return offset;
}

}  // namespace

std::vector<ParamInfo> param_layout(const LayerSpec& spec) {
  std::vector<ParamInfo> out;
  const Index gh = spec.gate_width();
  walk(spec, [&](Index layer, Index dir, const DirectionParams& p) {
    const std::string suffix = "_l" + std::to_string(layer) + (dir == 1 ? "_reverse" : "");
    out.push_back({"weight_ih" + suffix, p.weight_ih, gh, spec.layer_input_size(layer)});
    out.push_back({"weight_hh" + suffix, p.weight_hh, gh, spec.hidden_size});
    if (spec.bias) {
      out.push_back({"bias_ih" + suffix, p.bias_ih, gh, 0});
      out.push_back({"bias_hh" + suffix, p.bias_hh, gh, 0});
    }
  });
  return out;
}

DirectionParams direction_params(const LayerSpec& spec, Index layer, Index direction) {
  DirectionParams found;
  walk(spec, [&](Index l, Index d, const DirectionParams& p) {
    if (l == layer && d == direction) found = p;
  });
  return found;
}

Index param_count(const LayerSpec& spec) {
  // Called on every layer call (the streaming step included): no names, no allocation.
  return walk(spec, [](Index, Index, const DirectionParams&) {});
}

Index ModelSpec::head_offset() const noexcept { return rnnkit::param_count(rnn); }

Index ModelSpec::embedding_offset() const noexcept { return head_offset() + n_outputs * (features() + 1); }

Index ModelSpec::param_count() const noexcept { return embedding_offset() + vocab_size * rnn.input_size; }

void ModelSpec::validate() const {
  rnn.validate();
  if (n_outputs < 1) throw std::invalid_argument("n_outputs must be positive");
  if (vocab_size < 0) throw std::invalid_argument("vocab_size must be >= 0");
}

RNNKIT_END_NAMESPACE
