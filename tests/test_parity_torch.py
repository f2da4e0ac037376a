"""Forward/backward parity with torch.nn.{RNN,LSTM,GRU}.

Tolerances (norm-inf relative error per tensor, see conftest.assert_close_rel):
1e-5 in float32, 1e-10 in float64.  They are part of the contract: do not loosen.
"""
import dataclasses
import itertools

import numpy as np
import pytest

from conftest import (CELLS, DTYPES, RTOL, assert_close_rel, compare_results, make_problem,
                      make_rnnkit, make_torch, rel_err, require_torch, rnnkit_forward,
                      rnnkit_run, torch_run, torch_state_dict_np)

torch = require_torch()

T, B, D, H = 7, 4, 5, 6


def _pair(cell, num_layers, bidirectional, dtype, bias=True, batch_first=False, seed=0,
          D=D, H=H):
    m = make_rnnkit(cell, D, H, num_layers, bias=bias, batch_first=batch_first,
                    bidirectional=bidirectional, dtype=dtype, seed=seed)
    tm = make_torch(cell, D, H, num_layers, bias=bias, batch_first=batch_first,
                    bidirectional=bidirectional, dtype=dtype, state_dict=m.state_dict())
    return m, tm


def _check_padding_zero(res, p, label):
    """rnnkit outputs and grad_x past each sequence's length must be exactly zero."""
    if p.lengths is None:
        return
    out, gx = res["out"], res["grad_x"]
    for b, n in enumerate(p.lengths):
        o = out[b, n:] if p.batch_first else out[n:, b]
        g = gx[b, n:] if p.batch_first else gx[n:, b]
        assert np.all(o == 0), f"{label}: out past length {n} of sequence {b} not zero"
        assert np.all(g == 0), f"{label}: grad_x past length {n} of sequence {b} not zero"


GRID = list(itertools.product(CELLS, (1, 2, 3), (False, True), (False, True), DTYPES))


@pytest.mark.parametrize(
    "cell,num_layers,bidirectional,with_lengths,dtype", GRID,
    ids=[f"{c}-L{l}-{'bi' if b else 'uni'}-{'len' if w else 'full'}-{d}"
         for c, l, b, w, d in GRID])
def test_parity_grid(cell, num_layers, bidirectional, with_lengths, dtype):
    m, tm = _pair(cell, num_layers, bidirectional, dtype, seed=11 * num_layers)
    p = make_problem(cell, T, B, D, H, num_layers, bidirectional, dtype,
                     with_lengths=with_lengths, seed=num_layers + 10 * bidirectional)
    ours = rnnkit_run(m, p)
    ref = torch_run(tm, p)
    dt = np.dtype(dtype)
    for k in ("out", "h_n", "grad_x", "grad_h0"):
        assert ours[k].dtype == dt, f"{k} dtype {ours[k].dtype} != model dtype {dt}"
    for k, v in ours["grads"].items():
        assert v.dtype == dt, f"grads[{k}] dtype {v.dtype} != {dt}"
    compare_results(ours, ref, RTOL[dtype])
    _check_padding_zero(ours, p, "rnnkit")


BF_GRID = list(itertools.product(CELLS, (False, True), (False, True)))


@pytest.mark.parametrize("cell,batch_first,with_lengths", BF_GRID,
                         ids=[f"{c}-{'bf' if b else 'tf'}-{'len' if w else 'full'}"
                              for c, b, w in BF_GRID])
def test_batch_first(cell, batch_first, with_lengths):
    dtype = "float64"
    m, tm = _pair(cell, 2, True, dtype, batch_first=batch_first, seed=3)
    p = make_problem(cell, T, B, D, H, 2, True, dtype, batch_first=batch_first,
                     with_lengths=with_lengths, seed=5)
    ours = rnnkit_run(m, p)
    shape_out = (B, T, 2 * H) if batch_first else (T, B, 2 * H)
    assert ours["out"].shape == shape_out
    assert ours["h_n"].shape == (4, B, H)  # (layers*dirs, B, H) regardless of batch_first
    assert ours["grad_x"].shape == p.x.shape
    compare_results(ours, torch_run(tm, p), RTOL[dtype])
    _check_padding_zero(ours, p, "rnnkit")


