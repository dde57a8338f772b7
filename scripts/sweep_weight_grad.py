#!/usr/bin/env python
"""Measure the rule that sends a weight gradient to the row-vectorised reduction.

For layers over 1-64 input channels per group (3x3 / 5x5 kernels, 7x7 to 56x56 images,
stride 1 and 2, grouped, depthwise, 1x1) and the DESIGN.md section 7 suite, times

    rows   convreg.backends._gradops.weight_grad_rows (the compiled reduction)
    gemm   cython-im2col's conv2d_weight with that form switched off (its GEMM forms:
           per-tap GEMMs, im2col bands, the swapped convolution)

each in its own block of calls (see BLOCK_SLEEP), each timed call preceded by a short
sleep and one untimed call, and prints the medians and rows/gemm, with
``_gradops.rows_fits`` (the rule in force) per layer.

    python scripts/sweep_weight_grad.py                 # float32, 2 threads, 9 repetitions
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from unittest import mock

import numpy as np

import convreg  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _bench_common as common  # noqa: E402
from convreg import grad  # noqa: E402
from convreg.backends import _gradops  # noqa: E402


def layers():
    """(name, input shape, weight shape, kwargs): the sweep, then the suite."""
    out = []
    for cig in (1, 3, 8, 16, 32, 64):
        for hw, k, s, n in ((56, 3, 1, 1), (14, 3, 1, 4), (28, 5, 1, 4), (56, 3, 2, 1),
                            (7, 3, 1, 8)):
            out.append((f"{k}x{k}/{s} {cig}->64 {hw} b{n}", (n, cig, hw, hw),
                        (64, cig, k, k), dict(stride=s, padding=k // 2)))
    out += [("grouped 3x3 32ch g8 28 b8", (8, 32, 28, 28), (64, 4, 3, 3),
             dict(padding=1, groups=8)),
            ("dw 3x3 32 112", (1, 32, 112, 112), (32, 1, 3, 3), dict(padding=1, groups=32)),
            ("1x1 16->16 30 b2", (2, 16, 30, 30), (16, 16, 1, 1), {})]
    return out + list(common.SECTION7)


# Before each form's block of calls: long enough for BLAS threads left spinning by the
# other form (OpenBLAS busy-waits ~0.1 s after a threaded call) to go to sleep; with
# them spinning, an OpenMP region on the same two cores stalled for 4-16 ms per call.
BLOCK_SLEEP = 0.3


def median_block(fn, reps, sleep=0.002):
    """Median seconds of ``fn`` over ``reps`` timed calls, each after a short sleep and
    one untimed call, the block after BLOCK_SLEEP."""
    time.sleep(BLOCK_SLEEP)
    fn()
    ts = []
    for _ in range(reps):
        time.sleep(sleep)
        fn()
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_version(ap, "sweep_weight_grad.py")
    ap.add_argument("--threads", type=common.positive_int, default=2)
    ap.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    ap.add_argument("--reps", type=common.positive_int, default=9)
    ap.add_argument("--layers", default="", help="only layers whose name contains this")
    args = ap.parse_args(argv)
    if _gradops._gradutil is None:
        print("sweep_weight_grad.py: the compiled gradient helpers are not built",
              file=sys.stderr)
        return 1
    convreg.set_threads(args.threads)
    rng = np.random.default_rng(0)
    print(f"# sweep_weight_grad: {args.dtype} threads={args.threads} reps={args.reps} "
          f"load(1min)={os.getloadavg()[0]:.2f}")
    print(f"{'layer':28s} {'rule':>5s} {'rows ms':>8s} {'gemm ms':>8s} {'rows/gemm':>9s}")
    for name, xs, ws, kw in layers():
        if args.layers and args.layers not in name:
            continue
        spec = convreg.spec_for_shapes(xs, ws, dtype=args.dtype, **kw)
        x = rng.standard_normal(xs).astype(args.dtype)
        go = rng.standard_normal(spec.output_shape).astype(args.dtype)
        fits = _gradops.rows_fits(spec)

        def rows():
            return _gradops.weight_grad_rows(spec, x, go, args.threads)

        def gemm():
            with mock.patch.object(_gradops, "rows_fits", lambda s: False):
                return grad.conv2d_weight(x, ws, go, backend="cython-im2col", **kw)

        a, b = median_block(rows, args.reps), median_block(gemm, args.reps)
        print(f"{name:28s} {'rows' if fits else 'gemm':>5s} {a * 1e3:8.3f} {b * 1e3:8.3f} "
              f"{a / b:9.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
