"""ONNX in and out: :func:`export` rnnkit layers and fitted estimators, :func:`load` recurrent stacks.

Both directions use the standard ONNX ``LSTM``, ``GRU`` and ``RNN`` operators, so ONNX Runtime
and every other ONNX backend can run what rnnkit writes (opset 14 or newer; 17 by default), and
models written by PyTorch's exporter (any opset from 9) load into rnnkit.

The ``onnx`` package is needed here and only here (``pip install "rnnkit[onnx]"``, which also
installs ``onnxruntime`` to run the exported graphs); ``import rnnkit`` never imports it.

Conversions between PyTorch's (and rnnkit's) layout and ONNX's:

* LSTM gates are (i, f, g, o) in PyTorch and (i, o, f, c) in ONNX; GRU gates are (r, z, n) in
  PyTorch and (z, r, h) in ONNX, with ``linear_before_reset=1`` (PyTorch's GRU). ONNX's ``B``
  input is ``[b_ih, b_hh]`` per direction.
* ONNX's recurrent operators are sequence-major (``layout=0``); batch-first models get
  ``Transpose`` nodes around them. Their ``Y`` output is ``[T, directions, B, H]``; a
  ``Transpose`` + ``Reshape`` (a ``Squeeze`` for one direction) turns it into PyTorch's
  ``(T, B, directions * H)`` between layers and for the final output.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .layers import _Recurrent, layer_for_mode

PathLike = Union[str, "os.PathLike[str]"]

DEFAULT_OPSET = 17
MIN_OPSET = 14  # Reshape's allowzero, the recurrent operators' layout attribute, axes as inputs
_INSTALL_HINT = 'pip install "rnnkit[onnx]"'

# Gate blocks: ONNX's order as indices into PyTorch's, and back.
_TO_ONNX = {"lstm": (0, 3, 1, 2), "gru": (1, 0, 2), "rnn": (0,)}  # (i,f,g,o)->(i,o,f,c); (r,z,n)->(z,r,h)
_FROM_ONNX = {"lstm": (0, 2, 3, 1), "gru": (1, 0, 2), "rnn": (0,)}
_OP_TYPE = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}
_DEFAULT_ACTIVATIONS = {"LSTM": ("Sigmoid", "Tanh", "Tanh"), "GRU": ("Sigmoid", "Tanh"), "RNN": ("Tanh",)}


def _require_onnx() -> Any:
    try:
        import onnx
    except ImportError as exc:
        raise ImportError(
            f"rnnkit.onnx needs the 'onnx' package, an optional extra of rnnkit: {_INSTALL_HINT}"
        ) from exc
    return onnx


def _family(mode: str) -> str:
    """'lstm', 'gru' or 'rnn' for a layer mode ('rnn_tanh' and 'rnn_relu' are both 'rnn')."""
    return "rnn" if mode.startswith("rnn") else mode


def _reorder(w: np.ndarray, order: Sequence[int]) -> np.ndarray:
    """Permute the gate blocks (along axis 0) of a (G*H, ...) weight or (G*H,) bias."""
    blocks = w.reshape((len(order), -1) + w.shape[1:])
    return blocks[list(order)].reshape(w.shape)


# ============================================================================ export
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
    if spec.softmax:
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
    from .estimators import RNNClassifier

    est._check_fitted()
    head = est.head_
    readout = _Readout(layer=est.rnn_, weight=head["weight"], bias=head["bias"], per_step=est.output != "last",
                       softmax=isinstance(est, RNNClassifier))
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
    (``est.classes_[p.argmax(-1)]``). A regressor's output is ``"predictions"`` on the
    targets' scale, shaped like ``predict``'s result.
    """
    onnx = _require_onnx()
    from .estimators import _RNNBase

    opset = int(opset)
    latest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= latest:
        raise ValueError(f"opset must lie in [{MIN_OPSET}, {latest}] (this onnx package's newest), got {opset}")
    from .forecast import RNNForecaster
    from .text import LanguageModel, Seq2Seq

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


# ============================================================================ import
# Abstract values: what load() knows about each tensor of the graph.
@dataclass(frozen=True)
class _Const:
    value: np.ndarray