def test_batch_first_equals_transposed_time_first():
    """batch_first=True on x.transpose(1,0,2) == batch_first=False on x."""
    for cell in CELLS:
        p = make_problem(cell, T, B, D, H, 2, True, "float64", with_lengths=True, seed=2)
        m_tf = make_rnnkit(cell, D, H, 2, bidirectional=True, seed=4)
        m_bf = make_rnnkit(cell, D, H, 2, bidirectional=True, batch_first=True, seed=4)
        a = rnnkit_run(m_tf, p)
        pb = make_problem(cell, T, B, D, H, 2, True, "float64", with_lengths=True, seed=2)
        pb.x = np.ascontiguousarray(p.x.transpose(1, 0, 2))
        pb.G = np.ascontiguousarray(p.G.transpose(1, 0, 2))
        pb.batch_first = True
        b = rnnkit_run(m_bf, pb)
        assert_close_rel(b["out"].transpose(1, 0, 2), a["out"], 1e-12, name=f"{cell} out")
        assert_close_rel(b["h_n"], a["h_n"], 1e-12, name=f"{cell} h_n")
        assert_close_rel(b["grad_x"].transpose(1, 0, 2), a["grad_x"], 1e-12, name=f"{cell} gx")
        for k in a["grads"]:
            assert_close_rel(b["grads"][k], a["grads"][k], 1e-12, name=f"{cell} {k}")


NB_GRID = list(itertools.product(CELLS, (1, 2), (False, True), DTYPES))


@pytest.mark.parametrize("cell,num_layers,bidirectional,dtype", NB_GRID,
                         ids=[f"{c}-L{l}-{'bi' if b else 'uni'}-{d}" for c, l, b, d in NB_GRID])
def test_bias_false(cell, num_layers, bidirectional, dtype):
    m, tm = _pair(cell, num_layers, bidirectional, dtype, bias=False, seed=8)
    assert not any(k.startswith("bias") for k in m.state_dict())
    p = make_problem(cell, T, B, D, H, num_layers, bidirectional, dtype, with_lengths=True, seed=9)
    compare_results(rnnkit_run(m, p), torch_run(tm, p), RTOL[dtype])


UB_GRID = list(itertools.product(CELLS, (1, 2), (False, True), DTYPES))


@pytest.mark.parametrize("cell,num_layers,bidirectional,dtype", UB_GRID,
                         ids=[f"{c}-L{l}-{'bi' if b else 'uni'}-{d}" for c, l, b, d in UB_GRID])
def test_unbatched_2d_input(cell, num_layers, bidirectional, dtype):
    m, tm = _pair(cell, num_layers, bidirectional, dtype, seed=21)
    p = make_problem(cell, T, B, D, H, num_layers, bidirectional, dtype, unbatched=True, seed=22)
    ours = rnnkit_run(m, p)
    dirs = 2 if bidirectional else 1
    assert ours["out"].shape == (T, dirs * H)
    assert ours["h_n"].shape == (num_layers * dirs, H)
    assert ours["grad_x"].shape == (T, D)
    assert ours["grad_h0"].shape == (num_layers * dirs, H)
    if cell == "lstm":
        assert ours["c_n"].shape == (num_layers * dirs, H)
        assert ours["grad_c0"].shape == (num_layers * dirs, H)
    compare_results(ours, torch_run(tm, p), RTOL[dtype])


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_no_initial_state_no_grad_state(cell, dtype):
    """state=None means zeros; grad_state=None means zero grad for h_n (and c_n)."""
    m, tm = _pair(cell, 2, True, dtype, seed=31)
    p = make_problem(cell, T, B, D, H, 2, True, dtype, with_state=False,
                     with_grad_state=False, with_lengths=True, seed=32)
    ours = rnnkit_run(m, p)
    ref = torch_run(tm, p)
    compare_results(ours, ref, RTOL[dtype])
    # The gradient wrt the implicit zero initial state, if returned (the contract does
    # not say it may be None, but torch has nothing to compare a missing one with),
    # must equal torch's gradient wrt an explicit zero state.
    dirs_shape = (4, B, H)
    p0 = dataclasses.replace(p, h0=np.zeros(dirs_shape, np.dtype(dtype)),
                             c0=np.zeros(dirs_shape, np.dtype(dtype)) if cell == "lstm" else None)
    ref0 = torch_run(tm, p0)
    if ours["grad_h0"] is not None:
        assert_close_rel(ours["grad_h0"], ref0["grad_h0"], RTOL[dtype], name="grad_h0 (state=None)")
    if cell == "lstm" and ours["grad_c0"] is not None:
        assert_close_rel(ours["grad_c0"], ref0["grad_c0"], RTOL[dtype], name="grad_c0 (state=None)")
    # and the forward must equal an explicit zero state
    assert_close_rel(ours["out"], ref0["out"], RTOL[dtype], name="out vs explicit zero state")


