"""The optional CUDA backend: is it there, which devices, and why not.

rnnkit's CUDA part is its own compiled module, ``rnnkit._cuda``, built only on request
(``RNNKIT_CUDA=1 pip install .``, see the README); ``import rnnkit`` never needs it. Layers
created with ``device="cuda"`` (or ``"cuda:N"``) run their forward and backward passes on
the GPU: inputs and outputs stay numpy arrays, each call copies its inputs to the device
once and its results back once, and the activations that backward needs stay on the device.

For tests on machines without a GPU, ``RNNKIT_CUDA_SIMULATE=1`` makes ``"cuda"`` run the
very same device driver, kernels and GEMM calls on the host (``rnnkit._device_host``); only
the thin CUDA executor is then left out.
"""

from __future__ import annotations

import ctypes
import functools
import importlib
import importlib.util
import os
from types import ModuleType
from typing import Any, Optional

__all__ = ["device_count", "get_device_name", "is_available", "parse_device", "runtime_info", "unavailable_reason"]

_SIMULATE_ENV = "RNNKIT_CUDA_SIMULATE"


def _simulated() -> bool:
    return os.environ.get(_SIMULATE_ENV, "").strip() not in ("", "0")


def _preload_cublas() -> None:
    """Load libcublas from the ``nvidia-cublas`` package, where installed, so that the
    extension finds it wherever that package lives."""
    try:
        import nvidia  # type: ignore[import-not-found]  # namespace package of NVIDIA's wheels
    except ImportError:
        return
    for root in getattr(nvidia, "__path__", []):
        for sub in ("cu13", "cu12", "cublas"):
            lib_dir = os.path.join(root, sub, "lib")
            if not os.path.isdir(lib_dir):
                continue
            for name in sorted(os.listdir(lib_dir)):
                if name.startswith(("libcublasLt.so", "libcublas.so")):
                    try:
                        ctypes.CDLL(os.path.join(lib_dir, name), mode=ctypes.RTLD_GLOBAL)
                    except OSError:
                        pass


@functools.lru_cache(maxsize=1)
def _load_cuda() -> tuple[Optional[ModuleType], str]:
    """(the rnnkit._cuda module or None, why not)."""
    if importlib.util.find_spec("rnnkit._cuda") is None:
        return None, (
            "rnnkit was built without CUDA; rebuild with `RNNKIT_CUDA=1 pip install .` on a machine "
            "with the CUDA toolkit (nvcc) to get the rnnkit._cuda module"
        )
    _preload_cublas()
    try:
        module = importlib.import_module("rnnkit._cuda")
    except ImportError as exc:  # typically libcublas missing
        return None, f"rnnkit._cuda could not be loaded ({exc}); `pip install nvidia-cublas` provides cuBLAS"
    return module, ""


def _module() -> tuple[Optional[ModuleType], str]:
    if _simulated():
        return importlib.import_module("rnnkit._device_host"), ""
    return _load_cuda()


def runtime_info() -> dict[str, Any]:
    """Facts for :func:`rnnkit.show_config`.

    Returns
    -------
    dict
        ``built`` (the CUDA module exists and loads), ``runtime_version`` and
        ``driver_version`` (as CUDA's integers, e.g. 13000; 0 when absent),
        ``device_count``, ``devices`` (names) and ``reason`` (why CUDA is unusable, or "").
    """
    module, reason = _module()
    if module is None:
        return {"built": False, "runtime_version": 0, "driver_version": 0, "device_count": 0, "devices": [],
                "reason": reason}
    info = module.info()
    count = int(info["device_count"]) if not info["error"] else 0
    return {
        "built": True,
        "simulated": not info["compiled"],
        "runtime_version": int(info["runtime_version"]),
        "driver_version": int(info["driver_version"]),
        "device_count": count,
        "devices": [module.device_name(i) for i in range(count)],
        "reason": _explain(info),
    }


def _explain(info: dict) -> str:
    error = str(info["error"])
    if not error:
        return ""
    if info["compiled"] and int(info["driver_version"]) == 0:
        return f"no NVIDIA driver is loaded on this machine (no GPU, or no driver installed): {error}"
    return error


def is_available() -> bool:
    """True when rnnkit was built with CUDA and a usable GPU is present."""
    return runtime_info()["device_count"] > 0


def device_count() -> int:
    """Number of usable CUDA devices (0 without a build with CUDA, a driver or a GPU)."""
    return int(runtime_info()["device_count"])


def unavailable_reason() -> Optional[str]:
    """Why ``device="cuda"`` cannot be used here, or None when it can."""
    info = runtime_info()
    if info["device_count"] > 0:
        return None
    return info["reason"] or "no CUDA device found"


def get_device_name(index: int = 0) -> str:
    """Name of CUDA device ``index`` (ValueError if there is no such device)."""
    info = runtime_info()
    if not 0 <= index < info["device_count"]:
        raise ValueError(f"no CUDA device {index}: {info['device_count']} usable")
    return info["devices"][index]


