"""The backend setting: which backend(s) a call without ``backend=`` uses.

    ``backend=`` argument > innermost ``use_backend()`` > ``set_backend()`` >
    ``CONVREG_BACKEND`` > config file ``backend`` > built-in default ``"cython"``
    (``"python"`` with one warning when the compiled extension is missing).
"""

from __future__ import annotations

import contextlib
import warnings
from typing import NamedTuple

from .._dispatch import registry
from .._errors import BackendError, ConfigError
from .chain import Setting
from .values import parse_backend_names

_warned_fallback = False


class CurrentBackend(NamedTuple):
    """The backend a call without ``backend=`` would use now, and the rule that chose it.

    ``name`` is a string, or a tuple of names for an ordered list (the first that
    supports a call runs it). ``source`` is one of ``"use_backend"``, ``"set_backend"``,
    ``"CONVREG_BACKEND"``, ``"config <path>"`` or ``"default"``.
    """

    name: object
    source: str


def default_names(snap=None):
    global _warned_fallback
    if not registry.is_unavailable("cython"):
        return ("cython",), "default"
    if not _warned_fallback:
        _warned_fallback = True
        warnings.warn(
            "convreg: the compiled extension is missing, so the default backend is the "
            f"slow pure-Python reference ({registry.unavailable().get('cython')}). Build it "
            "with 'pip install .' from the source tree.", RuntimeWarning, stacklevel=5)
    return ("python",), "default"


def _env_names(raw, label):
    names = tuple(part.strip() for part in raw.split(","))
    if not all(names):
        raise ConfigError(f"CONVREG_BACKEND={raw!r}: expected a backend name or a "
                          "comma-separated list of names")
    return parse_backend_names(names, f"CONVREG_BACKEND={raw!r}", ConfigError,
                               known=registry.known_names())


BACKEND = Setting("backend", env="CONVREG_BACKEND", parse_env=_env_names,
                  file_value=lambda cfg: cfg.backend, default=default_names)


def parse_argument(value, what="backend") -> tuple:
    """A backend argument (name, object or list) as a tuple; names are looked up on use."""
    return parse_backend_names(value, what, BackendError)


def _checked(value, what) -> tuple:
    names = parse_argument(value, what)
    for n in names:
        if isinstance(n, str):
            try:
                registry.get_backend(n)
            except BackendError as exc:
                raise BackendError(f"{what}: {exc}") from None
    return names


def set_backend(name) -> None:
    """Set the process-wide default backend (a name or ordered list); None clears it."""
    BACKEND.set_process(None if name is None else _checked(name, "set_backend"))


@contextlib.contextmanager
def use_backend(name):
    """Within the block, calls without ``backend=`` use ``name`` (a name or ordered list).

    The setting is held in a ``ContextVar``: it applies to this thread or async task
    only; other threads keep their own choice, and a new thread starts from the process
    default. Blocks nest; the innermost wins.
    """
    names = _checked(name, "use_backend")
    with BACKEND.use(names):
        first = names[0]
        yield registry.get_backend(first) if isinstance(first, str) else first


def current_backend() -> CurrentBackend:
    """The backend a call without ``backend=`` would use now, and which rule chose it."""
    names, source = BACKEND.resolve()
    shown = tuple(getattr(n, "name", n) for n in names)
    return CurrentBackend(shown[0] if len(shown) == 1 else shown, source)
