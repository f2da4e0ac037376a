"""ONNX export and import (rnnkit.onnx), checked by running the graphs in ONNX Runtime.

* Every layer configuration (cell x 1-2 layers x uni/bidirectional x bias x batch_first),
  exported plain, with ragged ``lengths`` and with initial states, runs in onnxruntime and
  matches rnnkit's own ``forward`` within 1e-5 relative (norm-inf) in float32. ONNX Runtime
  writes zeros past each sequence's length, as rnnkit does, and its final states are those at
  the last valid step, so whole outputs are compared, and the padding is checked to be zero.
* Fitted estimators exported match ``predict_proba`` / ``predict``, ragged input included.
* Models written by ``torch.onnx.export(..., dynamo=False)`` load and reproduce torch.
* Round trips rnnkit -> ONNX -> rnnkit give the same parameters; unsupported operators and
  attributes raise ValueError naming them.
"""

from __future__ import annotations

import io
import itertools
import subprocess
import sys
import warnings

import numpy as np
import pytest

from conftest import CELLS, RTOL, assert_close_rel, make_rnnkit, make_torch

pytest.importorskip("onnx", reason="onnx is not installed: pip install 'rnnkit[onnx]'")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed: pip install 'rnnkit[onnx]'")

import onnx  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import rnnkit  # noqa: E402
import rnnkit.onnx as rx  # noqa: E402

D, H, B, T = 3, 5, 4, 6
LENGTHS = np.array([6, 2, 1, 4])


def assert_close(actual, expected, what: str = "") -> None:
    assert_close_rel(actual, expected, RTOL["float32"], what)


def session(model) -> "ort.InferenceSession":
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def states_tuple(state) -> tuple:
    return state if isinstance(state, tuple) else (state,)


def layer(cell: str, num_layers: int = 1, bidirectional: bool = False, bias: bool = True,
          batch_first: bool = False, dtype: str = "float32"):
    return make_rnnkit(cell, D, H, num_layers=num_layers, bidirectional=bidirectional, bias=bias,
                      batch_first=batch_first, dtype=dtype, seed=7)


# ------------------------------------------------------------------------------ packaging
def test_import_rnnkit_does_not_import_onnx():
    code = "import sys, rnnkit, rnnkit.onnx; assert 'onnx' not in sys.modules, 'onnx imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_onnx_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # makes `import onnx` fail
    with pytest.raises(ImportError, match=r"rnnkit\[onnx\]"):
        rx.export(layer("lstm"))
    with pytest.raises(ImportError, match=r"rnnkit\[onnx\]"):
        rx.load(b"")


# ----------------------------------------------------------------------- layers: export
LAYER_CONFIGS = list(itertools.product(CELLS, (1, 2), (False, True), (True, False), (False, True)))


@pytest.mark.parametrize("cell,num_layers,bidirectional,bias,batch_first", LAYER_CONFIGS,
                         ids=[f"{c}-L{n}-{'bi' if d else 'uni'}-{'bias' if b else 'nobias'}-{'bf' if f else 'sf'}"
                              for c, n, d, b, f in LAYER_CONFIGS])
def test_layer_export_matches_forward(cell, num_layers, bidirectional, bias, batch_first):
    m = layer(cell, num_layers, bidirectional, bias, batch_first)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((B, T, D) if batch_first else (T, B, D)).astype(np.float32)
    shape = (num_layers * m.num_directions, B, H)
    init = tuple(rng.standard_normal(shape).astype(np.float32) for _ in range(2 if cell == "lstm" else 1))
    state = init if cell == "lstm" else init[0]
    names = ["output", "h_n"] + (["c_n"] if cell == "lstm" else [])

    plain = rx.export(m)
    assert [o.name for o in plain.graph.output] == names
    got = session(plain).run(None, {"input": x})
    out, final = m.forward(x)
    for name, a, e in zip(names, got, (out,) + states_tuple(final)):
        assert_close(a, e, f"plain {name}")

    full = rx.export(m, lengths=True, initial_state=True)
    feeds = {"input": x, "lengths": LENGTHS, "h_0": init[0]}
    if cell == "lstm":
        feeds["c_0"] = init[1]
    got = session(full).run(None, feeds)
    out, final = m.forward(x, state=state, lengths=LENGTHS)
    for name, a, e in zip(names, got, (out,) + states_tuple(final)):
        assert_close(a, e, f"ragged with state {name}")
    padded = got[0] if batch_first else got[0].transpose(1, 0, 2)
    assert all(not padded[i, n:].any() for i, n in enumerate(LENGTHS)), "ONNX Runtime left values past a length"

    (back,) = rx.load(full)  # round trip: same configuration and parameters
    assert repr(back) == repr(m)
    for key, value in m.state_dict().items():
        np.testing.assert_array_equal(back.state_dict()[key], value, err_msg=key)


