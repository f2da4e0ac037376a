"""Choose the compiled core for this CPU.

The extension is built once per SIMD level (``_core_generic``, ``_core_avx2``,
``_core_avx512``). At import the best level that was built and that the CPU supports is
loaded; the environment variable ``RNNKIT_SIMD`` forces a lower one (for tests and for
comparing paths).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from types import ModuleType
from typing import Any

import numpy as np

#: SIMD levels, best first.
LEVELS: tuple[str, ...] = ("avx512", "avx2", "generic")


def _built(level: str) -> bool:
    return importlib.util.find_spec(f"rnnkit._core_{level}") is not None


def _select() -> tuple[ModuleType, list[str]]:
    generic = importlib.import_module("rnnkit._core_generic")
    supported = generic.cpu_features()
    # Never import a module the CPU cannot run: its initialisation may use those instructions.
    available = [lvl for lvl in LEVELS if supported.get(lvl, False) and _built(lvl)]
    forced = os.environ.get("RNNKIT_SIMD", "").strip().lower()
    if forced:
        if forced not in LEVELS:
            raise ImportError(f"RNNKIT_SIMD must be one of {', '.join(LEVELS)}; got {forced!r}")
        if forced not in available:
            raise ImportError(
                f"RNNKIT_SIMD={forced} is not available here (built and supported by this CPU: "
                f"{', '.join(available)})"
            )
        level = forced
    else:
        level = available[0]
    return importlib.import_module(f"rnnkit._core_{level}"), available


core, simd_available = _select()

#: The suffix of each dtype's compiled functions (``forward_float32``). ``dtype.name`` is
#: computed on every access (about 2.5 us, as long as a small forward's whole C++ call).
_SUFFIXES: dict[np.dtype, str] = {np.dtype(np.float32): "float32", np.dtype(np.float64): "float64"}


def dtype_suffix(dtype: np.dtype) -> str:
    """"float32" or "float64" for a float dtype, without computing ``dtype.name``."""
    return _SUFFIXES[dtype]


def kernel(name: str, dtype: np.dtype) -> Any:
    """The compiled function ``{name}_{dtype}`` of the selected core, looked up at each call
    (so that a replaced core attribute is seen)."""
    return getattr(core, f"{name}_{_SUFFIXES[dtype]}")