@dataclass(frozen=True)
class _Zeros:
    """All zeros, with a shape known only at run time (ConstantOfShape of a Shape)."""


@dataclass(frozen=True)
class _Meta:
    """Run-time shape arithmetic (Shape and what is computed from it)."""


@dataclass(frozen=True)
class _Opaque:
    """A tensor whose layout is not followed: fine as a graph output, refused as a node input."""

    how: str


@dataclass(frozen=True)
class _Tracked:
    """Data from a graph input or a recurrent node output, with a label per axis.

    Labels: "<input>:<axis>" for a graph input's axes; "T", "B", "dir", "H" for a recurrent
    output; "F" for features (a merged [dir, H] or the only direction's H); "one" for an
    inserted axis. ``ranges`` holds (label, start, stop) of constant slices taken so far.
    """

    source: Tuple[str, Any]  # ("input", name) or ("Y" / "Y_h" / "Y_c", node index)
    axes: Tuple[str, ...]
    ranges: Tuple[Tuple[str, int, Optional[int]], ...] = ()

    def with_axes(self, axes: Sequence[str]) -> "_Tracked":
        return _Tracked(self.source, tuple(axes), self.ranges)


_Value = Union[_Const, _Zeros, _Meta, _Opaque, _Tracked]


def _is_zero(value: _Value) -> bool:
    return isinstance(value, _Zeros) or (isinstance(value, _Const) and not np.any(value.value))

_PLUMBING = {"Identity", "Cast", "Transpose", "Reshape", "Squeeze", "Unsqueeze", "Concat", "Slice", "Gather",
             "Expand", "Shape", "ConstantOfShape", "Constant"}
_SHAPE_ARITHMETIC = {"Add", "Sub", "Mul", "Div", "Max", "Min", "Equal", "Where", "Range", "ReduceProd", "Neg"}
_RECURRENT = {"LSTM", "GRU", "RNN"}
_BIG = 2**62  # slice ends at or above this mean "to the end"
_NUMERIC_TYPES = {1, 6, 7, 10, 11}  # TensorProto FLOAT, INT32, INT64, FLOAT16, DOUBLE


@dataclass
class _Node:
    """One recurrent node, read and checked."""

    name: str
    op: str
    mode: str  # rnnkit layer mode: lstm, gru, rnn_tanh, rnn_relu
    dirs: int
    hidden: int
    layout: int
    w: np.ndarray
    r: np.ndarray
    b: Optional[np.ndarray]
    x: _Value
    lens: _Value
    states: Dict[str, _Value] = field(default_factory=dict)  # "initial_h" / "initial_c"