def test_lengths_without_state_and_state_without_lengths():
    m = layer("gru", 2, bidirectional=True)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((T, B, D)).astype(np.float32)
    h0 = rng.standard_normal((4, B, H)).astype(np.float32)
    got = session(rx.export(m, lengths=True)).run(None, {"input": x, "lengths": LENGTHS})
    for a, e in zip(got, m.forward(x, lengths=LENGTHS)):
        assert_close(a, e, "lengths only")
    got = session(rx.export(m, initial_state=True)).run(None, {"input": x, "h_0": h0})
    for a, e in zip(got, m.forward(x, state=h0)):
        assert_close(a, e, "state only")


def test_export_to_path_opsets_and_float64(tmp_path):
    m64 = layer("lstm", 2, bidirectional=True, batch_first=True, dtype="float64")
    x = np.random.default_rng(3).standard_normal((B, T, D))
    out, (h_n, c_n) = m64.forward(x)
    for opset in (rx.MIN_OPSET, rx.DEFAULT_OPSET, onnx.defs.onnx_opset_version()):
        path = tmp_path / f"m{opset}.onnx"
        returned = rx.export(m64, path, opset=opset)
        model = onnx.load(str(path))
        assert model == returned and model.opset_import[0].version == opset
        onnx.checker.check_model(model, full_check=True)
        got = session(model).run(None, {"input": x.astype(np.float32)})
        for a, e in zip(got, (out, h_n, c_n)):
            assert_close(a, e, f"float64 layer at opset {opset}")
    buf = io.BytesIO()
    rx.export(m64, buf)
    assert onnx.load_from_string(buf.getvalue()) == rx.export(m64)
    for bad in (13, onnx.defs.onnx_opset_version() + 1):
        with pytest.raises(ValueError, match="opset"):
            rx.export(m64, opset=bad)


def test_export_refuses_other_objects():
    with pytest.raises(TypeError, match="export"):
        rx.export(object())
    with pytest.raises(ValueError, match="not fitted"):
        rx.export(rnnkit.RNNClassifier())


# ------------------------------------------------------------------- estimators: export
def _data(n: int = 30):
    rng = np.random.default_rng(4)
    X = rng.standard_normal((n, T, D)) * 2.0 + 1.0
    lengths = rng.integers(1, T + 1, n)
    return X, lengths


ESTIMATOR_CONFIGS = [("lstm", "last", True), ("gru", "sequence", True), ("rnn", "last", False),
                     ("rnn_relu", "sequence", False), ("lstm", "sequence", False), ("gru", "last", False)]


def _fit(kind: str, cell: str, output: str, bidirectional: bool, X, **kw):
    rng = np.random.default_rng(5)
    est = rnnkit.RNNClassifier if kind == "classifier" else rnnkit.RNNRegressor
    if "y" in kw:
        y = kw.pop("y")
    elif kind == "classifier":
        y = np.where((X[..., 0] > 1) if output == "sequence" else (X[..., 0].sum(1) > T), "yes", "no")
    else:
        y = X[..., 1] * 3 + 5 if output == "sequence" else np.c_[X[..., 1].sum(1), X[..., 2].sum(1)] * 3 - 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est(cell=cell, output=output, bidirectional=bidirectional, num_layers=2, hidden_size=6, max_epochs=2,
                   random_state=int(rng.integers(100)), **kw).fit(X, y)


