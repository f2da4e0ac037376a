"""Build and runtime facts: ``show_config()``."""

from __future__ import annotations

from typing import Any

from ._backend import core, simd_available
from ._threads import default_threads
from ._version import __version__


def _cuda_available() -> bool:
    try:
        from . import _cuda  # type: ignore[attr-defined]  # noqa: F401
    except ImportError:
        return False
    return True


def config() -> dict[str, Any]:
    """Return the facts that :func:`show_config` prints.

    Returns
    -------
    dict
        ``version``, ``eigen_version``, ``simd`` (the level in use), ``simd_available``
        (levels built and supported by this CPU), ``eigen_simd`` (Eigen's instruction sets),
        ``n_threads`` (threads a call uses by default), ``openmp`` and ``cuda``.
    """
    return {
        "version": __version__,
        "eigen_version": core.eigen_version,
        "simd": core.simd_level,
        "simd_available": list(simd_available),
        "eigen_simd": core.eigen_simd,
        "n_threads": default_threads(),
        "openmp": bool(core.openmp),
        "cuda": _cuda_available(),
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
