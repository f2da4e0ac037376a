"""The optional CUDA backend around its availability.

* Without a usable GPU (this includes a CUDA build on a GPU-less machine, as in CI's CUDA
  compile job): ``device="cuda"`` fails with a RuntimeError that says why, the queries of
  ``rnnkit.cuda`` and ``rnnkit.config()`` say so too, and ``import rnnkit`` never loads
  ``rnnkit._cuda``. The Python-side logic for a CUDA build without a driver / without a device
  / with a device is also checked with stand-in ``rnnkit._cuda`` modules.
* With a usable GPU: parity with PyTorch's CUDA layers, no device memory growth over many
  calls, and a clean MemoryError for a request beyond the device's memory. These skip, with
  the reason, where there is no GPU, unless ``RNNKIT_REQUIRE_CUDA=1`` (GPU CI jobs), where
  that is a failure.

The device driver's arithmetic is tested on every machine in test_device_host.py.
"""
from __future__ import annotations

import dataclasses
import gc
import importlib.machinery
import importlib.util
import itertools
import math
import os
import pickle
import subprocess
import sys
import textwrap
import types

import numpy as np
import pytest

import rnnkit
import rnnkit.cuda
from rnnkit.layers import layer_for_mode

from conftest import (CELLS, DTYPES, REQUIRE_ENV, RTOL, SIMULATE_ENV, TORCH_MISSING_REASON, assert_close_rel,
                      compare_results, cuda_required, make_problem, make_torch, rnnkit_run)

MiB = 1 << 20

T, B, D, H = 6, 4, 3, 5


def skip_or_fail(reason: str):
    if cuda_required():
        pytest.fail(f"{REQUIRE_ENV}=1 but {reason}")
    pytest.skip(reason)


def first_use_error(make) -> str:
    """The RuntimeError of making a layer and running its first forward (a CUDA device's
    availability is checked when the layer first runs there, or already when it is made)."""
    with pytest.raises(RuntimeError) as info:
        layer = make()
        layer.forward(np.zeros((2, 1, layer.input_size), layer.dtype))
    return str(info.value)


@pytest.fixture
def real_cuda(monkeypatch):
    """The real backend: no host simulation."""
    monkeypatch.delenv(SIMULATE_ENV, raising=False)


@pytest.fixture
def no_gpu(real_cuda):
    if rnnkit.cuda.is_available():
        pytest.skip(f"a usable CUDA device is present ({rnnkit.cuda.get_device_name(0)}): "
                    "these tests check the behaviour without one")


@pytest.fixture
def gpu(real_cuda):
    if not rnnkit.cuda.is_available():
        skip_or_fail(f"device='cuda' is unavailable: {rnnkit.cuda.unavailable_reason()}")


@pytest.fixture
def torch_cuda(gpu):
    """torch with CUDA, TF32 off (so that float32 is float32 on both sides); restored afterwards."""
    try:
        import torch
    except ImportError:
        skip_or_fail(TORCH_MISSING_REASON)
    if not torch.cuda.is_available():
        skip_or_fail(f"torch {torch.__version__} has no usable CUDA: the GPU parity and memory tests compare "
                     "with PyTorch's CUDA layers (install a CUDA build of torch)")
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    yield torch
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.fixture
def fresh_cuda_cache():
    """rnnkit.cuda caches the outcome of loading rnnkit._cuda; start and end with a clean cache."""
    rnnkit.cuda._load_cuda.cache_clear()
    yield
    rnnkit.cuda._load_cuda.cache_clear()


# ===================================================================================== any machine
BAD_DEVICE_VALUES = ["gpu", "", "cuda:", "cuda:-1", "cuda:x", "cuda0", "cuda:1:2", "cpu:0", "tpu"]
BAD_DEVICE_TYPES = [3, 0, None, b"cuda", 1.5, ["cuda"]]


