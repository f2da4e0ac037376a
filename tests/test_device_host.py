"""The device backend's driver (cpp/cuda/driver.hpp) against the CPU engine and PyTorch.

Every test runs once per backend of ``device="cuda"``:

* ``simulated``: ``RNNKIT_CUDA_SIMULATE=1``, the very same driver, kernels and GEMM calls
  compiled for the host (``rnnkit._device_host``); runs on every machine;
* ``cuda``: the real GPU build (``rnnkit._cuda``); skipped with the reason where it is not
  usable, unless ``RNNKIT_REQUIRE_CUDA=1`` (GPU CI jobs), where that is a failure.

Tolerances are the parity contract of the rest of the suite (conftest.RTOL: norm-inf relative
error 1e-5 in float32, 1e-10 in float64); do not loosen them.
"""
from __future__ import annotations

import itertools
import math
import pickle

import numpy as np
import pytest

import rnnkit
from rnnkit.layers import layer_for_mode

from conftest import (CELLS, DTYPES, RTOL, SIMULATE_ENV, assert_close_rel, compare_results, make_problem,
                      make_torch, rnnkit_forward, rnnkit_run, torch_run)

# Tiny problems: T steps, B sequences, D input features, H hidden units (D != H on purpose,
# so that a swapped dimension cannot go unnoticed).
T, B, D, H = 5, 4, 3, 5


def make_layer(cell, device, num_layers=1, bidirectional=False, dtype="float64", *, input_size=D, hidden_size=H,
               seed=0, **kwargs):
    return layer_for_mode(cell, input_size, hidden_size, num_layers=num_layers, bidirectional=bidirectional,
                          dtype=dtype, seed=seed, device=device, **kwargs)


def make_pair(cell, device, *args, **kwargs):
    """(CPU layer, device layer) with the same configuration and, by the same seed, the same weights."""
    cpu = make_layer(cell, "cpu", *args, **kwargs)
    dev = make_layer(cell, device, *args, **kwargs)
    assert dev.device == device
    np.testing.assert_array_equal(dev.flat_params, cpu.flat_params)
    return cpu, dev


def check_dtypes(res, dtype):
    dt = np.dtype(dtype)
    for key in ("out", "h_n", "c_n", "grad_x", "grad_h0", "grad_c0"):
        if res.get(key) is not None:
            assert res[key].dtype == dt, f"{key}: dtype {res[key].dtype} != {dt}"
    for key, value in res["grads"].items():
        assert value.dtype == dt, f"grads[{key}]: dtype {value.dtype} != {dt}"


def check_padding_zero(res, p):
    """Outputs and grad_x past each sequence's length are exactly zero."""
    if p.lengths is None:
        return
    for b, n in enumerate(p.lengths):
        o = res["out"][b, n:] if p.batch_first else res["out"][n:, b]
        g = res["grad_x"][b, n:] if p.batch_first else res["grad_x"][n:, b]
        assert np.all(o == 0), f"out past length {n} of sequence {b} is not zero"
        assert np.all(g == 0), f"grad_x past length {n} of sequence {b} is not zero"


def compare_forward(ours, ref, rtol, label):
    for name, a, e in zip(("out", "h_n", "c_n"), ours, ref):
        if e is None:
            assert a is None, f"{label}{name}: expected None"
            continue
        assert_close_rel(a, e, rtol, name=f"{label}{name}")


# ------------------------------------------------------------------------------------ the grid
GRID = list(itertools.product(CELLS, (1, 2, 3), (False, True), (False, True), DTYPES, (False, True)))


@pytest.mark.parametrize(
    "cell,num_layers,bidirectional,with_lengths,dtype,batch_first", GRID,
    ids=[f"{c}-L{n}-{'bi' if b else 'uni'}-{'len' if w else 'full'}-{d}-{'bf' if f else 'tf'}"
         for c, n, b, w, d, f in GRID])