class _Reader:
    """Walks an ONNX graph once, in its (topological) node order, following values abstractly."""

    def __init__(self, onnx: Any, model: Any) -> None:
        self.onnx = onnx
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), DEFAULT_OPSET)
        graph = model.graph
        self.values: Dict[str, _Value] = {"": _Opaque("absent")}
        for init in graph.initializer:
            self.values[init.name] = _Const(onnx.numpy_helper.to_array(init))
        for inp in graph.input:
            if inp.name not in self.values:  # (old IR versions list initializers as inputs too)
                rank = len(inp.type.tensor_type.shape.dim)
                self.values[inp.name] = _Tracked(("input", inp.name), tuple(f"{inp.name}:{a}" for a in range(rank)))
        self.nodes: List[_Node] = []
        for node in graph.node:
            self._visit(node)

    # ----------------------------------------------------------------- helpers
    def _attrs(self, node: Any) -> Dict[str, Any]:
        return {a.name: self.onnx.helper.get_attribute_value(a) for a in node.attribute}

    def _const(self, node: Any, name: str, what: str) -> np.ndarray:
        value = self.values.get(name)
        if not isinstance(value, _Const):
            raise ValueError(f"node {node.name!r} ({node.op_type}): {what} must be a constant (an initializer "
                             f"or computed from constants only)")
        return value.value

    def _fold(self, node: Any) -> List[np.ndarray]:
        from onnx.reference import ReferenceEvaluator

        feeds = {name: self.values[name].value for name in node.input if name}
        try:
            return ReferenceEvaluator(node, opsets={"": self.opset}).run(None, feeds)
        except Exception as exc:  # the reference runtime's own errors: unknown or invalid node
            raise ValueError(f"node {node.name!r} ({node.op_type}): cannot evaluate it on its constant inputs: {exc}") from exc

    def _operand(self, node: Any, attrs: Dict[str, Any], name: str, position: int) -> Optional[List[int]]:
        """An integer operand that is an attribute in old opsets and a constant input in new ones."""
        if name in attrs:
            return [int(a) for a in attrs[name]]
        if position < len(node.input) and node.input[position]:
            value = self.values[node.input[position]]
            return [int(a) for a in value.value.ravel()] if isinstance(value, _Const) else None
        return None

    # ----------------------------------------------------------------- the walk
    def _visit(self, node: Any) -> None:
        op = node.op_type
        if node.domain not in ("", "ai.onnx"):
            raise ValueError(f"unsupported operator {node.domain}.{op} (node {node.name!r}): load() reads "
                             "LSTM/GRU/RNN nodes and the layout operators around them")
        inputs = [self.values.get(name) for name in node.input]
        if any(v is None for v in inputs):
            raise ValueError(f"node {node.name!r} ({op}) reads a value defined later or nowhere: the graph is not "
                             "topologically sorted")
        if op in _RECURRENT:
            self._recurrent(node)
            return
        given = [v for name, v in zip(node.input, inputs) if name]
        if op == "Constant" or (given and all(isinstance(v, _Const) for v in given)):
            results: List[_Value] = [_Const(np.asarray(a)) for a in self._fold(node)]
        elif op in _PLUMBING:
            results = [self._plumbing(node, inputs)]
        elif op in _SHAPE_ARITHMETIC and all(isinstance(v, (_Const, _Meta)) for v in given):
            results = [_Meta()]
        else:
            raise ValueError(f"unsupported operator {op} (node {node.name!r}): load() reads LSTM/GRU/RNN nodes "
                             "and the layout operators around them (Transpose, Reshape, Squeeze, Unsqueeze, Concat, "
                             "Slice, ...), not other computation")
        for name, value in zip(node.output, results):
            self.values[name] = value

    def _plumbing(self, node: Any, inputs: List[_Value]) -> _Value:
        op, attrs = node.op_type, self._attrs(node)
        given = [v for name, v in zip(node.input, inputs) if name]
        first = inputs[0]
        if op == "ConstantOfShape":
            fill = attrs.get("value")
            zero = fill is None or not np.any(self.onnx.numpy_helper.to_array(fill))
            return _Zeros() if zero else _Opaque("a non-zero ConstantOfShape")
        if _is_zero(first) and op != "Shape" and (op != "Concat" or all(_is_zero(v) for v in given)):
            return _Zeros()  # moving, expanding or stacking zeros gives zeros
        if op == "Shape" or (any(isinstance(v, _Meta) for v in given) and all(isinstance(v, (_Meta, _Const)) for v in given)):
            return _Meta()
        if not isinstance(first, _Tracked):
            return _Opaque(f"{op} of an untracked value")
        if op == "Identity":
            return first
        if op == "Cast":
            return first if attrs.get("to") in _NUMERIC_TYPES else _Opaque(f"Cast to type {attrs.get('to')}")
        if op == "Transpose":
            perm = attrs.get("perm", list(range(len(first.axes)))[::-1])
            return first.with_axes([first.axes[p] for p in perm])
        if op in ("Squeeze", "Unsqueeze"):
            axes = self._operand(node, attrs, "axes", 1)
            if axes is None:
                return _Opaque(f"{op} without constant axes")
            return self._squeeze(first, axes) if op == "Squeeze" else self._unsqueeze(first, axes)
        if op == "Reshape" and isinstance(inputs[1], _Const):
            return self._reshape(first, [int(s) for s in inputs[1].value.ravel()])
        if op == "Slice":
            return self._slice(node, attrs, first)
        return _Opaque(f"{op} of a sequence or state")

    def _dirs_of(self, value: _Tracked) -> Optional[int]:
        kind, index = value.source
        return self.nodes[index].dirs if kind != "input" else None

    def _squeeze(self, value: _Tracked, axes: List[int]) -> _Value:
        rank = len(value.axes)
        drop = {a % rank for a in axes}
        labels = []
        for i, label in enumerate(value.axes):
            if i not in drop:
                labels.append(label)
            elif not (label == "one" or (label == "dir" and self._dirs_of(value) == 1)):
                return _Opaque(f"Squeeze of axis {label!r}")
        if "dir" not in labels and "H" in labels:
            labels[labels.index("H")] = "F"
        return value.with_axes(labels)

    def _unsqueeze(self, value: _Tracked, axes: List[int]) -> _Tracked:
        rank = len(value.axes) + len(axes)
        inserted = {a % rank for a in axes}
        rest = iter(value.axes)
        return value.with_axes(["one" if i in inserted else next(rest) for i in range(rank)])

    def _reshape(self, value: _Tracked, shape: List[int]) -> _Value:
        """Only the merge of trailing [dir, H] into features, as PyTorch's exporter writes it."""
        axes = value.axes
        if len(shape) == len(axes) - 1 and axes[-2:] == ("dir", "H"):
            node = self.nodes[value.source[1]]
            width, lead = node.dirs * node.hidden, shape[:-1]
            copies = all(s == 0 for s in lead) and shape[-1] in (-1, width)
            inferred = shape[-1] == width and lead.count(-1) == 1 and all(s in (0, -1) for s in lead)
            if copies or inferred:
                return value.with_axes(axes[:-2] + ("F",))
        return _Opaque(f"Reshape to {shape}")

    def _slice(self, node: Any, attrs: Dict[str, Any], value: _Tracked) -> _Value:
        """Constant slices with step 1 from the start; recorded per axis label."""
        starts, ends = self._operand(node, attrs, "starts", 1), self._operand(node, attrs, "ends", 2)
        axes, steps = self._operand(node, attrs, "axes", 3), self._operand(node, attrs, "steps", 4)
        if starts is None or ends is None or (len(node.input) > 3 and node.input[3] and axes is None) or (
                len(node.input) > 4 and node.input[4] and steps is None):
            return _Opaque("Slice with run-time bounds")
        axes = list(range(len(starts))) if axes is None else axes
        ranges = {label: (start, stop) for label, start, stop in value.ranges}
        for i, axis in enumerate(axes):
            if steps is not None and steps[i] != 1:
                return _Opaque("Slice with a step")
            if starts[i] < 0 or ends[i] < 0:
                return _Opaque("Slice from the end")
            label = value.axes[axis % len(value.axes)]
            base, stop0 = ranges.get(label, (0, None))
            stop = None if ends[i] >= _BIG else base + ends[i]
            if stop0 is not None:
                stop = stop0 if stop is None else min(stop, stop0)
            ranges[label] = (base + starts[i], stop)
        return _Tracked(value.source, value.axes, tuple((k, a, b) for k, (a, b) in ranges.items()))

    # ------------------------------------------------------------ recurrent nodes
    def _recurrent(self, node: Any) -> None:
        op, attrs = node.op_type, self._attrs(node)
        where = f"node {node.name!r} ({op})"
        known = {"direction", "hidden_size", "layout", "activations", "activation_alpha", "activation_beta"}
        known |= {"LSTM": {"input_forget", "clip"}, "GRU": {"linear_before_reset", "clip"}, "RNN": {"clip"}}[op]
        unknown = sorted(set(attrs) - known)
        if unknown:
            raise ValueError(f"{where}: unsupported attribute {unknown[0]!r}")
        if "clip" in attrs:
            raise ValueError(f"{where}: unsupported attribute 'clip' (cell clipping, {attrs['clip']}): rnnkit's "
                             "cells do not clip")
        if attrs.get("input_forget", 0):
            raise ValueError(f"{where}: unsupported attribute 'input_forget'=1 (coupled input and forget gates)")
        if op == "GRU" and attrs.get("linear_before_reset", 0) != 1:
            raise ValueError(f"{where}: unsupported attribute 'linear_before_reset'=0: rnnkit's GRU is PyTorch's, "
                             "which applies the reset gate after the recurrent matmul (linear_before_reset=1)")
        direction = attrs.get("direction", b"forward")
        direction = direction.decode() if isinstance(direction, bytes) else str(direction)
        if direction not in ("forward", "bidirectional"):
            raise ValueError(f"{where}: unsupported attribute 'direction'={direction!r}: rnnkit runs forward or "
                             "bidirectional stacks")
        dirs = 2 if direction == "bidirectional" else 1
        mode = self._mode(where, op, attrs, dirs)
        layout = int(attrs.get("layout", 0))
        inputs = list(node.input) + [""] * (8 - len(node.input))
        w = self._const(node, inputs[1], "W")
        r = self._const(node, inputs[2], "R")
        b = self._const(node, inputs[3], "B") if inputs[3] else None
        if op == "LSTM" and inputs[7]:
            peep = self.values[inputs[7]]
            if not _is_zero(peep):
                raise ValueError(f"{where}: unsupported input 'P' (peephole weights): rnnkit's LSTM has none")
        hidden = int(attrs.get("hidden_size", r.shape[-1]))
        gates = {"LSTM": 4, "GRU": 3, "RNN": 1}[op]
        if w.ndim != 3 or w.shape[:2] != (dirs, gates * hidden) or r.shape != (dirs, gates * hidden, hidden) or (
                b is not None and b.shape != (dirs, 2 * gates * hidden)):
            raise ValueError(f"{where}: weight shapes W {w.shape}, R {r.shape}, B {None if b is None else b.shape} "
                             f"do not fit hidden_size={hidden} and {dirs} direction(s)")
        index = len(self.nodes)
        states = {"initial_h": self.values[inputs[5]] if inputs[5] else _Zeros()}
        if op == "LSTM":
            states["initial_c"] = self.values[inputs[6]] if inputs[6] else _Zeros()
        self.nodes.append(_Node(node.name, op, mode, dirs, hidden, layout, w, r, b, self.values[inputs[0]],
                                self.values[inputs[4]] if inputs[4] else _Opaque("absent"), states))
        seq = ("T", "dir", "B", "H") if layout == 0 else ("B", "T", "dir", "H")
        final = ("dir", "B", "H") if layout == 0 else ("B", "dir", "H")
        for name, kind, axes in zip(node.output, ("Y", "Y_h", "Y_c"), (seq, final, final)):
            if name:
                self.values[name] = _Tracked((kind, index), axes)

    @staticmethod
    def _mode(where: str, op: str, attrs: Dict[str, Any], dirs: int) -> str:
        acts = [a.decode() if isinstance(a, bytes) else str(a) for a in attrs.get("activations", [])]
        default = _DEFAULT_ACTIVATIONS[op]
        if "activation_alpha" in attrs or "activation_beta" in attrs:
            raise ValueError(f"{where}: unsupported attributes 'activation_alpha'/'activation_beta' (parametrised "
                             f"activations {acts})")
        if not acts:
            acts = list(default) * dirs
        if len(acts) != len(default) * dirs:
            raise ValueError(f"{where}: attribute 'activations' has {len(acts)} entries, expected {len(default) * dirs}")
        per_dir = [tuple(a.lower() for a in acts[i * len(default):(i + 1) * len(default)]) for i in range(dirs)]
        if len(set(per_dir)) != 1:
            raise ValueError(f"{where}: unsupported attribute 'activations'={acts}: the directions differ")
        if op == "RNN" and per_dir[0] in (("tanh",), ("relu",)):
            return f"rnn_{per_dir[0][0]}"
        if per_dir[0] != tuple(a.lower() for a in default):
            raise ValueError(f"{where}: unsupported attribute 'activations'={acts}: rnnkit's {op} uses "
                             f"{list(default)}" + (" or ['Relu']" if op == "RNN" else ""))
        return op.lower()


