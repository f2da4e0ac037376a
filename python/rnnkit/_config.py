"""Build and runtime facts: ``show_config()``."""

from __future__ import annotations

from typing import Any

from ._backend import core, simd_available
from ._threads import default_threads
from ._version import __version__


def _version_text(number: int) -> str:
    """CUDA's version integers (13000 -> "13.0")."""
    return f"{number // 1000}.{number % 1000 // 10}" if number else ""


def config() -> dict[str, Any]:
    """Return the facts that :func:`show_config` prints.

    Returns
    -------
    dict
        ``version``, ``eigen_version``, ``simd`` (the level in use), ``simd_available``
        (levels built and supported by this CPU), ``eigen_simd`` (Eigen's instruction sets),
        ``n_threads`` (threads a call uses by default), ``openmp``; ``cuda_built`` (the
        optional CUDA module is installed), ``cuda`` (it is usable: a driver and a GPU),
        ``cuda_runtime``, ``cuda_driver``, ``cuda_devices`` (names) and ``cuda_reason``
        (why ``device="cuda"`` is unusable, or "").
    """
    from . import cuda

    gpu = cuda.runtime_info()
    return {
        "version": __version__,
        "eigen_version": core.eigen_version,
        "simd": core.simd_level,
        "simd_available": list(simd_available),
        "eigen_simd": core.eigen_simd,
        "n_threads": default_threads(),
        "openmp": bool(core.openmp),
        "cuda_built": bool(gpu["built"]),
        "cuda": gpu["device_count"] > 0,
        "cuda_runtime": _version_text(gpu["runtime_version"]),
        "cuda_driver": _version_text(gpu["driver_version"]),
        "cuda_devices": list(gpu["devices"]),
        "cuda_reason": gpu["reason"],
    }


def show_config() -> dict[str, Any]:
    """Print how rnnkit was built and what it uses on this machine.

    Returns
    -------
    dict
        The printed facts (see :func:`config`).
    """
    facts = config()
    width = max(len(k) for k in facts)
    for key, value in facts.items():
        if isinstance(value, list):
            value = ", ".join(value)
        print(f"{key:<{width}} : {value}")
    return facts