@pytest.mark.parametrize("kind", ["classifier", "regressor"])
@pytest.mark.parametrize("cell,output,bidirectional", ESTIMATOR_CONFIGS)
def test_estimator_export_matches_predict(kind, cell, output, bidirectional):
    X, lengths = _data()
    est = _fit(kind, cell, output, bidirectional, X)
    model = rx.export(est, lengths=True)
    name = "probabilities" if kind == "classifier" else "predictions"
    assert [o.name for o in model.graph.output] == [name]
    sess = session(model)
    expected = est.predict_proba(X) if kind == "classifier" else est.predict(X)
    full = np.full(len(X), T)
    got = sess.run(None, {"input": X.astype(np.float32), "lengths": full})[0]
    assert_close(got, expected, "whole sequences")
    if kind == "classifier":
        np.testing.assert_array_equal(est.classes_[got.argmax(-1)], est.predict(X))

    ragged = [X[i, :n] for i, n in enumerate(lengths)]  # list input: each sequence its own length
    expected = est.predict_proba(ragged) if kind == "classifier" else est.predict(ragged)
    padded = np.zeros_like(X, dtype=np.float32)
    for i, n in enumerate(lengths):
        padded[i, :n] = X[i, :n]
    got = sess.run(None, {"input": padded, "lengths": lengths})[0]
    if output == "last":
        assert_close(got, expected, "ragged")
    else:
        for i, n in enumerate(lengths):
            assert_close(got[i, :n], expected[i], f"ragged sequence {i}")

    plain = session(rx.export(est)).run(None, {"input": X.astype(np.float32)})[0]
    assert_close(plain, est.predict_proba(X) if kind == "classifier" else est.predict(X), "without lengths")


def test_univariate_regressor_with_1d_targets():
    X, _ = _data()
    series = X[..., 0]  # (n, T): univariate sequences
    est = _fit("regressor", "gru", "last", False, series, y=series.sum(1) * 10)
    got = session(rx.export(est)).run(None, {"input": series[..., None].astype(np.float32)})[0]
    assert got.shape == (len(series),)
    assert_close(got, est.predict(series), "univariate")
    with pytest.raises(ValueError, match="initial_state"):
        rx.export(est, initial_state=True)


