"""The registry: names, registration, use_backend scoping across threads and tasks."""

from __future__ import annotations

import asyncio
import json
import threading

import numpy as np
import pytest

import convreg
from convreg import BackendError
from convreg.backends.python import PythonBackend

from conftest import MockBackend

X = np.ones((1, 1, 3, 3))
W = np.ones((1, 1, 2, 2))


def in_thread(fn):
    box = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as exc:  # pragma: no cover - re-raised below
            box["error"] = exc

    t = threading.Thread(target=target)
    t.start()
    t.join(60)
    if "error" in box:
        raise box["error"]
    return box["value"]


def test_available_backends_lists_python():
    names = convreg.available_backends()
    assert isinstance(names, list) and all(isinstance(n, str) for n in names)
    assert "python" in names
    assert len(set(names)) == len(names)


def test_get_backend_python_is_the_reference():
    be = convreg.get_backend("python")
    assert isinstance(be, PythonBackend)
    assert be.name == "python"
    assert be is convreg.get_backend("python")      # cached
    assert set(be.padding_modes) == {"zeros", "reflect", "replicate", "circular"}


@pytest.mark.parametrize("name", ["nope", "Python", "", "python "])
def test_unknown_names_list_known_ones(name):
    with pytest.raises(BackendError, match=rf"Unknown backend {name!r}; available backends are "
                                          r"\[.*'python'.*\]"):
        convreg.get_backend(name)
    with pytest.raises(BackendError, match=r"Unknown backend"):
        convreg.conv2d(X, W, backend=name)


@pytest.mark.parametrize("value", [3, 1.5, b"python", ["python", 3], ()])
def test_non_string_backend_argument(value):
    with pytest.raises(BackendError):
        convreg.conv2d(X, W, backend=value)


def test_register_and_use(mock):
    assert "mock" in convreg.available_backends()
    assert convreg.get_backend("mock") is mock
    out = convreg.conv2d(X, W, backend="mock")
    assert (out == 7.0).all() and out.shape == (1, 1, 2, 2)
    assert mock.ncalls == 1
    spec = mock.calls_in_this_thread()[0]
    assert isinstance(spec, convreg.ConvSpec) and spec.output_shape == (1, 1, 2, 2)


def test_register_refuses_duplicates(register_mock):
    first = register_mock("mock-dup")
    with pytest.raises(BackendError, match=r"'mock-dup' is already registered.*replace=True"):
        convreg.register_backend("mock-dup", MockBackend("other"))
    assert convreg.get_backend("mock-dup") is first
    second = MockBackend("mock-dup")
    convreg.register_backend("mock-dup", second, replace=True)
    assert convreg.get_backend("mock-dup") is second


@pytest.mark.parametrize("name", ["python", "cython", "cython-direct", "cython-im2col"])
def test_register_refuses_builtin_names(name):
    with pytest.raises(BackendError, match=rf"{name!r} is already registered"):
        convreg.register_backend(name, MockBackend(name))


def test_replace_builtin_then_unregister_restores_it():
    fake = MockBackend("python")
    try:
        convreg.register_backend("python", fake, replace=True)
        assert convreg.get_backend("python") is fake
        assert (convreg.conv2d(X, W, backend="python") == 7.0).all()
    finally:
        convreg.unregister_backend("python")
    be = convreg.get_backend("python")
    assert isinstance(be, PythonBackend)
    assert (convreg.conv2d(X, W, backend="python") == 4.0).all()


@pytest.mark.parametrize("name, obj, match", [
    ("", MockBackend(), r"non-empty string"),
    (3, MockBackend(), r"non-empty string, but got 3"),
    ("mock-bad", object(), r"'mock-bad' must have a callable supports\(\)"),
    ("mock-bad", type("Half", (), {"supports": lambda self, s: True})(),
     r"callable conv2d\(\)"),
], ids=["empty", "int", "object", "no-conv2d"])
def test_register_invalid(name, obj, match):
    with pytest.raises(BackendError, match=match):
        convreg.register_backend(name, obj)
    assert "mock-bad" not in convreg.available_backends()


def test_unregister_unknown():
    with pytest.raises(BackendError, match=r"Unknown backend 'nope'"):
        convreg.unregister_backend("nope")


def test_backend_returning_wrong_shape_is_an_error(register_mock):
    m = register_mock("mock-shape")
    m.conv2d = lambda spec, x, w, b: np.zeros((1, 1, 1, 1), spec.dtype)
    with pytest.raises(BackendError, match=r"'mock-shape' returned .*\(1, 1, 1, 1\).*expected "
                                           r"an ndarray of shape \(1, 1, 2, 2\)"):
        convreg.conv2d(X, W, backend="mock-shape")
    m.conv2d = lambda spec, x, w, b: np.zeros(spec.output_shape, np.float32)
    with pytest.raises(BackendError, match=r"dtype float64"):
        convreg.conv2d(X, W, backend="mock-shape")


def test_backend_receives_validated_contiguous_arrays(register_mock):
    seen = {}

    class Spy(MockBackend):
        padding_modes = frozenset({"zeros"})

        def conv2d(self, spec, x, w, b):
            seen.update(spec=spec, x=x, w=w, b=b)
            return super().conv2d(spec, x, w, b)

    convreg.register_backend("mock-spy", Spy("mock-spy"), replace=True)
    try:
        x = np.asfortranarray(np.ones((2, 3, 4), np.float32))
        convreg.conv2d(x, np.ones((1, 2, 3, 3), np.float32), np.ones(1, np.float32),
                       padding=1, padding_mode="reflect", backend="mock-spy")
    finally:
        convreg.unregister_backend("mock-spy")
    spec = seen["spec"]
    # unbatched reflect padding realised in the front end for a zeros-only backend
    assert seen["x"].shape == (1, 2, 5, 6) and seen["x"].flags.c_contiguous
    assert (spec.padding_mode, spec.pt, spec.pb, spec.pl, spec.pr) == ("zeros", 0, 0, 0, 0)
    assert seen["w"].flags.c_contiguous and seen["b"].dtype == np.float32