@pytest.mark.parametrize("cell", CELLS)
def test_grad_out_none_means_zeros(cell):
    m, tm = _pair(cell, 2, True, "float64", seed=41)
    p = make_problem(cell, T, B, D, H, 2, True, "float64", with_lengths=True, seed=42)
    rnnkit_forward(m, p, training=True)
    gx, gst = m.backward(None, p.grad_state())
    gx = np.array(gx, copy=True)
    grads_none = {k: np.array(v, copy=True) for k, v in m.grads.items()}
    p.G = np.zeros_like(p.G)
    ref = torch_run(tm, p)
    assert_close_rel(gx, ref["grad_x"], RTOL["float64"], name="grad_x")
    for k in ref["grads"]:
        assert_close_rel(grads_none[k], ref["grads"][k], RTOL["float64"], name=k)


@pytest.mark.parametrize("cell", ["lstm"])
@pytest.mark.parametrize("which_none", [0, 1])
def test_lstm_grad_state_element_none(cell, which_none):
    m, tm = _pair(cell, 2, False, "float64", seed=51)
    p = make_problem(cell, T, B, D, H, 2, False, "float64", seed=52)
    rnnkit_forward(m, p, training=True)
    gs = [p.Gh, p.Gc]
    gs[which_none] = None
    gx, (gh0, gc0) = m.backward(p.G, tuple(gs))
    gx, gh0, gc0 = (np.array(a, copy=True) for a in (gx, gh0, gc0))
    if which_none == 0:
        p.Gh = np.zeros_like(p.Gh)
    else:
        p.Gc = np.zeros_like(p.Gc)
    ref = torch_run(tm, p)
    assert_close_rel(gx, ref["grad_x"], 1e-10, name="grad_x")
    assert_close_rel(gh0, ref["grad_h0"], 1e-10, name="grad_h0")
    assert_close_rel(gc0, ref["grad_c0"], 1e-10, name="grad_c0")


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_load_state_dict_from_torch(cell, dtype):
    torch.manual_seed(123)
    tm = make_torch(cell, D, H, 2, bidirectional=True, dtype=dtype)
    m = make_rnnkit(cell, D, H, 2, bidirectional=True, dtype=dtype, seed=999)
    m.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
    sd = m.state_dict()
    for k, v in torch_state_dict_np(tm).items():
        assert np.array_equal(sd[k], v), f"{k} not loaded exactly"
    p = make_problem(cell, T, B, D, H, 2, True, dtype, with_lengths=True, seed=61)
    compare_results(rnnkit_run(m, p), torch_run(tm, p), RTOL[dtype])


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("bias", [True, False])
def test_rnnkit_state_dict_loads_into_torch_strict(cell, bias):
    m = make_rnnkit(cell, D, H, 3, bias=bias, bidirectional=True, dtype="float32", seed=71)
    tm = make_torch(cell, D, H, 3, bias=bias, bidirectional=True, dtype="float32")
    res = tm.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v))
                              for k, v in m.state_dict().items()}, strict=True)
    assert not res.missing_keys and not res.unexpected_keys
    for k, v in m.state_dict().items():
        assert np.array_equal(tm.state_dict()[k].numpy(), v)
    p = make_problem(cell, T, B, D, H, 3, True, "float32", seed=72)
    ours = rnnkit_forward(m, p)
    ref = torch_run(tm, p)
    assert_close_rel(ours[0], ref["out"], RTOL["float32"], name="out")
    assert_close_rel(ours[1], ref["h_n"], RTOL["float32"], name="h_n")


