"""Every SIMD level that is built and supported is exercised via RNNKIT_SIMD in a
subprocess (the level is chosen at import time), and its results are compared with the
default level (tight tolerance) and with torch (parity tolerance) where torch exists."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import rnnkit
from conftest import (CELLS, DTYPES, RTOL, assert_close_rel, make_problem, make_rnnkit,
                      make_torch, torch_run)

LEVELS = ("generic", "avx2", "avx512")
TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
# same ISA -> same code: results across levels may only differ by FMA/summation order
CROSS_RTOL = {"float32": 2e-6, "float64": 1e-12}
T, B, D, H = 6, 3, 4, 5
# name: (T, B, H, layers, lengths). "one_row": a sequence long enough (70 >= 64 steps) for the
# packed product with one row, the kernel rnnkit runs over Eigen's packed row groups.
SHAPES = {"small": (T, B, H, 2, True), "one_row": (70, 1, 13, 1, False)}

SCRIPT = r"""
import json, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
import rnnkit
from conftest import make_problem, make_rnnkit, rnnkit_run
cfg = rnnkit.show_config()
res = {}
for shape, (t, b, h, layers, lengths) in %(SHAPES)r.items():
  for cell in ("rnn_tanh", "rnn_relu", "lstm", "gru"):
    for dtype in ("float32", "float64"):
        # batch big enough for vectorised kernels to have remainder handling as well
        m = make_rnnkit(cell, %(D)d, h, layers, bidirectional=True, dtype=dtype, seed=17)
        p = make_problem(cell, t, b, %(D)d, h, layers, True, dtype, with_lengths=lengths, seed=18)
        r = rnnkit_run(m, p)
        pre = shape + "|" + cell + "|" + dtype + "|"
        for k in ("out", "h_n", "c_n", "grad_x", "grad_h0", "grad_c0"):
            if r[k] is not None:
                res[pre + k] = r[k]
        for k, v in r["grads"].items():
            res[pre + "grads." + k] = v
np.savez(sys.argv[2], **res)
print("CONFIG=" + json.dumps({"simd": cfg["simd"], "simd_available": list(cfg["simd_available"])}))
""" % dict(D=D, SHAPES=SHAPES)


def _env(level):
    env = dict(os.environ)
    env.pop("RNNKIT_SIMD", None)
    if level is not None:
        env["RNNKIT_SIMD"] = level
    return env


def _run(level, tmp_path):
    out = tmp_path / f"res_{level or 'default'}.npz"
    proc = subprocess.run([sys.executable, "-c", SCRIPT, TESTS_DIR, str(out)],
                          env=_env(level), cwd=str(tmp_path), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, f"RNNKIT_SIMD={level}: rc={proc.returncode}\n{proc.stderr[-3000:]}"
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("CONFIG=")][-1]
    cfg = json.loads(line[len("CONFIG="):])
    with np.load(out) as z:
        data = {k: z[k] for k in z.files}
    return cfg, data


def _cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for ln in f:
                if ln.startswith("flags"):
                    return set(ln.split(":", 1)[1].split())
    except OSError:
        pass
    return None


def _available():
    return list(rnnkit.config()["simd_available"])


def test_show_config_keys(capsys):
    cfg = rnnkit.show_config()
    printed = capsys.readouterr().out
    assert isinstance(cfg, dict)
    for key in ("version", "eigen_version", "simd", "simd_available", "n_threads", "openmp", "cuda"):
        assert key in cfg, key
        assert key in printed, f"show_config() did not print {key!r}"
    assert isinstance(cfg["version"], str) and cfg["version"]
    assert isinstance(cfg["eigen_version"], str) and cfg["eigen_version"]
    assert cfg["simd"] in LEVELS
    assert isinstance(cfg["openmp"], bool) and isinstance(cfg["cuda"], bool)
    assert isinstance(cfg["n_threads"], int) and cfg["n_threads"] >= 1
    avail = list(cfg["simd_available"])
    assert avail and set(avail) <= set(LEVELS)
    assert "generic" in avail
    assert cfg["simd"] in avail


def test_simd_available_supported_by_cpu():
    flags = _cpu_flags()
    if flags is None:
        pytest.skip("no /proc/cpuinfo on this platform")
    avail = _available()
    if "avx2" in avail:
        assert {"avx2", "fma"} <= flags, "avx2 listed but CPU lacks avx2/fma"
    if "avx512" in avail:
        assert "avx512f" in flags, "avx512 listed but CPU lacks avx512f"


def test_default_is_best_available(tmp_path):
    avail = _available()
    best = max(avail, key=LEVELS.index)
    cfg, _ = _run(None, tmp_path)
    assert cfg["simd"] == best, f"default level {cfg['simd']} but best available is {best}"


def test_every_available_level_matches(tmp_path):
    avail = _available()
    _, default = _run(None, tmp_path)
    try:
        import torch  # noqa: F401
        have_torch = True
    except Exception:
        have_torch = False

    refs = {}
    if have_torch:
        for shape, (t, b, h, layers, lengths) in SHAPES.items():
            for cell in CELLS:
                for dtype in DTYPES:
                    m = make_rnnkit(cell, D, h, layers, bidirectional=True, dtype=dtype, seed=17)
                    tm = make_torch(cell, D, h, layers, bidirectional=True, dtype=dtype,
                                    state_dict=m.state_dict())
                    p = make_problem(cell, t, b, D, h, layers, True, dtype, with_lengths=lengths, seed=18)
                    refs[(shape, cell, dtype)] = torch_run(tm, p)

    checked = []
    for level in avail:
        cfg, data = _run(level, tmp_path)
        assert cfg["simd"] == level, f"RNNKIT_SIMD={level} but show_config says {cfg['simd']}"
        assert set(data) == set(default)
        for key, v in data.items():
            shape, cell, dtype, name = key.split("|")
            assert v.dtype == np.dtype(dtype), key
            assert_close_rel(v, default[key], CROSS_RTOL[dtype], name=f"[{level} vs default] {key}")
            if have_torch:
                ref = refs[(shape, cell, dtype)]
                r = ref["grads"][name[6:]] if name.startswith("grads.") else ref[name]
                assert_close_rel(v, r, RTOL[dtype], name=f"[{level} vs torch] {key}")
        checked.append(level)
    assert checked == avail


@pytest.mark.parametrize("level", [lv for lv in LEVELS if lv not in _available()] + ["bogus"])
def test_unavailable_level_fails_clearly(level, tmp_path):
    proc = subprocess.run([sys.executable, "-c", "import rnnkit; print(rnnkit.show_config()['simd'])"],
                          env=_env(level), cwd=str(tmp_path), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode != 0, f"RNNKIT_SIMD={level} imported fine: {proc.stdout}"
    err = proc.stderr
    assert ("ImportError" in err) or ("RuntimeError" in err), err[-2000:]
    assert "RNNKIT_SIMD" in err or level in err, err[-2000:]