def _check_chain(reader: _Reader) -> Tuple[bool, Dict[str, Optional[str]]]:
    """Check that the nodes form one stack; returns batch_first and the graph inputs of the initial states."""
    nodes = reader.nodes
    if not nodes:
        raise ValueError("the model has no LSTM, GRU or RNN node")
    batch_first = False
    for k, node in enumerate(nodes):
        where = f"node {node.name!r} ({node.op})"
        x = node.x
        want = ("T", "B") if node.layout == 0 else ("B", "T")
        if k == 0:
            if not (isinstance(x, _Tracked) and x.source[0] == "input" and not x.ranges and len(x.axes) == 3):
                raise ValueError(f"{where}: input X must be a graph input of rank 3, possibly transposed "
                                 f"({_describe(x)})")
            x_name = x.source[1]
            lead = [f"{x_name}:0", f"{x_name}:1"]
            if x.axes[2] != f"{x_name}:2" or sorted(x.axes[:2]) != lead:
                raise ValueError(f"{where}: input X is graph input {x_name!r} with its axes {x.axes}: the features "
                                 "must stay last")
            time_axis = x.axes[want.index("T")]
            batch_first = time_axis == lead[1]
        else:
            ok = isinstance(x, _Tracked) and x.source == ("Y", k - 1) and not x.ranges and x.axes == want + ("F",)
            if not ok:
                raise ValueError(f"{where}: input X must be the previous recurrent node's output Y laid out as "
                                 f"({', '.join(want)}, directions*hidden) ({_describe(x)})")
            width = nodes[k - 1].dirs * nodes[k - 1].hidden
            if node.w.shape[2] != width:
                raise ValueError(f"{where}: W reads {node.w.shape[2]} features, the previous node gives {width}")
    _sequence_lens_input(nodes)
    states = {key: _state_input([n for n in nodes if key in n.states], key) for key in ("initial_h", "initial_c")}
    return batch_first, states