LARGE = [("lstm", 2, True, True), ("gru", 2, True, True), ("rnn_tanh", 2, True, False),
         ("lstm", 1, False, False), ("gru", 1, False, False), ("rnn_relu", 1, False, True)]


@pytest.mark.parametrize("cell,num_layers,bidirectional,with_lengths", LARGE,
                         ids=[f"{c}-L{l}-{'bi' if b else 'uni'}-{'len' if w else 'full'}"
                              for c, l, b, w in LARGE])
def test_larger_float32(cell, num_layers, bidirectional, with_lengths):
    """T=50, H=64, B=8 in float32: accumulated error must stay within 1e-5 relative.

    Asserted against torch float32; the error of both against a float64 torch reference
    (same float32 weights and inputs, upcast) is printed for the report (pytest -s / -rA).
    """
    TL, BL, DL, HL = 50, 8, 16, 64
    m, tm = _pair(cell, num_layers, bidirectional, "float32", seed=81, D=DL, H=HL)
    p = make_problem(cell, TL, BL, DL, HL, num_layers, bidirectional, "float32",
                     with_lengths=with_lengths, seed=82)
    ours = rnnkit_run(m, p)
    ref32 = torch_run(tm, p)
    # float64 "ground truth" from the same float32 numbers
    tm64 = make_torch(cell, DL, HL, num_layers, bidirectional=bidirectional, dtype="float64",
                      state_dict={k: v.astype(np.float64) for k, v in m.state_dict().items()})
    p64 = make_problem(cell, TL, BL, DL, HL, num_layers, bidirectional, "float32",
                       with_lengths=with_lengths, seed=82)
    for a in ("x", "h0", "c0", "G", "Gh", "Gc"):
        v = getattr(p64, a)
        if v is not None:
            setattr(p64, a, v.astype(np.float64))
    ref64 = torch_run(tm64, p64)
    worst_ours = max(rel_err(ours[k], ref64[k]) for k in ("out", "h_n", "grad_x", "grad_h0"))
    worst_ours = max([worst_ours] + [rel_err(ours["grads"][k], ref64["grads"][k])
                                     for k in ref64["grads"]])
    worst_torch = max(rel_err(ref32[k], ref64[k]) for k in ("out", "h_n", "grad_x", "grad_h0"))
    worst_torch = max([worst_torch] + [rel_err(ref32["grads"][k], ref64["grads"][k])
                                       for k in ref64["grads"]])
    errs = compare_results(ours, ref32, RTOL["float32"])
    print(f"\n[{cell} L{num_layers} bi={bidirectional} len={with_lengths}] "
          f"max rel err vs torch32: {max(errs.values()):.2e}; "
          f"vs float64 ref: rnnkit {worst_ours:.2e}, torch32 {worst_torch:.2e}")


THREAD_CASES = list(itertools.product(CELLS, (1, 2, 3)))


@pytest.mark.parametrize("cell,n_threads", THREAD_CASES,
                         ids=[f"{c}-threads{n}" for c, n in THREAD_CASES])
