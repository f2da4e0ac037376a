"""A layer reuses its buffers (tapes) between calls: results must not depend on what an earlier
call of another size, mode or option left in them."""
import threading

import numpy as np
import pytest

from conftest import CELLS, make_problem, make_rnnkit, rnnkit_forward, rnnkit_run

D, H, LAYERS = 5, 6, 2

# (T, B, with_lengths, batch_first, training): sizes grow, shrink and grow again, with and
# without lengths (zero-filled outputs), and inference between training calls.
CALLS = [
    (9, 4, False, False, True),
    (3, 3, True, False, False),
    (12, 5, True, True, True),
    (2, 1, False, True, False),
    (9, 4, True, False, True),
    (7, 3, False, False, False),
    (9, 4, False, False, True),
]


def _fresh_copy(layer, cell, dropout):
    twin = make_rnnkit(cell, D, H, LAYERS, bidirectional=True, dropout=dropout, dtype=layer.dtype.name,
                       batch_first=layer.batch_first, seed=0)
    twin.load_state_dict(layer.state_dict())
    twin._dropout_calls = layer._dropout_calls  # the same dropout masks
    return twin


def _run(layer, problem, training):
    if training:
        return rnnkit_run(layer, problem)
    out, h_n, c_n = rnnkit_forward(layer, problem)
    return dict(out=out, h_n=h_n, c_n=c_n)


def _assert_same(a, b, label):
    for key, value in a.items():
        if key == "grads":
            for name in value:
                np.testing.assert_array_equal(value[name], b[key][name], err_msg=f"{label} grads[{name}]")
        elif value is not None:
            np.testing.assert_array_equal(value, b[key], err_msg=f"{label} {key}")


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_reused_buffers_give_the_results_of_fresh_ones(cell, dtype, dropout):
    layer = make_rnnkit(cell, D, H, LAYERS, bidirectional=True, dropout=dropout, dtype=dtype, seed=0)
    for i, (steps, batch, with_lengths, batch_first, training) in enumerate(CALLS):
        layer.batch_first = batch_first
        p = make_problem(cell, steps, batch, D, H, LAYERS, True, dtype, batch_first=batch_first,
                         with_lengths=with_lengths, seed=i)
        twin = _fresh_copy(layer, cell, dropout)  # its first call: new buffers
        _assert_same(_run(layer, p, training), _run(twin, p, training), f"call {i}")


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_backward_again_after_reuse_gives_the_same_gradients(cell):
    layer = make_rnnkit(cell, D, H, LAYERS, bidirectional=True, dtype="float64", seed=0)
    p = make_problem(cell, 8, 3, D, H, LAYERS, True, "float64", with_lengths=True, seed=1)
    first = rnnkit_run(layer, p)
    again_x, _ = layer.backward(p.G, p.grad_state())
    np.testing.assert_array_equal(again_x, first["grad_x"])
    for name, grad in layer.grads.items():
        np.testing.assert_array_equal(grad, first["grads"][name])


def test_an_inference_call_ends_the_pending_backward():
    layer = make_rnnkit("lstm", D, H, dtype="float32", seed=0)
    x = np.ones((4, 2, D), np.float32)
    layer.forward(x, training=True)
    layer.forward(x)  # may refill the training call's buffers
    with pytest.raises(ValueError, match="preceding forward"):
        layer.backward()


def test_the_core_refuses_backward_on_an_inference_tape():
    import rnnkit
    from rnnkit._backend import core

    layer = rnnkit.GRU(D, H, seed=0)
    x = np.ones((4, 2, D), np.float32)
    run = core.forward_float32
    args = (layer._spec, layer._flat, x, False, None, None, None)
    *_, tape = run(*args, True, 0.0, 0, 1, None)
    *_, same = run(*args, False, 0.0, 0, 1, tape)  # refills the same tape for inference
    assert same is tape
    with pytest.raises(ValueError, match="training forward"):
        core.backward_float32(tape, layer._flat, None, None, None, layer._flat_grad, False, 1)


