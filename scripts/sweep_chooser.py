#!/usr/bin/env python
"""Measure cython-direct against cython-im2col over a sweep of shapes.

The rules of the ``cython`` chooser (convreg/backends/cython_auto.py) are derived from
this table; ``--markdown`` prints it in the form kept in docs/chooser.md. Each row:
median of shuffled rounds (a 5 ms sleep lets the other backend's OpenMP workers go idle
before each timed call, then one untimed call warms the backend's own), float32, the
configured thread count (or ``--threads``). No torch here: this compares convreg's two
kernels with each other; scripts/compare_backends.py is the comparison with torch.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _bench_common as common  # noqa: E402

import convreg  # noqa: E402


def shapes(full: bool):
    """(label, input shape, weight shape, kwargs) over channels, groups, kernel, stride, size, batch."""
    sizes = [(8, 64), (16, 32), (32, 32), (56, 16), (112, 8)] if full else [(16, 32), (56, 16)]
    for (hw, c), k, s in itertools.product(sizes, (1, 3, 5, 7), (1, 2)):
        for cin, cout, g in ((3, c, 1), (c, c, 1), (c, c, c), (c, c, max(1, c // 16)),
                             (c // 4 or 1, c, 1), (c * 4, c * 4, 1), (1, c, 1)):
            if cin % g or cout % g or hw + 2 * (k // 2) < k:
                continue
            yield (f"{cin}->{cout} g{g} {k}x{k}/{s} {hw}^2", (1, cin, hw, hw),
                   (cout, cin // g, k, k), dict(stride=s, padding=k // 2, groups=g))
    for n in (4, 16):
        yield (f"b{n} 64->64 3x3 28^2", (n, 64, 28, 28), (64, 64, 3, 3), dict(padding=1))
        yield (f"b{n} dw64 3x3 28^2", (n, 64, 28, 28), (64, 1, 3, 3), dict(padding=1, groups=64))


def median_time(backend, x, w, kwargs, reps):
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        convreg.conv2d(x, w, backend=backend, **kwargs)
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_version(p, "sweep_chooser.py")
    p.add_argument("--full", action="store_true", help="the larger sweep")
    p.add_argument("--markdown", action="store_true")
    p.add_argument("--threads", type=common.positive_int,
                   help="thread count (default: convreg's setting)")
    p.add_argument("--seed", type=int, default=0, help="seed of the backend order")
    args = p.parse_args(argv)
    if args.threads:
        convreg.set_threads(args.threads)
    info = sys.stderr if args.markdown else sys.stdout
    print(f"threads {convreg.get_threads()}; " + common.load_line("start")[0], file=info,
          flush=True)
    rng = np.random.default_rng(0)
    rows, agree = [], 0
    for label, xs, ws, kw in shapes(args.full):
        x = rng.standard_normal(xs).astype(np.float32)
        w = rng.standard_normal(ws).astype(np.float32)
        spec = convreg.spec_for_shapes(xs, ws, bias=False, **kw)
        for be in ("cython-direct", "cython-im2col"):
            convreg.conv2d(x, w, backend=be, **kw)
        t1 = median_time("cython-direct", x, w, kw, 1)
        reps = int(min(15, max(3, 0.05 / max(t1, 1e-6))))
        calls = {be: (lambda be=be: convreg.conv2d(x, w, backend=be, **kw))
                 for be in ("cython-direct", "cython-im2col")}
        med, _ = common.fair_medians(calls, reps, seed=args.seed)
        td, ti = med["cython-direct"], med["cython-im2col"]
        best = "direct" if td < ti else "im2col"
        chosen = convreg.get_backend("cython").choose(spec)[0].replace("cython-", "")
        agree += chosen == best or max(td, ti) / min(td, ti) < 1.1
        rows.append((label, spec.flops / 1e6, td * 1e3, ti * 1e3, ti / td, best, chosen))
        print(f"{label:32s} {spec.flops / 1e6:9.2f} MFLOP direct {td * 1e3:8.3f} ms "
              f"im2col {ti * 1e3:8.3f} ms  im2col/direct {ti / td:5.2f}  best {best:6s} "
              f"chooser {chosen}", file=sys.stderr if args.markdown else sys.stdout)
    if args.markdown:
        print("| layer | MFLOP | direct ms | im2col ms | im2col/direct | faster | chooser |")
        print("| --- | ---: | ---: | ---: | ---: | --- | --- |")
        for r in rows:
            print(f"| {r[0]} | {r[1]:.2f} | {r[2]:.3f} | {r[3]:.3f} | {r[4]:.2f} | {r[5]} | {r[6]} |")
    print(f"\nchooser picks the faster backend (or one within 10%) on {agree}/{len(rows)} shapes")
    print(common.load_line("end")[0], file=info)
    return 0


if __name__ == "__main__":
    common.run_main(main)
