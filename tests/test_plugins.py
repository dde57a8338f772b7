"""Third-party backends through real entry points (group ``convreg.backends``)."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import textwrap
import warnings
from importlib.metadata import entry_points

import numpy as np
import pytest

import convreg
from convreg import BackendError
from convreg._dispatch import plugins as _plugins
from convreg._dispatch import registry as _registry
from convreg.backends import catalog as _catalog

X = np.ones((1, 1, 3, 3))
W = np.ones((1, 1, 2, 2))
_counter = itertools.count()

GOOD_MODULE = """\
import numpy as np
import convreg


class Plugged(convreg.Backend):
    name = {name!r}
    description = "a test plugin"

    def conv2d(self, spec, x, w, b):
        return np.full(spec.output_shape, {value!r}, dtype=spec.dtype)


def make():
    return Plugged()


def make_none():
    return None


def make_junk():
    return 42


def make_raising():
    raise RuntimeError("plugin factory exploded")
"""


@pytest.fixture
def plugins(tmp_path, monkeypatch):
    """Factory: ``plugins({"name": "module:attr", ...}, modules={...})`` installs a fake
    distribution exposing those entry points, and resets the registry's discovery."""
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setattr(_registry, "_plugins_done", False)
    monkeypatch.delenv("CONVREG_DISABLE_PLUGINS", raising=False)
    before = set(_registry._loaded)
    unavailable = dict(_registry._unavailable)
    _catalog.refresh_plugin_names()
    modules = []

    def install(entries, modules_src=None, dist=None):
        dist = dist or f"convreg_testdist{next(_counter)}"
        info = root / f"{dist}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
        lines = "\n".join(f"{k} = {v}" for k, v in entries.items())
        (info / "entry_points.txt").write_text(f"[convreg.backends]\n{lines}\n")
        for mod, src in (modules_src or {}).items():
            (root / f"{mod}.py").write_text(textwrap.dedent(src))
            modules.append(mod)
        return dist

    yield install
    for name in set(_registry._loaded) - before:
        del _registry._loaded[name]
    _registry._unavailable.clear()
    _registry._unavailable.update(unavailable)
    _catalog.refresh_plugin_names()
    for mod in modules:
        sys.modules.pop(mod, None)


def unique(prefix):
    return f"{prefix}{next(_counter)}"


def good(plugins, name, value=3.0):
    mod = unique("convreg_plugmod")
    plugins({name: f"{mod}:make"}, {mod: GOOD_MODULE.format(name=name, value=value)})
    return mod


def test_plugin_is_listed_and_usable(plugins):
    good(plugins, "plugged")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert "plugged" in convreg.available_backends()
    be = convreg.get_backend("plugged")
    assert be.name == "plugged"
    out = convreg.conv2d(X, W, backend="plugged")
    assert (out == 3.0).all()
    with convreg.use_backend("plugged"):
        assert convreg.conv2d(X, W)[0, 0, 0, 0] == 3.0
    info = convreg.show_config(mode="dicts")["backends"]["plugged"]
    assert info["builtin"] is False and info["description"] == "a test plugin"


def test_plugin_found_by_first_lookup(plugins):
    """Discovery is lazy: a direct get_backend of a plugin name triggers it."""
    good(plugins, "plugged-lazy")
    assert _registry._plugins_done is False
    assert convreg.get_backend("plugged-lazy").name == "plugged-lazy"
    assert _registry._plugins_done is True


def test_plugin_usable_from_config_file(plugins, isolated):
    good(plugins, "plugged-cfg", value=5.0)
    (isolated / "convreg.toml").write_text('backend = "plugged-cfg"\n')
    assert convreg.conv2d(X, W)[0, 0, 0, 0] == 5.0


def test_failing_plugin_warns_and_the_rest_works(plugins):
    mod = unique("convreg_plugmod")
    plugins({"plug-broken": "convreg_no_such_module_xyz:make",
             "plug-raises": f"{mod}:make_raising",
             "plug-ok": f"{mod}:make"},
            {mod: GOOD_MODULE.format(name="plug-ok", value=1.0)})
    with pytest.warns(RuntimeWarning) as rec:
        names = convreg.available_backends()
    messages = [str(w.message) for w in rec]
    assert any("'plug-broken'" in m and "failed to load" in m and "ModuleNotFoundError" in m
               for m in messages), messages
    assert any("'plug-raises'" in m and "plugin factory exploded" in m for m in messages)
    assert "plug-ok" in names and "python" in names
    assert "plug-broken" not in names and "plug-raises" not in names
    assert convreg.conv2d(X, W, backend="plug-ok")[0, 0, 0, 0] == 1.0
    assert convreg.conv2d(X, W, backend="python")[0, 0, 0, 0] == 4.0
    with pytest.raises(BackendError, match="backend 'plug-broken' is not available here: failed to load"):
        convreg.get_backend("plug-broken")


def test_plugin_module_with_syntax_error(plugins):
    mod = unique("convreg_plugmod")
    plugins({"plug-syntax": f"{mod}:make"}, {mod: "def make(:\n"})
    with pytest.warns(RuntimeWarning, match=r"'plug-syntax'.*SyntaxError"):
        assert "plug-syntax" not in convreg.available_backends()