def _describe(value: _Value) -> str:
    if isinstance(value, _Tracked):
        rng = f", sliced {value.ranges}" if value.ranges else ""
        return f"got {value.source[0]} of {value.source[1]!r} with axes {value.axes}{rng}"
    if isinstance(value, _Opaque):
        return f"got the result of {value.how}"
    return f"got {type(value).__name__.strip('_').lower()}"


def _sequence_lens_input(nodes: List[_Node]) -> Optional[str]:
    """The one graph input every node reads sequence_lens from (None when no node has it)."""
    names = set()
    for node in nodes:
        value = node.lens
        if isinstance(value, _Opaque) and value.how == "absent":
            names.add(None)
        elif isinstance(value, _Tracked) and value.source[0] == "input" and not value.ranges and len(value.axes) == 1:
            names.add(value.source[1])
        else:
            raise ValueError(f"node {node.name!r} ({node.op}): input sequence_lens must be absent or a graph input "
                             f"({_describe(value)})")
    if len(names) > 1:
        raise ValueError(f"the recurrent nodes take sequence_lens from different places: {sorted(map(str, names))}")
    return names.pop()


def _state_input(nodes: List[_Node], key: str) -> Optional[str]:
    """The graph input holding the initial states ``key`` of every layer, or None for zeros."""
    sources = set()
    offset = 0
    for node in nodes:
        value = node.states[key]
        where = f"node {node.name!r} ({node.op})"
        if _is_zero(value):
            sources.add(None)
        elif isinstance(value, _Const):
            raise ValueError(f"{where}: input {key} is a non-zero constant: rnnkit layers start from zeros or "
                             "from the state passed to forward()")
        elif isinstance(value, _Tracked) and value.source[0] == "input":
            if node.layout != 0:
                raise ValueError(f"{where}: input {key} from a graph input with layout=1 is not supported")
            name = value.source[1]
            rows = dict((lab, (a, b)) for lab, a, b in value.ranges)
            start, stop = rows.pop(f"{name}:0", (0, None))
            full = len(nodes) == 1 and stop is None and start == 0
            if value.axes != tuple(f"{name}:{a}" for a in range(3)) or rows or not (
                    full or (start, stop) == (offset, offset + node.dirs)):
                raise ValueError(f"{where}: input {key} must be rows {offset}:{offset + node.dirs} of one graph input "
                                 f"of shape (layers*directions, B, H) ({_describe(value)})")
            sources.add(name)
        else:
            raise ValueError(f"{where}: input {key} must be absent, zeros or (a slice of) a graph input "
                             f"({_describe(value)})")
        offset += node.dirs
    if len(sources) > 1:
        raise ValueError(f"{key}: some recurrent nodes start from zeros, others from graph inputs {sorted(map(str, sources))}")
    return sources.pop() if sources else None


