"""Per-backend options (``[backends.<name>] key = value``), resolved by the same chain as
every other setting: ``use_options()`` > ``set_options()`` > config file > the backend's
default. Built-in option tables are static (``backends.catalog``); a plugin's come from
its ``options`` attribute once it is loaded."""

from __future__ import annotations

import contextlib

from .._dispatch import registry
from .._errors import BackendError, ConfigError
from ..backends.catalog import option_specs
from .chain import LOCK, Setting
from .file import check_options

_settings: dict = {}    # (backend, key) -> Setting


def specs_for(name) -> dict:
    """The option specs of backend ``name`` (a plugin is loaded to ask)."""
    specs = option_specs(name)
    if specs is None:
        specs = dict(getattr(registry.get_backend(name), "options", {}) or {})
    return specs


def _setting(name, key, spec):
    setting = _settings.get((name, key))
    if setting is None:
        def from_file(cfg, name=name, key=key):
            table = cfg.backends.get(name)
            if not table or key not in table:
                return None
            if option_specs(name) is None:      # a plugin's table: checked on first use
                check_options(name, table, specs_for(name), f"{cfg.path} [backends.{name}]")
            return table[key]

        setting = Setting(f"backends.{name}.{key}", file_value=from_file,
                          default=lambda snap, d=spec.default: (d, "default"),
                          use_name="use_options", set_name="set_options")
        with LOCK:
            setting = _settings.setdefault((name, key), setting)
    return setting


# Options change only through set_options / use_options (or the environment and file,
# which a new snapshot brings): while no use_options block is open anywhere and
# set_options has not been called since, a snapshot's answer per backend is reused.
_active_uses = 0
_version = 0


def _memo_key(name):
    return None if _active_uses else ("options", name, _version)


def resolve_options(name, snap) -> dict:
    """{key: value} of backend ``name`` for a call made now (memoised per snapshot)."""
    key = _memo_key(name)
    if key is not None:
        got = snap._memo.get(key)
        if got is None:
            got = snap._memo[key] = _resolve_options(name, snap)
        return got
    return _resolve_options(name, snap)


def _resolve_options(name, snap) -> dict:
    """{key: value} of backend ``name`` for a call made now."""
    specs = option_specs(name)
    if specs is None:
        try:
            specs = specs_for(name)
        except BackendError:
            return {}
    return {key: _setting(name, key, spec).resolve(snap=snap)[0]
            for key, spec in specs.items()}


def resolve_option(name, key, snap, default=None):
    """One option of backend ``name`` for a call made now (``default`` when the backend
    has no such option): what selection asks on every call, so no dict is built."""
    memo = _memo_key(name)
    if memo is not None:
        got = snap._memo.get(memo)
        if got is not None:
            return got.get(key, default)
    specs = option_specs(name)
    if specs is None:
        try:
            specs = specs_for(name)
        except BackendError:
            return default
    spec = specs.get(key)
    if spec is None:
        return default
    return _setting(name, key, spec).resolve(snap=snap)[0]


def option_sources(name, snap) -> dict:
    """{key: (value, source)} of backend ``name`` (for ``python -m convreg config``)."""
    return {key: _setting(name, key, spec).resolve(snap=snap)
            for key, spec in specs_for(name).items()}


def _checked(name, values, what) -> dict:
    specs = specs_for(name)
    return {key: check_options(name, {key: value}, specs, f"{what}({name!r})")[key]
            for key, value in values.items()}


def set_options(backend, **values) -> None:
    """Set options of ``backend`` for the whole process (a value of None clears one).

    >>> import convreg
    >>> convreg.set_options("cython-im2col", workspace_mb=64)
    >>> convreg.set_options("cython-im2col", workspace_mb=None)
    """
    clear = [k for k, v in values.items() if v is None]
    checked = _checked(backend, {k: v for k, v in values.items() if v is not None},
                       "set_options")
    for key in clear:
        if key not in specs_for(backend):
            raise ConfigError(f"set_options({backend!r}): unknown key {key!r}; allowed keys "
                              f"are {sorted(specs_for(backend))}")
    global _version
    specs = specs_for(backend)
    with LOCK:
        for key in clear:
            _setting(backend, key, specs[key]).set_process(None)
        for key, value in checked.items():
            _setting(backend, key, specs[key]).set_process(value)
        _version += 1


@contextlib.contextmanager
def use_options(backend, **values):
    """Within the block (this thread / async task only), ``backend`` uses these options."""
    global _active_uses
    checked = _checked(backend, values, "use_options")
    specs = specs_for(backend)
    with LOCK:
        _active_uses += 1
    try:
        with contextlib.ExitStack() as stack:
            for key, value in checked.items():
                stack.enter_context(_setting(backend, key, specs[key]).use(value))
            yield
    finally:
        with LOCK:
            _active_uses -= 1