@pytest.mark.parametrize("value", BAD_DEVICE_VALUES)
def test_bad_device_string_is_value_error(value):
    with pytest.raises(ValueError, match="device must be"):
        rnnkit.LSTM(3, 4, device=value)
    layer = rnnkit.GRU(3, 4)
    with pytest.raises(ValueError, match="device must be"):
        layer.to(value)
    assert layer.device == "cpu"
    layer.forward(np.zeros((2, 1, 3), np.float32))  # unharmed


@pytest.mark.parametrize("value", BAD_DEVICE_TYPES, ids=repr)
def test_bad_device_type_is_type_error(value):
    with pytest.raises(TypeError, match="device must be a string"):
        rnnkit.LSTM(3, 4, device=value)
    with pytest.raises(TypeError, match="device must be a string"):
        rnnkit.RNN(3, 4).to(value)


def test_parse_device():
    parse = rnnkit.cuda.parse_device
    assert parse("cpu") is None and parse(" CPU ") is None
    assert parse("cuda") == 0 and parse("CUDA") == 0
    assert parse("cuda:0") == 0 and parse("cuda:7") == 7


def test_config_cuda_keys():
    facts = rnnkit.config()
    for key in ("cuda_built", "cuda", "cuda_runtime", "cuda_driver", "cuda_devices", "cuda_reason"):
        assert key in facts, key
    assert isinstance(facts["cuda_built"], bool)
    assert isinstance(facts["cuda"], bool)
    assert isinstance(facts["cuda_runtime"], str) and isinstance(facts["cuda_driver"], str)
    assert isinstance(facts["cuda_devices"], list) and all(isinstance(d, str) and d for d in facts["cuda_devices"])
    assert isinstance(facts["cuda_reason"], str)
    assert facts["cuda"] == (len(facts["cuda_devices"]) > 0)
    if facts["cuda"]:
        assert facts["cuda_built"] and facts["cuda_reason"] == ""
    else:
        assert facts["cuda_reason"], "no usable CUDA, but no reason given"
    for key in ("cuda_runtime", "cuda_driver"):  # "" or CUDA's "major.minor"
        if facts[key]:
            major, minor = facts[key].split(".")
            assert major.isdigit() and minor.isdigit(), facts[key]


def test_show_config_prints_cuda(capsys):
    facts = rnnkit.show_config()
    printed = capsys.readouterr().out
    for key in ("cuda_built", "cuda_reason"):
        assert key in printed
    assert facts["cuda_built"] == rnnkit.config()["cuda_built"]


def test_import_rnnkit_does_not_load_the_cuda_module():
    """Neither ``import rnnkit`` nor CPU layers load rnnkit._cuda (or the host simulation)."""
    script = textwrap.dedent("""
        import sys
        import numpy as np
        import rnnkit
        layer = rnnkit.LSTM(2, 3, num_layers=2, bidirectional=True)
        out, _ = layer.forward(np.ones((4, 2, 2), np.float32), training=True)
        layer.backward(np.ones_like(out))
        rnnkit.GRU(2, 3).to("cpu").forward(np.ones((4, 2), np.float32))
        print(sorted(m for m in sys.modules if m in ("rnnkit._cuda", "rnnkit._device_host")))
    """)
    env = {k: v for k, v in os.environ.items() if k != SIMULATE_ENV}
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1] == "[]", res.stdout


@pytest.mark.parametrize("value", ["1", "yes", " 1 "])
def test_simulation_env_switches_the_backend(monkeypatch, value):
    monkeypatch.setenv(SIMULATE_ENV, value)
    assert rnnkit.cuda.is_available() and rnnkit.cuda.device_count() >= 1
    facts = rnnkit.config()
    assert facts["cuda_built"] and facts["cuda"] and facts["cuda_reason"] == ""
    assert rnnkit.cuda.runtime_info()["simulated"] is True
    rnnkit.LSTM(3, 4, device="cuda").forward(np.zeros((2, 1, 3), np.float32))
    message = first_use_error(lambda: rnnkit.LSTM(3, 4, device=f"cuda:{rnnkit.cuda.device_count()}"))
    assert "does not exist" in message, message