def test_matches_cpu_grid(device, cell, num_layers, bidirectional, with_lengths, dtype, batch_first):
    """Inference forward, training forward and backward (every output and gradient) equal the CPU
    engine's, with initial states and gradients for both out and the final state."""
    cpu, dev = make_pair(cell, device, num_layers, bidirectional, dtype, batch_first=batch_first,
                         seed=7 * num_layers + bidirectional)
    p = make_problem(cell, T, B, D, H, num_layers, bidirectional, dtype, batch_first=batch_first,
                     with_lengths=with_lengths, seed=num_layers + 10 * bidirectional)
    if with_lengths:
        assert 1 in p.lengths and T in p.lengths
    rtol = RTOL[dtype]

    compare_forward(rnnkit_forward(dev, p), rnnkit_forward(cpu, p), rtol, "inference ")
    ours, ref = rnnkit_run(dev, p), rnnkit_run(cpu, p)
    check_dtypes(ours, dtype)
    dirs = 2 if bidirectional else 1
    assert ours["out"].shape == ((B, T, dirs * H) if batch_first else (T, B, dirs * H))
    assert ours["h_n"].shape == (num_layers * dirs, B, H)
    assert ours["grad_x"].shape == p.x.shape
    assert set(ours["grads"]) == set(dev.state_dict())
    compare_results(ours, ref, rtol)
    check_padding_zero(ours, p)
    assert_close_rel(dev.flat_grads, cpu.flat_grads, rtol, name="flat_grads")


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("bidirectional", (False, True))
@pytest.mark.parametrize("dtype", DTYPES)
def test_no_initial_state_no_grad_state(device, cell, bidirectional, dtype):
    cpu, dev = make_pair(cell, device, 2, bidirectional, dtype, seed=3)
    p = make_problem(cell, T, B, D, H, 2, bidirectional, dtype, with_lengths=True, with_state=False,
                     with_grad_state=False, seed=4)
    ours, ref = rnnkit_run(dev, p), rnnkit_run(cpu, p)
    compare_results(ours, ref, RTOL[dtype])
    check_padding_zero(ours, p)


def _grad_variants(cell):
    variants = ["out", "state", "both"]
    if cell == "lstm":
        variants += ["h_only", "c_only", "out+c_only"]
    return variants


GRAD_GRID = [(c, v, d) for c in CELLS for v in _grad_variants(c) for d in DTYPES]


@pytest.mark.parametrize("cell,variant,dtype", GRAD_GRID, ids=[f"{c}-{v}-{d}" for c, v, d in GRAD_GRID])
def test_backward_gradient_sources(device, cell, variant, dtype):
    """backward with grad_out only, grad_state only (for LSTM also dL/dh_n or dL/dc_n alone), or both."""
    cpu, dev = make_pair(cell, device, 2, True, dtype, seed=5)
    p = make_problem(cell, T, B, D, H, 2, True, dtype, with_lengths=True, seed=6)
    grad_out = None if variant in ("state", "h_only", "c_only") else p.G
    if variant in ("out",):
        grad_state = None
    elif variant == "h_only":
        grad_state = (p.Gh, None)
    elif variant in ("c_only", "out+c_only"):
        grad_state = (None, p.Gc)
    else:
        grad_state = p.grad_state()
    results = []
    for layer in (dev, cpu):
        layer.forward(p.x, p.state(), lengths=p.lengths, training=True)
        gx, gs = layer.backward(grad_out, grad_state)
        gh0, gc0 = gs if cell == "lstm" else (gs, None)
        results.append(dict(out=None, grad_x=gx.copy(), grad_h0=gh0.copy(),
                            grad_c0=None if gc0 is None else gc0.copy(),
                            grads={k: v.copy() for k, v in layer.grads.items()}))
    ours, ref = results
    compare_results(ours, ref, RTOL[dtype], label=f"{variant}: ")
    assert np.any(ours["grad_x"] != 0), "a nonzero upstream gradient gave grad_x == 0"


# -------------------------------------------------------------------------------------- dropout
DROPOUT_GRID = list(itertools.product(CELLS, (2, 3), (False, True), DTYPES))


@pytest.mark.parametrize("cell,num_layers,bidirectional,dtype", DROPOUT_GRID,
                         ids=[f"{c}-L{n}-{'bi' if b else 'uni'}-{d}" for c, n, b, d in DROPOUT_GRID])
