"""The tuning cache (``tune = "measure"``): measuring on the call's arrays, remembering,
persisting, surviving a corrupt file and concurrent writers, the CLI and explain.

No test reads a clock: the measurement's timer is replaced by a scripted clock that each
mock candidate advances by its own cost.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import convreg
from convreg._dispatch import registry, tune, tuning_cache
from convreg.backends.base import OptionSpec

ROOT = Path(__file__).resolve().parents[1]


class Clock:
    """Scripted time: it moves only when a mock backend says it worked."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class Costly(convreg.Backend):
    """A concrete backend whose every call costs ``cost`` scripted seconds and returns
    ``value`` everywhere (so a test sees which candidate produced a result)."""

    padding_modes = frozenset({"zeros"})

    def __init__(self, name, cost, value, clock):
        self.name, self.cost, self.value, self.clock = name, cost, value, clock
        self.calls = 0

    def conv2d(self, spec, x, w, b, ctx=None):
        self.calls += 1
        self.clock.now += self.cost
        return np.full(spec.output_shape, self.value, dtype=spec.dtype)


class Chooser(convreg.Backend):
    """A chooser whose rules always prefer ``slow`` (the first name)."""

    name = "mockchooser"
    options = {"tune": OptionSpec(str, "rules", choices=("rules", "measure"))}

    def __init__(self, names):
        self.names = names

    def choose(self, spec, ctx=None, op="conv2d"):
        return [(n, f"rule prefers {n}") for n in self.names]

    def conv2d(self, spec, x, w, b, ctx=None):  # pragma: no cover
        raise RuntimeError("never called")


