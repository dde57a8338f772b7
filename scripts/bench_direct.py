"""Time the cython-direct backend against torch.nn.functional.conv2d on its target layers.

"direct" goes through ``convreg.conv2d`` (front end included, as users call it);
"kernel" calls the backend object on an already prepared call; "torch" is
``torch.nn.functional.conv2d`` called directly, as torch users call it (tensors made once,
``torch.no_grad()``, ``torch.set_num_threads(threads)``), never through convreg. Each layer
is run ``--reps`` rounds after a warm-up; every round takes the engines in a seeded shuffled
order, and before each timed call the script sleeps 5 ms (the previous engine's OpenMP
workers go idle) and makes one untimed call of the same engine; the table shows median ms, GFLOP/s
(a multiply-add counts as two flops) and the ratio of medians to torch. The numpy
float32 2048x2048 matmul rate, measured in the same run with the same thread count, is
the GEMM ceiling: "sgemm x" is the layer's time over flops / that rate, i.e. how far
the layer is from an ideal im2col + sgemm.

    python scripts/bench_direct.py [--threads 2] [--reps 30] [--dtype float32]

Each call returns a fresh output array. Outputs of a few MB are served by glibc either
from the heap or from fresh mmap'd pages, depending on what the other library freed
just before, and fresh pages cost a page fault each (about 0.3 ms for the stem's 3.2 MB
output). Alternating with torch moves that state around, so for kernel-to-kernel
figures also run with ``MALLOC_MMAP_THRESHOLD_=1073741824 MALLOC_TRIM_THRESHOLD_=1073741824``
(both libraries then reuse heap memory); the header says which way the run went.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _bench_common as common  # noqa: E402

import convreg  # noqa: E402
from convreg._frontend.spec import prepare  # noqa: E402
from convreg._settings.context import threads_context  # noqa: E402

# name, input shape, weight shape, stride, padding, groups
LAYERS = [
    ("dw3x3 128ch 56^2", (1, 128, 56, 56), (128, 1, 3, 3), 1, 1, 128),
    ("stem 7x7/2 3->64 224^2", (1, 3, 224, 224), (64, 3, 7, 7), 2, 3, 1),
    ("dw5x5/2 240ch 28^2", (1, 240, 28, 28), (240, 1, 5, 5), 2, 2, 240),
    ("dense3x3 64ch 56^2", (1, 64, 56, 56), (64, 64, 3, 3), 1, 1, 1),
    ("dense3x3 128ch 28^2", (1, 128, 28, 28), (128, 128, 3, 3), 1, 1, 1),
    ("dense3x3 256ch 14^2", (1, 256, 14, 14), (256, 256, 3, 3), 1, 1, 1),
    ("dense3x3 512ch 7^2", (1, 512, 7, 7), (512, 512, 3, 3), 1, 1, 1),
    ("dw3x3/2 96ch 112^2", (1, 96, 112, 112), (96, 1, 3, 3), 2, 1, 96),
    ("1x1 256->64 56^2", (1, 256, 56, 56), (64, 256, 1, 1), 1, 0, 1),
    ("b8 3x3 128ch 28^2", (8, 128, 28, 28), (128, 128, 3, 3), 1, 1, 1),
    ("mnist 5x5 1->32 b64", (64, 1, 28, 28), (32, 1, 5, 5), 1, 0, 1),
]


def sgemm_rate(threads: int, dtype, reps: int = 7) -> float:
    """GFLOP/s of numpy's matmul on 2048x2048 in ``dtype`` (BLAS held to ``threads``)."""
    return common.matmul_ceiling(dtype, threads, reps=reps)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_version(ap, "bench_direct.py")
    ap.add_argument("--threads", type=common.positive_int, default=2)
    ap.add_argument("--reps", type=common.positive_int, default=30)
    ap.add_argument("--seed", type=int, default=0, help="seed of the engine order")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--only", default="", help="substring filter on layer names")
    args = ap.parse_args(argv)
    dtype = np.dtype(args.dtype)

    torch = common.import_torch(args.threads)
    direct = convreg.get_backend("cython-direct")
    others = [b for b in ("cython-im2col",) if b in convreg.available_backends()]
    print(f"cython-direct variant {direct.info()['simd']}, threads {args.threads}, "
          f"dtype {dtype.name}, reps {args.reps}, torch "
          f"{torch.__version__ if torch else 'not installed'}")
    tuned = os.environ.get("MALLOC_MMAP_THRESHOLD_")
    print("glibc malloc: " + (f"MALLOC_MMAP_THRESHOLD_={tuned} (heap reuse)" if tuned else
                              "default (large outputs may page-fault; see --help)"))
    load_text, _ = common.load_line("start")
    print(load_text, flush=True)
    rate = sgemm_rate(args.threads, dtype)
    print(f"numpy {dtype.name} matmul 2048^2: {rate:.1f} GFLOP/s (GEMM ceiling)\n")

    cols = ["layer", "GFLOP", "direct ms", "GFLOP/s", "torch ms", "torch GF/s",
            "direct/torch", "kernel ms", "kernel/torch", "sgemm x"] + [f"{o} ms" for o in others]
    rows = []
    rng = np.random.default_rng(0)
    for name, xs, ws, stride, padding, groups in LAYERS:
        if args.only and args.only not in name:
            continue
        x = rng.standard_normal(xs).astype(dtype)
        w = (rng.standard_normal(ws) / np.sqrt(np.prod(ws[1:]))).astype(dtype)
        b = rng.standard_normal(ws[0]).astype(dtype)
        kw = dict(stride=stride, padding=padding, groups=groups)
        spec, xc, wc, bc = prepare(x, w, b, **kw)
        ctx = threads_context(args.threads)
        fns = {"direct": lambda: convreg.conv2d(x, w, b, backend="cython-direct", **kw),
               # the backend object on a prepared call: the kernel without the front end
               "kernel": lambda: direct.conv2d(spec, xc, wc, bc, ctx)}
        for o in others:
            fns[o] = lambda o=o: convreg.conv2d(x, w, b, backend=o, **kw)
        if torch is not None:
            fns["torch"] = common.torch_direct(torch, x, w, b, kw)   # as torch users call it
        with convreg.use_threads(args.threads):
            for fn in fns.values():       # warm-up
                fn(), fn()
            med, _ = common.fair_medians(fns, args.reps, seed=args.seed)
        gf = spec.flops / 1e9
        row = [name, f"{gf:.3f}", f"{med['direct'] * 1e3:.3f}",
               f"{gf / med['direct']:.1f}"]
        if torch is not None:
            row += [f"{med['torch'] * 1e3:.3f}", f"{gf / med['torch']:.1f}",
                    f"{med['direct'] / med['torch']:.2f}", f"{med['kernel'] * 1e3:.3f}",
                    f"{med['kernel'] / med['torch']:.2f}"]
        else:
            row += ["-", "-", "-", f"{med['kernel'] * 1e3:.3f}", "-"]
        row.append(f"{med['direct'] / (gf / rate):.2f}")
        row += [f"{med[o] * 1e3:.3f}" for o in others]
        rows.append(row)
        print("  ".join(row), flush=True)

    print()
    widths = [max(len(str(r[i])) for r in [cols] + rows) for i in range(len(cols))]
    print("  ".join(c.rjust(wd) if i else c.ljust(wd) for i, (c, wd) in
                    enumerate(zip(cols, widths))))
    for r in rows:
        print("  ".join(c.rjust(wd) if i else c.ljust(wd) for i, (c, wd) in
                        enumerate(zip(r, widths))))
    print(common.load_line("end")[0])
    return 0


if __name__ == "__main__":
    common.run_main(main)
