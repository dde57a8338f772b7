"""Shared fixtures: isolation from the environment, a recording mock backend, and the
``CONVREG_TEST_BACKEND`` switch that reruns the value tests through one backend.

    CONVREG_TEST_BACKEND=cython-direct pytest tests/test_conv2d_values.py
"""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest

import convreg
from convreg._dispatch import registry as _registry
from convreg._dispatch import tune as _tune
from convreg._settings import chain as _chain
from convreg.backends import catalog as _catalog

# Tolerances for comparing against hand-computed values (exact small integers mostly).
TOL = {np.float32: dict(rtol=1e-6, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-12)}

_ISOLATED_VARS = ("CONVREG_BACKEND", "CONVREG_CONFIG", "CONVREG_THREADS", "OMP_NUM_THREADS")


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Every test runs in an empty directory with no convreg settings in the environment."""
    work = tmp_path / "cwd"
    work.mkdir()
    xdg = tmp_path / "xdg"
    xdg.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(xdg))
    # The tuning cache of a test lives in its own directory (never the user's ~/.cache).
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    _tune.forget()
    for var in _ISOLATED_VARS:
        monkeypatch.delenv(var, raising=False)
    # Tests change the environment and files between calls: read them on every call
    # (test_settings_chain.py checks the once-per-second refresh itself).
    monkeypatch.setattr(_chain, "REFRESH_SECONDS", 0.0)
    convreg.reload_config()
    convreg.set_backend(None)
    convreg.set_threads(None)
    yield work
    convreg.set_backend(None)
    convreg.set_threads(None)
    convreg.reload_config()
    _tune.forget()


@pytest.fixture
def xdg_dir(isolated):
    return isolated.parent / "xdg"


class MockBackend(convreg.Backend):
    """A backend that records each call (per thread) and returns a constant output.

    ``supports_answer`` (a ``convreg.Support`` or a callable spec -> Support) lets it
    decline calls; ``value`` is what every output element is set to.
    """

    padding_modes = frozenset({"zeros", "reflect", "replicate", "circular"})

    def __init__(self, name="mock", value=7.0, supports_answer=None):
        self.name = name
        self.value = value
        self.supports_answer = supports_answer
        self._lock = threading.Lock()
        self.calls = {}        # thread ident -> [spec, ...]
        self.asked = []        # every spec supports() was asked about

    def supports(self, spec):
        self.asked.append(spec)
        answer = self.supports_answer
        if answer is None:
            return convreg.Support(True)
        return answer(spec) if callable(answer) else answer

    def conv2d(self, spec, x, w, b):
        with self._lock:
            self.calls.setdefault(threading.get_ident(), []).append(spec)
        return np.full(spec.output_shape, self.value, dtype=spec.dtype)

    @property
    def ncalls(self) -> int:
        with self._lock:
            return sum(len(v) for v in self.calls.values())

    def calls_in_this_thread(self) -> list:
        with self._lock:
            return list(self.calls.get(threading.get_ident(), []))


@pytest.fixture
def register_mock():
    """Factory: ``register_mock(name, **kw)`` registers a MockBackend, removed afterwards."""
    names = []

    def make(name="mock", **kw):
        be = MockBackend(name, **kw)
        convreg.register_backend(name, be, replace=True)
        names.append(name)
        return be

    yield make
    for name in names:
        _registry._loaded.pop(name, None)


@pytest.fixture
def mock(register_mock):
    """A MockBackend registered as ``"mock"``."""
    return register_mock("mock")


BUILTIN_BACKENDS = [n for n in convreg.available_backends()
                    if n in _catalog.BUILTINS] or ["python"]


def value_backends() -> list:
    """The backends the value tests run through: every built-in backend available here,
    or only $CONVREG_TEST_BACKEND when it is set."""
    only = os.environ.get("CONVREG_TEST_BACKEND")
    return [only] if only else BUILTIN_BACKENDS


@pytest.fixture(params=value_backends())
def backend(request):
    """Each value test runs through every built-in backend (ids name it)."""
    # Fail loudly (not skip) when the requested backend does not exist.
    convreg.get_backend(request.param)
    return request.param


def assert_releases_gil(call, attempts=3):
    """Prove that ``call()`` releases the GIL: a second thread must reach an event while
    the first is inside the call. (With the GIL held, the second thread could not run a
    single bytecode between the call's start and its return.)"""
    for _ in range(attempts):
        started, progressed, finished = threading.Event(), threading.Event(), threading.Event()

        def witness():
            started.wait()
            count = 0
            while not finished.is_set():
                count += 1
                if count == 2000:
                    progressed.set()

        t = threading.Thread(target=witness)
        t.start()
        try:
            started.set()
            call()
            seen = progressed.is_set()
        finally:
            finished.set()
            t.join()
        if seen:
            return
    raise AssertionError("no other thread made progress while the call ran: the GIL was held")


# Built-in backends that serve part of the semantics by design (they decline the rest with
# a reason): a value test whose call such a backend declines is skipped, not failed.
PARTIAL_BACKENDS = {"cython-winograd"}


@pytest.hookimpl(hookwrapper=True)
def pytest_pyfunc_call(pyfuncitem):
    outcome = yield
    name = pyfuncitem.funcargs.get("backend") if hasattr(pyfuncitem, "funcargs") else None
    if name not in PARTIAL_BACKENDS:
        return
    exc = outcome.excinfo[1] if outcome.excinfo else None
    if isinstance(exc, convreg.BackendError) and getattr(exc, "refusals", None):
        outcome.force_exception(pytest.skip.Exception(
            f"{name} declines this call: {'; '.join(exc.refusals)}"))
