"""BLAS pools held to a thread count while convreg's OpenMP threads call BLAS (never
OpenMP and BLAS threads at once)."""

from __future__ import annotations

import contextlib
import sys
import threading

_blas_lock = threading.Lock()
_blas = None
_blas_modules = 0        # len(sys.modules) when _blas was found
_blas_holders = 0        # blas_threads() blocks open now, over all threads
_blas_saved = None       # the pools' thread counts before the first of them entered


def _blas_libs():
    """threadpoolctl's BLAS controllers. The search walks every loaded library, so it is
    redone only when modules were imported since (scipy.linalg brings its own OpenBLAS)."""
    global _blas, _blas_modules
    if _blas is None or len(sys.modules) != _blas_modules:
        from threadpoolctl import ThreadpoolController

        _blas = ThreadpoolController().select(user_api="blas").lib_controllers
        _blas_modules = len(sys.modules)
    return _blas


@contextlib.contextmanager
def blas_threads(n: int):
    """Hold the BLAS pools to ``n`` threads for the block, restoring them afterwards.

    The pools are process-wide: when blocks of several threads overlap, the first to
    enter saves the counts and the last to leave restores them.
    """
    global _blas_holders, _blas_saved
    with _blas_lock:
        libs = _blas_libs()
        if _blas_holders == 0:
            _blas_saved = [(lib, lib.num_threads) for lib in libs]
        _blas_holders += 1
        for lib in libs:
            if lib.num_threads != n:
                lib.set_num_threads(n)
    try:
        yield
    finally:
        with _blas_lock:
            _blas_holders -= 1
            if _blas_holders == 0:
                for lib, k in _blas_saved:
                    if lib.num_threads != k:
                        lib.set_num_threads(k)
                _blas_saved = None