def test_plugin_named_like_a_builtin_is_refused(plugins):
    mod = unique("convreg_plugmod")
    plugins({"python": f"{mod}:make"}, {mod: GOOD_MODULE.format(name="python", value=9.0)})
    with pytest.warns(RuntimeWarning, match=r"'python'.*may not replace the built-in"):
        convreg.available_backends()
    assert convreg.conv2d(X, W, backend="python")[0, 0, 0, 0] == 4.0


def test_duplicate_plugins_warn_and_one_is_kept(plugins):
    m1, m2 = unique("convreg_plugmod"), unique("convreg_plugmod")
    plugins({"plug-dup": f"{m1}:make"}, {m1: GOOD_MODULE.format(name="plug-dup", value=1.0)},
            dist="convreg_aaa_first")
    plugins({"plug-dup": f"{m2}:make"}, {m2: GOOD_MODULE.format(name="plug-dup", value=2.0)},
            dist="convreg_zzz_second")
    with pytest.warns(RuntimeWarning, match=r"duplicate plugin backend 'plug-dup'"):
        convreg.available_backends()
    value = convreg.conv2d(X, W, backend="plug-dup")[0, 0, 0, 0]
    assert value in (1.0, 2.0)   # whichever importlib.metadata lists first


def test_plugin_returning_none_is_skipped_quietly(plugins):
    mod = unique("convreg_plugmod")
    plugins({"plug-none": f"{mod}:make_none"}, {mod: GOOD_MODULE.format(name="x", value=0)})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert "plug-none" not in convreg.available_backends()


def test_plugin_returning_junk_warns(plugins):
    mod = unique("convreg_plugmod")
    plugins({"plug-junk": f"{mod}:make_junk"}, {mod: GOOD_MODULE.format(name="x", value=0)})
    with pytest.warns(RuntimeWarning, match=r"'plug-junk'.*returned 42.*supports"):
        assert "plug-junk" not in convreg.available_backends()


@pytest.mark.parametrize("value", ["1", "yes"])
def test_disable_plugins(plugins, monkeypatch, value):
    good(plugins, "plug-off")
    monkeypatch.setenv("CONVREG_DISABLE_PLUGINS", value)
    assert "plug-off" not in convreg.available_backends()
    with pytest.raises(BackendError, match="Unknown backend 'plug-off'"):
        convreg.get_backend("plug-off")
    assert convreg.conv2d(X, W, backend="python")[0, 0, 0, 0] == 4.0


def test_disable_plugins_zero_means_enabled(plugins, monkeypatch):
    good(plugins, "plug-on")
    monkeypatch.setenv("CONVREG_DISABLE_PLUGINS", "0")
    assert "plug-on" in convreg.available_backends()


def test_registering_over_a_plugin_needs_replace(plugins):
    good(plugins, "plug-taken")
    with pytest.raises(BackendError, match="already registered"):
        convreg.register_backend("plug-taken", convreg.get_backend("python"))


def test_torch_entry_point_is_shipped():
    eps = [ep for ep in entry_points(group="convreg.backends") if ep.name == "torch"]
    assert eps and eps[0].value == "convreg.backends.torch:make_backend"


def test_torch_entry_point_silent_without_torch(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)     # `import torch` now fails
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        found = _plugins.discover(reserved=set(_registry.BUILTINS))
    assert "torch" not in found


def test_import_does_not_discover_plugins():
    code = ("import convreg, convreg._dispatch.registry as r; a = r._plugins_done; "
            "convreg.get_backend('python'); b = r._plugins_done; "
            "convreg.available_backends(); print(a, b, r._plugins_done)")
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True,
                         text=True, timeout=120, check=True,
                         env={k: v for k, v in os.environ.items() if k != "CONVREG_BACKEND"})
    assert out.stdout.split() == ["False", "False", "True"]


def test_import_convreg_never_broken_by_a_plugin(tmp_path):
    info = tmp_path / "convreg_evil-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: convreg_evil\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[convreg.backends]\nevil = convreg_evil_mod:make\n")
    (tmp_path / "convreg_evil_mod.py").write_text("raise SystemError('evil at import')\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    code = ("import convreg, numpy as np; print(convreg.available_backends()); "
            "print(convreg.conv2d(np.ones((1,1,2,2)), np.ones((1,1,1,1)), backend='python').sum())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert "'python'" in out.stdout and "4.0" in out.stdout
    assert "'evil'" in out.stderr and "evil at import" in out.stderr


def test_malformed_entry_points_file_of_another_dist(plugins, tmp_path):
    """One distribution with a broken entry_points.txt must not hide the others."""
    good(plugins, "plug-survivor")
    info = tmp_path / "site" / "convreg_malformed-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: convreg_malformed\n"
                                   "Version: 1.0\n")
    (info / "entry_points.txt").write_text("[convreg.backends]\nthis line has no equals\n")
    with pytest.warns(RuntimeWarning, match=r"convreg_malformed"):
        names = convreg.available_backends()
    assert "plug-survivor" in names and "python" in names