def _group(nodes: List[_Node]) -> List[List[_Node]]:
    """Consecutive nodes of the same cell, width and directions: one rnnkit layer each."""
    groups: List[List[_Node]] = []
    for node in nodes:
        last = groups[-1][-1] if groups else None
        if last is not None and (last.mode, last.hidden, last.dirs) == (node.mode, node.hidden, node.dirs):
            groups[-1].append(node)
        else:
            groups.append([node])
    return groups


def _to_layer(group: List[_Node], batch_first: bool) -> _Recurrent:
    first = group[0]
    dtype = "float64" if first.w.dtype == np.float64 else "float32"
    bias = any(n.b is not None for n in group)
    kw = dict(num_layers=len(group), bias=bias, batch_first=batch_first, bidirectional=first.dirs == 2, dtype=dtype)
    layer = layer_for_mode(first.mode, first.w.shape[2], first.hidden, **kw)
    order = _FROM_ONNX[_family(first.mode)]
    gh = len(order) * first.hidden
    state = {}
    for index, node in enumerate(group):
        for d, suffix in enumerate(["", "_reverse"][: node.dirs]):
            state[f"weight_ih_l{index}{suffix}"] = _reorder(node.w[d], order)
            state[f"weight_hh_l{index}{suffix}"] = _reorder(node.r[d], order)
            if bias:
                b = node.b[d] if node.b is not None else np.zeros(2 * gh, node.w.dtype)
                state[f"bias_ih_l{index}{suffix}"] = _reorder(b[:gh], order)
                state[f"bias_hh_l{index}{suffix}"] = _reorder(b[gh:], order)
    layer.load_state_dict(state)
    return layer