def test_dropout_matches_cpu(device, cell, num_layers, bidirectional, dtype):
    """Same seed => same dropout masks as the CPU engine, call after call; backward through them."""
    cpu, dev = make_pair(cell, device, num_layers, bidirectional, dtype, dropout=0.4, seed=9,
                         batch_first=bidirectional)
    outs = []
    for call in range(2):  # the second training forward draws new masks, on both engines alike
        p = make_problem(cell, T, B, D, H, num_layers, bidirectional, dtype, batch_first=bidirectional,
                         with_lengths=call == 1, seed=20 + call)
        ours, ref = rnnkit_run(dev, p), rnnkit_run(cpu, p)
        compare_results(ours, ref, RTOL[dtype], label=f"call {call}: ")
        check_padding_zero(ours, p)
        outs.append(ours["out"])
        # Dropout is really on: the inference forward (no dropout) gives something else.
        inference = rnnkit_forward(dev, p)[0]
        assert not np.allclose(inference, ours["out"]), "dropout=0.4 changed nothing in a training forward"
        compare_forward(rnnkit_forward(dev, p), rnnkit_forward(cpu, p), RTOL[dtype], f"call {call} inference: ")
    assert dev._dropout_calls == cpu._dropout_calls == 2


@pytest.mark.parametrize("cell", CELLS)
def test_dropout_masks_follow_seed(device, cell):
    """Two device layers with one seed agree exactly; another seed draws other masks."""
    p = make_problem(cell, T, B, D, H, 3, False, "float64", seed=1)
    a = make_layer(cell, device, 3, dropout=0.5, seed=1)
    b = make_layer(cell, device, 3, dropout=0.5, seed=1)
    c = make_layer(cell, device, 3, dropout=0.5, seed=2)
    c.load_state_dict(a.state_dict())  # same weights, other dropout entropy
    out_a = rnnkit_forward(a, p, training=True)[0]
    np.testing.assert_array_equal(rnnkit_forward(b, p, training=True)[0], out_a)
    assert not np.array_equal(rnnkit_forward(c, p, training=True)[0], out_a)


# ---------------------------------------------------------------------------------- variations
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("bidirectional", (False, True))
@pytest.mark.parametrize("dtype", DTYPES)
def test_bias_false(device, cell, bidirectional, dtype):
    cpu, dev = make_pair(cell, device, 2, bidirectional, dtype, bias=False, seed=8)
    assert not any(k.startswith("bias") for k in dev.state_dict())
    p = make_problem(cell, T, B, D, H, 2, bidirectional, dtype, with_lengths=True, seed=9)
    ours = rnnkit_run(dev, p)
    assert set(ours["grads"]) == set(dev.state_dict())
    compare_results(ours, rnnkit_run(cpu, p), RTOL[dtype])


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("batch_first", (False, True))
@pytest.mark.parametrize("bidirectional", (False, True))
def test_unbatched_2d_input(device, cell, batch_first, bidirectional):
    dtype = "float64"
    cpu, dev = make_pair(cell, device, 2, bidirectional, dtype, batch_first=batch_first, seed=21)
    p = make_problem(cell, T, 1, D, H, 2, bidirectional, dtype, unbatched=True, seed=22)
    ours = rnnkit_run(dev, p)
    dirs = 2 if bidirectional else 1
    assert ours["out"].shape == (T, dirs * H)
    assert ours["h_n"].shape == (2 * dirs, H)
    assert ours["grad_x"].shape == (T, D)
    assert ours["grad_h0"].shape == (2 * dirs, H)
    if cell == "lstm":
        assert ours["c_n"].shape == ours["grad_c0"].shape == (2 * dirs, H)
    compare_results(ours, rnnkit_run(cpu, p), RTOL[dtype])


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_accumulate(device, cell, dtype):
    """accumulate=True adds to layer.grads, exactly as on the CPU; accumulate=False replaces them."""
    cpu, dev = make_pair(cell, device, 2, True, dtype, seed=12)
    p1 = make_problem(cell, T, B, D, H, 2, True, dtype, with_lengths=True, seed=13)
    p2 = make_problem(cell, T - 1, B - 1, D, H, 2, True, dtype, seed=14)
    singles = {}
    for layer in (dev, cpu):
        single = []
        for p in (p1, p2):
            rnnkit_run(layer, p)
            single.append(layer.flat_grads.copy())
        singles[layer.device] = single
        rnnkit_run(layer, p1)
        layer.forward(p2.x, p2.state(), training=True)
        layer.backward(p2.G, p2.grad_state(), accumulate=True)
    rtol = RTOL[dtype]
    first, second = singles[dev.device]
    assert_close_rel(dev.flat_grads, first + second, rtol, name="device accumulated == sum of single grads")
    assert_close_rel(dev.flat_grads, cpu.flat_grads, rtol, name="accumulated grads vs CPU")
    for k in cpu.grads:
        assert_close_rel(dev.grads[k], cpu.grads[k], rtol, name=f"grads[{k}]")
    # accumulate=False after all that: only the last backward counts again.
    rnnkit_run(dev, p1)
    assert_close_rel(dev.flat_grads, first, rtol, name="grads after accumulate=False")


