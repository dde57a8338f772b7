"""Third-party backends through the ``convreg.backends`` entry-point group.

Each entry point names a callable that returns a backend object, or None when the
backend cannot run here (its own optional dependency is missing), which is skipped
quietly. Discovery is lazy (first lookup of a name that is not built in) and
isolated: a plugin that fails to load is skipped with a warning naming it, never
breaking ``import convreg``, and remembered with its error so that a lookup of its name
says why. ``CONVREG_DISABLE_PLUGINS=1`` turns discovery off.
"""

from __future__ import annotations

import warnings

from ..backends.catalog import plugin_entry_points


def _describe(ep) -> str:
    return f"{ep.value}" + (f" from {ep.dist.name}" if getattr(ep, "dist", None) else "")


def discover(reserved=frozenset()):
    """(found, failed): name -> backend for every plugin that loads, and name -> why for
    every one that did not. Built-in names in ``reserved`` are refused."""
    found, failed, origin = {}, {}, {}
    for ep in plugin_entry_points():
        where = _describe(ep)
        if ep.name in reserved:
            warnings.warn(f"convreg: plugin backend {ep.name!r} ({where}) skipped: it may not "
                          "replace the built-in backend of that name", RuntimeWarning)
            continue
        if ep.name in origin:
            if origin[ep.name] != ep.value:
                warnings.warn(
                    f"convreg: duplicate plugin backend {ep.name!r}: keeping {origin[ep.name]}, "
                    f"dropping {where}", RuntimeWarning)
            continue
        origin[ep.name] = ep.value
        try:
            backend = ep.load()()
        except Exception as exc:  # a broken plugin must never break convreg
            why = f"failed to load ({where}): {type(exc).__name__}: {exc}"
            failed[ep.name] = why
            warnings.warn(f"convreg: plugin backend {ep.name!r} {why}; skipped", RuntimeWarning)
            continue
        if backend is None:
            failed[ep.name] = (f"its plugin ({where}) says it cannot run here (an optional "
                               "dependency is missing)")
            continue
        if not (callable(getattr(backend, "conv2d", None))
                and callable(getattr(backend, "supports", None))):
            why = f"plugin ({where}) returned {backend!r}, which has no supports()/conv2d()"
            failed[ep.name] = why
            warnings.warn(f"convreg: plugin backend {ep.name!r} skipped: {why}", RuntimeWarning)
            continue
        found[ep.name] = backend
    return found, failed