@pytest.mark.parametrize("value", ["", "0", " 0 "])
def test_simulation_env_off_values(monkeypatch, value):
    monkeypatch.setenv(SIMULATE_ENV, value)
    assert not rnnkit.cuda._simulated()
    assert rnnkit.cuda.runtime_info().get("simulated") is not True


# ==================================================================================== without a GPU
@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cuda:7", " CUDA "])
@pytest.mark.parametrize("cell", CELLS)
def test_cuda_layer_raises_with_the_reason(no_gpu, cell, device):
    reason = rnnkit.cuda.unavailable_reason()
    assert isinstance(reason, str) and reason
    message = first_use_error(lambda: layer_for_mode(cell, 3, 4, device=device))
    assert "unavailable" in message and reason in message, message


def test_to_cuda_fails_and_the_layer_still_works_on_cpu(no_gpu):
    layer = rnnkit.LSTM(3, 4, seed=0)
    x = np.random.default_rng(0).standard_normal((5, 2, 3)).astype(np.float32)
    out, _ = layer.forward(x, training=True)
    try:
        layer.to("cuda")
    except RuntimeError as exc:  # refused at once: nothing changed, the pending backward included
        assert "unavailable" in str(exc)
        assert layer.device == "cpu"
        layer.backward(np.ones_like(out))
    else:  # accepted for now: the next forward says why it cannot run
        assert layer.device == "cuda"
        with pytest.raises(RuntimeError, match="unavailable"):
            layer.forward(x)
        assert layer.to("cpu") is layer
    np.testing.assert_array_equal(layer.forward(x)[0], out)


def test_layer_pickled_for_cuda_loads_without_gpu(no_gpu, monkeypatch):
    """A layer made for device="cuda" (here under the host simulation) unpickles on a machine
    without a GPU, keeps its device and parameters, and runs after .to("cpu")."""
    monkeypatch.setenv(SIMULATE_ENV, "1")
    layer = rnnkit.GRU(3, 4, 2, bidirectional=True, dtype="float64", seed=1, device="cuda")
    x = np.random.default_rng(1).standard_normal((5, 2, 3))
    out, _ = layer.forward(x)
    blob = pickle.dumps(layer)
    monkeypatch.delenv(SIMULATE_ENV)
    clone = pickle.loads(blob)
    assert clone.device == "cuda"
    np.testing.assert_array_equal(clone.flat_params, layer.flat_params)
    with pytest.raises(RuntimeError, match="unavailable"):
        clone.forward(x)
    clone.to("cpu")
    assert_close_rel(clone.forward(x)[0], out, RTOL["float64"], name="out on the CPU")


def test_availability_queries_without_gpu(no_gpu):
    assert rnnkit.cuda.is_available() is False
    assert rnnkit.cuda.device_count() == 0
    reason = rnnkit.cuda.unavailable_reason()
    assert isinstance(reason, str) and reason
    with pytest.raises(ValueError, match="no CUDA device 0"):
        rnnkit.cuda.get_device_name(0)
    info = rnnkit.cuda.runtime_info()
    assert info["device_count"] == 0 and info["devices"] == [] and info["reason"] == reason
    facts = rnnkit.config()
    assert facts["cuda"] is False and facts["cuda_devices"] == [] and facts["cuda_reason"] == reason
    if not facts["cuda_built"]:
        assert facts["cuda_runtime"] == ""
        assert "RNNKIT_CUDA=1" in reason or "could not be loaded" in reason, reason


def test_cuda_build_without_gpu(no_gpu):
    """A CUDA build on a machine without a usable GPU (CI's CUDA compile job)."""
    if importlib.util.find_spec("rnnkit._cuda") is None:
        pytest.skip("rnnkit was built without CUDA (no rnnkit._cuda module): nothing to check here")
    module, why = rnnkit.cuda._load_cuda()
    facts = rnnkit.config()
    if module is None:  # built, but cuBLAS (or the CUDA runtime) cannot be loaded
        assert facts["cuda_built"] is False
        assert "could not be loaded" in facts["cuda_reason"] and why in facts["cuda_reason"]
        return
    assert facts["cuda_built"] is True and facts["cuda"] is False
    assert facts["cuda_runtime"], "the CUDA runtime version is unknown"
    reason = facts["cuda_reason"]
    assert "driver" in reason.lower() or "device" in reason.lower(), reason
    assert "simulated" in rnnkit.cuda.runtime_info() and rnnkit.cuda.runtime_info()["simulated"] is False
    message = first_use_error(lambda: rnnkit.GRU(3, 4, device="cuda"))
    assert "unavailable" in message and reason in message, message


