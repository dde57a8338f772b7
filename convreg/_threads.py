"""The thread count of the compiled backends, and BLAS pools held to it.

Precedence: ``use_threads()`` > ``set_threads()`` > ``CONVREG_THREADS`` > config
``threads`` > the cores this process may run on.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import threading
from contextvars import ContextVar

from ._config import load_config
from ._errors import ConfigError, ConvSpecError, ConvTypeError

_context: ContextVar = ContextVar("convreg_threads", default=None)
_lock = threading.Lock()
_process = None


@functools.lru_cache(maxsize=None)
def available_cores() -> int:
    """Cores this process may run on (read once: affinity rarely changes mid-run)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


# Thread counts reach C ints and OpenMP team sizes: larger values are mistakes that would
# otherwise surface as OverflowError (or an attempt to start billions of threads).
MAX_THREADS = 4096


def _check(n, name="threads") -> int:
    if isinstance(n, bool) or not isinstance(n, int):
        raise ConvTypeError(f"{name} must be an int >= 1, but got {name}={n!r}")
    if n < 1 or n > MAX_THREADS:
        raise ConvSpecError(
            f"{name} must be between 1 and {MAX_THREADS}, but got {name}={n!r}")
    return n


def set_threads(n) -> None:
    """Set the process-wide thread count of the compiled backends (None: back to default)."""
    global _process
    with _lock:
        _process = None if n is None else _check(n)


@contextlib.contextmanager
def use_threads(n):
    """Within the block (this thread / async task only), compiled backends use ``n`` threads."""
    token = _context.set(_check(n))
    try:
        yield
    finally:
        _context.reset(token)


def threads_and_source():
    """(thread count, the rule that chose it)."""
    local = _context.get()
    if local is not None:
        return local, "use_threads"
    process = _process  # one read of a module global is atomic; writers hold _lock
    if process is not None:
        return process, "set_threads"
    env = os.environ.get("CONVREG_THREADS")
    if env:
        try:
            return _check(int(env), "CONVREG_THREADS"), "CONVREG_THREADS"
        except (ValueError, ConvSpecError):
            raise ConfigError(
                f"CONVREG_THREADS must be a whole number between 1 and {MAX_THREADS}, but got "
                f"CONVREG_THREADS={env!r}"
            ) from None
    cfg = load_config()
    if cfg is not None and cfg.threads is not None:
        return cfg.threads, f"config {cfg.path}"
    return available_cores(), "default (all cores)"


def get_threads() -> int:
    """The thread count a compiled backend uses for a call made now."""
    return threads_and_source()[0]


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
