"""load(): recurrent stacks from ONNX graphs, as PyTorch's exporter and rnnkit's export write
them. The graph is read by abstract interpretation (constants, zeros, shapes and the tracked
tensor), so the plumbing exporters put around the recurrent nodes is followed, not guessed."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..layers import _Recurrent, layer_for_mode
from ._common import DEFAULT_OPSET, _DEFAULT_ACTIVATIONS, _FROM_ONNX, _family, _reorder, _require_onnx

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


__all__ = ["load"]