@pytest.fixture
def setup(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(tune, "timer", clock)
    slow = Costly("mock-slow", 0.004, 1.0, clock)
    fast = Costly("mock-fast", 0.001, 2.0, clock)
    chooser = Chooser(["mock-slow", "mock-fast"])
    for be in (slow, fast, chooser):
        convreg.register_backend(be.name, be, replace=True)
    yield slow, fast, chooser
    for be in (slow, fast, chooser):
        registry._loaded.pop(be.name, None)


X = np.ones((1, 2, 6, 6), np.float32)
W = np.ones((3, 2, 3, 3), np.float32)


def _call(**kw):
    return convreg.conv2d(X, W, backend="mockchooser", **kw)


def test_rules_mode_measures_nothing(setup):
    slow, fast, _ = setup
    assert np.all(_call() == 1.0)
    assert (slow.calls, fast.calls) == (1, 0)
    assert not Path(tuning_cache.cache_path()).exists()


def test_measure_picks_the_faster_and_returns_the_rules_first_result(setup):
    slow, fast, _ = setup
    with convreg.use_options("mockchooser", tune="measure"):
        first = _call()
        # The first call's answer is the rules' backend's first run.
        assert np.all(first == 1.0)
        # Repetitions within the budget: 3 x slowest = 12 ms; a round costs 5 ms.
        assert slow.calls == fast.calls == 3
        second = _call()
    assert np.all(second == 2.0)
    assert (slow.calls, fast.calls) == (3, 4)
    e = convreg.explain(X.shape, W.shape, backend="mockchooser")
    # explain outside the use_options block: rules again
    assert e.decided_by == "rule" and e.runs == "mock-slow"


def test_measurement_respects_the_hard_cap(setup, monkeypatch):
    slow, fast, _ = setup
    slow.cost, fast.cost = 0.5, 0.1     # 3 x slowest = 1.5 s > HARD_CAP = 1 s
    with convreg.use_options("mockchooser", tune="measure"):
        _call()
    assert slow.calls == fast.calls == 2   # a third round would end past 1 s
    monkeypatch.setattr(tune, "MAX_RUNS", 1)
    tune.forget()
    tuning_cache.clear()
    with convreg.use_options("mockchooser", tune="measure"):
        _call(padding=1)
    assert slow.calls == fast.calls == 3


def test_hit_reads_no_file_and_measures_nothing(setup, monkeypatch):
    with convreg.use_options("mockchooser", tune="measure"):
        _call()
        monkeypatch.setattr(tune, "measure", lambda *a, **k: pytest.fail("measured again"))
        monkeypatch.setattr(tuning_cache, "_read", lambda *a, **k: pytest.fail("file read"))
        monkeypatch.setattr(tuning_cache, "make_key", lambda *a, **k: pytest.fail("key built"))
        for _ in range(3):
            assert np.all(_call() == 2.0)


def test_explain_says_measurement_with_times_and_when(setup):
    with convreg.use_options("mockchooser", tune="measure"):
        before = convreg.explain(X.shape, W.shape, bias=False, backend="mockchooser")
        assert before.decided_by == "rule"
        assert "not measured yet" in before.reason and "mock-fast" in before.reason
        _call()
        e = convreg.explain(X.shape, W.shape, backend="mockchooser")   # bias: same entry
    assert e.decided_by == "measurement" and e.runs == "mock-fast"
    assert "mock-fast 1.000 ms, mock-slow 4.000 ms" in e.reason
    assert "best of 3 runs" in e.reason and "rules would pick mock-slow" in e.reason
    entry = json.loads(Path(tuning_cache.cache_path()).read_text())["entries"]
    (when,) = [v["when"] for v in entry.values()]
    assert f"at {when}" in e.reason
    assert "by measurement" in str(e)


def test_a_declining_candidate_is_not_measured(setup):
    slow, fast, _ = setup
    fast.supports = lambda spec: convreg.Support(False, "no")
    with convreg.use_options("mockchooser", tune="measure"):
        assert np.all(_call() == 1.0)
        e = convreg.explain(X.shape, W.shape, backend="mockchooser")
    assert fast.calls == 0 and e.decided_by == "rule" and "only candidate" in e.reason


def test_key_depends_on_threads_version_candidates_and_shape(monkeypatch):
    spec = convreg.spec_for_shapes((1, 2, 6, 6), (3, 2, 3, 3))
    base = tuning_cache.make_key(spec, "conv2d", 2, ["a", "b"])
    assert tuning_cache.make_key(spec, "conv2d", 1, ["a", "b"]) != base
    assert tuning_cache.make_key(spec, "conv2d", 2, ["a", "b", "c"]) != base
    assert tuning_cache.make_key(spec, "conv2d", 2, ["b", "a"]) == base
    other = convreg.spec_for_shapes((1, 2, 6, 6), (3, 2, 3, 3), padding=1)
    assert tuning_cache.make_key(other, "conv2d", 2, ["a", "b"]) != base
    monkeypatch.setattr(tuning_cache, "_machine", {**tuning_cache.machine(),
                                                   "convreg": "9.9.9"})
    assert tuning_cache.make_key(spec, "conv2d", 2, ["a", "b"]) != base


def test_threads_are_part_of_the_answer(setup):
    with convreg.use_options("mockchooser", tune="measure"):
        with convreg.use_threads(1):
            _call()
            assert convreg.explain(X.shape, W.shape, backend="mockchooser").decided_by \
                == "measurement"
        with convreg.use_threads(2):
            assert convreg.explain(X.shape, W.shape, backend="mockchooser").decided_by \
                == "rule"


@pytest.mark.parametrize("content", ["{not json", '{"format": 99, "entries": {}}',
                                     '[1, 2]', '{"format": 1, "entries": []}'])
def test_corrupt_or_foreign_file_is_warned_about_ignored_and_rewritten(setup, content):
    path = Path(tuning_cache.cache_path())
    path.parent.mkdir(parents=True)
    path.write_text(content)
    with convreg.use_options("mockchooser", tune="measure"):
        with pytest.warns(RuntimeWarning, match=str(path)):
            out = _call()
        assert np.all(out == 1.0)
        assert np.all(_call() == 2.0)
    data = json.loads(path.read_text())
    assert data["format"] == tuning_cache.FORMAT and len(data["entries"]) == 1


def test_malformed_entries_are_dropped_others_kept(setup):
    path = Path(tuning_cache.cache_path())
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"format": 1, "entries": {"k1": {"winner": 3},
                                                         "k2": {"winner": "a",
                                                                "times": {"a": 1.0}}}}))
    with pytest.warns(RuntimeWarning, match="1 malformed"):
        assert set(tuning_cache.entries()) == {"k2"}


def test_a_failed_write_leaves_the_old_file_whole(setup, monkeypatch):
    path = Path(tuning_cache.cache_path())
    tuning_cache.store("old", {"winner": "a", "times": {"a": 1.0}})
    before = path.read_text()

    def broken_dump(obj, fh, **kw):
        fh.write('{"format": 1, "entr')       # half a file, then the disk fills up
        raise OSError("No space left on device")

    monkeypatch.setattr(tuning_cache.json, "dump", broken_dump)
    with pytest.warns(RuntimeWarning, match="cannot write the tuning cache"):
        tuning_cache.store("new", {"winner": "b", "times": {"b": 1.0}})
    assert path.read_text() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["tuning.json", "tuning.json.lock"]
    assert "new" in tuning_cache.entries()       # kept in memory for this process


_WRITER = textwrap.dedent("""
    import sys
    from convreg._dispatch import tuning_cache
    tag = sys.argv[1]
    for i in range(40):
        tuning_cache.store(f"{tag}-{i}", {"winner": "a", "times": {"a": i * 1.0}})
""")


