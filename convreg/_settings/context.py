"""The per-call context: every setting a call needs, resolved once by the dispatcher and
handed to the backend (which never reads settings itself)."""

from __future__ import annotations

from .backend import BACKEND, parse_argument
from .chain import snapshot
from .options import resolve_option, resolve_options
from .threads import THREADS


class CallContext:
    """What one call runs with: ``backend`` (tuple of names/objects) and its source;
    ``threads`` (resolved on first use, so a pure-Python call loads no compiled module)
    and ``options_for(name)``, a backend's options."""

    __slots__ = ("snap", "backend", "backend_source", "_threads", "_threads_source",
                 "_options", "weight_cache")

    def __init__(self, snap, backend, backend_source, threads=None, threads_source=None):
        self.snap = snap
        self.backend = backend
        self.backend_source = backend_source
        self._threads = threads
        self._threads_source = threads_source
        self._options = None
        # A layer's own dict where backends may keep work derived from its weights (e.g.
        # Winograd's transformed weights), checked against the weights on every use;
        # None for functional calls, which derive it per call.
        self.weight_cache = None

    @property
    def threads(self) -> int:
        if self._threads is None:
            self._threads, self._threads_source = THREADS.resolve(snap=self.snap)
        return self._threads

    @property
    def threads_source(self) -> str:
        self.threads
        return self._threads_source

    def options_for(self, name) -> dict:
        opts = self._options
        if opts is None:
            opts = self._options = {}
        got = opts.get(name)
        if got is None:
            got = opts[name] = resolve_options(name, self.snap)
        return got

    def option(self, name, key, default=None):
        """One option of backend ``name`` (``default`` if it has none); cheaper than
        ``options_for(name)[key]`` when only one is needed (the dispatcher, per call)."""
        opts = self._options
        if opts is not None and name in opts:
            return opts[name].get(key, default)
        return resolve_option(name, key, self.snap, default)

    def with_backend(self, names, source) -> "CallContext":
        return CallContext(self.snap, names, source, self._threads, self._threads_source)

    def __repr__(self) -> str:
        return (f"CallContext(backend={self.backend!r} ({self.backend_source}), "
                f"threads={self.threads} ({self.threads_source}))")


def call_context(backend=None) -> CallContext:
    """Resolve the settings of a call made now (``backend``: the call's argument)."""
    snap = snapshot()
    if backend is not None:
        return CallContext(snap, parse_argument(backend), "argument")
    names, source = BACKEND.resolve(snap=snap)
    return CallContext(snap, names, source)


def threads_context(threads: int, source: str = "argument") -> CallContext:
    """A context with a fixed thread count (benchmarks and tests calling a backend alone)."""
    return CallContext(snapshot(), (), "none", threads, source)
