#!/usr/bin/env python
"""Compare convreg's backends: first prove they agree, then time them on a layer suite.

1. The harness: every registered backend (plugins and torch included when present)
   against the float64 reference on the standard grid plus seeded random cases.
2. Timing: per layer and backend, the median of alternating repetitions; ms, GFLOP/s,
   ratio to the fastest backend and to torch when present.

Exit status 1 when any backend disagrees with the reference.

    python scripts/compare_backends.py                     # default suite, < 1 minute
    python scripts/compare_backends.py --suite resnet --backends cython,torch --json out.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time

import numpy as np

import convreg
from convreg import harness

# name, input shape, weight shape, conv kwargs
SECTION7 = [
    ("stem 7x7/2 3->64 224", (1, 3, 224, 224), (64, 3, 7, 7), dict(stride=2, padding=3)),
    ("3x3 64 56", (1, 64, 56, 56), (64, 64, 3, 3), dict(padding=1)),
    ("3x3 128 28", (1, 128, 28, 28), (128, 128, 3, 3), dict(padding=1)),
    ("3x3 256 14", (1, 256, 14, 14), (256, 256, 3, 3), dict(padding=1)),
    ("3x3 512 7", (1, 512, 7, 7), (512, 512, 3, 3), dict(padding=1)),
    ("1x1 256->64 56", (1, 256, 56, 56), (64, 256, 1, 1), {}),
    ("dw 3x3 128 56", (1, 128, 56, 56), (128, 1, 3, 3), dict(padding=1, groups=128)),
    ("b8 3x3 128 28", (8, 128, 28, 28), (128, 128, 3, 3), dict(padding=1)),
    ("mnist 5x5 1->32 b64", (64, 1, 28, 28), (32, 1, 5, 5), {}),
    ("tiny 3x3 8->8 16", (1, 8, 16, 16), (8, 8, 3, 3), dict(padding=1)),
]

RESNET18 = [
    ("conv1 7x7/2", (1, 3, 224, 224), (64, 3, 7, 7), dict(stride=2, padding=3)),
    ("layer1 3x3 64", (1, 64, 56, 56), (64, 64, 3, 3), dict(padding=1)),
    ("layer2.0 3x3/2 64->128", (1, 64, 56, 56), (128, 64, 3, 3), dict(stride=2, padding=1)),
    ("layer2.0 down 1x1/2", (1, 64, 56, 56), (128, 64, 1, 1), dict(stride=2)),
    ("layer2 3x3 128", (1, 128, 28, 28), (128, 128, 3, 3), dict(padding=1)),
    ("layer3.0 3x3/2 128->256", (1, 128, 28, 28), (256, 128, 3, 3), dict(stride=2, padding=1)),
    ("layer3.0 down 1x1/2", (1, 128, 28, 28), (256, 128, 1, 1), dict(stride=2)),
    ("layer3 3x3 256", (1, 256, 14, 14), (256, 256, 3, 3), dict(padding=1)),
    ("layer4.0 3x3/2 256->512", (1, 256, 14, 14), (512, 256, 3, 3), dict(stride=2, padding=1)),
    ("layer4.0 down 1x1/2", (1, 256, 14, 14), (512, 256, 1, 1), dict(stride=2)),
    ("layer4 3x3 512", (1, 512, 7, 7), (512, 512, 3, 3), dict(padding=1)),
]

EXTRA = [
    ("mbv2 dw 5x5/2 240 28", (1, 240, 28, 28), (240, 1, 5, 5), dict(stride=2, padding=2,
                                                                       groups=240)),
    ("dw 3x3/2 96 112", (1, 96, 112, 112), (96, 1, 3, 3), dict(stride=2, padding=1, groups=96)),
    ("grouped 3x3 g8 128 28", (1, 128, 28, 28), (128, 16, 3, 3), dict(padding=1, groups=8)),
    ("reflect 3x3 64 56", (1, 64, 56, 56), (64, 64, 3, 3), dict(padding=1,
                                                              padding_mode="reflect")),
    ("dilated 3x3 d2 128 28", (1, 128, 28, 28), (128, 128, 3, 3), dict(padding=2, dilation=2)),
]

SUITES = {"quick": SECTION7, "resnet": RESNET18, "all": SECTION7 + RESNET18 + EXTRA}

# The pure-Python reference is timed only where a call takes well under a second.
PYTHON_MAX_FLOP = 2e6


class Progress:
    """A one-line progress display on stderr; silent when stderr is not a terminal."""

    def __init__(self, enabled):
        self.enabled = enabled and sys.stderr.isatty()

    def __call__(self, text):
        if self.enabled:
            sys.stderr.write("\r\033[K" + text[:100])
            sys.stderr.flush()

    def done(self):
        if self.enabled:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


def flop(x_shape, w_shape, kwargs):
    return convreg.spec_for_shapes(x_shape, w_shape, **kwargs).flops


def time_layer(backends, x, w, b, kwargs, budget, progress, label):
    """Median seconds per backend: alternating repetitions after one warm-up call each."""
    if not backends:
        return {}, 0
    times = {name: [] for name in backends}
    single = {}
    for name in backends:
        progress(f"{label}: warm-up {name}")
        t0 = time.perf_counter()
        convreg.conv2d(x, w, b, backend=name, **kwargs)
        single[name] = time.perf_counter() - t0
    slowest = max(single.values())
    reps = int(min(25, max(3, budget / max(slowest * len(backends), 1e-9))))
    for rep in range(reps):
        order = backends if rep % 2 == 0 else backends[::-1]
        for name in order:
            progress(f"{label}: {name} rep {rep + 1}/{reps}")
            t0 = time.perf_counter()
            convreg.conv2d(x, w, b, backend=name, **kwargs)
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}, reps


def format_rows(rows):
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    out = ["  ".join(str(c).rjust(wd) if i else str(c).ljust(wd)
                     for i, (c, wd) in enumerate(zip(r, widths))) for r in rows]
    out.insert(1, "  ".join("-" * wd for wd in widths))
    return "\n".join(out)


def run_harness(backends, args, progress):
    cases = harness.standard_cases() + harness.random_cases(args.random, seed=args.seed)
    report = harness.run_checks(
        backends, cases, progress=lambda i, n: progress(f"harness: case {i}/{n}"))
    progress.done()
    return report


def run_timing(backends, layers, args, progress):
    results = []
    dtype = np.dtype(args.dtype)
    rng = np.random.default_rng(0)
    for li, (label, xs, ws, kwargs) in enumerate(layers):
        x = rng.standard_normal(xs).astype(dtype)
        w = rng.standard_normal(ws).astype(dtype)
        b = rng.standard_normal(ws[0]).astype(dtype)
        gflop = flop(xs, ws, kwargs) / 1e9
        timed = [n for n in backends if n != "python" or gflop * 1e9 <= PYTHON_MAX_FLOP]
        med, reps = time_layer(timed, x, w, b, kwargs, args.budget, progress,
                               f"[{li + 1}/{len(layers)}] {label}")
        results.append({"layer": label, "input": xs, "weight": ws, "kwargs": kwargs,
                        "gflop": gflop, "reps": reps,
                        "seconds": {n: med.get(n) for n in backends}})
    progress.done()
    return results


def timing_table(results, backends):
    header = ["layer", "GFLOP"]
    for n in backends:
        header += [f"{n} ms", "GFLOP/s", "/best"] + (["/torch"] if "torch" in backends
                                                     and n != "torch" else [])
    rows = [header]
    ratios = {n: [] for n in backends}
    for r in results:
        secs = r["seconds"]
        best = min((s for s in secs.values() if s is not None), default=None)
        row = [r["layer"], f"{r['gflop']:.4g}"]
        for n in backends:
            s = secs.get(n)
            if s is None or best is None:
                row += ["-", "-", "-"] + (["-"] if "torch" in backends and n != "torch" else [])
                continue
            row += [f"{s * 1e3:.3f}", f"{r['gflop'] / s:.1f}", f"{s / best:.2f}"]
            if "torch" in backends and n != "torch" and secs.get("torch"):
                ratio = s / secs["torch"]
                ratios[n].append(ratio)
                row.append(f"{ratio:.2f}")
        rows.append(row)
    lines = [format_rows(rows)]
    if "torch" in backends:
        for n, rs in ratios.items():
            if rs:
                geo = math.exp(sum(math.log(v) for v in rs) / len(rs))
                lines.append(f"{n}: time vs torch geometric mean {geo:.2f}x, worst "
                             f"{max(rs):.2f}x over {len(rs)} layers")
    return "\n".join(lines)


def sgemm_ceiling():
    a = np.random.default_rng(1).standard_normal((2048, 2048)).astype(np.float32)
    a @ a
    ts = []
    for _ in range(5):
        t0 = time.perf_counter()
        a @ a
        ts.append(time.perf_counter() - t0)
    return 2 * 2048**3 / statistics.median(ts) / 1e9


def plot(results, backends, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"--plot: matplotlib is not installed (pip install matplotlib); {path} not "
              "written", file=sys.stderr)
        return
    fig, ax = plt.subplots(figsize=(max(8, len(results) * 1.1), 5))
    width = 0.8 / len(backends)
    for i, n in enumerate(backends):
        vals = [r["gflop"] / r["seconds"][n] if r["seconds"].get(n) else 0 for r in results]
        ax.bar([j + i * width for j in range(len(results))], vals, width, label=n)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(results))])
    ax.set_xticklabels([r["layer"] for r in results], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("GFLOP/s")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"plot written to {path}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--suite", choices=sorted(SUITES), default="quick")
    p.add_argument("--backends", help="comma-separated names (default: every available)")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--threads", type=int, help="threads for every backend (default: all cores)")
    p.add_argument("--json", help="write machine-readable results to this file")
    p.add_argument("--plot", help="write a bar chart of GFLOP/s to this file (matplotlib)")
    p.add_argument("--random", type=int, default=40, help="random harness cases (default 40)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--budget", type=float, default=0.25,
                   help="seconds of timing per layer and backend (default 0.25)")
    p.add_argument("--no-check", action="store_true", help="skip the harness")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    args = p.parse_args(argv)

    try:
        if args.threads is not None:
            convreg.set_threads(args.threads)
        backends = convreg.available_backends()
        if args.backends:
            backends = [n.strip() for n in args.backends.split(",")]
            for n in backends:
                convreg.get_backend(n)   # unknown names fail here, listing the known ones
    except convreg.ConvregError as exc:
        print(f"compare_backends: {exc}", file=sys.stderr)
        return 2
    progress = Progress(not args.quiet)
    info = convreg.show_config(mode="dicts")
    print(f"convreg {info['convreg']}, numpy {info['numpy']}, {info['platform']}")
    print(f"SIMD variant {info['simd']['chosen']}, OpenMP {info['openmp']}, "
          f"threads {convreg.get_threads()}, backends {backends}")

    report = None
    if not args.no_check:
        report = run_harness(backends, args, progress)
        print("\n== agreement with the float64 reference ==")
        print(report.table())
    ceiling = sgemm_ceiling()
    results = run_timing(backends, SUITES[args.suite], args, progress)
    print(f"\n== timing: suite {args.suite}, {args.dtype}, {convreg.get_threads()} threads, "
          f"median of alternating repetitions ==")
    print(timing_table(results, backends))
    print(f"ceiling: numpy float32 2048x2048 matmul {ceiling:.1f} GFLOP/s in this run")
    if args.json:
        doc = {"machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                           "python": platform.python_version()},
               "config": info, "threads": convreg.get_threads(), "dtype": args.dtype,
               "suite": args.suite, "backends": backends, "sgemm_gflops": ceiling,
               "harness": report.to_dict() if report else None, "timing": results}
        with open(args.json, "w") as fh:
            json.dump(doc, fh, indent=1, default=str)
        print(f"results written to {args.json}")
    if args.plot:
        plot(results, backends, args.plot)
    if report is not None and not report.ok:
        print("DISAGREEMENT: see the table above", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