def test_native_padding_backend_gets_the_mode(mock):
    convreg.conv2d(np.ones((1, 1, 3, 3)), W, padding=1, padding_mode="circular", backend="mock")
    spec = mock.calls_in_this_thread()[0]
    assert (spec.padding_mode, spec.pt, spec.h) == ("circular", 1, 3)


def test_empty_batch_never_reaches_the_backend(mock):
    out = convreg.conv2d(np.ones((0, 1, 3, 3)), W, backend="mock")
    assert out.shape == (0, 1, 2, 2) and mock.ncalls == 0


# ------------------------------------------------------------------- use_backend scoping

def test_use_backend_restores_on_exception(mock):
    before = convreg.current_backend()
    with pytest.raises(KeyError):
        with convreg.use_backend("mock"):
            assert convreg.current_backend() == ("mock", "use_backend")
            raise KeyError("boom")
    assert convreg.current_backend() == before


def test_use_backend_nests(register_mock):
    a, b = register_mock("mock-a", value=1.0), register_mock("mock-b", value=2.0)
    with convreg.use_backend("mock-a"):
        with convreg.use_backend("mock-b"):
            assert convreg.conv2d(X, W)[0, 0, 0, 0] == 2.0
            with convreg.use_backend(["mock-a", "mock-b"]):
                assert convreg.current_backend().name == ("mock-a", "mock-b")
            assert convreg.current_backend().name == "mock-b"
        assert convreg.conv2d(X, W)[0, 0, 0, 0] == 1.0
    assert (a.ncalls, b.ncalls) == (1, 1)


def test_use_backend_is_local_to_the_thread(mock):
    convreg.set_backend("python")
    with convreg.use_backend("mock"):
        assert convreg.current_backend() == ("mock", "use_backend")
        # a thread started inside the block sees the process default, not the block
        assert in_thread(convreg.current_backend) == ("python", "set_backend")
        out = in_thread(lambda: convreg.conv2d(X, W))
        assert out[0, 0, 0, 0] == 4.0
        convreg.conv2d(X, W)
    assert list(mock.calls) == [threading.get_ident()]
    assert mock.ncalls == 1


def test_use_backend_in_a_thread_does_not_leak(mock):
    entered, release = threading.Event(), threading.Event()

    def worker():
        with convreg.use_backend("mock"):
            entered.set()
            release.wait(30)
            return convreg.current_backend()

    box = {}
    t = threading.Thread(target=lambda: box.update(r=worker()))
    t.start()
    assert entered.wait(30)
    try:
        assert convreg.current_backend().source != "use_backend"
    finally:
        release.set()
        t.join(30)
    assert box["r"] == ("mock", "use_backend")


def test_threads_record_their_own_calls(register_mock):
    m = register_mock("mock-threads")
    barrier = threading.Barrier(4)

    def work():
        barrier.wait(30)
        with convreg.use_backend("mock-threads"):
            for _ in range(3):
                convreg.conv2d(X, W)
        return threading.get_ident()

    idents = []
    threads = [threading.Thread(target=lambda: idents.append(work())) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(m.calls) == sorted(idents)
    assert all(len(v) == 3 for v in m.calls.values())


def test_set_backend_is_visible_across_threads(mock):
    convreg.set_backend("mock")
    assert in_thread(convreg.current_backend) == ("mock", "set_backend")
    in_thread(lambda: convreg.conv2d(X, W))
    assert mock.ncalls == 1 and threading.get_ident() not in mock.calls
    # set from another thread, seen here
    convreg.set_backend(None)
    in_thread(lambda: convreg.set_backend(["mock", "python"]))
    assert convreg.current_backend() == (("mock", "python"), "set_backend")


def test_async_tasks_are_isolated(register_mock):
    register_mock("mock-a", value=1.0)
    register_mock("mock-b", value=2.0)

    async def task(name, value):
        with convreg.use_backend(name):
            seen = []
            for _ in range(5):
                await asyncio.sleep(0)          # let the other task run inside its block
                seen.append((convreg.current_backend().name, convreg.conv2d(X, W).flat[0]))
            return seen

    async def main():
        return await asyncio.gather(task("mock-a", 1.0), task("mock-b", 2.0))

    a, b = asyncio.run(main())
    assert a == [("mock-a", 1.0)] * 5
    assert b == [("mock-b", 2.0)] * 5


def test_use_backend_accepts_a_list_and_yields_the_first(register_mock):
    m = register_mock("mock-first")
    with convreg.use_backend(["mock-first", "python"]) as be:
        assert be is m


# ----------------------------------------------------------------------------- show_config

def test_show_config_dicts(mock):
    info = convreg.show_config(mode="dicts")
    for key in ("convreg", "numpy", "backends", "threads", "backend", "config_file", "simd",
                "openmp", "blas"):
        assert key in info
    assert info["convreg"] == convreg.__version__
    assert info["backends"]["python"]["builtin"] is True
    assert info["backends"]["mock"]["builtin"] is False
    assert "zeros" in info["backends"]["python"]["padding_modes"]


def test_show_config_prints_json(capsys):
    assert convreg.show_config() is None
    info = json.loads(capsys.readouterr().out)
    assert "python" in info["backends"]


def test_show_config_bad_mode():
    with pytest.raises(convreg.ConvSpecError, match=r"mode=.*'xml'"):
        convreg.show_config(mode="xml")
