"""export(): rnnkit layers, fitted estimators and language models as ONNX graphs of standard
recurrent operators (the package docstring has the layout conversions)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..layers import _Recurrent
from ._common import DEFAULT_OPSET, MIN_OPSET, PathLike, _OP_TYPE, _TO_ONNX, _family, _reorder, _require_onnx

class _GraphBuilder:
    """Collects nodes and initializers and hands out unique value names."""

    def __init__(self, onnx: Any) -> None:
        self.onnx = onnx
        self.nodes: List[Any] = []
        self.initializers: List[Any] = []
        self._count = 0

    def _name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, hint: str, value: np.ndarray) -> str:
        name = self._name(hint)
        self.initializers.append(self.onnx.numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def ints(self, hint: str, values: Sequence[int]) -> str:
        return self.const(hint, np.asarray(values, dtype=np.int64))

    def node(self, op: str, inputs: Sequence[str], n_out: int = 1, out: Optional[Sequence[str]] = None,
             **attrs: Any) -> List[str]:
        outputs = list(out) if out is not None else [self._name(op.lower()) for _ in range(n_out)]
        inputs = list(inputs)
        while inputs and not inputs[-1]:  # trailing optional inputs are left out
            inputs.pop()
        self.nodes.append(self.onnx.helper.make_node(op, inputs, outputs, name=self._name(op), **attrs))
        return outputs

    def one(self, op: str, inputs: Sequence[str], out: Optional[str] = None, **attrs: Any) -> str:
        return self.node(op, inputs, out=None if out is None else [out], **attrs)[0]

    def model(self, inputs: list, outputs: list, opset: int, doc: str) -> Any:
        helper = self.onnx.helper
        graph = helper.make_graph(self.nodes, "rnnkit", inputs, outputs, initializer=self.initializers)
        opsets = [helper.make_opsetid("", opset)]
        model = helper.make_model(graph, opset_imports=opsets, producer_name="rnnkit",
                                  ir_version=helper.find_min_ir_version_for(opsets))
        model.doc_string = doc
        return model


def _layer_weights(layer: _Recurrent, index: int) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """ONNX's W [dirs, G*H, in], R [dirs, G*H, H] and B [dirs, 2*G*H] of one layer of the stack."""
    params = layer.params
    order = _TO_ONNX[_family(layer._mode)]
    suffixes = [""] + (["_reverse"] if layer.bidirectional else [])
    w = np.stack([_reorder(params[f"weight_ih_l{index}{s}"], order) for s in suffixes])
    r = np.stack([_reorder(params[f"weight_hh_l{index}{s}"], order) for s in suffixes])
    b = None
    if layer.bias:
        b = np.stack([np.concatenate([_reorder(params[f"bias_ih_l{index}{s}"], order),
                                      _reorder(params[f"bias_hh_l{index}{s}"], order)]) for s in suffixes])
    f32 = lambda a: None if a is None else a.astype(np.float32)  # noqa: E731
    return f32(w), f32(r), f32(b)


def _recurrent_stack(g: _GraphBuilder, layer: _Recurrent, x: str, lengths: Optional[str],
                     h0: Optional[str], c0: Optional[str]) -> Tuple[str, List[str], List[str]]:
    """The stack's nodes on a sequence-major input x (T, B, D).

    Returns the top layer's output (T, B, dirs*H) and every layer's Y_h (and Y_c for LSTM),
    each [dirs, B, H].
    """
    family, dirs, hidden = _family(layer._mode), layer.num_directions, layer.hidden_size
    attrs: Dict[str, Any] = {"hidden_size": hidden, "direction": "bidirectional" if dirs == 2 else "forward"}
    if family == "gru":
        attrs["linear_before_reset"] = 1
    elif family == "rnn":
        attrs["activations"] = ["Relu" if layer._mode == "rnn_relu" else "Tanh"] * dirs
    lstm = family == "lstm"
    finals_h, finals_c = [], []
    for index in range(layer.num_layers):
        w, r, b = _layer_weights(layer, index)
        rows = [index * dirs, (index + 1) * dirs]
        init = [
            "" if s is None else g.one("Slice", [s, g.ints("starts", rows[:1]), g.ints("ends", rows[1:]), g.ints("axes", [0])])
            for s in (h0, c0 if lstm else None)
        ]
        inputs = [x, g.const(f"W_l{index}", w), g.const(f"R_l{index}", r), "" if b is None else g.const(f"B_l{index}", b),
                  lengths or "", init[0], init[1]]
        outs = g.node(_OP_TYPE[family], inputs, n_out=3 if lstm else 2, **attrs)
        finals_h.append(outs[1])
        if lstm:
            finals_c.append(outs[2])
        if dirs == 1:  # [T, 1, B, H] -> (T, B, H)
            x = g.one("Squeeze", [outs[0], g.ints("axes", [1])])
        else:  # [T, 2, B, H] -> (T, B, 2, H) -> (T, B, 2H)
            x = g.one("Reshape", [g.one("Transpose", [outs[0]], perm=[0, 2, 1, 3]), g.ints("shape", [0, 0, -1])])
    return x, finals_h, finals_c