# ------------------------------------------------- the Python logic with stand-ins for rnnkit._cuda
def _install_fake_cuda(monkeypatch, *, driver_version, device_count, error, names=("Fake GPU",)):
    fake = types.ModuleType("rnnkit._cuda")
    fake.__spec__ = importlib.machinery.ModuleSpec("rnnkit._cuda", loader=None)
    fake.info = lambda: {"compiled": True, "runtime_version": 12080, "driver_version": driver_version,
                         "device_count": device_count, "error": error}
    fake.device_name = lambda index: names[index] if 0 <= index < len(names) else ""
    monkeypatch.setitem(sys.modules, "rnnkit._cuda", fake)
    monkeypatch.delenv(SIMULATE_ENV, raising=False)
    rnnkit.cuda._load_cuda.cache_clear()
    return fake


def test_fake_cuda_build_without_driver(monkeypatch, fresh_cuda_cache):
    error = "cudaErrorInsufficientDriver: CUDA driver version is insufficient for CUDA runtime version"
    _install_fake_cuda(monkeypatch, driver_version=0, device_count=0, error=error)
    reason = rnnkit.cuda.unavailable_reason()
    assert "no NVIDIA driver" in reason and error in reason
    assert not rnnkit.cuda.is_available() and rnnkit.cuda.device_count() == 0
    facts = rnnkit.config()
    assert facts["cuda_built"] is True and facts["cuda"] is False
    assert facts["cuda_runtime"] == "12.8" and facts["cuda_driver"] == "" and facts["cuda_reason"] == reason
    message = first_use_error(lambda: rnnkit.LSTM(3, 4, device="cuda"))
    assert "unavailable" in message and reason in message, message


def test_fake_cuda_build_without_device(monkeypatch, fresh_cuda_cache):
    _install_fake_cuda(monkeypatch, driver_version=12080, device_count=0, error="no CUDA device found")
    assert rnnkit.cuda.unavailable_reason() == "no CUDA device found"
    facts = rnnkit.config()
    assert facts["cuda_built"] is True and facts["cuda"] is False and facts["cuda_driver"] == "12.8"
    message = first_use_error(lambda: rnnkit.RNN(3, 4, device="cuda:0"))
    assert "unavailable: no CUDA device found" in message, message


def test_fake_cuda_build_with_one_device(monkeypatch, fresh_cuda_cache):
    _install_fake_cuda(monkeypatch, driver_version=12080, device_count=1, error="", names=("Fake GPU",))
    assert rnnkit.cuda.is_available() and rnnkit.cuda.device_count() == 1
    assert rnnkit.cuda.unavailable_reason() is None
    assert rnnkit.cuda.get_device_name(0) == "Fake GPU"
    with pytest.raises(ValueError):
        rnnkit.cuda.get_device_name(1)
    facts = rnnkit.config()
    assert facts["cuda"] is True and facts["cuda_devices"] == ["Fake GPU"] and facts["cuda_reason"] == ""
    assert rnnkit.LSTM(3, 4, device="cuda:0").device == "cuda:0"  # the device stack is made on first use
    message = first_use_error(lambda: rnnkit.LSTM(3, 4, device="cuda:1"))
    assert "does not exist" in message, message


def test_fake_cuda_module_is_not_used_when_simulating(monkeypatch, fresh_cuda_cache):
    _install_fake_cuda(monkeypatch, driver_version=0, device_count=0, error="broken")
    monkeypatch.setenv(SIMULATE_ENV, "1")
    assert rnnkit.cuda.is_available()
    assert rnnkit.cuda.runtime_info()["simulated"] is True


