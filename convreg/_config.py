"""Configuration file discovery, parsing and validation.

The file is the first of: the path in ``CONVREG_CONFIG``; ``./convreg.toml``;
``[tool.convreg]`` in ``./pyproject.toml``; ``$XDG_CONFIG_HOME/convreg/config.toml``
(``~/.config/convreg/config.toml``). It is read when a call needs it, never at
import, and cached by modification time. Nothing here ever writes a file.

    backend = "cython"          # or an ordered list: the first that supports the call runs
    threads = 2                 # threads for the compiled backends
    [backends.cython-im2col]
    workspace_mb = 256
"""

from __future__ import annotations

import functools
import os
import threading
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path

from ._errors import ConfigError

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - exercised on 3.9/3.10 only
    import tomli as tomllib

TOP_KEYS = ("backend", "threads", "backends")


@dataclass(frozen=True)
class FileConfig:
    """The validated contents of one config file."""

    path: str
    where: str                      # how it was found: CONVREG_CONFIG, convreg.toml, ...
    backend: tuple = None           # ordered names, or None when the file does not set it
    threads: int = None
    backends: dict = field(default_factory=dict)   # name -> {key: value}

    def label(self, key: str) -> str:
        return f"{self.path} [{key}]"


def config_path():
    """(path, where) of the config file in force, or (None, None)."""
    env = os.environ.get("CONVREG_CONFIG")
    if env:
        if not os.path.isfile(env):
            raise ConfigError(
                f"CONVREG_CONFIG={env!r} names no file; set it to a TOML file or unset it")
        return env, "CONVREG_CONFIG"
    if os.path.isfile("convreg.toml"):
        return os.path.abspath("convreg.toml"), "./convreg.toml"
    if os.path.isfile("pyproject.toml") and _pyproject_has_table("pyproject.toml"):
        return os.path.abspath("pyproject.toml"), "[tool.convreg] in ./pyproject.toml"
    path = _user_config_file(os.environ.get("XDG_CONFIG_HOME"), os.environ.get("HOME"))
    if os.path.isfile(path):
        return path, "$XDG_CONFIG_HOME/convreg/config.toml"
    return None, None


@functools.lru_cache(maxsize=8)
def _user_config_file(xdg, home) -> str:
    """$XDG_CONFIG_HOME/convreg/config.toml, XDG's default being ~/.config."""
    base = xdg or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "convreg", "config.toml")


def _pyproject_has_table(path) -> bool:
    table = _read_toml(path).get("tool", {})
    return isinstance(table, dict) and "convreg" in table


_cache_lock = threading.Lock()
_cache: dict = {}   # path -> ((mtime_ns, size), parsed dict)


def _read_toml(path) -> dict:
    st = os.stat(path)
    stamp = (st.st_mtime_ns, st.st_size)
    key = os.path.abspath(path)     # a relative path names another file after a chdir
    with _cache_lock:
        hit = _cache.get(key)
        if hit and hit[0] == stamp:
            return hit[1]
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: malformed TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc}") from None
    with _cache_lock:
        _cache[key] = (stamp, data)
    return data


def parse_backend_value(value, label: str, allowed=None) -> tuple:
    """A backend setting: a name or a non-empty list of names, as a tuple."""
    if isinstance(value, str) and value:
        return (value,)
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) and v for v in value):
        return tuple(value)
    raise ConfigError(
        f"{label}: expected a backend name or a non-empty list of backend names, "
        f"but got {value!r}" + ("" if allowed is None else f"; available backends are {allowed}"))


def parse_threads(value, label: str) -> int:
    from ._threads import MAX_THREADS

    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_THREADS:
        raise ConfigError(
            f"{label}: expected a whole number between 1 and {MAX_THREADS}, but got {value!r}")
    return value


_validated: dict = {}   # (path, where, mtime_ns, size) -> FileConfig, the latest only


# Within one conv2d call the file is looked up once, however many settings read it.
_call_memo: ContextVar = ContextVar("convreg_config_memo", default=None)
_UNSET = object()


def begin_call():
    """Start a call's scope: load_config() answers from one lookup until end_call()."""
    return _call_memo.set([_UNSET])


def end_call(token) -> None:
    _call_memo.reset(token)


def load_config():
    """The validated :class:`FileConfig` in force, or None when there is no config file."""
    memo = _call_memo.get()
    if memo is None:
        return _lookup()
    if memo[0] is _UNSET:
        memo[0] = _lookup()
    return memo[0]


def _lookup():
    path, where = config_path()
    if path is None:
        return None
    st = os.stat(path)
    key = (path, where, st.st_mtime_ns, st.st_size)
    with _cache_lock:
        hit = _validated.get(key)
    if hit is not None:
        return hit
    data = _read_toml(path)
    if where.startswith("[tool.convreg]"):
        data = data["tool"]["convreg"]
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: [tool.convreg] must be a table, but got {data!r}")
    cfg = _validate(path, where, data)
    with _cache_lock:
        _validated.clear()
        _validated[key] = cfg
    return cfg


def _validate(path, where, data) -> FileConfig:
    from ._registry import backend_option_specs, is_unavailable_builtin, known_backend_names

    unknown = sorted(set(data) - set(TOP_KEYS))
    if unknown:
        raise ConfigError(
            f"{path}: unknown key {unknown[0]!r}; allowed keys are {list(TOP_KEYS)}")
    backend = threads = None
    if "backend" in data:
        known = known_backend_names()
        backend = parse_backend_value(data["backend"], f"{path} [backend]", sorted(known))
        for name in backend:
            if name not in known:
                raise ConfigError(
                    f"{path} [backend]: unknown backend {name!r}; available backends are "
                    f"{sorted(known)}")
    if "threads" in data:
        threads = parse_threads(data["threads"], f"{path} [threads]")
    tables = {}
    raw = data.get("backends", {})
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} [backends]: expected a table of per-backend tables, "
                          f"but got {raw!r}")
    for name, table in raw.items():
        if is_unavailable_builtin(name) and isinstance(table, dict):
            tables[name] = dict(table)   # cannot run here, so its settings are never read
            continue
        specs = backend_option_specs(name)
        if specs is None:
            raise ConfigError(
                f"{path} [backends.{name}]: unknown backend {name!r}; available backends are "
                f"{sorted(known_backend_names())}")
        if not isinstance(table, dict):
            raise ConfigError(f"{path} [backends.{name}]: expected a table, but got {table!r}")
        checked = {}
        for key, value in table.items():
            if key not in specs:
                allowed = sorted(specs) or "none (this backend takes no settings)"
                raise ConfigError(
                    f"{path} [backends.{name}]: unknown key {key!r}; allowed keys are {allowed}")
            checked[key] = specs[key].check(value, f"{path} [backends.{name}] {key}")
        tables[name] = checked
    return FileConfig(path=path, where=where, backend=backend, threads=threads, backends=tables)


@dataclass(frozen=True)
class OptionSpec:
    """A per-backend setting: its type, lower bound and default."""

    kind: type
    default: object
    minimum: float = None
    doc: str = ""

    def check(self, value, label: str):
        ok_type = (isinstance(value, (int, float)) and not isinstance(value, bool)
                   if self.kind is float else
                   isinstance(value, self.kind) and not isinstance(value, bool))
        if not ok_type:
            raise ConfigError(
                f"{label}: expected {self.kind.__name__}"
                f"{'' if self.minimum is None else f' > {self.minimum}'}, but got {value!r}")
        if self.minimum is not None and not value > self.minimum:
            raise ConfigError(f"{label}: expected a value > {self.minimum}, but got {value!r}")
        return value
