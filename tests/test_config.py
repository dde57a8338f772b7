"""Backend selection precedence, config-file discovery, validation and caching (DESIGN 4)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import convreg
from convreg import BackendError, ConfigError
from convreg._dispatch import registry as _registry
from convreg import OptionSpec
from convreg._settings import file as _config
from convreg._settings.chain import snapshot
from convreg._settings.options import resolve_options
from convreg._settings.threads import affinity_cores, threads_and_source


def config_path():
    return _config.config_path()


def load_config():
    return snapshot().file()


def backend_settings(name):
    return resolve_options(name, snapshot())

X = np.ones((1, 1, 3, 3), np.float32)
W = np.ones((1, 1, 2, 2), np.float32)


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def mocks(register_mock):
    """One mock backend per precedence level; each returns its own constant."""
    levels = ["arg", "ctx", "set", "env", "file"]
    return {lv: register_mock(f"mock-{lv}", value=float(i + 1)) for i, lv in enumerate(levels)}


def ran(mocks):
    return [lv for lv, m in mocks.items() if m.ncalls]


# ----------------------------------------------------------------------------- precedence

def test_default_when_nothing_is_set(isolated):
    with _maybe_warns():
        cur = convreg.current_backend()
    assert isinstance(cur, convreg.CurrentBackend)
    assert cur.source == "default"
    expected = "cython" if "cython" in convreg.available_backends() else "python"
    assert cur.name == expected
    assert cur == (expected, "default")


class _maybe_warns:
    """The fallback-to-python warning is emitted once per process; accept it or nothing."""

    def __enter__(self):
        import warnings
        self._cm = warnings.catch_warnings(record=True)
        self.log = self._cm.__enter__()
        warnings.simplefilter("always")
        return self

    def __exit__(self, *exc):
        self._cm.__exit__(*exc)
        for w in self.log:
            assert issubclass(w.category, RuntimeWarning)
            assert "pip install" in str(w.message)


def test_precedence_level_by_level(mocks, isolated, monkeypatch):
    cfg = write(isolated / "convreg.toml", 'backend = "mock-file"\n')

    assert convreg.current_backend() == ("mock-file", f"config {cfg}")
    assert convreg.conv2d(X, W)[0, 0, 0, 0] == 5.0
    assert ran(mocks) == ["file"]

    monkeypatch.setenv("CONVREG_BACKEND", "mock-env")
    assert convreg.current_backend() == ("mock-env", "CONVREG_BACKEND")
    assert convreg.conv2d(X, W)[0, 0, 0, 0] == 4.0

    convreg.set_backend("mock-set")
    assert convreg.current_backend() == ("mock-set", "set_backend")
    assert convreg.conv2d(X, W)[0, 0, 0, 0] == 3.0

    with convreg.use_backend("mock-ctx") as be:
        assert be is mocks["ctx"]
        assert convreg.current_backend() == ("mock-ctx", "use_backend")
        assert convreg.conv2d(X, W)[0, 0, 0, 0] == 2.0
        assert convreg.conv2d(X, W, backend="mock-arg")[0, 0, 0, 0] == 1.0
    assert sorted(ran(mocks)) == sorted(mocks)

    # and unwinding goes back level by level
    assert convreg.current_backend().source == "set_backend"
    convreg.set_backend(None)
    assert convreg.current_backend().source == "CONVREG_BACKEND"
    monkeypatch.delenv("CONVREG_BACKEND")
    assert convreg.current_backend().source == f"config {cfg}"
    cfg.unlink()
    with _maybe_warns():
        assert convreg.current_backend().source == "default"


def test_argument_beats_everything(mocks, isolated, monkeypatch):
    write(isolated / "convreg.toml", 'backend = "mock-file"\n')
    monkeypatch.setenv("CONVREG_BACKEND", "mock-env")
    convreg.set_backend("mock-set")
    with convreg.use_backend("mock-ctx"):
        out = convreg.conv2d(X, W, backend="python")
    assert out[0, 0, 0, 0] == 4.0          # the real sum, not a mock's constant
    assert ran(mocks) == []


def test_env_var_read_at_call_time(mocks, monkeypatch):
    monkeypatch.setenv("CONVREG_BACKEND", "mock-env")
    assert convreg.conv2d(X, W)[0, 0, 0, 0] == 4.0
    monkeypatch.setenv("CONVREG_BACKEND", "mock-set")
    assert convreg.conv2d(X, W)[0, 0, 0, 0] == 3.0


def test_env_var_list(mocks, monkeypatch):
    monkeypatch.setenv("CONVREG_BACKEND", "mock-env, python")
    assert convreg.current_backend() == (("mock-env", "python"), "CONVREG_BACKEND")


@pytest.mark.parametrize("value, match", [
    ("nope", r"CONVREG_BACKEND='nope'.*(?i:unknown backend) 'nope'.*python"),
    ("python,,python", r"CONVREG_BACKEND='python,,python'"),
], ids=["unknown", "empty-item"])
def test_env_var_errors(monkeypatch, value, match):
    monkeypatch.setenv("CONVREG_BACKEND", value)
    with pytest.raises((BackendError, ConfigError), match=match):
        convreg.conv2d(X, W)


def test_set_and_use_backend_validate_names():
    with pytest.raises(BackendError, match=r"Unknown backend 'nope'.*'python'"):
        convreg.set_backend("nope")
    with pytest.raises(BackendError, match=r"Unknown backend 'nope'"):
        with convreg.use_backend("nope"):
            pass
    with pytest.raises(BackendError, match=r"set_backend=3"):
        convreg.set_backend(3)
    with pytest.raises(BackendError, match=r"use_backend=\[\]"):
        with convreg.use_backend([]):
            pass


# ------------------------------------------------------------------------- file discovery

def test_file_discovery_order(mocks, isolated, xdg_dir, monkeypatch, tmp_path):
    xdg = write(xdg_dir / "convreg" / "config.toml", 'backend = "mock-arg"\n')
    assert convreg.current_backend() == ("mock-arg", f"config {xdg}")
    assert config_path() == (str(xdg), "$XDG_CONFIG_HOME/convreg/config.toml")

    pyproject = write(isolated / "pyproject.toml", """\
        [project]
        name = "x"
        [tool.convreg]
        backend = "mock-ctx"
        """)
    assert convreg.current_backend() == ("mock-ctx", f"config {pyproject}")

    local = write(isolated / "convreg.toml", 'backend = "mock-set"\n')
    assert convreg.current_backend() == ("mock-set", f"config {local}")

    explicit = write(tmp_path / "elsewhere" / "my.toml", 'backend = "mock-file"\n')
    monkeypatch.setenv("CONVREG_CONFIG", str(explicit))
    assert convreg.current_backend() == ("mock-file", f"config {explicit}")
    assert convreg.conv2d(X, W)[0, 0, 0, 0] == 5.0


def test_pyproject_without_table_is_skipped(mocks, isolated, xdg_dir):
    write(isolated / "pyproject.toml", """\
        [project]
        name = "x"
        [tool.other]
        backend = "mock-ctx"
        """)
    xdg = write(xdg_dir / "convreg" / "config.toml", 'backend = "mock-arg"\n')
    assert convreg.current_backend() == ("mock-arg", f"config {xdg}")


def test_pyproject_table_errors_name_the_file(isolated):
    pp = write(isolated / "pyproject.toml", '[tool.convreg]\nbackend = "nope"\n')
    with pytest.raises(ConfigError, match=re.escape(str(pp)) + r".*unknown backend 'nope'"):
        convreg.current_backend()


def test_pyproject_table_must_be_a_table(isolated):
    pp = write(isolated / "pyproject.toml", '[tool]\nconvreg = 3\n')
    with pytest.raises(ConfigError, match=re.escape(str(pp)) + r".*\[tool.convreg\]"):
        convreg.current_backend()


def test_xdg_default_is_home_config(monkeypatch, tmp_path, mocks):
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    cfg = write(tmp_path / "home" / ".config" / "convreg" / "config.toml",
                'backend = "mock-env"\n')
    assert convreg.current_backend() == ("mock-env", f"config {cfg}")


def test_convreg_config_missing_file(monkeypatch, tmp_path):
    missing = tmp_path / "nope.toml"
    monkeypatch.setenv("CONVREG_CONFIG", str(missing))
    with pytest.raises(ConfigError, match=r"CONVREG_CONFIG=.*nope\.toml.* names no file"):
        convreg.current_backend()
    with pytest.raises(ConfigError, match="CONVREG_CONFIG"):
        convreg.conv2d(X, W)


def test_empty_file_means_defaults(isolated):
    write(isolated / "convreg.toml", "# nothing\n")
    with _maybe_warns():
        assert convreg.current_backend().source == "default"
    assert load_config().backend is None


# ---------------------------------------------------------------------------- ordered lists

def test_ordered_list_first_that_supports_runs(register_mock, isolated):
    no = register_mock("mock-no", value=1.0,
                       supports_answer=convreg.Support(False, "too shy for this call"))
    yes = register_mock("mock-yes", value=2.0)
    write(isolated / "convreg.toml", 'backend = ["mock-no", "mock-yes", "python"]\n')
    assert convreg.current_backend().name == ("mock-no", "mock-yes", "python")
    out = convreg.conv2d(X, W)
    assert out[0, 0, 0, 0] == 2.0
    assert len(no.asked) == 1 and no.ncalls == 0
    assert yes.ncalls == 1


def test_ordered_list_decline_depends_on_the_call(register_mock):
    picky = register_mock(
        "mock-picky", value=9.0,
        supports_answer=lambda spec: convreg.Support(spec.groups == 1, "no groups"))
    with convreg.use_backend(["mock-picky", "python"]):
        assert convreg.conv2d(X, W)[0, 0, 0, 0] == 9.0
        out = convreg.conv2d(np.ones((1, 2, 2, 2)), np.ones((2, 1, 1, 1)), groups=2)
        assert out[0, 0, 0, 0] == 1.0
    assert picky.ncalls == 1


def test_ordered_list_nobody_supports(register_mock):
    register_mock("mock-no1", supports_answer=convreg.Support(False, "reason one"))
    register_mock("mock-no2", supports_answer=convreg.Support(False, "reason two"))
    with pytest.raises(BackendError, match=r"'mock-no1': reason one.*'mock-no2': reason two"):
        convreg.conv2d(X, W, backend=["mock-no1", "mock-no2"])


def test_single_backend_declining_is_an_error(register_mock):
    register_mock("mock-no", supports_answer=convreg.Support(False, "never"))
    with pytest.raises(BackendError, match=r"no backend chosen by argument.*never"):
        convreg.conv2d(X, W, backend="mock-no")


# ----------------------------------------------------------------------------------- threads

def test_threads_key(isolated, monkeypatch):
    cfg = write(isolated / "convreg.toml", "threads = 3\n")
    assert convreg.get_threads() == 3
    assert threads_and_source() == (3, f"config {cfg}")
    monkeypatch.setenv("CONVREG_THREADS", "2")
    assert threads_and_source() == (2, "CONVREG_THREADS")
    convreg.set_threads(5)
    assert threads_and_source() == (5, "set_threads")
    with convreg.use_threads(1):
        assert threads_and_source() == (1, "use_threads")
    assert convreg.get_threads() == 5


def test_threads_default_is_all_cores_without_limits(monkeypatch):
    from convreg._settings import threads as _threads
    monkeypatch.setattr(_threads, "machine_limits", lambda: (affinity_cores(), None))
    monkeypatch.setattr(_threads, "_runtime_limit", lambda: None)
    assert threads_and_source() == (affinity_cores(),
                                    f"default (affinity: {affinity_cores()} CPUs)")


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5", "99999999999"])
def test_threads_env_invalid(monkeypatch, value):
    monkeypatch.setenv("CONVREG_THREADS", value)
    with pytest.raises(ConfigError, match=rf"CONVREG_THREADS.*{re.escape(repr(value))}"):
        convreg.get_threads()


@pytest.mark.parametrize("value, exc", [(0, convreg.ConvSpecError), (-2, convreg.ConvSpecError),
                                        (2**40, convreg.ConvSpecError),
                                        (1.0, convreg.ConvTypeError),
                                        (True, convreg.ConvTypeError),
                                        ("2", convreg.ConvTypeError)])
def test_set_threads_invalid(value, exc):
    with pytest.raises(exc, match=rf"threads.*{re.escape(repr(value))}"):
        convreg.set_threads(value)
    with pytest.raises(exc):
        with convreg.use_threads(value):
            pass


# ------------------------------------------------------------------------------ mtime cache

def test_edit_is_seen(mocks, isolated):
    cfg = write(isolated / "convreg.toml", 'backend = "mock-env"\n')
    assert convreg.current_backend().name == "mock-env"
    write(cfg, 'backend = "mock-file"\n')       # same size: only the mtime differs
    st = os.stat(cfg)
    os.utime(cfg, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert convreg.current_backend().name == "mock-file"
    write(cfg, 'backend = ["mock-set", "python"]\n')   # different size
    assert convreg.current_backend().name == ("mock-set", "python")


def test_unchanged_file_is_parsed_once(isolated, monkeypatch):
    write(isolated / "convreg.toml", 'backend = "python"\n')
    calls = []
    real = _config.tomllib.load
    monkeypatch.setattr(_config.tomllib, "load", lambda fh: calls.append(1) or real(fh))
    for _ in range(3):
        convreg.current_backend()
    assert len(calls) <= 1


# ------------------------------------------------------------------------------ ConfigError

def _assert_config_error(path, match):
    with pytest.raises(ConfigError) as info:
        convreg.current_backend()
    msg = str(info.value)
    assert str(path) in msg
    assert re.search(match, msg), msg
    assert isinstance(info.value, ValueError)
    return msg


@pytest.mark.parametrize("text, match", [
    ('backnd = "python"\n', r"unknown key 'backnd'; allowed keys are \['backend', 'threads', "
                            r"'backends'\]"),
    ('backend = "nope"\n', r"\[backend\]: unknown backend 'nope'; available backends are "
                           r"\[.*'python'.*\]"),
    ('backend = ["python", "nope"]\n', r"\[backend\]: unknown backend 'nope'"),
    ('backend = 3\n', r"\[backend\]: expected a backend name or a non-empty list.*got 3; "
                      r"available backends are \[.*'python'.*\]"),
    ('backend = []\n', r"\[backend\]: expected .*got \[\]"),
    ('backend = ""\n', r"\[backend\]: expected .*got ''"),
    ('backend = [1, 2]\n', r"\[backend\].*\[1, 2\]"),
    ('threads = "two"\n', r"\[threads\]: expected a whole number between 1 and 4096, but got "
                           r"'two'"),
    ('threads = 0\n', r"\[threads\]: expected a whole number between 1 and 4096, but got 0"),
    ('threads = 99999999999\n', r"\[threads\]: .*between 1 and 4096.*99999999999"),
    ('threads = 1.5\n', r"\[threads\]: .*between 1 and 4096.*1\.5"),
    ('threads = true\n', r"\[threads\]: .*True"),
    ('backends = 3\n', r"\[backends\]: expected a table"),
    ('[backends.nope]\nx = 1\n', r"\[backends.nope\]: unknown backend 'nope'; available "
                                 r"backends are \[.*'python'"),
    ('[backends.python]\nx = 1\n', r"\[backends.python\]: unknown key 'x'; allowed keys are "
                                   r"none"),
    ('backend = "python\n', r"malformed TOML"),
    ('backend = \n', r"malformed TOML"),
    ('[backends\n', r"malformed TOML"),
    ('backend = "python"\nbackend = "python"\n', r"malformed TOML"),
], ids=["unknown-key", "unknown-backend", "unknown-in-list", "backend-int", "backend-empty-list",
        "backend-empty-str", "backend-int-list", "threads-str", "threads-0", "threads-huge", "threads-float",
        "threads-bool", "backends-not-table", "backends-unknown", "backends-unknown-key",
        "malformed-string", "malformed-value", "malformed-table", "duplicate-key"])
def test_config_errors(isolated, text, match):
    cfg = write(isolated / "convreg.toml", text)
    _assert_config_error(cfg, match)
    with pytest.raises(ConfigError):
        convreg.conv2d(X, W)
    # an explicit backend= needs no config file
    assert convreg.conv2d(X, W, backend="python")[0, 0, 0, 0] == 4.0


def test_threads_error_surfaces_from_get_threads(isolated):
    cfg = write(isolated / "convreg.toml", "threads = -4\n")
    with pytest.raises(ConfigError, match=re.escape(str(cfg)) + r" \[threads\].*-4"):
        convreg.get_threads()


def test_backend_options_are_validated(register_mock, isolated):
    m = register_mock("mock-opt")
    m.options = {"workspace_mb": OptionSpec(int, 256, minimum=0, doc="buffer bound")}
    cfg = write(isolated / "convreg.toml", "[backends.mock-opt]\nworkspace_mb = 64\n")
    assert load_config().backends == {"mock-opt": {"workspace_mb": 64}}
    assert backend_settings("mock-opt") == {"workspace_mb": 64}

    for text, match in [('workspace_mb = "big"', r"workspace_mb: expected int > 0, but got 'big'"),
                        ("workspace_mb = 0", r"workspace_mb: expected a value > 0, but got 0"),
                        ("workspace_mb = true", r"workspace_mb: expected int"),
                        ("workspce_mb = 1", r"unknown key 'workspce_mb'; allowed keys are "
                                            r"\['workspace_mb'\]")]:
        write(cfg, f"[backends.mock-opt]\n{text}\n")
        os.utime(cfg, ns=(0, os.stat(cfg).st_mtime_ns + 10**9))
        _assert_config_error(cfg, r"\[backends.mock-opt\]:? ?" + match)

    cfg.unlink()
    assert backend_settings("mock-opt") == {"workspace_mb": 256}


def test_nothing_written_on_import(tmp_path):
    home, xdg, cwd = tmp_path / "home", tmp_path / "xdg2", tmp_path / "run"
    for d in (home, xdg, cwd):
        d.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVREG_")}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(xdg), PYTHONDONTWRITEBYTECODE="1")
    code = ("import warnings; warnings.simplefilter('ignore'); import convreg; "
            "convreg.current_backend(); convreg.available_backends(); convreg.get_threads(); "
            "import numpy as np; convreg.conv2d(np.ones((1,1,2,2)), np.ones((1,1,1,1)))")
    subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, check=True, timeout=120)
    for d in (home, xdg, cwd):
        assert list(d.iterdir()) == [], d


def test_import_reads_no_config(tmp_path):
    """A broken config file does not break ``import convreg``; it is read on first need."""
    cfg = write(tmp_path / "bad.toml", "backend = [\n")
    env = dict(os.environ, CONVREG_CONFIG=str(cfg))
    code = ("import convreg\n"
            "try:\n    convreg.current_backend()\nexcept convreg.ConfigError as e:\n"
            "    print('late', e)\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120, check=True)
    assert out.stdout.startswith("late") and "malformed TOML" in out.stdout


def test_cache_is_keyed_by_absolute_path(isolated, tmp_path, monkeypatch):
    """Two pyproject.toml files of the same size and mtime in different directories: the
    cache must not hand the first one's contents out for the second after a chdir."""
    a, b = tmp_path / "a", tmp_path / "b"
    pa = write(a / "pyproject.toml", '[tool.convreg]\nbackend = "python"\n')
    pb = write(b / "pyproject.toml", '[tool.convrex]\nbackend = "python"\n')
    for p in (pa, pb):
        os.utime(p, ns=(10**18, 10**18))
    monkeypatch.chdir(a)
    assert convreg.current_backend() == ("python", f"config {pa}")
    monkeypatch.chdir(b)
    with _maybe_warns():
        assert convreg.current_backend().source == "default"


def test_config_not_utf8(isolated):
    cfg = isolated / "convreg.toml"
    cfg.write_bytes(b'backend = "\xff"\n')
    _assert_config_error(cfg, r"malformed TOML")


def test_config_naming_an_unavailable_builtin_travels(isolated, monkeypatch):
    """A file written on a machine with the compiled backends still loads where a built-in
    cannot run: its table is kept unread, and a list skips the missing backend."""
    monkeypatch.setitem(_registry._unavailable, "cython-im2col", "not compiled here")
    monkeypatch.delitem(_registry._loaded, "cython-im2col", raising=False)
    write(isolated / "convreg.toml",
          'backend = ["cython-im2col", "python"]\n[backends.cython-im2col]\nworkspace_mb = 8\n')
    out = convreg.conv2d(np.ones((1, 1, 3, 3)), np.ones((1, 1, 2, 2)))
    np.testing.assert_array_equal(out, np.full((1, 1, 2, 2), 4.0))
    with pytest.raises(convreg.BackendError, match="not available here"):
        convreg.conv2d(np.ones((1, 1, 3, 3)), np.ones((1, 1, 2, 2)), backend="cython-im2col")
