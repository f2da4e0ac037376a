"""How many threads a C++ call uses when ``n_threads`` is None.

The starting point is OpenMP's own limit for the calling thread, ``omp_get_max_threads()``:
``OMP_NUM_THREADS`` as it was when the library loaded, else the cores, lowered by
``omp_set_num_threads`` and by ``threadpoolctl.threadpool_limits(..., user_api="openmp")``
(scikit-learn's tool for the purpose). Two things can tell a worker its budget after that
value was fixed, and both lower it:

- ``OMP_NUM_THREADS`` as it is *now*. The engines that run searches announce a worker's
  budget through it: joblib's loky and multiprocessing backends set it to
  ``inner_max_num_threads`` (or cores // n_jobs) in each worker, Dask's nanny sets it to 1
  (``distributed.nanny.pre-spawn-environ``), and Ray sets it to the CPUs of the task or actor
  (1 by default) -- Ray does so inside a running worker, possibly after rnnkit loaded
  OpenMP, which then no longer reads it.
- A joblib worker *thread*: a call running in a thread other than the main one, inside a
  joblib batch (the active backend has ``nesting_level >= 1``, which joblib sets for the
  code its workers run), shares this process's cores with the other workers of that
  ``Parallel`` call. It gets one thread, as joblib's own nested ``Parallel`` calls go
  sequential there.

rnnkit never imports joblib for this: a process that has not imported it runs no joblib
worker. Note that a Dask ``LocalCluster(processes=True)`` started in this process leaves
``OMP_NUM_THREADS=1`` in this process's environment as well (the nanny updates
``os.environ`` before spawning its workers), so later fits here take one thread too unless
``n_threads`` is given.
"""

from __future__ import annotations

import sys
import threading
from typing import Optional

from ._backend import core


def env_threads() -> Optional[int]:
    """The thread count that ``OMP_NUM_THREADS`` asks for now, or None where unset or invalid.

    Returns
    -------
    int or None
        The first entry of a list such as ``"4,2"`` (OpenMP's outermost level).
    """
    # Read by the C++ module (getenv, which os.environ's assignments update too): every call
    # with n_threads=None asks, and os.environ.get costs 1 us where the variable is unset.
    n = int(core.env_threads())
    return n if n >= 1 else None


def in_joblib_worker_thread() -> bool:
    """Whether this call runs in a joblib worker thread beside the other workers of its process.

    Returns
    -------
    bool
        True in a non-main thread while joblib's active backend has ``nesting_level >= 1``.
    """
    if threading.current_thread() is threading.main_thread():
        return False
    parallel = sys.modules.get("joblib.parallel")
    if parallel is None:
        return False
    try:
        backend, _ = parallel.get_active_backend()
    except Exception:  # pragma: no cover - a joblib whose internals changed: no opinion
        return False
    return (getattr(backend, "nesting_level", None) or 0) >= 1


def default_threads() -> int:
    """Threads a C++ call uses when ``n_threads`` is None (see the module docstring).

    Returns
    -------
    int
        ``min(omp_get_max_threads(), OMP_NUM_THREADS now)``, and 1 in a joblib worker thread.
    """
    n = int(core.default_threads())
    env = env_threads()
    if env is not None:
        n = min(n, env)
    if n > 1 and in_joblib_worker_thread():
        n = 1
    return max(1, n)
