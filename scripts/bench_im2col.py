"""Benchmark the cython-im2col backend against torch.nn.functional.conv2d.

Prints, per layer (float32 by default): ms (median of shuffled rounds; before each timed
sample a 5 ms sleep lets the other engine's OpenMP workers go idle, then one untimed call
warms the engine's own), GFLOP/s, and the ratio to torch's median time in the same run
(when torch imports; torch is ``torch.nn.functional.conv2d`` called directly on tensors
made once, under ``torch.no_grad()``, with ``torch.set_num_threads(threads)``); numpy's
2048x2048 matmul GFLOP/s in the run's dtype and thread count (the ceiling); the machine
load at start and end; and a peak-memory check of the workspace bound in a fresh
subprocess.

    python scripts/bench_im2col.py [--threads 2] [--reps 30]

Run it under the shared CPU lock on shared machines:
``flock /tmp/convreg-cpu.lock python scripts/bench_im2col.py``.
Tuning knobs (for measuring the rules the backend uses): ``--split blas|tasks|shared``
forces the kernel mode (``blas``: one loop, BLAS threads each GEMM), ``--blas-gemm``
multiplies with BLAS instead of the avx512 build's own kernel, ``--no-fused`` turns off
the fused (no column buffer) mode of float32 stride-1 same-width calls, ``--cache-kb``
sets the per-thread band buffer target.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _bench_common as common  # noqa: E402

import convreg  # noqa: E402
from convreg._frontend.spec import prepare  # noqa: E402
from convreg.backends import im2col as im2col_mod  # noqa: E402

# name, n, c_in, h, w, c_out, k, stride, padding, groups
LAYERS = [
    ("tiny 8->8 16² 3x3", 1, 8, 16, 16, 8, 3, 1, 1, 1),
    ("3x3 64 56²", 1, 64, 56, 56, 64, 3, 1, 1, 1),
    ("3x3 128 28²", 1, 128, 28, 28, 128, 3, 1, 1, 1),
    ("3x3 256 14²", 1, 256, 14, 14, 256, 3, 1, 1, 1),
    ("3x3 512 7²", 1, 512, 7, 7, 512, 3, 1, 1, 1),
    ("3x3 128 28² N=8", 8, 128, 28, 28, 128, 3, 1, 1, 1),
    ("1x1 256->64 56²", 1, 256, 56, 56, 64, 1, 1, 0, 1),
    ("1x1 256->512 56² s2", 1, 256, 56, 56, 512, 1, 2, 0, 1),
    ("stem 7x7/2 3->64 224²", 1, 3, 224, 224, 64, 7, 2, 3, 1),
    ("3x3 64 56² N=8", 8, 64, 56, 56, 64, 3, 1, 1, 1),
]
TARGETS = {"3x3 64 56²": 1.2, "3x3 128 28²": 1.2, "3x3 256 14²": 1.2, "3x3 512 7²": 1.2,
           "3x3 128 28² N=8": 1.2, "1x1 256->64 56²": 1.0, "tiny 8->8 16² 3x3": 2.0}


def _timeit(fn, inner):
    t0 = time.perf_counter()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - t0) / inner


def matmul_ceiling(threads, dtype="float32", reps=5):
    """numpy's 2048x2048 matmul GFLOP/s in ``dtype``, BLAS held to ``threads`` (median)."""
    return common.matmul_ceiling(dtype, threads, reps=reps)


