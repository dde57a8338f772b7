"""The backend registry: one resolver from names to backends, and the selection rules.

Which backend a call without ``backend=`` uses, first rule that is set wins:

    ``backend=`` argument > innermost ``use_backend()`` > ``set_backend()`` >
    ``CONVREG_BACKEND`` > config file ``backend`` > built-in default ``"cython"``
    (``"python"`` with one warning when the compiled extension is missing).

``use_backend`` lives in a ``ContextVar``: it is local to the thread or async task
that entered it, and a new thread starts from the process default.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import threading
import warnings
from contextvars import ContextVar
from typing import NamedTuple

from ._errors import BackendError, ConfigError

# Built-in backends, imported on first use; a missing compiled module makes one unavailable.
BUILTINS = {
    "python": "convreg.backends.python:PythonBackend",
    "cython-direct": "convreg.backends.cython_direct:CythonDirectBackend",
    "cython-im2col": "convreg.backends.cython_im2col:CythonIm2colBackend",
    "cython": "convreg.backends.cython_auto:CythonAutoBackend",
}

_lock = threading.RLock()
_loaded: dict = {}        # name -> backend object
_unavailable: dict = {}   # built-in name -> why it could not load
_plugins_done = False
_process_default = None   # tuple of names, or None
_context: ContextVar = ContextVar("convreg_backend", default=None)
_warned_fallback = False


class CurrentBackend(NamedTuple):
    """The backend a call without ``backend=`` would use now, and the rule that chose it.

    ``name`` is a string, or a tuple of names for an ordered list (the first that
    supports a call runs it). ``source`` is one of ``"use_backend"``, ``"set_backend"``,
    ``"CONVREG_BACKEND"``, ``"config <path>"`` or ``"default"``.
    """

    name: object
    source: str


def _load_builtin(name):
    module, _, attr = BUILTINS[name].partition(":")
    try:
        obj = getattr(importlib.import_module(module), attr)()
    except ImportError as exc:
        hint = "" if "pip install" in str(exc) else " (build the compiled extension: pip install .)"
        _unavailable[name] = f"{exc}{hint}"
        return None
    _loaded[name] = obj
    return obj


def _discover_plugins():
    global _plugins_done
    if _plugins_done:
        return
    _plugins_done = True
    from ._plugins import discover

    for name, backend in discover(reserved=set(BUILTINS)).items():
        _loaded.setdefault(name, backend)


def known_backend_names() -> set:
    """Every name a backend setting may use: the built-ins (available here or not, so a
    config file travels between machines) and the plugins."""
    return set(available_backends()) | set(BUILTINS)


def is_unavailable_builtin(name) -> bool:
    """True for a built-in backend that cannot load here (e.g. extension not compiled)."""
    if name not in BUILTINS:
        return False
    with _lock:
        if name not in _loaded and name not in _unavailable:
            _load_builtin(name)
        return name in _unavailable


def available_backends() -> list:
    """Names of the backends that can run here, built-ins first (loads plugins once)."""
    with _lock:
        for name in BUILTINS:
            if name not in _loaded and name not in _unavailable:
                _load_builtin(name)
        _discover_plugins()
        builtins = [n for n in BUILTINS if n in _loaded]
        return builtins + sorted(n for n in _loaded if n not in BUILTINS)


def get_backend(name):
    """The backend registered as ``name``; unknown names list the known ones."""
    if not isinstance(name, str):
        raise BackendError(f"a backend name must be a string, but got {name!r}")
    with _lock:
        backend = _loaded.get(name)
        if backend is not None:
            return backend
        if name in BUILTINS:
            backend = _load_builtin(name) if name not in _unavailable else None
            if backend is None:
                raise BackendError(
                    f"backend {name!r} is not available here: {_unavailable[name]}")
            return backend
        _discover_plugins()
        if name in _loaded:
            return _loaded[name]
    raise BackendError(f"Unknown backend {name!r}; available backends are {available_backends()}")


def register_backend(name, backend, *, replace=False) -> None:
    """Register ``backend`` (an object with ``supports`` and ``conv2d``) under ``name``.

    Built-in names and names already registered are refused unless ``replace=True``.
    """
    if not isinstance(name, str) or not name:
        raise BackendError(f"a backend name must be a non-empty string, but got {name!r}")
    for attr in ("supports", "conv2d"):
        if not callable(getattr(backend, attr, None)):
            raise BackendError(
                f"backend {name!r} must have a callable {attr}(); got {backend!r}")
    with _lock:
        _discover_plugins()
        taken = name in _loaded or name in BUILTINS
        if taken and not replace:
            raise BackendError(
                f"backend name {name!r} is already registered; pass replace=True to replace it")
        _unavailable.pop(name, None)
        _loaded[name] = backend


def unregister_backend(name) -> None:
    """Remove a registered backend (built-ins come back on their next lookup)."""
    with _lock:
        if _loaded.pop(name, None) is None:
            raise BackendError(f"Unknown backend {name!r}; available backends are "
                               f"{available_backends()}")


def backend_option_specs(name):
    """The config keys the backend ``name`` accepts, or None when there is no such backend."""
    try:
        backend = get_backend(name)
    except BackendError:
        return None
    return dict(getattr(backend, "options", {}) or {})


def _names(value, what) -> tuple:
    """A backend setting (name, backend object, or sequence of them) as a tuple."""
    if isinstance(value, str) or _is_backend_object(value):
        return (value,)
    if isinstance(value, (list, tuple)) and value and all(
            isinstance(v, str) or _is_backend_object(v) for v in value):
        return tuple(value)
    raise BackendError(
        f"{what} must be a backend name or a non-empty list of backend names, but got "
        f"{what}={value!r}; available backends are {available_backends()}")


def _is_backend_object(value) -> bool:
    return callable(getattr(value, "conv2d", None)) and callable(getattr(value, "supports", None))


def _validated(names, what) -> tuple:
    for n in names:
        if isinstance(n, str):
            try:
                get_backend(n)
            except BackendError as exc:
                raise BackendError(f"{what}: {exc}") from None
    return names


def set_backend(name) -> None:
    """Set the process-wide default backend (a name or ordered list); None clears it."""
    global _process_default
    names = None if name is None else _validated(_names(name, "set_backend"), "set_backend")
    with _lock:
        _process_default = names


@contextlib.contextmanager
def use_backend(name):
    """Within the block, calls without ``backend=`` use ``name`` (a name or ordered list).

    The setting is held in a ``ContextVar``: it applies to this thread or async task
    only; other threads keep their own choice, and a new thread starts from the process
    default. Blocks nest; the innermost wins.
    """
    names = _validated(_names(name, "use_backend"), "use_backend")
    token = _context.set(names)
    try:
        yield get_backend(names[0]) if isinstance(names[0], str) else names[0]
    finally:
        _context.reset(token)


def _default_names():
    global _warned_fallback
    with _lock:
        if "cython" not in _loaded and "cython" not in _unavailable:
            _load_builtin("cython")
        if "cython" in _loaded:
            return ("cython",)
        if not _warned_fallback:
            _warned_fallback = True
            warnings.warn(
                "convreg: the compiled extension is missing, so the default backend is the "
                f"slow pure-Python reference ({_unavailable.get('cython')}). Build it with "
                "'pip install .' from the source tree.", RuntimeWarning, stacklevel=4)
        return ("python",)


def resolve(backend=None):
    """(tuple of backend names/objects, source) for a call made now."""
    if backend is not None:
        return _names(backend, "backend"), "argument"
    ctx = _context.get()
    if ctx is not None:
        return ctx, "use_backend"
    process = _process_default  # one read of a module global is atomic; writers hold _lock
    if process is not None:
        return process, "set_backend"
    env = os.environ.get("CONVREG_BACKEND")
    if env:
        names = tuple(part.strip() for part in env.split(","))
        if not all(names):
            raise ConfigError(f"CONVREG_BACKEND={env!r}: expected a backend name or a "
                              "comma-separated list of names")
        return _validated(names, f"CONVREG_BACKEND={env!r}"), "CONVREG_BACKEND"
    from ._config import load_config

    cfg = load_config()
    if cfg is not None and cfg.backend is not None:
        return cfg.backend, f"config {cfg.path}"
    return _default_names(), "default"


def current_backend() -> CurrentBackend:
    """The backend a call without ``backend=`` would use now, and which rule chose it."""
    names, source = resolve(None)
    shown = tuple(getattr(n, "name", n) for n in names)
    return CurrentBackend(shown[0] if len(shown) == 1 else shown, source)


def backend_settings(name) -> dict:
    """The effective settings of backend ``name``: its defaults overlaid by the config file."""
    from ._config import load_config

    specs = backend_option_specs(name) or {}
    values = {key: spec.default for key, spec in specs.items()}
    cfg = load_config()
    if cfg is not None:
        values.update(cfg.backends.get(name, {}))
    return values
