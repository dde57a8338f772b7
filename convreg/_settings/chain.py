"""The one settings resolver. For every setting, the first layer that is set wins:

    argument > context (``use_*``, a ContextVar) > process (``set_*``) >
    environment variable > config file > default

The environment and the config file are read into a :class:`Snapshot` at most once per
second (``REFRESH_SECONDS``) or on :func:`reload_config`, so a call never touches the
file system; nothing is read at import. Context values live in ContextVars: local to the
thread or async task that set them (a new thread starts from the process layer).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from contextvars import ContextVar

from .._errors import ConfigError
from . import file as _file

REFRESH_SECONDS = 1.0
# Environment variables the settings read; everything else in os.environ is ignored.
ENV_VARS = ("CONVREG_BACKEND", "CONVREG_THREADS", "CONVREG_CONFIG", "OMP_NUM_THREADS",
            "XDG_CONFIG_HOME", "CONVREG_DISABLE_PLUGINS")

LOCK = threading.RLock()      # the one lock: process-layer writes and snapshot refreshes


class Snapshot:
    """The environment and config file as read at one moment."""

    __slots__ = ("stamp", "environ", "_file", "_memo")

    def __init__(self, stamp, environ):
        self.stamp = stamp
        self.environ = environ
        self._file = None       # (FileConfig or None, ConfigError or None), read lazily
        self._memo = {}         # per-setting parsed env/file values

    def file(self):
        """The validated FileConfig in force, None without one; ConfigError if invalid."""
        got = self._file
        if got is None:
            got = self._file = _load_file(self.environ)
        if got[1] is not None:
            raise got[1]
        return got[0]

    def file_path(self):
        """(path, how found) without validating the file."""
        return _file.config_path(environ=self.environ)


def _specs_of(name):
    """Option specs known without importing anything: built-ins' static tables, and the
    ``options`` of backends already loaded or registered."""
    from .._dispatch import registry
    from ..backends.catalog import option_specs

    specs = option_specs(name)
    if specs is None and name in registry._loaded:
        specs = dict(getattr(registry._loaded[name], "options", {}) or {})
    return specs


def _load_file(environ):
    from .._dispatch.registry import known_names

    try:
        path, where = _file.config_path(environ=environ)
        if path is None:
            return (None, None)
        return (_file.load(path, where, known_names(), _specs_of), None)
    except ConfigError as exc:
        return (None, exc)


_snapshot = None


def snapshot() -> Snapshot:
    """The current snapshot, re-read when older than REFRESH_SECONDS."""
    snap = _snapshot
    if snap is not None and time.monotonic() - snap.stamp < REFRESH_SECONDS:
        return snap
    return _refresh()


def _refresh() -> Snapshot:
    global _snapshot
    with LOCK:
        environ = {k: os.environ[k] for k in ENV_VARS if k in os.environ}
        snap = Snapshot(time.monotonic(), environ)
        _snapshot = snap
        return snap


def reload_config() -> None:
    """Re-read the environment and the config files now (they are otherwise re-checked at
    most once per second)."""
    global _snapshot
    from ..backends.catalog import refresh_plugin_names

    with LOCK:
        _file.clear_caches()
        refresh_plugin_names()
        _snapshot = None


_UNSET = object()


class Setting:
    """One setting and its layers. ``parse_env(raw, label)`` and ``parse_file(cfg)``
    turn the environment / file value into the setting's value (raising ConfigError);
    ``default(snap)`` returns ``(value, source)``."""

    def __init__(self, name, *, env=None, parse_env=None, file_value=None, default=None,
                 use_name=None, set_name=None):
        self.name = name
        self.env = env
        self.parse_env = parse_env
        self.file_value = file_value
        self.default = default
        self.use_name = use_name or f"use_{name}"
        self.set_name = set_name or f"set_{name}"
        self._var = ContextVar(f"convreg_{name}", default=None)
        self._process = None

    # -- layers written by the API (values already validated by the caller)
    def set_process(self, value) -> None:
        with LOCK:
            self._process = value

    @property
    def process(self):
        return self._process

    @contextlib.contextmanager
    def use(self, value):
        token = self._var.set(value)
        try:
            yield
        finally:
            self._var.reset(token)

    def context(self):
        return self._var.get()

    # -- resolution
    def resolve(self, argument=None, snap=None):
        """(value, source) for a call made now."""
        if argument is not None:
            return argument, "argument"
        value = self._var.get()
        if value is not None:
            return value, self.use_name
        value = self._process       # one read of an attribute is atomic; writers hold LOCK
        if value is not None:
            return value, self.set_name
        return self.resolve_outside(snap or snapshot())

    def resolve_outside(self, snap):
        """(value, source) from the environment, the file or the default."""
        memo = snap._memo.get(self.name, _UNSET)
        if memo is _UNSET:
            try:
                memo = self._outside(snap)
            except ConfigError as exc:
                memo = exc
            snap._memo[self.name] = memo
        if isinstance(memo, ConfigError):
            raise memo
        if memo is None:
            return self.default(snap)
        return memo

    def _outside(self, snap):
        if self.env:
            raw = snap.environ.get(self.env)
            if raw:
                return self.parse_env(raw, self.env), self.env
        if self.file_value is not None:
            cfg = snap.file()
            if cfg is not None:
                value = self.file_value(cfg)
                if value is not None:
                    return value, cfg.source
        return None