def test_parity_with_threads(cell, n_threads):
    """Batches large enough to be split across threads (each thread runs its rows' whole time
    loop), and small batches whose forward splits the hidden units between threads (with packed
    weights, and with a matrix-vector product for one sequence) and whose backward splits each
    step's columns: still torch's results in float64. At two threads the small batches run their
    two directions at once instead, one thread each, forward and backward (the reverse
    direction's dL/dx summed apart, then added); at three, the units split."""
    # (B, H, layers): a split batch; steps big enough (2*B*G*H*H >= 4e6 flops) to split units
    # (forward) and columns (backward), for 3 sequences (packed weights) and for one (GEMV)
    one_row_h = {"lstm": 720, "gru": 820}.get(cell, 1420)
    for B, H, L in ((19, 6, 2), (3, 840, 1), (1, one_row_h, 1)):
        m = make_rnnkit(cell, D, H, L, bidirectional=True, dtype="float64", seed=7, n_threads=n_threads)
        tm = make_torch(cell, D, H, L, bidirectional=True, dtype="float64", state_dict=m.state_dict())
        p = make_problem(cell, T, B, D, H, L, True, "float64", with_lengths=B >= 3, seed=8)
        compare_results(rnnkit_run(m, p), torch_run(tm, p), RTOL["float64"])


LONG_GRID = list(itertools.product(CELLS, (False, True), DTYPES))


@pytest.mark.parametrize("cell,batch_first,dtype", LONG_GRID,
                         ids=[f"{c}-{'bf' if b else 'tf'}-{d}" for c, b, d in LONG_GRID])
def test_long_sequences_span_several_gradient_chunks(cell, batch_first, dtype):
    """Backward holds the gate gradients of about 256 rows (steps x batch) at a time: at B=5,
    T=150 that is three chunks of 51, 51 and 48 steps, walked forwards by the reverse direction
    and backwards by the forward one, with sequences ending inside each chunk."""
    steps, batch = 150, 5
    m, tm = _pair(cell, 2, True, dtype, batch_first=batch_first, seed=21)
    p = make_problem(cell, steps, batch, D, H, 2, True, dtype, batch_first=batch_first,
                     lengths=[150, 37, 120, 51, 102], seed=22)
    ours = rnnkit_run(m, p)
    compare_results(ours, torch_run(tm, p), RTOL[dtype])
    _check_padding_zero(ours, p, "rnnkit")


# (B, T, threads, H, layers)
PROJECTION_SHAPES = ((4, 37, 1, H, 2), (5, 30, 1, H, 2), (9, 11, 2, H, 2), (8, 40, 2, H, 2), (40, 5, 2, H, 2),
                     (70, 3, 1, H, 2), (2, 40, 2, 360, 1))
PROJECTION_GRID = list(itertools.product(CELLS, PROJECTION_SHAPES, DTYPES))


@pytest.mark.parametrize("cell,shape,dtype", PROJECTION_GRID,
                         ids=[f"{c}-B{s[0]}-T{s[1]}-threads{s[2]}-H{s[3]}-{d}" for c, s, d in PROJECTION_GRID])
def test_inputs_projected_as_the_loop_goes(cell, shape, dtype):
    """From 4 rows per thread the forward projects the inputs just before the recurrence
    reaches them, in chunks of about 64 rows per thread: with the whole batch in one loop, 16
    and 12 steps here, the last chunk shorter, walked backwards by the reverse direction; with
    the batch split between two threads (4 + 5, 4 + 4, 20 + 20 sequences), each thread gathers
    its rows of 16, 12 or 3 steps and runs the cell on the chunk's gates (training copies them
    to the tape); 70 sequences in one loop, one step at a time. A forward that splits the hidden
    units between threads (B=2, H=360: steps of over 0.5 MFLOP) has each thread project its own
    units' gates, 32 steps at a time. Still torch's results, and inference still equal to
    training bit for bit."""
    batch, steps, n_threads, hidden, layers = shape
    _check_bidirectional_ragged(cell, D, hidden, layers, batch, steps, n_threads, dtype, length_stride=7, seed=31)


