"""convreg.dask: lazy conv2d over dask arrays chunked along the batch axis."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")

import convreg  # noqa: E402
import convreg.dask as cdask  # noqa: E402
from convreg._dispatch import registry  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BACKEND = "cython" if "cython" in convreg.available_backends() else "python"


def _data(n=12, c=4, h=9, w=7, co=6, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, c, h, w)).astype(dtype),
            rng.standard_normal((co, c, 3, 3)).astype(dtype),
            rng.standard_normal(co).astype(dtype))


def test_lazy_shape_dtype_chunks_and_values():
    x, w, b = _data(dtype=np.float32)
    dx = da.from_array(x, chunks=(5, 4, 9, 7))
    y = cdask.conv2d(dx, w, b, stride=(2, 1), padding=1, backend=BACKEND)
    assert isinstance(y, da.Array)
    ref = convreg.conv2d(x, w, b, stride=(2, 1), padding=1, backend=BACKEND)
    assert y.shape == ref.shape and y.dtype == np.float32
    assert y.chunks == ((5, 5, 2), (6,), (ref.shape[2],), (ref.shape[3],))
    got = y.compute(scheduler="threads")
    assert got.shape == ref.shape and got.dtype == ref.dtype
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_weights_are_one_graph_key_shared_by_every_task():
    x, w, b = _data()
    y = cdask.conv2d(da.from_array(x, chunks=(2, 4, 9, 7)), w, b, padding=1)
    graph = dict(y.__dask_graph__())

    def payload(v):             # a raw value, or a dask DataNode wrapping one
        return getattr(v, "value", v)

    holding = [k for k, v in graph.items()
               if isinstance(payload(v), np.ndarray) and payload(v).shape == w.shape]
    assert len(holding) == 1
    tasks = [v for k, v in graph.items() if isinstance(k, tuple) and "convreg-conv2d" in k[0]]
    assert len(tasks) == 6
    if all(hasattr(t, "dependencies") for t in tasks):
        assert all(holding[0] in t.dependencies for t in tasks)


@pytest.mark.parametrize("chunks", [(3, 2, 9, 7), (3, 4, 4, 7), (3, 1, 2, 3)])
def test_chunks_along_c_h_w_are_merged(chunks):
    x, w, b = _data()
    y = cdask.conv2d(da.from_array(x, chunks=chunks), w, b, padding="same",
                     padding_mode="reflect", backend=BACKEND)
    assert y.chunks[0] == (3, 3, 3, 3) and all(len(c) == 1 for c in y.chunks[1:])
    ref = convreg.conv2d(x, w, b, padding="same", padding_mode="reflect", backend=BACKEND)
    np.testing.assert_allclose(y.compute(scheduler="sync"), ref, rtol=1e-10, atol=1e-10)


def test_unbatched_input_is_a_batch_of_one():
    x, w, b = _data(n=1)
    y = cdask.conv2d(da.from_array(x[0], chunks=(2, 9, 7)), w, b)
    assert y.shape == (6, 7, 5)
    np.testing.assert_allclose(y.compute(), convreg.conv2d(x[0], w, b), rtol=1e-10)


def test_errors_are_raised_at_once():
    x, w, b = _data()
    dx = da.from_array(x, chunks=(3, 4, 9, 7))
    with pytest.raises(convreg.ConvTypeError, match="dask.array"):
        cdask.conv2d(x, w)
    with pytest.raises(convreg.ConvSpecError, match="groups=3"):
        cdask.conv2d(dx, w, groups=3)
    with pytest.raises(convreg.ConvTypeError, match="dtype"):
        cdask.conv2d(dx, w.astype(np.float32))
    with pytest.raises(convreg.ConvSpecError, match="3-D"):
        cdask.conv2d(da.ones((2, 2), chunks=1), w)
    unknown = dx[dx[:, 0, 0, 0] > -100]       # unknown batch chunk sizes: fine
    assert np.isnan(unknown.shape[0])
    out = cdask.conv2d(unknown, w, b).compute()
    np.testing.assert_allclose(out, convreg.conv2d(x, w, b), rtol=1e-10)


def test_a_dask_weight_is_computed_once():
    x, w, b = _data()
    y = cdask.conv2d(da.from_array(x, chunks=4), da.from_array(w), da.from_array(b))
    np.testing.assert_allclose(y.compute(), convreg.conv2d(x, w, b), rtol=1e-10)


class _ThreadRecorder(convreg.Backend):
    name = "thread-recorder"

    def __init__(self):
        self.seen = []

    def conv2d(self, spec, x, w, b, ctx):
        self.seen.append(ctx.threads)
        return np.zeros(spec.output_shape, spec.dtype)


@pytest.mark.parametrize("pool, threads, expected", [(2, 8, 4), (4, 3, 1), (3, 2, 1),
                                                     (1, 6, 6)])
def test_kernel_threads_times_pool_threads_fit_the_threads(pool, threads, expected):
    rec = _ThreadRecorder()
    convreg.register_backend(rec.name, rec, replace=True)
    convreg.set_threads(threads)
    try:
        x, w, _ = _data(n=8)
        y = cdask.conv2d(da.from_array(x, chunks=1), w, backend=rec.name)
        with dask.config.set(scheduler="threads", num_workers=pool):
            y.compute()
    finally:
        registry._loaded.pop(rec.name, None)
    assert rec.seen == [expected] * 8


def test_sync_scheduler_gives_the_task_every_thread(monkeypatch):
    monkeypatch.setenv("CONVREG_THREADS", "6")
    convreg.reload_config()
    with dask.config.set(scheduler="sync"):
        assert cdask.kernel_threads() == 6


def _in_task():
    from distributed import get_worker

    import convreg.dask
    from convreg._settings.threads import affinity_cores

    return (convreg.dask.kernel_threads(), get_worker().state.nthreads, convreg.get_threads(),
            affinity_cores())


def test_local_cluster_with_two_worker_processes(monkeypatch):
    distributed = pytest.importorskip("distributed")
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    monkeypatch.setenv("PYTHONPATH", path)
    x, w, b = _data(n=16, c=8, h=12, w=12, co=8, dtype=np.float32)
    ref = convreg.conv2d(x, w, b, padding=1, backend=BACKEND)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, silence_logs=40) as cluster, \
            distributed.Client(cluster) as client:
        y = cdask.conv2d(da.from_array(x, chunks=(4, 8, 12, 12)), w, b, padding=1,
                         backend=BACKEND)
        got = client.compute(y).result()
        kernel, nthreads, threads, cores = client.submit(_in_task, pure=False).result()
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    assert nthreads == 1 and kernel == max(1, threads // nthreads)
    assert kernel * nthreads <= threads <= cores


# ------------------------------------------------ transposed convolution and gradients

def test_conv_transpose2d_matches_in_memory():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((6, 4, 7, 5)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    kw = dict(stride=2, padding=1, output_padding=1)
    lazy = convreg.dask.conv_transpose2d(da.from_array(x, chunks=(2, 4, 7, 5)), w, b, **kw)
    expected = convreg.conv_transpose2d(x, w, b, **kw)
    assert lazy.shape == expected.shape and lazy.chunks[0] == (2, 2, 2)
    np.testing.assert_allclose(lazy.compute(scheduler="sync"), expected, rtol=1e-5, atol=1e-5)


def test_gradients_match_in_memory():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((6, 3, 9, 8)).astype(np.float64)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float64)
    kw = dict(stride=2, padding=1)
    go = rng.standard_normal(convreg.conv2d(x, w, **kw).shape)
    xd = da.from_array(x, chunks=(2, 3, 9, 8))
    god = da.from_array(go, chunks=(3, 4, 5, 4))          # other chunks: merged/aligned
    gi = convreg.dask.conv2d_input(x.shape, w, god, **kw)
    gw = convreg.dask.conv2d_weight(xd, w.shape, god, **kw)
    gb = convreg.dask.conv2d_bias(god)
    np.testing.assert_allclose(gi.compute(scheduler="sync"),
                               convreg.grad.conv2d_input(x.shape, w, go, **kw), rtol=1e-10)
    np.testing.assert_allclose(gw.compute(scheduler="sync"),
                               convreg.grad.conv2d_weight(x, w.shape, go, **kw), rtol=1e-10)
    np.testing.assert_allclose(gb.compute(), convreg.grad.conv2d_bias(go), rtol=1e-10)


def test_gradient_arguments_checked_at_once():
    go = da.zeros((4, 2, 5, 5), chunks=(2, 2, 5, 5))
    with pytest.raises(convreg.ConvSpecError, match="input_size"):
        convreg.dask.conv2d_input((3, 2, 7, 7), np.ones((2, 2, 3, 3)), go)
    with pytest.raises(convreg.ConvSpecError, match="batch"):
        convreg.dask.conv2d_weight(da.zeros((3, 2, 7, 7), chunks=3), (2, 2, 3, 3), go)