# ======================================================================================= with a GPU
def test_gpu_reports(gpu):
    count = rnnkit.cuda.device_count()
    assert count >= 1 and rnnkit.cuda.is_available() and rnnkit.cuda.unavailable_reason() is None
    info = rnnkit.cuda.runtime_info()
    assert info["built"] and info["simulated"] is False
    assert info["runtime_version"] > 0 and info["driver_version"] >= info["runtime_version"]
    names = [rnnkit.cuda.get_device_name(i) for i in range(count)]
    assert all(isinstance(n, str) and n for n in names)
    facts = rnnkit.config()
    assert facts["cuda_built"] and facts["cuda"] and facts["cuda_reason"] == ""
    assert facts["cuda_devices"] == names and facts["cuda_runtime"] and facts["cuda_driver"]
    message = first_use_error(lambda: rnnkit.LSTM(3, 4, device=f"cuda:{count}"))
    assert "does not exist" in message, message


@pytest.mark.parametrize("cell", CELLS)
def test_every_gpu_matches_cpu(gpu, cell):
    p = make_problem(cell, T, B, D, H, 2, True, "float64", with_lengths=True, seed=3)
    ref = rnnkit_run(layer_for_mode(cell, D, H, num_layers=2, bidirectional=True, dtype="float64", seed=4), p)
    for index in range(rnnkit.cuda.device_count()):
        layer = layer_for_mode(cell, D, H, num_layers=2, bidirectional=True, dtype="float64", seed=4,
                               device=f"cuda:{index}")
        compare_results(rnnkit_run(layer, p), ref, RTOL["float64"], label=f"cuda:{index} ")


def as_float64(p):
    """The same problem, its float arrays in float64 (exact: a float32 is a float64)."""
    arrays = ("x", "h0", "c0", "G", "Gh", "Gc")
    return dataclasses.replace(p, **{f: None if getattr(p, f) is None else getattr(p, f).astype(np.float64)
                                     for f in arrays})


def torch_run_on(tm, p, device):
    """conftest.torch_run on ``device``: forward (packed when lengths are given), loss, backward."""
    import torch
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    tm = tm.to(device)
    leaf = lambda a: None if a is None else torch.tensor(a, device=device, requires_grad=True)  # noqa: E731
    x, h0, c0 = leaf(p.x), leaf(p.h0), leaf(p.c0)
    hx = (h0, c0) if (p.is_lstm and h0 is not None) else h0
    if p.lengths is not None:
        steps = p.x.shape[1] if p.batch_first else p.x.shape[0]
        packed = pack_padded_sequence(x, torch.as_tensor(p.lengths, dtype=torch.int64),  # lengths stay on the CPU
                                      batch_first=p.batch_first, enforce_sorted=False)
        out_p, st = tm(packed, hx)
        out, _ = pad_packed_sequence(out_p, batch_first=p.batch_first, total_length=steps)
    else:
        out, st = tm(x, hx)
    h_n, c_n = st if p.is_lstm else (st, None)
    loss = (out * torch.as_tensor(p.G, device=device)).sum()
    if p.Gh is not None:
        loss = loss + (h_n * torch.as_tensor(p.Gh, device=device)).sum()
    if p.Gc is not None:
        loss = loss + (c_n * torch.as_tensor(p.Gc, device=device)).sum()
    tm.zero_grad(set_to_none=True)
    loss.backward()

    def grad(t):
        if t is None:
            return None
        return np.zeros(tuple(t.shape), p.x.dtype) if t.grad is None else t.grad.detach().cpu().numpy()

    as_np = lambda t: None if t is None else t.detach().cpu().numpy()  # noqa: E731
    return dict(out=as_np(out), h_n=as_np(h_n), c_n=as_np(c_n), grad_x=grad(x), grad_h0=grad(h0), grad_c0=grad(c0),
                grads={name: grad(prm) for name, prm in tm.named_parameters()})