def test_the_pool_is_bounded_in_count_and_size(monkeypatch):
    import rnnkit

    layer = rnnkit.LSTM(D, H, seed=0)
    results = []

    def infer(batch):
        results.append(layer.forward(np.ones((6, batch, D), np.float32))[0].sum())

    threads = [threading.Thread(target=infer, args=(b,)) for b in range(1, 13)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 12
    assert 1 <= len(layer._tape_pool) <= layer._tape_pool.size
    monkeypatch.setattr(type(layer._tape_pool), "max_bytes", 0)
    del layer._tape_pool
    layer.forward(np.ones((6, 2, D), np.float32))
    assert len(layer._tape_pool) == 0


@pytest.mark.parametrize("n_threads", [1, 2])
def test_threads_sharing_a_layer_match_serial_calls(n_threads):
    import rnnkit

    # A fixed thread count: the default one may differ inside Python threads, and the split
    # between OpenMP threads may change the rounding (test_determinism.py's 1e-6 check).
    layer = rnnkit.GRU(D, H, num_layers=2, seed=0, n_threads=n_threads)
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal((int(rng.integers(1, 20)), int(rng.integers(1, 9)), D)).astype(np.float32)
              for _ in range(32)]
    expected = [layer.forward(x)[0] for x in inputs]
    got = [None] * len(inputs)

    def work(k):
        for i in range(k, len(inputs), 4):
            for _ in range(3):
                got[i] = layer.forward(inputs[i])[0]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for e, g in zip(expected, got):
        np.testing.assert_array_equal(g, e)


def test_pickled_layers_carry_no_buffers():
    import pickle

    import rnnkit

    layer = rnnkit.LSTM(D, H, seed=0)
    layer.forward(np.ones((50, 8, D), np.float32))
    assert layer._tape_pool
    clone = pickle.loads(pickle.dumps(layer))
    assert "_tape_pool" not in clone.__dict__
    np.testing.assert_array_equal(clone.forward(np.ones((3, 2, D), np.float32))[0],
                                  layer.forward(np.ones((3, 2, D), np.float32))[0])


@pytest.mark.parametrize("batch,n_threads", [(4, 2), (16, 2), (16, 1), (1, 1)])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_weights_changed_in_place_are_repacked(cell, batch, n_threads):
    """Inference keeps packed weights between calls; an in-place change of any weight (as an
    optimizer step makes) must be seen by the next call. The shapes take each packing path:
    the hidden-unit split (B=4, 2 threads), the batch split, one thread, and one row."""
    steps, d, h = 70, 20, 256  # 25 rows and more: W_ih packed; a long sequence: W_hh packed at B=1
    layer = make_rnnkit(cell, d, h, dtype="float32", n_threads=n_threads, seed=0)
    x = np.random.default_rng(0).standard_normal((steps, batch, d)).astype(np.float32)
    layer.forward(x)
    for name in ("weight_hh_l0", "weight_ih_l0"):
        for index in (0, -1):  # the first and the last value of the matrix
            layer.params[name].reshape(-1)[index] += 0.5
            twin = make_rnnkit(cell, d, h, dtype="float32", n_threads=n_threads, seed=0)
            twin.load_state_dict(layer.state_dict())
            np.testing.assert_array_equal(layer.forward(x)[0], twin.forward(x)[0], err_msg=f"{name}[{index}]")


@pytest.mark.parametrize("name", ["weight_hh_l0", "weight_ih_l0"])
def test_large_weights_compared_by_threads_see_every_change(name):
    """The check of kept packed weights against the caller's gives each thread 2^18 values or
    more: a change anywhere, at either side of the split too, must be seen."""
    steps, batch, d, h = 20, 16, 256, 512  # the batch split; W_ih 2048 x 256, W_hh 2048 x 512
    layer = make_rnnkit("lstm", d, h, dtype="float32", n_threads=2, seed=0)
    x = np.random.default_rng(1).standard_normal((steps, batch, d)).astype(np.float32)
    flat = layer.params[name].reshape(-1)
    assert flat.size >= 2 ** 19  # two threads compare
    for index in (0, flat.size // 2 - 1, flat.size // 2, flat.size - 1):
        layer.forward(x)  # packs (and keeps) the weights as they are now
        flat[index] = -flat[index] if flat[index] != 0 else 0.5
        twin = make_rnnkit("lstm", d, h, dtype="float32", n_threads=2, seed=0)
        twin.load_state_dict(layer.state_dict())
        np.testing.assert_array_equal(layer.forward(x)[0], twin.forward(x)[0], err_msg=f"{name}[{index}]")