def load(path: Any) -> List[_Recurrent]:
    """Read a recurrent stack from an ONNX model into rnnkit layers with the same outputs.

    The model may hold ``LSTM``, ``GRU`` and ``RNN`` nodes as PyTorch's ``torch.onnx.export``
    (``dynamo=False``) writes them for ``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN``, with its
    Transposes, Squeezes, Reshapes, Slices and Concats around them, as :func:`export` writes
    them, or as a Keras-style single node (Transpose, LSTM, Squeeze). The recurrent nodes must
    form one chain: the first reads a graph input (seq-major, or batch-major through a
    Transpose or ``layout=1``) and each next one reads the previous one's output. The
    operators around them may only move data (layout, shapes, stacking final states); any
    other computation is refused.

    Parameters
    ----------
    path : str, path-like, bytes or onnx.ModelProto
        The model file, its serialized bytes, or the loaded model.

    Returns
    -------
    list of rnnkit LSTM / GRU / RNN
        Usually one layer: consecutive nodes of the same cell, hidden size and directions
        become one multi-layer rnnkit layer (``num_layers`` = their number). A stack mixing
        cells or widths gives one layer per run; feed each one's output to the next. Every
        layer has ``batch_first`` set to the graph input's layout, float32 weights (float64
        where the model's are). Graph inputs used as initial states (all layers' rows of one
        input, as PyTorch writes them) are ``forward``'s ``state`` argument; one used as
        ``sequence_lens`` is its ``lengths``.

    Raises
    ------
    ValueError
        Naming what is not supported: another operator (``Gemm``, ``MatMul``, ...),
        attributes ``clip``, ``input_forget``, non-default ``activations`` (RNN: Tanh or Relu),
        ``linear_before_reset=0``, ``direction="reverse"``, peephole weights ``P``, constant
        non-zero initial states, or a layout between nodes that is not the previous output.
    """
    onnx = _require_onnx()
    if isinstance(path, (bytes, bytearray)):
        model = onnx.load_from_string(bytes(path))
    elif isinstance(path, onnx.ModelProto):
        model = path
    else:
        model = onnx.load(os.fspath(path))
    reader = _Reader(onnx, model)
    batch_first, states = _check_chain(reader)
    groups = _group(reader.nodes)
    if len(groups) > 1 and any(states.values()):
        raise ValueError("graph inputs as initial states are supported for a uniform stack only (one cell, width "
                         "and direction count throughout)")
    return [_to_layer(group, batch_first) for group in groups]


__all__ = ["export", "load"]
