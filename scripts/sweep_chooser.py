#!/usr/bin/env python
"""Measure cython-direct against cython-im2col over a sweep of shapes.

The rules of the ``cython`` chooser (convreg/backends/cython_auto.py) are derived from
this table; ``--markdown`` prints it in the form kept in docs/chooser.md. Each row:
median of shuffled rounds (a 5 ms sleep lets the other backend's OpenMP workers go idle
before each timed call, then one untimed call warms the backend's own), float32, the
configured thread count (or ``--threads``). No torch here: this compares convreg's two
kernels with each other; scripts/compare_backends.py is the comparison with torch.

Regret: for each shape, every candidate the chooser lists (and that supports the call) is
timed; the regret of a choice is its time over the fastest candidate's. The summary gives
the median and 95th percentile over the sweep for the rules and, with ``--tuned``, for
``tune = "measure"`` after one tuning pass over the sweep in a fresh temporary cache
directory (``$XDG_CACHE_HOME`` is pointed there before convreg reads the cache).
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import tempfile
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


def candidates(spec):
    """The concrete backends the cython chooser lists that support ``spec``."""
    names = [n for n, _ in convreg.get_backend("cython").choose(spec)]
    return [n for n in names if convreg.get_backend(n).supports(spec)]


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def tuning_pass(cases):
    """One call per shape with tune="measure": measures every shape the cache lacks."""
    t0 = time.perf_counter()
    with convreg.use_options("cython", tune="measure"):
        for _, x, w, kw in cases:
            convreg.conv2d(x, w, backend="cython", **kw)
    return time.perf_counter() - t0


def tuned_choice(x, w, kw):
    with convreg.use_options("cython", tune="measure"):
        e = convreg.explain(x.shape, w.shape, bias=False, backend="cython", **kw)
    return e.runs, e.decided_by


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_version(p, "sweep_chooser.py")
    p.add_argument("--full", action="store_true", help="the larger sweep")
    p.add_argument("--markdown", action="store_true")
    p.add_argument("--threads", type=common.positive_int,
                   help="thread count (default: convreg's setting)")
    p.add_argument("--seed", type=int, default=0, help="seed of the backend order")
    p.add_argument("--tuned", action="store_true",
                   help="also run a tuning pass (fresh temporary cache) and report its regret")
    args = p.parse_args(argv)
    if args.threads:
        convreg.set_threads(args.threads)
    if args.tuned:
        tmp = tempfile.mkdtemp(prefix="convreg-sweep-cache-")
        os.environ["XDG_CACHE_HOME"] = tmp
        from convreg._dispatch import tune

        tune.forget()
    info = sys.stderr if args.markdown else sys.stdout
    print(f"threads {convreg.get_threads()}; " + common.load_line("start")[0], file=info,
          flush=True)
    rng = np.random.default_rng(0)
    cases = []
    for label, xs, ws, kw in shapes(args.full):
        x = rng.standard_normal(xs).astype(np.float32)
        w = rng.standard_normal(ws).astype(np.float32)
        cases.append((label, x, w, kw))
    if args.tuned:
        took = tuning_pass(cases)
        print(f"tuning pass: {len(cases)} shapes in {took:.1f} s (cache in {tmp})", file=info)
    rows, agree, regret_rules, regret_tuned = [], 0, [], []
    for label, x, w, kw in cases:
        spec = convreg.spec_for_shapes(x.shape, w.shape, bias=False, **kw)
        names = candidates(spec)
        for be in names:
            convreg.conv2d(x, w, backend=be, **kw)
        t1 = median_time(names[0], x, w, kw, 1)
        reps = int(min(15, max(3, 0.05 / max(t1, 1e-6))))
        calls = {be: (lambda be=be: convreg.conv2d(x, w, backend=be, **kw)) for be in names}
        med, _ = common.fair_medians(calls, reps, seed=args.seed)
        fastest = min(med.values())
        rules = convreg.explain(x.shape, w.shape, bias=False, backend="cython", **kw).runs
        regret_rules.append(med[rules] / fastest)
        td = med.get("cython-direct", float("nan"))
        ti = med.get("cython-im2col", float("nan"))
        best = min(med, key=med.get).replace("cython-", "")
        chosen = rules.replace("cython-", "")
        agree += med[rules] / fastest < 1.1
        tuned = ""
        if args.tuned:
            pick, how = tuned_choice(x, w, kw)
            regret_tuned.append(med[pick] / fastest)
            tuned = (f" tuned {pick.replace('cython-', '')} ({how}) "
                     f"regret {med[pick] / fastest:4.2f}")
        rows.append((label, spec.flops / 1e6, td * 1e3, ti * 1e3, ti / td, best, chosen))
        print(f"{label:32s} {spec.flops / 1e6:9.2f} MFLOP direct {td * 1e3:8.3f} ms "
              f"im2col {ti * 1e3:8.3f} ms  im2col/direct {ti / td:5.2f}  best {best:6s} "
              f"chooser {chosen} regret {med[rules] / fastest:4.2f}{tuned}",
              file=sys.stderr if args.markdown else sys.stdout)
    if args.markdown:
        print("| layer | MFLOP | direct ms | im2col ms | im2col/direct | faster | chooser |")
        print("| --- | ---: | ---: | ---: | ---: | --- | --- |")
        for r in rows:
            print(f"| {r[0]} | {r[1]:.2f} | {r[2]:.3f} | {r[3]:.3f} | {r[4]:.2f} | {r[5]} | {r[6]} |")
    print(f"\nchooser picks the faster backend (or one within 10%) on {agree}/{len(rows)} shapes")
    print(f"regret (chosen / fastest) over {len(rows)} shapes:")
    print(f"  rules: median {statistics.median(regret_rules):.3f}  "
          f"p95 {percentile(regret_rules, 95):.3f}  max {max(regret_rules):.3f}")
    if args.tuned:
        print(f"  tuned: median {statistics.median(regret_tuned):.3f}  "
              f"p95 {percentile(regret_tuned, 95):.3f}  max {max(regret_tuned):.3f}")
    print(common.load_line("end")[0], file=info)
    return 0


if __name__ == "__main__":
    common.run_main(main)
