#!/usr/bin/env python
"""Throughput of convreg.dask.conv2d: images/s for a ResNet layer over a large batch.

The layer: 3x3, 64 -> 64 channels, 56x56, padding 1, float32 (ResNet stage 1). The
batch (default 64 images in chunks of 8) is computed with the local threaded scheduler
and with a ``dask.distributed.LocalCluster`` of 2 worker processes x 1 thread; the
in-memory ``convreg.conv2d`` call on the whole batch is the baseline. The input is held
where each scheduler computes (a NumPy array for the threaded scheduler; persisted on the
workers for the cluster, as data loaded with dask would be) and the cluster's results stay
on the workers (``persist`` + ``wait``): the rows time the convolutions and scheduling,
not moving 50 MB through the client. Each row: best of ``--repeat`` runs, after one
warm-up run. Torch-free.

    python scripts/bench_dask.py [--batch 64] [--chunk 8] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _bench_common as common  # noqa: E402


def best_of(fn, repeat):
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_version(p, "bench_dask.py")
    p.add_argument("--batch", type=common.positive_int, default=64)
    p.add_argument("--chunk", type=common.positive_int, default=8)
    p.add_argument("--repeat", type=common.positive_int, default=3)
    p.add_argument("--backend", default=None)
    args = p.parse_args(argv)

    import dask
    import dask.array as da
    import distributed

    import convreg
    import convreg.dask

    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch, 64, 56, 56)).astype(np.float32)
    w = (rng.standard_normal((64, 64, 3, 3)) * 0.05).astype(np.float32)
    b = rng.standard_normal(64).astype(np.float32)
    dx = da.from_array(x, chunks=(args.chunk, 64, 56, 56))
    y = convreg.dask.conv2d(dx, w, b, padding=1, backend=args.backend)
    ref = convreg.conv2d(x, w, b, padding=1, backend=args.backend)
    print(f"batch {args.batch} in chunks of {args.chunk}; layer 64->64 3x3 56^2 pad 1; "
          + common.load_line("start")[0], flush=True)

    rows = [("in memory (convreg.conv2d)", best_of(
        lambda: convreg.conv2d(x, w, b, padding=1, backend=args.backend), args.repeat))]
    with dask.config.set(scheduler="threads"):
        rows.append(("dask threaded scheduler", best_of(lambda: y.compute(), args.repeat)))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, silence_logs=40) as cluster, \
            distributed.Client(cluster) as client:
        parts = [x[i:i + args.chunk] for i in range(0, args.batch, args.chunk)]
        on_workers = da.concatenate([da.from_delayed(f, p.shape, p.dtype) for f, p in
                                     zip(client.scatter(parts), parts)])
        yc = convreg.dask.conv2d(on_workers, w, b, padding=1, backend=args.backend)
        np.testing.assert_allclose(client.compute(yc).result(), ref, rtol=1e-4, atol=1e-4)

        bumped = [w.flat[0]]

        def run():
            # A weight differing in its last bits: new keys, so nothing is reused from
            # an earlier run (the work is the same).
            bumped[0] = np.nextafter(bumped[0], np.float32(np.inf))
            w_run = w.copy()
            w_run.flat[0] = bumped[0]
            y_run = convreg.dask.conv2d(on_workers, w_run, b, padding=1, backend=args.backend)
            done = client.persist(y_run)
            distributed.wait(done)
            client.cancel(done)

        rows.append(("LocalCluster 2 processes x 1 thread", best_of(run, args.repeat)))
    for label, t in rows:
        print(f"{label:38s} {t * 1e3:9.1f} ms  {args.batch / t:8.1f} images/s")
    print(common.load_line("end")[0])
    return 0


if __name__ == "__main__":
    common.run_main(main)
