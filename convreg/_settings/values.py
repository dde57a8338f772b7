"""One validator per kind of setting value, shared by the API, the environment and the file.

Each takes the error class to raise, so that the same rule gives ``ConvSpecError`` /
``ConvTypeError`` for a bad argument and ``ConfigError`` for a bad environment variable or
config entry, always naming where the value came from and what is allowed.
"""

from __future__ import annotations

from .._errors import ConvTypeError

# Thread counts reach C ints and OpenMP team sizes: larger values are mistakes that would
# otherwise surface as OverflowError (or an attempt to start billions of threads).
MAX_THREADS = 4096


def _say(label: str, what: str, value) -> str:
    """'threads must be X, but got threads=5' for an argument; 'file [threads]: expected
    X, but got 5' for a labelled place."""
    if label.isidentifier():
        return f"{label} must be {what}, but got {label}={value!r}"
    return f"{label}: expected {what}, but got {value!r}"


def parse_threads(value, label: str, error=None) -> int:
    """A thread count: a whole number in [1, MAX_THREADS]."""
    what = f"a whole number between 1 and {MAX_THREADS}"
    if isinstance(value, bool) or not isinstance(value, int):
        raise (error or ConvTypeError)(_say(label, what, value))
    if not 1 <= value <= MAX_THREADS:
        from .._errors import ConvSpecError
        raise (error or ConvSpecError)(_say(label, what, value))
    return value


def is_backend_object(value) -> bool:
    return callable(getattr(value, "conv2d", None)) and callable(getattr(value, "supports", None))


def parse_backend_names(value, label: str, error, known=None) -> tuple:
    """A backend setting: a name, a backend object, or a non-empty list of them, as a
    tuple; names must be in ``known`` when it is given."""
    if isinstance(value, str) or is_backend_object(value):
        names = (value,)
    elif isinstance(value, (list, tuple)) and value and all(
            isinstance(v, str) or is_backend_object(v) for v in value):
        names = tuple(value)
    else:
        names = None
    if names is None or (known is not None and any(isinstance(n, str) and not n
                                                   for n in names)):
        allowed = "" if known is None else f"; available backends are {sorted(known)}"
        raise error(_say(label, "a backend name or a non-empty list of backend names", value)
                    + allowed)
    if known is not None:
        for n in names:
            if isinstance(n, str) and n not in known:
                raise error(f"{label}: unknown backend {n!r}; available backends are "
                            f"{sorted(known)}")
    return names