TORCH_GRID = list(itertools.product(CELLS, (1, 2), (False, True), (False, True), DTYPES))


@pytest.mark.parametrize("cell,num_layers,bidirectional,with_lengths,dtype", TORCH_GRID,
                         ids=[f"{c}-L{n}-{'bi' if b else 'uni'}-{'len' if w else 'full'}-{d}"
                              for c, n, b, w, d in TORCH_GRID])
def test_parity_with_torch_cuda(torch_cuda, cell, num_layers, bidirectional, with_lengths, dtype):
    """Forward, h_n/c_n and every gradient against torch.nn.{LSTM,GRU,RNN} on the GPU.

    References: torch's own CUDA kernels (cuDNN off), always; cuDNN in float64. In float32 the
    second reference is the float64 truth (cuDNN in float64 on the same values), not cuDNN in
    float32: cuDNN's full-length float32 kernels are the least exact implementation at hand
    (on an H200, cuDNN 9.19: up to 1.8e-5 from float64 where torch's CUDA and CPU kernels and
    rnnkit stay within 4e-7), so agreeing with them to 1e-5 would mean copying their error.
    """
    batch_first = num_layers == 2  # both layouts, without doubling the grid
    layer = layer_for_mode(cell, D, H, num_layers=num_layers, bidirectional=bidirectional, dtype=dtype,
                           batch_first=batch_first, seed=5 + num_layers, device="cuda")
    tm = make_torch(cell, D, H, num_layers, batch_first=batch_first, bidirectional=bidirectional, dtype=dtype,
                    state_dict=layer.state_dict())
    p = make_problem(cell, T, B, D, H, num_layers, bidirectional, dtype, batch_first=batch_first,
                     with_lengths=with_lengths, seed=6 + bidirectional)
    ours = rnnkit_run(layer, p)
    with torch_cuda.backends.cudnn.flags(enabled=False):
        compare_results(ours, torch_run_on(tm, p, "cuda"), RTOL[dtype], label="torch CUDA kernels: ")
    if dtype == "float64":
        compare_results(ours, torch_run_on(tm, p, "cuda"), RTOL[dtype], label="cuDNN: ")
    else:
        tm64 = make_torch(cell, D, H, num_layers, batch_first=batch_first, bidirectional=bidirectional,
                          dtype="float64", state_dict=layer.state_dict())
        compare_results(ours, torch_run_on(tm64, as_float64(p), "cuda"), RTOL[dtype], label="float64 (cuDNN): ")
    for key in ("out", "h_n", "grad_x", "grad_h0"):
        assert ours[key].dtype == np.dtype(dtype), key


@pytest.mark.parametrize("cell", CELLS)
def test_parity_with_torch_cuda_many_threads(torch_cuda, cell):
    """Sizes that fill several CUDA blocks per kernel (B*H = 960, T*B*4H = 46080), in float64."""
    steps, batch, inputs, hidden = 12, 24, 10, 40
    layer = layer_for_mode(cell, inputs, hidden, num_layers=2, bidirectional=True, dtype="float64", seed=8,
                           device="cuda")
    tm = make_torch(cell, inputs, hidden, 2, bidirectional=True, dtype="float64", state_dict=layer.state_dict())
    p = make_problem(cell, steps, batch, inputs, hidden, 2, True, "float64", with_lengths=True, seed=9)
    compare_results(rnnkit_run(layer, p), torch_run_on(tm, p, "cuda"), RTOL["float64"])


