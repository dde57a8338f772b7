"""Configuration file discovery, parsing and validation.

The file is the first of: the path in ``CONVREG_CONFIG``; the nearest ``convreg.toml``,
or ``pyproject.toml`` with a ``[tool.convreg]`` table, in the current directory or one of
its parents (as pytest and ruff search); ``$XDG_CONFIG_HOME/convreg/config.toml``
(``~/.config/convreg/config.toml``). Nothing here ever writes a file; the chain
(``chain.py``) reads it at most once per second.

    backend = "cython"          # or an ordered list: the first that supports the call runs
    threads = 2                 # threads for the compiled backends
    [backends.cython-im2col]
    workspace_mb = 256

Backend names are checked against the names convreg knows without importing any backend
(built-ins, installed plugins' entry points, backends registered at run time).
"""

from __future__ import annotations

import os
import threading
import warnings
from dataclasses import dataclass, field

from .._errors import ConfigError
from ..backends.catalog import BUILTINS, option_specs
from .values import parse_backend_names, parse_threads

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - exercised on 3.9/3.10 only
    import tomli as tomllib

TOP_KEYS = ("backend", "threads", "backends")


@dataclass(frozen=True)
class FileConfig:
    """The validated contents of one config file (``path`` is absolute)."""

    path: str
    where: str                      # how it was found: CONVREG_CONFIG, convreg.toml, ...
    backend: tuple = None           # ordered names, or None when the file does not set it
    threads: int = None
    backends: dict = field(default_factory=dict)   # name -> {key: value}

    @property
    def source(self) -> str:
        return f"config {self.path}"


def config_path(cwd=None, environ=None):
    """(absolute path, how it was found) of the config file in force, or (None, None)."""
    environ = os.environ if environ is None else environ
    env = environ.get("CONVREG_CONFIG")
    if env:
        path = os.path.abspath(env)
        if not os.path.isfile(path):
            raise ConfigError(
                f"CONVREG_CONFIG={env!r} names no file ({path}); set it to a TOML file or "
                "unset it")
        return path, "CONVREG_CONFIG"
    here = os.path.abspath(cwd or os.getcwd())
    while True:
        candidate = os.path.join(here, "convreg.toml")
        if os.path.isfile(candidate):
            return candidate, "convreg.toml"
        candidate = os.path.join(here, "pyproject.toml")
        if os.path.isfile(candidate) and _pyproject_has_table(candidate):
            return candidate, "[tool.convreg] in pyproject.toml"
        parent = os.path.dirname(here)
        if parent == here:
            break
        here = parent
    base = environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    path = os.path.abspath(os.path.join(base, "convreg", "config.toml"))
    if os.path.isfile(path):
        return path, "$XDG_CONFIG_HOME/convreg/config.toml"
    return None, None


_cache_lock = threading.Lock()
_parsed: dict = {}     # path -> ((mtime_ns, size), data or ConfigError)
_warned: set = set()   # (path, stamp) of unrelated malformed pyproject files


def _stamp(path):
    st = os.stat(path)
    return (st.st_mtime_ns, st.st_size)


def _read_toml(path) -> dict:
    stamp = _stamp(path)
    with _cache_lock:
        hit = _parsed.get(path)
    if hit is None or hit[0] != stamp:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            data = ConfigError(f"{path}: malformed TOML: {exc}")
        except OSError as exc:
            data = ConfigError(f"{path}: cannot read the config file: {exc}")
        hit = (stamp, data)
        with _cache_lock:
            _parsed[path] = hit
    if isinstance(hit[1], ConfigError):
        raise hit[1]
    return hit[1]


def _pyproject_has_table(path) -> bool:
    """Whether a pyproject.toml holds [tool.convreg]. One that does not even mention it is
    never a convreg config: when it is malformed, that is warned about and ignored."""
    try:
        with open(path, "rb") as fh:
            mentions = b"convreg" in fh.read()
    except OSError:
        return False
    try:
        data = _read_toml(path)
    except ConfigError as exc:
        if mentions:
            raise
        key = (path, _stamp(path))
        if key not in _warned:
            _warned.add(key)
            warnings.warn(f"convreg: ignoring {path}, which is not valid TOML and has no "
                          f"[tool.convreg] table ({exc})", RuntimeWarning, stacklevel=2)
        return False
    table = data.get("tool", {})
    return isinstance(table, dict) and "convreg" in table


def load(path, where, known_names, specs_of=option_specs) -> FileConfig:
    """Parse and validate the config file at ``path``; ``known_names`` are the backend
    names a setting may use, ``specs_of(name)`` a backend's option specs (None when they
    are not known without importing it: a plugin's table is checked when it loads)."""
    data = _read_toml(path)
    if where.startswith("[tool.convreg]"):
        data = data["tool"]["convreg"]
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: [tool.convreg] must be a table, but got {data!r}")
    return validate(path, where, data, known_names, specs_of)


def validate(path, where, data, known_names, specs_of=option_specs) -> FileConfig:
    unknown = sorted(set(data) - set(TOP_KEYS))
    if unknown:
        raise ConfigError(
            f"{path}: unknown key {unknown[0]!r}; allowed keys are {list(TOP_KEYS)}")
    backend = threads = None
    if "backend" in data:
        backend = parse_backend_names(data["backend"], f"{path} [backend]", ConfigError,
                                      known=known_names)
    if "threads" in data:
        threads = parse_threads(data["threads"], f"{path} [threads]", ConfigError)
    tables = {}
    raw = data.get("backends", {})
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} [backends]: expected a table of per-backend tables, "
                          f"but got {raw!r}")
    for name, table in raw.items():
        if name not in known_names:
            raise ConfigError(
                f"{path} [backends.{name}]: unknown backend {name!r}; available backends are "
                f"{sorted(known_names)}")
        if not isinstance(table, dict):
            raise ConfigError(f"{path} [backends.{name}]: expected a table, but got {table!r}")
        specs = specs_of(name)
        if specs is None:      # a plugin: its keys are checked when it loads (options_for)
            tables[name] = dict(table)
            continue
        tables[name] = check_options(name, table, specs, f"{path} [backends.{name}]")
    return FileConfig(path=path, where=where, backend=backend, threads=threads, backends=tables)


def check_options(name, table, specs, label) -> dict:
    """``table`` checked against a backend's option specs."""
    checked = {}
    for key, value in table.items():
        if key not in specs:
            allowed = sorted(specs) or "none (this backend takes no settings)"
            raise ConfigError(f"{label}: unknown key {key!r}; allowed keys are {allowed}")
        checked[key] = specs[key].check(value, f"{label} {key}")
    return checked


def clear_caches() -> None:
    with _cache_lock:
        _parsed.clear()


__all__ = ["BUILTINS", "FileConfig", "config_path", "load", "validate", "check_options"]
