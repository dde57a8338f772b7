"""Which backends exist, without loading any: the built-ins and the installed plugins.

Config validation and name checks read this table; importing a backend happens only when
a call (or an explicit lookup) uses it.
"""

from __future__ import annotations

import functools
import os
import warnings
from importlib.metadata import distributions, entry_points
from typing import NamedTuple

from .base import OptionSpec

GROUP = "convreg.backends"


class Builtin(NamedTuple):
    target: str          # "module:callable" returning the backend object
    options: dict        # config keys under [backends.<name>]


BUILTINS = {
    "python": Builtin("convreg.backends.python:PythonBackend", {}),
    "cython-direct": Builtin("convreg.backends.direct:CythonDirectBackend", {}),
    "cython-im2col": Builtin("convreg.backends.im2col:CythonIm2colBackend", {
        "workspace_mb": OptionSpec(float, 256.0, minimum=0,
                                   doc="bound on the column buffers of all threads, MiB"),
    }),
    "cython-winograd": Builtin("convreg.backends.winograd:CythonWinogradBackend", {
        "tile": OptionSpec(int, 0, choices=(0, 2, 4),
                           doc="output tile: 0 = automatic (F(2x2,3x3)), 2, or 4 (F(4x4,3x3): "
                               "accurate only normwise, never chosen automatically)"),
    }),
    "cython": Builtin("convreg.backends.auto:CythonAutoBackend", {
        "winograd": OptionSpec(bool, True,
                               doc="false: never choose cython-winograd (reduced-precision "
                                   "algorithm refused, as deep-learning libraries allow)"),
        "tune": OptionSpec(str, "rules", choices=("rules", "measure"),
                           doc="rules: the shape rules; measure: time the candidates on the "
                               "first call of each shape and remember the fastest"),
    }),
}


def plugins_disabled() -> bool:
    return os.environ.get("CONVREG_DISABLE_PLUGINS", "") not in ("", "0")


@functools.lru_cache(maxsize=1)
def _entry_points_cached() -> tuple:
    try:
        return tuple(entry_points(group=GROUP))
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
    return tuple(found)


def plugin_entry_points() -> tuple:
    """The installed ``convreg.backends`` entry points (metadata only; nothing imported)."""
    return () if plugins_disabled() else _entry_points_cached()


def refresh_plugin_names() -> None:
    """Forget the entry points read so far (packages may have been installed since)."""
    _entry_points_cached.cache_clear()


def plugin_names() -> set:
    return {ep.name for ep in plugin_entry_points()} - set(BUILTINS)


def option_specs(name):
    """The option table of a built-in backend, or None for a name that is not built in."""
    entry = BUILTINS.get(name)
    return None if entry is None else entry.options