def test_no_device_memory_growth(torch_cuda):
    """1,000 training forward/backward calls (and inference forwards), then 200 layers made and
    dropped: the device's free memory does not shrink."""
    torch = torch_cuda
    torch.cuda.synchronize()
    torch.cuda.mem_get_info(0)  # torch's own context first, outside the measurement
    problems = {cell: make_problem(cell, T, B, D, H, 3, True, "float32", with_lengths=True, seed=1) for cell in CELLS}

    def make(cell, seed):
        return layer_for_mode(cell, D, H, num_layers=3, bidirectional=True, dropout=0.25, dtype="float32", seed=seed,
                              device="cuda")

    def call(m, cell):
        p = problems[cell]
        m.forward(p.x, p.state(), lengths=p.lengths, training=True)
        m.backward(p.G, p.grad_state())
        m.forward(p.x, p.state(), lengths=p.lengths)

    layer = make("lstm", 0)
    for _ in range(20):
        call(layer, "lstm")
    torch.cuda.synchronize()
    free_before = torch.cuda.mem_get_info(0)[0]
    for _ in range(1000):
        call(layer, "lstm")
    for i in range(200):
        cell = CELLS[i % len(CELLS)]
        call(make(cell, i), cell)
    gc.collect()
    torch.cuda.synchronize()
    free_after = torch.cuda.mem_get_info(0)[0]
    growth = free_before - free_after
    assert growth < 64 * MiB, f"free device memory shrank by {growth / MiB:.1f} MiB over the calls"


def _free_device_memory() -> int:
    try:
        import torch
        if torch.cuda.is_available():
            return int(torch.cuda.mem_get_info(0)[0])
    except ImportError:
        pass
    return 512 << 30  # more than any single GPU of today: the request below is then larger still


def test_out_of_memory_is_memory_error(gpu):
    """A training forward far beyond the free device memory raises MemoryError; afterwards the
    layer's parameters are unchanged and other layers (new or old) still work."""
    small = rnnkit.GRU(D, H, 2, bidirectional=True, dtype="float64", seed=3, device="cuda")
    p = make_problem("gru", T, B, D, H, 2, True, "float64", with_lengths=True, seed=4)
    ref = rnnkit_run(small, p)
    small_params = small.flat_params.copy()

    # A bidirectional float64 LSTM keeps about 14*H*T*B values per layer for backward while the
    # host sees only the (T, B, 2H) output: stack enough layers for 1.5x the free memory.
    steps, batch, hidden = 128, 2048, 256
    per_layer = 8 * steps * batch * 14 * hidden
    free = _free_device_memory()
    layers = math.ceil(1.5 * free / per_layer) + 1
    big = rnnkit.LSTM(1, hidden, layers, bidirectional=True, dtype="float64", seed=5, device="cuda")
    big_params = big.flat_params.copy()
    x = np.ones((steps, batch, 1), np.float64)
    with pytest.raises(MemoryError, match="(?i)out of memory"):
        big.forward(x, training=True)
    np.testing.assert_array_equal(big.flat_params, big_params)
    with pytest.raises(ValueError, match="training=True"):  # no tape from the failed call
        big.backward()
    del x

    # The old small layer, unchanged and working, bitwise as before.
    np.testing.assert_array_equal(small.flat_params, small_params)
    again = rnnkit_run(small, p)
    for key in ("out", "h_n", "grad_x", "grad_h0"):
        np.testing.assert_array_equal(again[key], ref[key], err_msg=key)
    # A new layer works, and matches the CPU engine.
    fresh = rnnkit.LSTM(D, H, 2, bidirectional=True, dtype="float64", seed=6, device="cuda")
    pl = make_problem("lstm", T, B, D, H, 2, True, "float64", with_lengths=True, seed=7)
    cpu = rnnkit.LSTM(D, H, 2, bidirectional=True, dtype="float64", seed=6)
    compare_results(rnnkit_run(fresh, pl), rnnkit_run(cpu, pl), RTOL["float64"])
    del fresh  # its stream and cuBLAS handle (with its workspace) are not the failed call's
    # The big layer itself still runs what fits.
    out, _ = big.forward(np.ones((2, 1, 1)))
    assert np.all(np.isfinite(out))

    try:
        import torch
    except ImportError:
        return
    if torch.cuda.is_available():  # and the memory of the failed call went back to the device
        del big
        gc.collect()
        torch.cuda.synchronize()
        after = torch.cuda.mem_get_info(0)[0]
        assert free - after < 64 * MiB, f"{(free - after) / MiB:.1f} MiB of device memory not given back"
