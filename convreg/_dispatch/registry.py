"""The backend registry: one resolver from names to backend objects.

Built-ins (``convreg.backends.catalog.BUILTINS``) are imported on first use; a missing
compiled module makes one *unavailable* (remembered with the reason). Plugins load on the
first lookup of a name that is not built in. ``register_backend`` adds objects at run time.
"""

from __future__ import annotations

import importlib
import inspect
import itertools
import threading

from .._errors import BackendError
from ..backends.catalog import BUILTINS, plugin_names, refresh_plugin_names
from . import plugins

_lock = threading.RLock()
_counter = itertools.count(1)
generation = 0            # a new value after every change of _loaded or _unavailable


class _Tracked(dict):
    """A dict whose every change gives ``generation`` a new value, so that what was
    selected from it can be remembered until it changes (``select._memo``): by
    register_backend / unregister_backend, plugin discovery, loading a built-in, and
    tests that edit the dicts directly alike. Reads are plain dict reads."""

    def _changed(self):
        global generation
        generation = next(_counter)

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        self._changed()

    def __delitem__(self, key):
        super().__delitem__(key)
        self._changed()

    def pop(self, *args):
        try:
            return super().pop(*args)
        finally:
            self._changed()

    def popitem(self):
        try:
            return super().popitem()
        finally:
            self._changed()

    def setdefault(self, key, default=None):
        try:
            return super().setdefault(key, default)
        finally:
            self._changed()

    def update(self, *args, **kwargs):
        try:
            super().update(*args, **kwargs)
        finally:
            self._changed()

    def clear(self):
        super().clear()
        self._changed()

    def __ior__(self, other):
        self.update(other)
        return self


_loaded: dict = _Tracked()        # name -> backend object
_unavailable: dict = _Tracked()   # built-in or plugin name -> why it cannot be used here
_plugins_done = False
_takes_ctx: dict = {}     # id(backend method) -> whether it accepts the per-call ctx

# What to tell users who name a backend that ships as a plugin of an optional package.
_INSTALL_HINTS = {
    "torch": "the 'torch' backend is provided by convreg's torch plugin and needs PyTorch: "
             "pip install torch==2.13.0 (or pip install 'convreg[torch]')",
}


def _load_builtin(name):
    module, _, attr = BUILTINS[name].target.partition(":")
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
    refresh_plugin_names()
    found, failed = plugins.discover(reserved=set(BUILTINS))
    for name, backend in found.items():
        _loaded.setdefault(name, backend)
    for name, why in failed.items():
        if name not in _loaded:
            _unavailable.setdefault(name, why)


def known_names() -> set:
    """Every name a setting may use, without loading anything: the built-ins (available
    here or not, so a config file travels between machines), the installed plugins'
    entry points, and the backends registered at run time."""
    with _lock:
        return set(BUILTINS) | plugin_names() | set(_loaded)


def is_unavailable(name) -> bool:
    """True for a known backend that cannot load here (e.g. extension not compiled)."""
    if not isinstance(name, str) or name in _loaded:   # the hot path: no lock
        return False
    with _lock:
        if name in _loaded:
            return False
        if name in BUILTINS and name not in _unavailable:
            _load_builtin(name)
        elif name not in BUILTINS:
            _discover_plugins()
        return name in _unavailable


def unavailable() -> dict:
    """name -> why, for every backend known to be unusable here."""
    with _lock:
        return dict(_unavailable)


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
    backend = _loaded.get(name)      # the hot path: one dict read, no lock
    if backend is not None:
        return backend
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
        if name in _unavailable:
            raise BackendError(f"backend {name!r} is not available here: {_unavailable[name]}")
    hint = _INSTALL_HINTS.get(name)
    if hint:
        raise BackendError(f"backend {name!r} is not installed: {hint}")
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


def takes_ctx(method, nargs: int = 4) -> bool:
    """Whether a backend method accepts the per-call context (an argument after its
    ``nargs`` data arguments, or one named ``ctx``); plugins written for the
    four-argument ``conv2d(spec, x, w, b)`` protocol are called without it."""
    key = (getattr(method, "__func__", method), nargs)
    known = _takes_ctx.get(key)
    if known is None:
        try:
            params = inspect.signature(method).parameters.values()
        except (TypeError, ValueError):
            params = ()
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY,
                                                      p.POSITIONAL_OR_KEYWORD)]
        known = (any(p.name == "ctx" for p in params) or len(positional) > nargs
                 or any(p.kind == p.VAR_POSITIONAL for p in params))
        _takes_ctx[key] = known
    return known