def bench_layers(args, torch):
    rng = np.random.default_rng(0)
    rows = []
    for name, n, ci, h, w, co, k, s, p, g in LAYERS:
        if args.layers and not any(sel in name for sel in args.layers):
            continue
        x = rng.standard_normal((n, ci, h, w)).astype(args.dtype)
        wt = (rng.standard_normal((co, ci // g, k, k)) * 0.05).astype(args.dtype)
        b = rng.standard_normal(co).astype(args.dtype)
        spec = prepare(x, wt, b, s, p, 1, g)[0]
        kw = dict(stride=s, padding=p, groups=g)
        ours = lambda: convreg.conv2d(x, wt, b, backend="cython-im2col", **kw)   # noqa: E731
        fns = {"ours": ours}
        if torch is not None:
            F = torch.nn.functional
            xt, wtt, bt = map(torch.from_numpy, (x, wt, b))

            def theirs():
                with torch.no_grad():
                    return F.conv2d(xt, wtt, bt, stride=s, padding=p, groups=g)
            fns["torch"] = theirs      # F.conv2d called directly, as torch users call it
            ref = theirs().numpy()
            got = ours()
            err = float(np.max(np.abs(got - ref)) / (np.max(np.abs(ref)) + 1e-30))
        else:
            err = float("nan")
        # Inner repetitions so that each timed sample lasts at least ~2 ms.
        one = _timeit(ours, 1)
        inner = max(1, int(0.002 / max(one, 1e-7)))
        for key, fn in fns.items():
            fn()
        med, _ = common.fair_medians(fns, args.reps, seed=args.seed, inner=inner)
        plan = im2col_mod.CythonIm2colBackend().plan(spec, args.threads)
        row = {"layer": name, "gflop": spec.flops / 1e9, "ms": med["ours"] * 1e3,
               "gflops": spec.flops / med["ours"] / 1e9,
               "torch_ms": med.get("torch", float("nan")) * 1e3,
               "ratio": med["ours"] / med["torch"] if "torch" in med else float("nan"),
               "target": TARGETS.get(name), "rel_err": err,
               "plan": plan.describe()}
        rows.append(row)
        mark = ""
        if row["target"] and row["ratio"] == row["ratio"]:
            mark = "ok" if row["ratio"] <= row["target"] else f"MISS (>{row['target']})"
        print(f"{name:24s} {row['gflop']:7.3f} {row['ms']:9.3f} {row['gflops']:8.1f} "
              f"{row['torch_ms']:9.3f} {row['ratio']:6.2f}  {mark:14s} {row['plan']}",
              flush=True)
    return rows


MEMORY_CHILD = r"""
import json, sys
import numpy as np
import convreg
from convreg.backends.im2col import CythonIm2colBackend

def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
mb, threads = float(sys.argv[1]), int(sys.argv[2])
convreg.set_threads(threads)
be = CythonIm2colBackend(workspace_mb=mb)
x = np.random.default_rng(0).standard_normal((8, 64, 112, 112), dtype=np.float32)
w = np.random.default_rng(1).standard_normal((64, 64, 3, 3), dtype=np.float32)
# Warm up libraries and thread pools on a small call first.
convreg.conv2d(x[:1, :, :8, :8], w, padding=1, backend=be)
before = hwm()
out = convreg.conv2d(x, w, padding=1, backend=be)
after = hwm()
from convreg._frontend.spec import prepare
plan = be.plan(prepare(x, w, None, 1, 1)[0])
print(json.dumps({"before": before, "after": after, "out": out.nbytes,
                  "workspace": plan.workspace_bytes, "bound": plan.bound_bytes}))
"""


def memory_check(threads):
    print("\npeak memory: N=8, 64->64, 112², 3x3 pad 1, float32 (fresh subprocess, VmHWM)")
    results = []
    for mb in (32, 256, 1):
        proc = subprocess.run([sys.executable, "-c", MEMORY_CHILD, str(mb), str(threads)],
                              capture_output=True, text=True, check=True)
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        rise = r["after"] - r["before"]
        limit = r["out"] + r["bound"]
        verdict = "ok" if rise <= limit + 4 * 2**20 else "OVER"
        print(f"  workspace_mb={mb:<4}: peak RSS rise {rise / 2**20:7.1f} MiB = output "
              f"{r['out'] / 2**20:.1f} MiB + {(rise - r['out']) / 2**20:.1f} MiB "
              f"(column buffer allocated {r['workspace'] / 2**20:.2f} MiB; bound "
              f"{r['bound'] / 2**20:.0f} MiB; full buffer would be "
              f"{8 * 576 * 112 * 112 * 4 / 2**20:.0f} MiB) {verdict}")
        results.append({"workspace_mb": mb, **r, "rise": rise})
    return results


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_version(ap, "bench_im2col.py")
    ap.add_argument("--threads", type=common.positive_int, default=2)
    ap.add_argument("--reps", type=common.positive_int, default=21)
    ap.add_argument("--seed", type=int, default=0, help="seed of the engine order")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--layers", nargs="*", help="substrings of layer names to run")
    ap.add_argument("--split", choices=["auto", "blas", "tasks", "shared"], default="auto",
                    help="force the thread split (for measuring the rule)")
    ap.add_argument("--cache-kb", type=common.positive_float, help="override the per-thread band buffer target")
    ap.add_argument("--blas-gemm", action="store_true",
                    help="multiply with BLAS, not the avx512 build's own kernel")
    ap.add_argument("--no-fused", action="store_true",
                    help="never use the fused im2col + GEMM mode (banded column buffer instead)")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--json", help="write results to this file")
    args = ap.parse_args(argv)

    convreg.set_threads(args.threads)
    if args.split != "auto":
        mode = {"blas": im2col_mod.SERIAL, "tasks": im2col_mod.TASKS,
                "shared": im2col_mod.SHARED}[args.split]
        im2col_mod.split_threads = lambda spec, n: (mode, 1 if mode == im2col_mod.SERIAL else n)
    if args.blas_gemm:
        im2col_mod.use_own_kernel = False
    if args.no_fused:
        im2col_mod.use_flat = False
    if args.cache_kb:
        im2col_mod.CACHE_BYTES = im2col_mod.CACHE_BYTES_BATCH = int(args.cache_kb * 1024)
    torch = common.import_torch(args.threads)
    if torch is None:
        print("torch not importable: no ratios")
    load_text, load_start = common.load_line("start")
    print(load_text, flush=True)
    ceiling = matmul_ceiling(args.threads, args.dtype)
    be = convreg.get_backend("cython-im2col")
    print(f"threads={args.threads} dtype={args.dtype} reps={args.reps} split={args.split} "
          f"cache={im2col_mod.CACHE_BYTES // 1024} KiB variant={be.info()['variant']} "
          f"gemm={'BLAS' if args.blas_gemm else be.info()['float32_gemm']} "
          f"fused={'off' if args.no_fused else 'on'}")
    print("OPENBLAS_CORETYPE=" + os.environ.get("OPENBLAS_CORETYPE", "(unset)"))
    print(f"numpy {args.dtype} 2048² matmul at {args.threads} threads: {ceiling:.1f} GFLOP/s "
          "(ceiling)\n")
    print(f"{'layer':24s} {'GFLOP':>7s} {'ms':>9s} {'GFLOP/s':>8s} {'torch ms':>9s} "
          f"{'ratio':>6s}  {'target':14s} plan")
    rows = bench_layers(args, torch)
    mem = None if args.no_memory else memory_check(args.threads)
    load_text, load_end = common.load_line("end")
    print(load_text)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"command": common.command_line(), "versions": common.versions(),
                       "threads": args.threads, "dtype": args.dtype, "load_start": load_start,
                       "load_end": load_end, "ceiling_gflops": ceiling, "layers": rows,
                       "memory": mem}, fh, indent=1)
    return 0


if __name__ == "__main__":
    common.run_main(main)