def _check_bidirectional_ragged(cell, input_size, hidden, layers, batch, steps, n_threads, dtype, length_stride,
                                seed):
    """A bidirectional stack on sequences of `steps - (length_stride * b) % steps` steps: torch's
    results (gradients included), zero padding, and inference equal to training bit for bit."""
    m = make_rnnkit(cell, input_size, hidden, layers, bidirectional=True, dtype=dtype, seed=seed,
                    n_threads=n_threads)
    tm = make_torch(cell, input_size, hidden, layers, bidirectional=True, dtype=dtype, state_dict=m.state_dict())
    lengths = [steps - (length_stride * b) % steps for b in range(batch)]
    p = make_problem(cell, steps, batch, input_size, hidden, layers, True, dtype, lengths=lengths, seed=seed + 1)
    ours = rnnkit_run(m, p)
    compare_results(ours, torch_run(tm, p), RTOL[dtype])
    _check_padding_zero(ours, p, "rnnkit")
    inference = rnnkit_forward(m, p, training=False)
    assert np.array_equal(inference[0], ours["out"])
    assert np.array_equal(inference[1], ours["h_n"])


# (B, T, H, layers, batch_first): a unidirectional stack whose steps are too small to split
# (2*B*G*H*H < 0.25 MFLOP), so that at two threads its layers run at once, each a chunk of 8
# steps behind the one below: T=37 (four whole chunks, then 5 steps), T=8 (one chunk), T=3
# (shorter than one), three layers (the third on the first layer's thread), batch-first input.
PIPELINE_SHAPES = ((1, 37, 20, 2, False), (3, 8, 12, 3, False), (5, 3, 9, 2, True), (2, 37, 16, 4, True))
# Two threads for every shape; four (the pipeline still on two of them) for two of them.
PIPELINE_GRID = [(cell, shape, dtype, threads)
                 for cell, shape, dtype in itertools.product(CELLS, PIPELINE_SHAPES, DTYPES)
                 for threads in ((2, 4) if shape[0] in (1, 2) else (2,))]


@pytest.mark.parametrize("cell,shape,dtype,n_threads", PIPELINE_GRID,
                         ids=[f"{c}-B{s[0]}-T{s[1]}-H{s[2]}-L{s[3]}{'-bf' if s[4] else ''}-{d}-threads{n}"
                              for c, s, d, n in PIPELINE_GRID])
def test_pipelined_layers(cell, shape, dtype, n_threads):
    """From two threads and a small batch, a unidirectional stack's layers run at once, each
    reading the layer below's output as it is written (bench/NOTES.md, 2026-11-30 stops 36-37),
    with sequences ending inside the chunks and a given initial state: torch's results, gradients
    included; inference (trainable and frozen) equal to training bit for bit; zero padding."""
    import rnnkit

    batch, steps, hidden, layers, batch_first = shape
    m = make_rnnkit(cell, D, hidden, layers, batch_first=batch_first, dtype=dtype, seed=61, n_threads=n_threads)
    tm = make_torch(cell, D, hidden, layers, batch_first=batch_first, dtype=dtype, state_dict=m.state_dict())
    lengths = [steps - (5 * b) % steps for b in range(batch)]
    p = make_problem(cell, steps, batch, D, hidden, layers, False, dtype, batch_first=batch_first,
                     lengths=lengths, seed=62)
    ours = rnnkit_run(m, p)
    compare_results(ours, torch_run(tm, p), RTOL[dtype])
    _check_padding_zero(ours, p, "rnnkit")
    for layer in (m, rnnkit.freeze(m)):
        # Right after another call: a small call after a pause (torch's run) runs its layers one
        # after the other on the calling thread (CallPace), which would leave the pipeline untested.
        rnnkit_forward(layer, p, training=False)
        out, h_n, _ = rnnkit_forward(layer, p, training=False)
        assert np.array_equal(out, ours["out"])
        assert np.array_equal(h_n, ours["h_n"])