def _stack_states(g: _GraphBuilder, parts: List[str], name: str) -> str:
    """Concatenate per-layer final states into PyTorch's (L*dirs, B, H) under ``name``."""
    return g.one("Concat", parts, out=name, axis=0) if len(parts) > 1 else g.one("Identity", parts, out=name)


def _lengths_input(g: _GraphBuilder, tensor_info: Any) -> Tuple[Any, str]:
    """The "lengths" graph input (int64, (B,)) and its int32 cast (ONNX's sequence_lens type)."""
    onnx = g.onnx
    info = tensor_info("lengths", onnx.TensorProto.INT64, ["batch"])
    return info, g.one("Cast", ["lengths"], to=onnx.TensorProto.INT32)


def _export_layer(onnx: Any, layer: _Recurrent, opset: int, lengths: bool, initial_state: bool) -> Any:
    g = _GraphBuilder(onnx)
    info = onnx.helper.make_tensor_value_info
    f32 = onnx.TensorProto.FLOAT
    lstm = layer._mode == "lstm"
    seq_axes = ["batch", "time"] if layer.batch_first else ["time", "batch"]
    state_shape = [layer.num_layers * layer.num_directions, "batch", layer.hidden_size]
    inputs = [info("input", f32, seq_axes + [layer.input_size])]
    x = g.one("Transpose", ["input"], perm=[1, 0, 2]) if layer.batch_first else "input"
    seq_lens = None
    if lengths:
        lengths_info, seq_lens = _lengths_input(g, info)
        inputs.append(lengths_info)
    h0 = c0 = None
    if initial_state:
        h0 = "h_0"
        inputs.append(info("h_0", f32, state_shape))
        if lstm:
            c0 = "c_0"
            inputs.append(info("c_0", f32, state_shape))
    y, finals_h, finals_c = _recurrent_stack(g, layer, x, seq_lens, h0, c0)
    g.one("Transpose", [y], out="output", perm=[1, 0, 2]) if layer.batch_first else g.one("Identity", [y], out="output")
    _stack_states(g, finals_h, "h_n")
    outputs = [info("output", f32, seq_axes + [layer.num_directions * layer.hidden_size]), info("h_n", f32, state_shape)]
    if lstm:
        _stack_states(g, finals_c, "c_n")
        outputs.append(info("c_n", f32, state_shape))
    return g.model(inputs, outputs, opset, f"rnnkit {layer!r}")


@dataclass
class _Readout:
    """What a model graph does around its recurrent stack (see :func:`_export_model`)."""

    layer: _Recurrent
    weight: np.ndarray  # the dense head, (n_outputs, features)
    bias: np.ndarray
    per_step: bool  # read every step's output, or the top layer's final states
    softmax: bool  # probabilities; else affine outputs ``raw * y_scale + y_mean``
    sigmoid: bool = False  # with softmax: a multi-label classifier's probabilities, one sigmoid per label
    embedding: Optional[np.ndarray] = None  # token-id input through this table, (vocab, input_size)
    x_mean: Optional[np.ndarray] = None  # real-valued input standardised with these
    x_scale: Optional[np.ndarray] = None
    y_mean: Optional[np.ndarray] = None
    y_scale: Optional[np.ndarray] = None
    squeeze: bool = False  # one target: drop the last axis of the predictions


