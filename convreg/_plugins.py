"""Third-party backends through the ``convreg.backends`` entry-point group.

Each entry point names a callable that returns a backend object, or None when the
backend cannot run here (its own optional dependency is missing), which is skipped
quietly. Discovery is lazy (first lookup of a name that is not built in) and
isolated: a plugin that fails to load is skipped with a warning naming it, never
breaking ``import convreg``. ``CONVREG_DISABLE_PLUGINS=1`` turns discovery off.
"""

from __future__ import annotations

import os
import warnings
from importlib.metadata import distributions, entry_points

GROUP = "convreg.backends"


def _entry_points():
    try:
        return list(entry_points(group=GROUP))
    except Exception:
        pass
    # Some installed distribution has malformed entry points (entry_points() reads them
    # all): read each one on its own so that one broken file hides no other plugin.
    found = []
    for dist in distributions():
        try:
            found += [ep for ep in dist.entry_points if ep.group == GROUP]
        except Exception as exc:
            try:
                name = dist.metadata["Name"]
            except Exception:
                name = getattr(dist, "_path", "?")
            warnings.warn(f"convreg: the entry points of distribution {name!r} are malformed "
                          f"and were skipped: {type(exc).__name__}: {exc}", RuntimeWarning)
    return found


def discover(reserved=frozenset()) -> dict:
    """name -> backend for every plugin that loads; built-in names in ``reserved`` are refused."""
    if os.environ.get("CONVREG_DISABLE_PLUGINS", "") not in ("", "0"):
        return {}
    found, origin = {}, {}
    for ep in _entry_points():
        where = f"{ep.value}" + (f" from {ep.dist.name}" if getattr(ep, "dist", None) else "")
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
            warnings.warn(f"convreg: plugin backend {ep.name!r} ({where}) failed to load and "
                          f"was skipped: {type(exc).__name__}: {exc}", RuntimeWarning)
            continue
        if backend is None:
            continue
        if not (callable(getattr(backend, "conv2d", None))
                and callable(getattr(backend, "supports", None))):
            warnings.warn(f"convreg: plugin backend {ep.name!r} ({where}) skipped: it returned "
                          f"{backend!r}, which has no supports()/conv2d()", RuntimeWarning)
            continue
        found[ep.name] = backend
    return found
