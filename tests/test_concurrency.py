"""Many Python threads calling conv2d at once, each with its own backend choice."""

import threading

import numpy as np
import pytest

import convreg
from convreg.harness import compare, reference, Case


class Recording(convreg.Backend):
    """Delegates to the python reference and records which thread called it."""

    padding_modes = frozenset({"zeros"})

    def __init__(self, name):
        self.name = name
        self.calls = []
        self._lock = threading.Lock()

    def conv2d(self, spec, x, w, b):
        with self._lock:
            self.calls.append(threading.get_ident())
        return convreg.get_backend("python").conv2d(spec, x, w, b)


@pytest.fixture
def recorders():
    made = [Recording(f"rec{i}") for i in range(3)]
    for r in made:
        convreg.register_backend(r.name, r)
    yield made
    for r in made:
        convreg.unregister_backend(r.name)


def test_threads_get_their_own_backend_and_correct_results(recorders):
    compiled = [n for n in convreg.available_backends()
                if n.startswith("cython") and n != "cython-winograd"]   # (3x3 stride 1 only)
    case = Case("conc", (2, 4, 9, 8), (6, 2, 3, 3), groups=2, padding=1, stride=(1, 2))
    x, w, b = case.arrays()
    ref, bound = reference(case)
    names = [r.name for r in recorders] + compiled + ["python"]
    errors, seen = [], {}
    barrier = threading.Barrier(2 * len(names))

    def worker(i, name, mode):
        try:
            barrier.wait()
            for _ in range(5):
                if mode == "context":
                    with convreg.use_backend(name):
                        seen[(i, mode)] = convreg.current_backend()
                        out = convreg.conv2d(x, w, b, **case.kwargs())
                else:
                    out = convreg.conv2d(x, w, b, backend=name, **case.kwargs())
                ok, _, msg = compare(out, ref, bound, case.dtype)
                if not ok:
                    errors.append(f"{name} {mode}: {msg}")
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(f"{name} {mode}: {exc!r}")

    threads = [threading.Thread(target=worker, args=(i, n, m))
               for i, n in enumerate(names) for m in ("context", "argument")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert not errors
    for i, name in enumerate(names):
        assert seen[(i, "context")] == (name, "use_backend")
    for r in recorders:
        # 5 calls from the context thread + 5 from the argument thread, two distinct threads
        assert len(r.calls) == 10
        assert len(set(r.calls)) == 2


def test_use_backend_does_not_leak_into_other_threads():
    results = {}
    inside = threading.Event()
    release = threading.Event()

    def holder():
        with convreg.use_backend("python"):
            results["holder"] = convreg.current_backend()
            inside.set()
            release.wait(10)

    def other():
        inside.wait(10)
        results["other"] = convreg.current_backend()
        release.set()

    t1, t2 = threading.Thread(target=holder), threading.Thread(target=other)
    t1.start(), t2.start()
    t1.join(10), t2.join(10)
    assert results["holder"] == ("python", "use_backend")
    assert results["other"].source != "use_backend"


def test_winograd_from_many_threads_at_once():
    """cython-winograd keeps a workspace per calling thread: concurrent calls stay right."""
    if "cython-winograd" not in convreg.available_backends():
        pytest.skip("cython-winograd is not built")
    case = Case("conc-wino", (2, 16, 12, 10), (8, 16, 3, 3), padding=1)
    x, w, b = case.arrays()
    ref, bound = reference(case)
    errors = []
    barrier = threading.Barrier(6)

    def worker():
        try:
            barrier.wait()
            for _ in range(5):
                ok, _, msg = compare(convreg.conv2d(x, w, b, padding=1,
                                                    backend="cython-winograd"),
                                     ref, bound, case.dtype)
                assert ok, msg
        except Exception as exc:   # reported below, with the thread's error
            errors.append(repr(exc))

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors


def test_winograd_whole_transforms_from_many_threads_at_once():
    """Functional calls of several tile blocks transform their weights into the calling
    thread's own buffer inside the convolution: threads with different weights at once
    get exactly the outputs they get one at a time."""
    if "cython-winograd" not in convreg.available_backends():
        pytest.skip("cython-winograd is not built")
    mod = convreg.get_backend("cython-winograd")._mod
    assert not mod.raw_plan(3, 1, 64, 64, 28, 28, 1, 1, 2, 4, 2)[0]   # several blocks
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 64, 28, 28)).astype(np.float32)
    ws = [rng.standard_normal((64, 64, 3, 3)).astype(np.float32) for _ in range(4)]
    alone = [convreg.conv2d(x, w, padding=1, backend="cython-winograd") for w in ws]
    errors = []
    barrier = threading.Barrier(len(ws))

    def worker(i):
        try:
            barrier.wait()
            for _ in range(4):
                out = convreg.conv2d(x, ws[i], padding=1, backend="cython-winograd")
                assert np.array_equal(out, alone[i]), f"thread {i}: outputs differ"
        except Exception as exc:   # reported below, with the thread's error
            errors.append(repr(exc))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(ws))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