def _export_model(onnx: Any, spec: _Readout, opset: int, lengths: bool, doc: str) -> Any:
    """The graph of a stack + dense head model: input (B, T) token ids or (B, T, D) features."""
    g = _GraphBuilder(onnx)
    info = onnx.helper.make_tensor_value_info
    f32 = onnx.TensorProto.FLOAT
    layer = spec.layer
    if spec.embedding is not None:
        inputs = [info("tokens", onnx.TensorProto.INT64, ["batch", "time"])]
        features = g.one("Gather", [g.const("embedding", spec.embedding.astype(np.float32)), "tokens"], axis=0)
    else:
        inputs = [info("input", f32, ["batch", "time", layer.input_size])]
        features = g.one("Div", [g.one("Sub", ["input", g.const("x_mean", np.asarray(spec.x_mean, np.float32))]),
                                 g.const("x_scale", np.asarray(spec.x_scale, np.float32))])
    seq_lens = None
    if lengths:
        lengths_info, seq_lens = _lengths_input(g, info)
        inputs.append(lengths_info)
    x = g.one("Transpose", [features], perm=[1, 0, 2])
    y, finals_h, _ = _recurrent_stack(g, layer, x, seq_lens, None, None)
    weight = spec.weight.astype(np.float32)
    bias = spec.bias.astype(np.float32)
    if not spec.per_step:  # the top layer's final states, [forward, reverse]
        top = finals_h[-1]
        if layer.num_directions == 1:
            last = g.one("Squeeze", [top, g.ints("axes", [0])])
        else:
            last = g.one("Reshape", [g.one("Transpose", [top], perm=[1, 0, 2]), g.ints("shape", [0, -1])])
        raw = g.one("Gemm", [last, g.const("head_weight", weight), g.const("head_bias", bias)], transB=1)
        out_axes: List[Any] = ["batch"]
    else:  # per step: (T, B, F) -> (B, T, F) @ W^T + b
        per_step = g.one("Transpose", [y], perm=[1, 0, 2])
        raw = g.one("Add", [g.one("MatMul", [per_step, g.const("head_weight_t", weight.T)]), g.const("head_bias", bias)])
        out_axes = ["batch", "time"]
    n_out = weight.shape[0]
    if spec.softmax and spec.sigmoid:
        g.one("Sigmoid", [raw], out="probabilities")
        outputs = [info("probabilities", f32, out_axes + [n_out])]
    elif spec.softmax:
        g.one("Softmax", [raw], out="probabilities", axis=-1)
        outputs = [info("probabilities", f32, out_axes + [n_out])]
    else:
        unscaled = g.one("Add", [g.one("Mul", [raw, g.const("y_scale", np.asarray(spec.y_scale, np.float32))]),
                                 g.const("y_mean", np.asarray(spec.y_mean, np.float32))])
        if spec.squeeze:
            g.one("Squeeze", [unscaled, g.ints("axes", [-1])], out="predictions")
            outputs = [info("predictions", f32, out_axes)]
        else:
            g.one("Identity", [unscaled], out="predictions")
            outputs = [info("predictions", f32, out_axes + [n_out])]
    return g.model(inputs, outputs, opset, doc)


def _estimator_readout(est: Any) -> _Readout:
    from ..estimators import RNNClassifier

    est._check_fitted()
    head = est.head_
    readout = _Readout(layer=est.rnn_, weight=head["weight"], bias=head["bias"], per_step=est.output != "last",
                       softmax=isinstance(est, RNNClassifier), sigmoid=isinstance(est, RNNClassifier) and est._multilabel)
    if est._spec.vocab_size:
        offset = est._spec.embedding_offset
        readout.embedding = est._params_flat[offset:].reshape(est._spec.vocab_size, -1)
    else:
        readout.x_mean, readout.x_scale = est._x_mean, est._x_scale
    if not readout.softmax:
        readout.y_mean, readout.y_scale, readout.squeeze = est._y_mean, est._y_scale, est._y_ndim == 1
    return readout


def _language_model_readout(model: Any) -> _Readout:
    model._check_fitted()
    layer, weight, bias, embedding = model._parts()
    return _Readout(layer=layer, weight=weight, bias=bias, per_step=True, softmax=True, embedding=embedding)