# Input size 256 and W_ih of 2 MB or more (GH x 256 values: GH >= 2048 in float32, >= 1024 in
# float64), where the forward projects 256 rows (steps x batch rows) at a time instead of 64.
# (cell, dtype, H, B, T, threads): one loop over the whole batch (4 rows: 64 steps a chunk, then
# 36), the batch split between two threads (4 + 5 rows: 64 steps then 6, 51 then 19), and the
# hidden units split between two threads (B=2, each thread's W_ih slice 2 MB: 128 steps a chunk,
# the sequence in one).
LONG_CHUNK_GRID = [(cell, dtype, hidden, *shape)
                   for cell, hidden32, hidden64 in (("lstm", 512, 256), ("gru", 688, 344), ("rnn_tanh", 2048, 1024))
                   for dtype, hidden in (("float32", hidden32), ("float64", hidden64))
                   for shape in ((4, 100, 1), (9, 70, 2))] + [("lstm", "float64", 512, 2, 40, 2)]


@pytest.mark.parametrize("cell,dtype,hidden,batch,steps,n_threads", LONG_CHUNK_GRID,
                         ids=[f"{c}-{d}-H{h}-B{b}-T{t}-threads{n}" for c, d, h, b, t, n in LONG_CHUNK_GRID])
def test_large_input_weights_projected_in_long_chunks(cell, dtype, hidden, batch, steps, n_threads):
    """Past 2 MB of W_ih the forward projects its inputs 256 rows at a time (W_ih is re-read from
    L3 once per chunk): chunks of 64, 51 or 128 steps here, the last one shorter, walked backwards
    by the reverse direction, sequences ending inside them. Still torch's results, gradients
    included, and inference still equal to training bit for bit."""
    _check_bidirectional_ragged(cell, 256, hidden, 1, batch, steps, n_threads, dtype, length_stride=11, seed=51)


ONE_ROW_GRID = list(itertools.product(CELLS, (5, 13, 150), DTYPES))


@pytest.mark.parametrize("cell,hidden,dtype", ONE_ROW_GRID,
                         ids=[f"{c}-H{h}-{d}" for c, h, d in ONE_ROW_GRID])
def test_one_sequence_long_enough_to_pack(cell, hidden, dtype):
    """One sequence of 70 steps: forward packs W_hh (one row over 64 steps or more), backward
    W_hh^T, and their products with one row run a kernel of rnnkit's own over Eigen's packed
    row groups (24/16/8-row groups, narrower ones and single rows at the tails: G*H = 20, 52,
    39, 600 rows here, several row blocks at H=150). Still torch's results, gradients included,
    both directions, one thread."""
    steps = 70
    m = make_rnnkit(cell, D, hidden, 1, bidirectional=True, dtype=dtype, seed=41, n_threads=1)
    tm = make_torch(cell, D, hidden, 1, bidirectional=True, dtype=dtype, state_dict=m.state_dict())
    p = make_problem(cell, steps, 1, D, hidden, 1, True, dtype, seed=42)
    compare_results(rnnkit_run(m, p), torch_run(tm, p), RTOL[dtype])


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_weights_packed_by_two_threads(cell, dtype):
    """Weights of a million values or more are packed by several threads, a share of the row
    blocks each (W_ih and W_hh of 2400 x 600 and 1800 x 600 here, and their transposes in
    backward). Still torch's results at two threads, gradients included, and the second
    inference call, which reuses the panels, equal to the first."""
    steps, batch, size = 6, 8, 600
    m = make_rnnkit(cell, size, size, 1, dtype=dtype, seed=51, n_threads=2)
    tm = make_torch(cell, size, size, 1, dtype=dtype, state_dict=m.state_dict())
    p = make_problem(cell, steps, batch, size, size, 1, False, dtype, seed=52)
    compare_results(rnnkit_run(m, p), torch_run(tm, p), RTOL[dtype])
    first = rnnkit_forward(m, p, training=False)
    again = rnnkit_forward(m, p, training=False)
    assert np.array_equal(first[0], again[0])