def parse_device(device: Any) -> Optional[int]:
    """``"cpu"`` -> None, ``"cuda"`` -> 0, ``"cuda:N"`` -> N.

    Raises
    ------
    TypeError, ValueError
        For anything else.
    """
    if not isinstance(device, str):
        raise TypeError(f"device must be a string ('cpu', 'cuda' or 'cuda:N'), got {type(device).__name__}")
    text = device.strip().lower()
    if text == "cpu":
        return None
    if text == "cuda":
        return 0
    if text.startswith("cuda:") and text[5:].isdigit():
        return int(text[5:])
    raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")


def _require(index: int) -> ModuleType:
    """The module that runs device ``index``, or RuntimeError saying why there is none."""
    module, reason = _module()
    if module is None:
        raise RuntimeError(f"device='cuda' is unavailable: {reason}")
    info = module.info()
    if info["error"]:
        raise RuntimeError(f"device='cuda' is unavailable: {_explain(info)}")
    if not 0 <= index < int(info["device_count"]):
        raise RuntimeError(f"device='cuda:{index}' does not exist: {info['device_count']} CUDA device(s) found")
    return module


class _DeviceModelCalls:
    """A model (stack + head + loss) on a device, with the CPU core's call signatures
    (``model_predict_*`` / ``model_loss_and_grad_*``: the spec and thread count are ignored)."""

    def __init__(self, spec: Any, dtype_name: str, index: int) -> None:
        module = _require(index)
        rnn = spec.rnn
        self._model = getattr(module, f"Model_{dtype_name}")(
            rnn.cell, rnn.input_size, rnn.hidden_size, rnn.num_layers, rnn.bidirectional, rnn.bias,
            spec.n_outputs, spec.loss, spec.readout, spec.vocab_size, index,
        )

    def predict(self, spec: Any, params: Any, x: Any, lengths: Any, n_threads: int, frozen: bool = False,
                x_mean: Any = None, x_scale: Any = None) -> Any:
        if x_mean is not None:  # the CPU core's input scaling, in numpy here; None where not finite
            from ._sequences import standardised

            x = standardised(x, x_mean, x_scale, params.dtype)
            if x is None:
                return None
        return self._model.predict(params, x, lengths)  # the device model copies the parameters per call

    def loss_and_grad(self, spec: Any, params: Any, x: Any, lengths: Any, labels: Any, values: Any, grads: Any,
                      dropout: float, key: int, n_threads: int, weights: Any = None) -> float:
        return self._model.loss_and_grad(params, x, lengths, labels, values, grads, dropout, key, weights)

    def can_step(self, opt: Any, params: Any) -> bool:
        """Whether :meth:`train_step` can run ``opt``: it optimizes ``params`` alone (as the estimators' do)."""
        pairs = getattr(opt, "_params", ())
        return (len(pairs) == 1 and pairs[0][0].size == params.size
                and pairs[0][0].__array_interface__["data"][0] == params.__array_interface__["data"][0])

    def push_optimizer_state(self, opt: Any) -> None:
        """Copy ``opt``'s state buffers to the device, where :meth:`train_step` updates them."""
        for slot, name in enumerate(opt._buffers):
            self._model.set_optimizer_state(slot, opt.state[0][name])

    def pull_optimizer_state(self, opt: Any) -> None:
        """Copy the device's optimizer state back into ``opt``'s buffers."""
        for slot, name in enumerate(opt._buffers):
            self._model.get_optimizer_state(slot, opt.state[0][name])

    def train_step(self, params: Any, x: Any, lengths: Any, labels: Any, values: Any, weights: Any, dropout: float,
                   key: int, clip_value: Optional[float], clip_norm: Optional[float], opt: Any,
                   params_resident: bool = False) -> float:
        """One step on the device: the gradient, the clipping and ``opt``'s next step (step count
        ``opt.step_count + 1``, not counted here); ``params`` is overwritten with the result.
        ``params_resident``: ``params`` hold what the last train_step left there and on the
        device, unchanged since, so they are not copied in again."""
        kind, options = opt._settings()
        return self._model.train_step(params, x, lengths, labels, values, weights, dropout, key, clip_value, clip_norm,
                                      kind, options, opt.step_count + 1, params_resident)


def _model_calls(owner: Any, spec: Any, dtype_name: str, index: Optional[int]) -> tuple:
    """(predict, loss_and_grad) of a compiled model: the CPU core's (with a pool of workspaces,
    cached on ``owner``), or a device's when ``index`` is a device number. The device model is cached on ``owner`` (an estimator), keyed
    by everything that selects it, so that repeated calls reuse its device memory."""
    if index is None:
        calls = owner.__dict__.get("_cpu_model")
        if calls is None or calls[0] != dtype_name:  # the import only here: it cost 3 us a call
            from ._workspaces import CpuModelCalls

            calls = owner.__dict__["_cpu_model"] = (dtype_name, CpuModelCalls(dtype_name))
        return calls[1].predict, calls[1].loss_and_grad
    key = (index, dtype_name, id(spec), _simulated())
    cached = owner.__dict__.get("_device_model")
    if cached is None or cached[0] != key:
        cached = owner.__dict__["_device_model"] = (key, spec, _DeviceModelCalls(spec, dtype_name, index))
    calls = cached[2]
    return calls.predict, calls.loss_and_grad