def export(model: Any, path: Optional[PathLike] = None, opset: int = DEFAULT_OPSET, *,
           lengths: bool = False, initial_state: bool = False) -> Any:
    """Write ``model`` as an ONNX graph of standard ``LSTM`` / ``GRU`` / ``RNN`` nodes.

    Parameters
    ----------
    model : rnnkit.LSTM, GRU or RNN, a fitted RNNClassifier / RNNRegressor, or a fitted task model
        What to export (``Seq2Seq``'s decoding loop is not expressible: export its layers). Every layer option is kept: stacked layers (one node per layer),
        bidirectional, bias or not, ``batch_first`` and the RNN's tanh/ReLU. Dropout is a
        training-time operation and is left out. The graph computes in float32 (float64
        models are rounded to float32).
    path : str, path-like or binary file object, optional
        Where to write the ``.onnx`` model; it is returned either way.
    opset : int
        ONNX opset version, 14 or newer (default 17).
    lengths : bool
        Add a ``"lengths"`` input (int64, shape (B,)): valid steps per sequence, passed to
        every recurrent node as ``sequence_lens``, for ragged batches. Results agree with
        rnnkit's ``lengths=``: the final states are those at each sequence's last valid step
        and the outputs past a length are zero.
    initial_state : bool
        Layers only: add ``"h_0"`` (and ``"c_0"`` for LSTM) inputs of shape (L*dirs, B, H),
        the ``state`` argument of ``forward``.

    Returns
    -------
    onnx.ModelProto
        The model, checked with ``onnx.checker.check_model``.

    Graph inputs and outputs
    ------------------------
    Layers: input ``"input"`` (T, B, D), or (B, T, D) with ``batch_first``, float32, with
    dynamic B and T; outputs ``"output"`` (laid out like the input, last axis dirs*H),
    ``"h_n"`` and, for LSTM, ``"c_n"`` (L*dirs, B, H) -- the names and shapes of
    ``forward``'s results.

    Text models (``TextClassifier``, ``LanguageModel``, ``MelodyModel``): input ``"tokens"``
    (B, T) int64 token ids, padded with any id and with ``lengths`` for ragged batches.
    Tokenisation stays in Python: ``ids = model.tokenizer_.transform(texts)`` (for a
    ``MelodyModel`` the tokens of :func:`rnnkit.music.melody_to_tokens`). A classifier's
    ``"probabilities"`` are those of ``predict_proba``; a language model's are (B, T,
    vocabulary), the next-token distribution after every step (``vocab_[i]`` is token ``i``).

    ``RNNForecaster``: the graph of its inner regressor (``regressor_``), from the window of
    prepared features (B, window, features) to the ``horizon`` outputs on that prepared scale. The
    preparation -- differencing, scaling of the series, calendar features and the inverse
    transforms -- stays in Python.

    Estimators: input ``"input"`` (B, T, D) float32 (univariate sequences are (B, T, 1)),
    with dynamic B and T, and ``"lengths"`` when asked for. The graph standardises the input
    with the fitted means and scales (Sub, Div), runs the recurrent stack, reads out the top
    layer's final states (``output="last"``) or its per-step outputs (``output="sequence"``)
    and applies the dense head. A classifier's output is ``"probabilities"``, (B, n_classes) or
    (B, T, n_classes), in the order of ``classes_``: the labels themselves stay in Python
    (``est.classes_[p.argmax(-1)]``); for a multi-label classifier each label's own
    probability (a Sigmoid node; the label is on where it exceeds 0.5). A regressor's output is ``"predictions"`` on the
    targets' scale, shaped like ``predict``'s result.
    """
    onnx = _require_onnx()
    from .._estimator_base import _RNNBase

    opset = int(opset)
    latest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= latest:
        raise ValueError(f"opset must lie in [{MIN_OPSET}, {latest}] (this onnx package's newest), got {opset}")
    from ..forecast import RNNForecaster
    from ..text import LanguageModel, Seq2Seq

    if isinstance(model, _Recurrent):
        proto = _export_layer(onnx, model, opset, bool(lengths), bool(initial_state))
    else:
        if isinstance(model, RNNForecaster):
            model._check_fitted()
            model = model.regressor_
        if isinstance(model, _RNNBase):
            readout = _estimator_readout(model)
            doc = f"rnnkit {type(model).__name__} ({model.cell}, output={model.output!r})"
        elif isinstance(model, LanguageModel):
            readout = _language_model_readout(model)
            doc = f"rnnkit {type(model).__name__} ({model.cell}): next-token probabilities at every step"
        elif isinstance(model, Seq2Seq):
            raise TypeError("export() cannot write a Seq2Seq model: its decoding loop (greedy or beam search over "
                            "the decoder's steps) has no standard ONNX operator; export model.encoder_ and "
                            "model.decoder_ as layers instead")
        else:
            raise TypeError(
                "export() takes an rnnkit LSTM, GRU or RNN layer, a fitted RNNClassifier / RNNRegressor, "
                f"TextClassifier, LanguageModel (or MelodyModel) or RNNForecaster, got {type(model).__name__}"
            )
        if initial_state:
            raise ValueError("initial_state=True applies to layers only: a model starts from zeros")
        proto = _export_model(onnx, readout, opset, bool(lengths), doc)
    onnx.checker.check_model(proto, full_check=True)
    if hasattr(path, "write"):
        path.write(proto.SerializeToString())
    elif path is not None:
        onnx.save(proto, os.fspath(path))
    return proto