@pytest.mark.parametrize("cell", CELLS)
def test_omitted_state_equals_zero_state(device, cell):
    """With no initial state the driver skips the first step's recurrent GEMM (its product is
    zero): outputs, final states and gradients equal an explicit zero state's exactly, in every
    layer and direction, with and without lengths."""
    dev = make_layer(cell, device, 2, True, "float64", seed=17)
    p = make_problem(cell, T, B, D, H, 2, True, "float64", with_lengths=True, seed=18)
    zeros = np.zeros((4, B, H))
    state = (zeros, zeros.copy()) if cell == "lstm" else zeros
    for lengths in (None, p.lengths):
        runs = []
        for s in (None, state):
            out, final = dev.forward(p.x, s, lengths=lengths, training=True)
            grad_x, _ = dev.backward(p.G)
            finals = final if cell == "lstm" else (final,)
            runs.append((out, *finals, grad_x, dev.flat_grads.copy()))
        for a, b in zip(*runs):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_a_frozen_layer_on_the_device(device, cell):
    """rnnkit.freeze on the device: the same results as the trainable layer, training included;
    the parameters are copied to the device once, not at every call, and only for a read-only
    array: a writeable one passed as frozen is copied at every call."""
    m = make_layer(cell, device, 2, True, "float64", seed=21)
    frozen = rnnkit.freeze(m)
    assert frozen.device == device
    p = make_problem(cell, T, B, D, H, 2, True, "float64", with_lengths=True, seed=22)
    for _ in range(2):
        for a, b in zip(rnnkit_run(frozen, p).values(), rnnkit_run(m, p).values()):
            if isinstance(a, dict):
                for k in a:
                    np.testing.assert_array_equal(a[k], b[k])
            elif a is not None:
                np.testing.assert_array_equal(a, b)
    stack = frozen._device_stack()
    args = (p.x, False, None, None, None, False, 0.0, 0)
    first = stack.forward(frozen.flat_params, *args, True)[0]
    # Break the promise on purpose (the private owner made writeable, a weight changed): the
    # resident copy is not refreshed from the same address, which shows that none is made.
    owner = frozen._frozen_owner
    owner.flags.writeable = True
    frozen.flat_params.flags.writeable = True
    frozen.flat_params[: frozen.flat_params.size // 2] *= 0.5
    frozen.flat_params.flags.writeable = False
    np.testing.assert_array_equal(stack.forward(frozen.flat_params, *args, True)[0], first)
    # A writeable array passed as frozen is copied at every call.
    writeable = frozen.flat_params.copy()
    stack.forward(writeable, *args, True)
    writeable[: writeable.size // 3] *= -1.0
    m.flat_params[...] = writeable
    np.testing.assert_array_equal(stack.forward(writeable, *args, True)[0], m.forward(p.x)[0])


@pytest.mark.parametrize("accumulate", [False, True])
def test_a_refused_backward_leaves_the_gradients(device, accumulate):
    """The call clears the gradients only after its checks: NaN in grad_out changes nothing."""
    dev = make_layer("lstm", device, 2, True, "float64", seed=15)
    p = make_problem("lstm", T, B, D, H, 2, True, "float64", seed=16)
    rnnkit_run(dev, p)
    before = dev.flat_grads.copy()
    bad = p.G.copy()
    bad[-1, 0, 0] = np.nan
    with pytest.raises(ValueError, match="grad_out contains NaN or Inf"):
        dev.backward(bad, accumulate=accumulate)
    np.testing.assert_array_equal(dev.flat_grads, before)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_several_kernel_blocks(device, cell, dtype):
    """Sizes past one CUDA block of 256 threads in every element-wise kernel (B*H, T*B*F)."""
    kwargs = dict(input_size=7, hidden_size=24, seed=31, batch_first=True)
    cpu, dev = make_pair(cell, device, 2, True, dtype, **kwargs)
    p = make_problem(cell, 6, 16, 7, 24, 2, True, dtype, batch_first=True, with_lengths=True, seed=32)
    ours = rnnkit_run(dev, p)
    compare_results(ours, rnnkit_run(cpu, p), RTOL[dtype])
    check_padding_zero(ours, p)


def largest_fused_hidden(cell: str, dtype: str) -> int:
    """The largest hidden size whose recurrence the driver fuses (cpp/cuda/recurrence.hpp: W_hh
    of at most 256 KiB); one more runs step by step (a GEMM and a kernel per step)."""
    gates = {"lstm": 4, "gru": 3}.get(cell, 1)
    return int(math.isqrt((256 << 10) // (gates * np.dtype(dtype).itemsize)))


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("path", ["fused", "stepwise"])
def test_both_recurrence_paths(device, cell, dtype, path):
    """Either side of the size where the recurrence stops being fused: both equal the CPU engine."""
    hidden = largest_fused_hidden(cell, dtype) + (path == "stepwise")
    kwargs = dict(input_size=3, hidden_size=hidden, seed=41)
    cpu, dev = make_pair(cell, device, 2, True, dtype, **kwargs)
    p = make_problem(cell, 4, 3, 3, hidden, 2, True, dtype, with_lengths=True, seed=42)
    compare_forward(rnnkit_forward(dev, p), rnnkit_forward(cpu, p), RTOL[dtype], "inference ")
    ours = rnnkit_run(dev, p)
    compare_results(ours, rnnkit_run(cpu, p), RTOL[dtype])
    check_padding_zero(ours, p)


EDGE_SIZES = [(1, 1, 1, 1), (1, 3, 2, 2), (4, 1, 1, 3), (3, 5, 1, 1)]  # (T, B, D, H)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("sizes", EDGE_SIZES, ids=lambda s: "T{}-B{}-D{}-H{}".format(*s))
@pytest.mark.parametrize("lengths", ["none", "all_T", "all_1"])
def test_degenerate_sizes(device, cell, sizes, lengths):
    """One step, one sequence, one feature, one unit; every length T or every length 1."""
    steps, batch, inputs, hidden = sizes
    lens = {"none": None, "all_T": [steps] * batch, "all_1": [1] * batch}[lengths]
    kwargs = dict(input_size=inputs, hidden_size=hidden, seed=17, dropout=0.3, batch_first=batch > 2)
    cpu, dev = make_pair(cell, device, 2, True, "float64", **kwargs)
    p = make_problem(cell, steps, batch, inputs, hidden, 2, True, "float64", batch_first=batch > 2, lengths=lens,
                     seed=18)
    ours = rnnkit_run(dev, p)
    compare_results(ours, rnnkit_run(cpu, p), RTOL["float64"])
    check_padding_zero(ours, p)


@pytest.mark.parametrize("cell", CELLS)
def test_non_contiguous_and_converted_inputs(device, cell):
    """Fortran-ordered, strided and float64 arrays into a float32 layer: converted like on the CPU."""
    cpu, dev = make_pair(cell, device, 2, True, "float32", seed=19)
    p = make_problem(cell, T, B, D, H, 2, True, "float32", seed=20)
    inputs = [np.asfortranarray(p.x), np.repeat(p.x, 2, axis=1)[:, ::2], p.x.astype(np.float64)]
    for i, x in enumerate(inputs):
        results = []
        for layer in (dev, cpu):
            out, state = layer.forward(x, p.state(), training=True)
            grad_x, _ = layer.backward(np.asfortranarray(p.G), p.grad_state())
            results.append((out, grad_x, layer.flat_grads.copy()))
            assert out.dtype == grad_x.dtype == np.float32
        for name, a, e in zip(("out", "grad_x", "flat_grads"), *results):
            assert_close_rel(a, e, RTOL["float32"], name=f"input {i}: {name}")


# --------------------------------------------------------------------------------------- torch
TORCH_GRID = [
    ("lstm", 1, False, False, False), ("lstm", 2, True, True, False), ("lstm", 3, True, True, True),
    ("gru", 1, True, False, True), ("gru", 2, True, True, False),
    ("rnn_tanh", 2, False, True, True), ("rnn_tanh", 3, True, True, False),
    ("rnn_relu", 1, True, True, False), ("rnn_relu", 2, True, False, True),
]


@pytest.mark.parametrize("cell,num_layers,bidirectional,with_lengths,batch_first", TORCH_GRID,
                         ids=[f"{c}-L{n}-{'bi' if b else 'uni'}-{'len' if w else 'full'}-{'bf' if f else 'tf'}"
                              for c, n, b, w, f in TORCH_GRID])
@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_torch(device, torch, cell, num_layers, bidirectional, with_lengths, batch_first, dtype):
    """The device layer against torch.nn.{LSTM,GRU,RNN} on the CPU, weights moved by state dict."""
    dev = make_layer(cell, device, num_layers, bidirectional, dtype, batch_first=batch_first, seed=41)
    tm = make_torch(cell, D, H, num_layers, batch_first=batch_first, bidirectional=bidirectional, dtype=dtype,
                    state_dict=dev.state_dict())
    p = make_problem(cell, T, B, D, H, num_layers, bidirectional, dtype, batch_first=batch_first,
                     with_lengths=with_lengths, seed=42)
    compare_results(rnnkit_run(dev, p), torch_run(tm, p), RTOL[dtype])

    # And the other way round: torch's own initial weights loaded into a device layer.
    tm2 = make_torch(cell, D, H, num_layers, batch_first=batch_first, bidirectional=bidirectional, dtype=dtype)
    dev2 = make_layer(cell, device, num_layers, bidirectional, dtype, batch_first=batch_first, seed=43)
    dev2.load_state_dict({k: v.detach() for k, v in tm2.state_dict().items()})
    compare_results(rnnkit_run(dev2, p), torch_run(tm2, p), RTOL[dtype], label="torch init: ")


# -------------------------------------------------------------------------------- layer life
@pytest.mark.parametrize("cell", CELLS)
def test_repeated_calls_are_deterministic(device, cell):
    """The same call gives bitwise the same results, on one layer and on a twin layer."""
    p = make_problem(cell, T, B, D, H, 2, True, "float32", with_lengths=True, seed=51)
    layer = make_layer(cell, device, 2, True, "float32", seed=52)
    twin = make_layer(cell, device, 2, True, "float32", seed=52)
    first = rnnkit_run(layer, p)
    for m in (layer, layer, twin):
        again = rnnkit_run(m, p)
        for key in ("out", "h_n", "c_n", "grad_x", "grad_h0", "grad_c0"):
            if first[key] is not None:
                np.testing.assert_array_equal(again[key], first[key], err_msg=key)
        for key in first["grads"]:
            np.testing.assert_array_equal(again["grads"][key], first["grads"][key], err_msg=key)
        inference = rnnkit_forward(m, p)
        np.testing.assert_array_equal(inference[0], first["out"])


@pytest.mark.parametrize("cell", CELLS)
def test_to_cpu_and_back(device, cell):
    cpu, dev = make_pair(cell, device, 2, True, "float64", seed=61)
    p = make_problem(cell, T, B, D, H, 2, True, "float64", with_lengths=True, seed=62)
    ref = rnnkit_run(cpu, p)
    compare_results(rnnkit_run(dev, p), ref, RTOL["float64"], label="on the device: ")

    assert dev.to("cpu") is dev
    assert dev.device == "cpu" and "device=" not in repr(dev)
    with pytest.raises(ValueError, match="backward"):  # the device tape is gone with the move
        dev.backward(p.G, p.grad_state())
    on_cpu = rnnkit_run(dev, p)
    for key in ("out", "h_n", "grad_x", "grad_h0"):
        np.testing.assert_array_equal(on_cpu[key], ref[key], err_msg=key)  # truly the CPU engine now

    assert dev.to(device) is dev
    assert dev.device == device and f"device={device!r}" in repr(dev)
    with pytest.raises(ValueError, match="backward"):
        dev.backward(p.G, p.grad_state())
    compare_results(rnnkit_run(dev, p), ref, RTOL["float64"], label="back on the device: ")


@pytest.mark.parametrize("cell", CELLS)
def test_backward_needs_a_training_forward(device, cell):
    layer = make_layer(cell, device, 2, True, "float32", seed=71)
    p = make_problem(cell, T, B, D, H, 2, True, "float32", seed=72)
    with pytest.raises(ValueError, match="training=True"):
        layer.backward(p.G)
    layer.forward(p.x, p.state(), training=False)
    with pytest.raises(ValueError, match="training=True"):
        layer.backward(p.G)
    layer.forward(p.x, p.state(), training=True)
    layer.load_state_dict(layer.state_dict())  # the parameters "changed": the tape is stale
    with pytest.raises(ValueError, match="parameters changed"):
        layer.backward(p.G)
    layer.forward(p.x, p.state(), training=True)
    layer.backward(p.G)  # fine again


@pytest.mark.parametrize("cell", CELLS)
def test_in_place_parameter_updates_are_seen(device, cell):
    """Optimizers write into flat_params between calls: the device must not keep stale weights."""
    cpu, dev = make_pair(cell, device, 2, False, "float64", seed=81)
    p = make_problem(cell, T, B, D, H, 2, False, "float64", seed=82)
    before = rnnkit_run(dev, p)
    rnnkit_run(cpu, p)
    for layer in (cpu, dev):
        layer.flat_params[:] -= 0.1 * layer.flat_grads  # one SGD step, in place
    after_dev, after_cpu = rnnkit_run(dev, p), rnnkit_run(cpu, p)
    assert not np.allclose(after_dev["out"], before["out"])
    compare_results(after_dev, after_cpu, RTOL["float64"])


@pytest.mark.parametrize("cell", CELLS)
def test_pickle_round_trip(device, cell):
    layer = make_layer(cell, device, 2, True, "float64", dropout=0.3, seed=91, batch_first=True)
    p = make_problem(cell, T, B, D, H, 2, True, "float64", batch_first=True, with_lengths=True, seed=92)
    rnnkit_run(layer, p)  # grads, dropout counter and a device stack to (not) pickle
    clone = pickle.loads(pickle.dumps(layer))
    assert type(clone) is type(layer)
    assert clone.device == device and repr(clone) == repr(layer)
    np.testing.assert_array_equal(clone.flat_params, layer.flat_params)
    np.testing.assert_array_equal(clone.flat_grads, layer.flat_grads)
    with pytest.raises(ValueError, match="training=True"):  # the tape does not travel
        clone.backward(p.G)
    a, b = rnnkit_run(layer, p), rnnkit_run(clone, p)  # same next dropout masks too
    for key in ("out", "h_n", "grad_x", "grad_h0"):
        np.testing.assert_array_equal(b[key], a[key], err_msg=key)
    for key in a["grads"]:
        np.testing.assert_array_equal(b["grads"][key], a["grads"][key], err_msg=key)


def test_simulated_backend_is_the_host_module(monkeypatch):
    """What the "simulated" variant runs: rnnkit._device_host, reported as a simulation."""
    monkeypatch.setenv(SIMULATE_ENV, "1")
    info = rnnkit.cuda.runtime_info()
    assert info["built"] is True and info["simulated"] is True
    assert info["device_count"] >= 1 and info["reason"] == ""
    assert rnnkit.cuda.is_available() and rnnkit.cuda.unavailable_reason() is None
    layer = rnnkit.LSTM(D, H, device="cuda")
    layer.forward(np.zeros((T, B, D), np.float32))
    assert type(layer._device_stack()).__module__ == "rnnkit._device_host"