def _env(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    env.pop("CONVREG_BACKEND", None)
    return env


def test_concurrent_writers_lose_nothing(tmp_path):
    env = _env(tmp_path)
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, tag], env=env)
             for tag in ("p", "q")]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    data = json.loads((tmp_path / "cache" / "convreg" / "tuning.json").read_text())
    assert set(data["entries"]) == {f"{t}-{i}" for t in "pq" for i in range(40)}


def _needs_cython():
    if "cython" not in convreg.available_backends():
        pytest.skip("cython is not built")


def test_persisted_and_reloaded_in_a_new_process(tmp_path):
    _needs_cython()
    env = _env(tmp_path)
    code = textwrap.dedent("""
        import sys, numpy as np, convreg
        x = np.ones((1, 32, 8, 8), np.float32); w = np.ones((32, 32, 3, 3), np.float32)
        with convreg.use_options("cython", tune="measure"), convreg.use_threads(1):
            e = convreg.explain(x.shape, w.shape, padding=1)
            y = convreg.conv2d(x, w, padding=1)
        ref = convreg.conv2d(x, w, padding=1, backend="python")
        assert np.allclose(y, ref, rtol=1e-5), "wrong answer"
        print(e.decided_by)
    """)
    first = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                           text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert first.stdout.split() == ["rule"]
    path = tmp_path / "cache" / "convreg" / "tuning.json"
    written = path.read_text()
    second = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    assert second.stdout.split() == ["measurement"]
    assert path.read_text() == written          # a hit writes nothing


def test_config_file_turns_measuring_on(tmp_path, xdg_dir):
    (xdg_dir / "convreg").mkdir()
    (xdg_dir / "convreg" / "config.toml").write_text('[backends.cython]\ntune = "measure"\n')
    convreg.reload_config()
    from convreg._settings.options import option_sources
    from convreg._settings.chain import snapshot

    assert option_sources("cython", snapshot())["tune"][0] == "measure"
    with pytest.raises(convreg.ConfigError, match="tune"):
        convreg.set_options("cython", tune="sometimes")


def _cli(*args, env):
    return subprocess.run([sys.executable, "-m", "convreg", "tune", *args], env=env,
                          capture_output=True, text=True, timeout=300)


def test_cli_tune_show_clear(tmp_path):
    _needs_cython()
    env = _env(tmp_path)
    shapes = tmp_path / "shapes.json"
    shapes.write_text(json.dumps([{"input": [1, 16, 8, 8], "weight": [16, 16, 3, 3],
                                   "padding": 1},
                                  {"input": [1, 32, 8, 8], "weight": [32, 32, 1, 1]}]))
    out = _cli("--shapes", str(shapes), "--threads", "1", env=env)
    assert out.returncode == 0, out.stderr
    assert "1x16x8x8 * 16x16x3x3 s1 p1 float32" in out.stdout
    shown = _cli("--show", env=env)
    assert shown.returncode == 0, shown.stderr
    assert "(2 entries)" in shown.stdout and "1x32x8x8 * 32x32x1x1" in shown.stdout
    path = tmp_path / "cache" / "convreg" / "tuning.json"
    assert path.exists()
    cleared = _cli("--clear", env=env)
    assert cleared.returncode == 0 and str(path) in cleared.stdout
    assert not path.exists()
    assert "(0 entries)" in _cli("--show", env=env).stdout


def test_cli_bad_shapes_file(tmp_path):
    env = _env(tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text('{"input": 1}')
    out = _cli("--shapes", str(bad), env=env)
    assert out.returncode == 2 and "expected a JSON list" in out.stderr


def test_cli_explain_says_rule_then_measurement(setup, capsys):
    from convreg.__main__ import main

    argv = ["explain", "--input", "1,2,6,6", "--weight", "3,2,3,3", "--backend",
            "mockchooser"]
    with convreg.use_options("mockchooser", tune="measure"):
        assert main(argv) == 0
        assert "(chosen by argument; by rule)" in capsys.readouterr().out
        _call()
        assert main(argv) == 0
    out = capsys.readouterr().out
    assert "mockchooser -> mock-fast (chosen by argument; by measurement): measured" in out
    assert "mock-fast 1.000 ms, mock-slow 4.000 ms" in out


@pytest.mark.parametrize("when", [1, 2])
def test_a_failing_candidate_never_fails_the_call(setup, when):
    slow, fast, _ = setup
    real = fast.conv2d

    def flaky(spec, x, w, b, ctx=None):
        if fast.calls + 1 >= when:
            fast.calls += 1
            raise MemoryError("workspace")
        return real(spec, x, w, b, ctx)

    fast.conv2d = flaky
    with convreg.use_options("mockchooser", tune="measure"):
        assert np.all(_call() == 1.0)
        e = convreg.explain(X.shape, W.shape, backend="mockchooser")
        assert np.all(_call() == 1.0)
    assert e.decided_by == "measurement" and e.runs == "mock-slow"
    assert "mock-fast failed (MemoryError: workspace)" in e.reason