# ------------------------------------------------------------------ import: PyTorch's exporter
def _torch_export(module, args, names) -> bytes:
    torch = pytest.importorskip("torch", reason="torch is not installed: the import tests read its exports")
    buf = io.BytesIO()
    dynamic = {n: ({0: "a", 1: "b"} if i == 0 else {1: "batch"}) for i, n in enumerate(names)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.no_grad():
            torch.onnx.export(module, args, buf, dynamo=False, input_names=names, opset_version=17,
                              dynamic_axes=dynamic)
    return buf.getvalue()


class _WithState:
    """nn.Module wrappers taking the initial state as separate inputs (what the exporter needs)."""

    @staticmethod
    def make(torch, rnn, lstm: bool):
        class Wrapper(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.rnn = rnn

            def forward(self, x, h0, c0=None):
                return self.rnn(x, (h0, c0) if lstm else h0)

        return Wrapper()


TORCH_CONFIGS = list(itertools.product(CELLS, (False, True), (False, True), (True, False), (False, True)))


@pytest.mark.parametrize("cell,batch_first,bidirectional,bias,with_state", TORCH_CONFIGS,
                         ids=[f"{c}-{'bf' if f else 'sf'}-{'bi' if d else 'uni'}-{'bias' if b else 'nobias'}"
                              f"{'-state' if s else ''}" for c, f, d, b, s in TORCH_CONFIGS])
def test_load_torch_export(cell, batch_first, bidirectional, bias, with_state):
    torch = pytest.importorskip("torch", reason="torch is not installed: the import tests read its exports")
    rnn = make_torch(cell, D, H, 2, bias=bias, batch_first=batch_first, bidirectional=bidirectional,
                     dtype="float32").eval()
    lstm = cell == "lstm"
    gen = torch.Generator().manual_seed(0)
    x = torch.randn((B, T, D) if batch_first else (T, B, D), generator=gen)
    dirs = 2 if bidirectional else 1
    init = tuple(torch.randn(2 * dirs, B, H, generator=gen) for _ in range(2 if lstm else 1))
    if with_state:
        module, args = _WithState.make(torch, rnn, lstm), (x,) + init
        names = ["x", "h0", "c0"][: len(args)]
    else:
        module, args, names = rnn, (x,), ["x"]
    data = _torch_export(module, args, names)

    (m,) = rx.load(data)
    assert (type(m).__name__, m.num_layers, m.bidirectional, m.bias, m.batch_first) == (
        type(rnn).__name__, 2, bidirectional, bias, batch_first)
    with torch.no_grad():
        t_out, t_state = module(*args)
    state = None
    if with_state:
        state = tuple(a.numpy() for a in init) if lstm else init[0].numpy()
    out, final = m.forward(x.numpy(), state=state)
    assert_close(out, t_out.numpy(), "output")
    for a, e in zip(states_tuple(final), t_state if lstm else (t_state,)):
        assert_close(a, e.numpy(), "final state")


@pytest.mark.parametrize("opset", [11, 20])
def test_load_torch_export_other_opsets(opset):
    torch = pytest.importorskip("torch", reason="torch is not installed: the import tests read its exports")
    rnn = make_torch("gru", D, H, 2, batch_first=True, bidirectional=True, dtype="float32").eval()
    x = torch.randn(B, T, D)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(rnn, (x,), buf, dynamo=False, input_names=["x"], opset_version=opset)
    (m,) = rx.load(buf.getvalue())
    with torch.no_grad():
        t_out, t_h = rnn(x)
    out, h_n = m.forward(x.numpy())
    assert_close(out, t_out.numpy(), "output")
    assert_close(h_n, t_h.numpy(), "h_n")


def test_load_torch_refuses_a_dense_head():
    torch = pytest.importorskip("torch", reason="torch is not installed: the import tests read its exports")

    class Classifier(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = torch.nn.LSTM(D, H, batch_first=True)
            self.head = torch.nn.Linear(H, 2)

        def forward(self, x):
            return self.head(self.lstm(x)[0][:, -1])

    with pytest.raises(ValueError, match="unsupported operator Gemm"):
        rx.load(_torch_export(Classifier().eval(), (torch.randn(B, T, D),), ["x"]))


def test_load_torch_mixed_stack_gives_a_list():
    torch = pytest.importorskip("torch", reason="torch is not installed: the import tests read its exports")

    class Mixed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = torch.nn.LSTM(D, H, batch_first=True, bidirectional=True)
            self.gru = torch.nn.GRU(2 * H, 3, num_layers=2, batch_first=True)

        def forward(self, x):
            return self.gru(self.lstm(x)[0])

    module = Mixed().eval()
    x = torch.randn(B, T, D)
    layers = rx.load(_torch_export(module, (x,), ["x"]))
    assert [repr(m) for m in layers] == ["LSTM(3, 5, batch_first=True, bidirectional=True)",
                                         "GRU(10, 3, num_layers=2, batch_first=True)"]
    y = x.numpy()
    for m in layers:
        y, final = m.forward(y)
    with torch.no_grad():
        t_out, t_h = module(x)
    assert_close(y, t_out.numpy(), "output")
    assert_close(final, t_h.numpy(), "h_n")


# ----------------------------------------------------------- import: hand-written graphs
def _single_lstm(layout: int = 0, attrs=None, peephole=None, initial_h=None, rng_seed: int = 6):
    """A Keras-style model: (B, T, D) input, one LSTM node, (B, H) last state and (B, T, H) outputs."""
    rng = np.random.default_rng(rng_seed)
    w = rng.uniform(-0.5, 0.5, (1, 4 * H, D)).astype(np.float32)
    r = rng.uniform(-0.5, 0.5, (1, 4 * H, H)).astype(np.float32)
    b = np.concatenate([rng.uniform(-0.5, 0.5, (1, 4 * H)), np.zeros((1, 4 * H))], 1).astype(np.float32)
    inits = [numpy_helper.from_array(a, n) for a, n in ((w, "W"), (r, "R"), (b, "B"))]
    inits.append(numpy_helper.from_array(np.array([1 if layout else 0], np.int64), "state_dir_axis"))
    inits.append(numpy_helper.from_array(np.array([2 if layout else 1], np.int64), "seq_dir_axis"))
    lstm_inputs = ["x" if layout else "x_t", "W", "R", "B", "", "", ""]
    if initial_h is not None:
        inits.append(numpy_helper.from_array(initial_h, "h_init"))
        lstm_inputs[5] = "h_init"
    if peephole is not None:
        inits.append(numpy_helper.from_array(peephole, "P"))
        lstm_inputs.append("P")
    nodes = [] if layout else [helper.make_node("Transpose", ["x"], ["x_t"], perm=[1, 0, 2])]
    nodes.append(helper.make_node("LSTM", lstm_inputs, ["Y", "Y_h"], name="lstm", hidden_size=H,
                                  **({"layout": 1} if layout else {}), **(attrs or {})))
    nodes.append(helper.make_node("Squeeze", ["Y_h", "state_dir_axis"], ["last"]))
    if layout:
        nodes.append(helper.make_node("Squeeze", ["Y", "seq_dir_axis"], ["seq"]))
    else:
        nodes.append(helper.make_node("Squeeze", ["Y", "seq_dir_axis"], ["seq_t"]))
        nodes.append(helper.make_node("Transpose", ["seq_t"], ["seq"], perm=[1, 0, 2]))
    graph = helper.make_graph(
        nodes, "keras", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", "t", D])],
        [helper.make_tensor_value_info("last", TensorProto.FLOAT, ["n", H]),
         helper.make_tensor_value_info("seq", TensorProto.FLOAT, ["n", "t", H])], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


@pytest.mark.parametrize("layout", [0, 1])
def test_load_keras_style_lstm(layout):
    model = _single_lstm(layout, attrs={"activations": ["Sigmoid", "Tanh", "Tanh"]})
    onnx.checker.check_model(model)
    (m,) = rx.load(model.SerializeToString())
    assert m.batch_first and isinstance(m, rnnkit.LSTM)
    x = np.random.default_rng(8).standard_normal((B, T, D)).astype(np.float32)
    # ONNX Runtime runs layout=0 only: the layout=1 model is checked against its layout=0 twin.
    last, seq = session(_single_lstm(0)).run(None, {"x": x})
    out, (h_n, _) = m.forward(x)
    assert_close(out, seq, "sequence output")
    assert_close(h_n[0], last, "last state")


def _set_attr(model, op: str, **attrs):
    node = next(n for n in model.graph.node if n.op_type == op)
    for key, value in attrs.items():
        for i, a in enumerate(node.attribute):
            if a.name == key:
                del node.attribute[i]
                break
        node.attribute.append(helper.make_attribute(key, value))
    return model


@pytest.mark.parametrize("op,attrs,match", [
    ("LSTM", {"clip": 3.0}, "'clip'"),
    ("LSTM", {"input_forget": 1}, "'input_forget'"),
    ("LSTM", {"activations": ["HardSigmoid", "Tanh", "Tanh"]}, "'activations'"),
    ("LSTM", {"activation_alpha": [0.2]}, "activation_alpha"),
    ("LSTM", {"direction": "reverse"}, "'direction'='reverse'"),
    ("LSTM", {"frobnicate": 1}, "'frobnicate'"),
    ("GRU", {"linear_before_reset": 0}, "'linear_before_reset'=0"),
    ("RNN", {"activations": ["Sigmoid"]}, "'activations'"),
])
def test_load_refuses_unsupported_attributes(op, attrs, match):
    model = rx.export(layer({"LSTM": "lstm", "GRU": "gru", "RNN": "rnn_tanh"}[op]))
    with pytest.raises(ValueError, match=match):
        rx.load(_set_attr(model, op, **attrs))


def test_load_refuses_peepholes_constant_states_and_other_operators():
    with pytest.raises(ValueError, match="'P'"):
        rx.load(_single_lstm(peephole=np.ones((1, 3 * H), np.float32)))
    (m,) = rx.load(_single_lstm(peephole=np.zeros((1, 3 * H), np.float32)))  # zero peepholes are no peepholes
    assert isinstance(m, rnnkit.LSTM)
    with pytest.raises(ValueError, match="initial_h is a non-zero constant"):
        rx.load(_single_lstm(initial_h=np.ones((1, 1, H), np.float32)))
    X, _ = _data()
    with pytest.raises(ValueError, match="unsupported operator Sub"):  # an estimator's graph: scaling, head
        rx.load(rx.export(_fit("classifier", "lstm", "last", False, X)))


def test_load_refuses_a_scrambled_layout_between_layers():
    model = rx.export(layer("lstm", 2, bidirectional=True))
    transpose = next(n for n in model.graph.node if n.op_type == "Transpose" and list(n.attribute[0].ints) == [0, 2, 1, 3])
    transpose.attribute[0].ints[:] = [0, 1, 2, 3]  # (T, dir, B, H) reshaped straight to (T, dir, B*H)
    with pytest.raises(ValueError, match="previous recurrent node's output"):
        rx.load(model)
    with pytest.raises(ValueError, match="no LSTM, GRU or RNN node"):
        graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
        rx.load(helper.make_model(graph))


# ------------------------------------------------------------------------------ task models
def _padded_ids(seqs):
    width = max(len(s) for s in seqs)
    ids = np.zeros((len(seqs), width), dtype=np.int64)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = s
    return ids, np.array([len(s) for s in seqs], dtype=np.int64)


@pytest.mark.parametrize("cell,bidirectional", [("gru", True), ("lstm", False)])
def test_text_classifier_export_matches_predict_proba(cell, bidirectional):
    from rnnkit.text import TextClassifier

    texts = ["good film", "bad plot and bad acting", "lovely", "awful awful film", "nice acting really", "poor"]
    labels = ["pos", "neg", "pos", "neg", "pos", "neg"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = TextClassifier(cell=cell, bidirectional=bidirectional, hidden_size=6, embedding_dim=4, max_epochs=3,
                             random_state=0, n_threads=1).fit(texts, labels)
    model = rx.export(clf, lengths=True)
    assert [i.name for i in model.graph.input] == ["tokens", "lengths"]
    ids, lengths = _padded_ids(clf.tokenizer_.transform(texts))
    got = session(model).run(None, {"tokens": ids, "lengths": lengths})[0]
    assert_close(got, clf.predict_proba(texts), "ragged texts")


@pytest.mark.parametrize("cell", ["lstm", "rnn"])
def test_language_model_export_gives_every_steps_next_token_distribution(cell):
    from rnnkit.text import LanguageModel

    lm = LanguageModel(cell=cell, hidden_size=8, embedding_dim=4, seq_len=8, max_epochs=2, random_state=0,
                       n_threads=1).fit(["the cat sat on the mat and the dog sat on the log . " * 4])
    ids, lengths = _padded_ids([lm.tokenizer_.encode("the cat sat on"), lm.tokenizer_.encode("the dog")])
    got = session(rx.export(lm, lengths=True)).run(None, {"tokens": ids, "lengths": lengths})[0]
    assert got.shape == (2, 4, len(lm.tokenizer_))
    for i, n in enumerate(lengths):
        expected = lm._probabilities(ids[i : i + 1, :n])[0]
        assert_close(got[i, :n], expected, f"sequence {i}")
    top = lm.predict_next("the cat sat on", k=1)[0][0]
    assert lm.tokenizer_.vocab_[int(got[0, 3].argmax())] == top


def test_melody_and_forecaster_export_and_seq2seq_refusal():
    from rnnkit.forecast import RNNForecaster
    from rnnkit.music import MelodyModel, melody_to_tokens
    from rnnkit.text import Seq2Seq

    tune = [(60, 1.0), (62, 0.5), (64, 0.5), (None, 1.0)] * 6
    melody = MelodyModel(hidden_size=8, embedding_dim=4, seq_len=8, max_epochs=2, random_state=0, n_threads=1)
    melody.fit([tune])
    ids = np.array([[melody.tokenizer_._index[t] for t in melody_to_tokens(tune[:5])]])
    got = session(rx.export(melody)).run(None, {"tokens": ids})[0]
    assert_close(got[0], melody._probabilities(ids)[0], "melody")

    y = np.sin(np.arange(120) / 4.0) + 0.01 * np.arange(120)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fc = RNNForecaster(window=12, horizon=3, hidden_size=6, max_epochs=2, random_state=0).fit(y)
    reg = fc.regressor_
    windows = np.random.default_rng(0).standard_normal((5, 12, reg._input_size))
    got = session(rx.export(fc)).run(None, {"input": windows.astype(np.float32)})[0]
    assert_close(got, reg.predict(windows), "forecaster's regressor")

    pairs = (["1 2", "3"], ["2 1", "3"])
    s2s = Seq2Seq(hidden_size=4, embedding_dim=2, max_epochs=1, random_state=0, n_threads=1).fit(*pairs)
    with pytest.raises(TypeError, match="Seq2Seq"):
        rx.export(s2s)
    with pytest.raises(ValueError, match="initial_state"):
        rx.export(melody, initial_state=True)
