#!/usr/bin/env python
"""Time convreg's gradient operations and conv_transpose2d against torch called directly.

For every layer of the DESIGN.md section 7 suite, three operations:

    input    convreg.grad.conv2d_input   vs torch.nn.grad.conv2d_input
    weight   convreg.grad.conv2d_weight  vs torch.nn.grad.conv2d_weight
    transp   convreg.conv_transpose2d    vs torch.nn.functional.conv_transpose2d
             (the layer's weight used as the transposed convolution's, its output as input:
             the decoder mirror of the layer)

Tensors are made once; torch runs under no_grad with torch.set_num_threads(threads).
Repetitions alternate between convreg and torch, each timed call preceded by a ~5 ms
sleep (the other engine's pool goes idle) and one untimed call of the same engine (its own
pool warm; ``--cold`` drops it, so every sample also pays for waking its threads); the
median is
reported with the ratio convreg/torch and the geometric mean of the ratios per operation.

    python scripts/bench_grad.py                       # float32, 2 threads, all ops
    python scripts/bench_grad.py --ops input --backend cython-direct --reps 9
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time

import numpy as np


import convreg  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _bench_common as common  # noqa: E402
from convreg import grad  # noqa: E402

SUITE = common.SECTION7
OPS = ("input", "weight", "transp")


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def make_calls(x_shape, w_shape, kw, dtype, backend, torch):
    """{op: (convreg call, torch call)} on arrays/tensors made once."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    spec = convreg.spec_for_shapes(x_shape, w_shape, dtype=dtype, **kw)
    go = rng.standard_normal(spec.output_shape).astype(dtype)
    b_t = rng.standard_normal(spec.c_in).astype(dtype)      # transposed conv's bias
    s, p, d, g = _pair(kw.get("stride", 1)), _pair(kw.get("padding", 0)), \
        _pair(kw.get("dilation", 1)), kw.get("groups", 1)
    # The transposed convolution mirroring the layer: its input is the layer's output,
    # output_padding restores the layer's input size.
    op = tuple((x_shape[2 + i] + 2 * p[i] - d[i] * (w_shape[2 + i] - 1) - 1) % s[i]
               for i in range(2))
    calls = {
        "input": lambda: grad.conv2d_input(x_shape, w, go, s, p, d, g, backend=backend),
        "weight": lambda: grad.conv2d_weight(x, w_shape, go, s, p, d, g, backend=backend),
        "transp": lambda: convreg.conv_transpose2d(go, w, b_t, s, p, op, g, d,
                                                   backend=backend),
    }
    if torch is None:
        return {k: (v, None) for k, v in calls.items()}
    xt, wt, got, bt = (torch.from_numpy(a) for a in (x, w, go, b_t))
    F = torch.nn.functional

    def t_input():
        with torch.no_grad():
            return torch.nn.grad.conv2d_input(x_shape, wt, got, s, p, d, g)

    def t_weight():
        with torch.no_grad():
            return torch.nn.grad.conv2d_weight(xt, w_shape, got, s, p, d, g)

    def t_transp():
        with torch.no_grad():
            return F.conv_transpose2d(got, wt, bt, s, p, op, g, d)

    return {"input": (calls["input"], t_input), "weight": (calls["weight"], t_weight),
            "transp": (calls["transp"], t_transp)}


def time_pair(ours, theirs, reps, sleep, clock=time.perf_counter, prime=True):
    """Medians of ``ours`` and ``theirs``, alternating; before each timed call a sleep
    (the other engine's pool goes idle) and, with ``prime``, one untimed call of the
    same engine (its own pool warm, as in a network calling it back to back: the rule of
    every script here, ``_bench_common.fair_medians``)."""
    ours()
    if theirs is not None:
        theirs()
    t_ours, t_theirs = [], []
    for rep in range(reps):
        order = [(ours, t_ours), (theirs, t_theirs)]
        if rep % 2:
            order.reverse()
        for fn, bucket in order:
            if fn is None:
                continue
            time.sleep(sleep)
            if prime:
                fn()
            t0 = clock()
            fn()
            bucket.append(clock() - t0)
    return statistics.median(t_ours), (statistics.median(t_theirs) if t_theirs else None)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_version(ap, "bench_grad.py")
    ap.add_argument("--threads", type=common.positive_int, default=2)
    ap.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    ap.add_argument("--reps", type=common.positive_int, default=7)
    ap.add_argument("--backend", default="cython")
    ap.add_argument("--ops", default=",".join(OPS), help="comma list of input,weight,transp")
    ap.add_argument("--layers", default="", help="only layers whose name contains this")
    ap.add_argument("--sleep-ms", type=float, default=5.0)
    ap.add_argument("--cold", action="store_true",
                    help="no untimed call of the same engine before each timed call")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="cpu: process CPU time (all threads) instead of wall time; on a "
                         "loaded machine, with --threads 1, the steadier measure of work")
    args = ap.parse_args(argv)
    ops = [o for o in args.ops.split(",") if o]
    try:
        import torch
        torch.set_num_threads(args.threads)
    except ImportError:
        torch = None
    convreg.set_threads(args.threads)
    load = os.getloadavg()[0]
    print(f"# bench_grad: backend={args.backend} {args.dtype} threads={args.threads} "
          f"reps={args.reps} clock={args.clock}{' cold' if args.cold else ''} load(1min)={load:.2f}"
          + ("  (load >= 0.5: numbers unreliable)" if load >= 0.5 else ""))
    print(f"{'layer':24s} {'op':7s} {'convreg ms':>11s} {'torch ms':>9s} {'ratio':>6s}")
    ratios = {op: [] for op in ops}
    for name, xs, ws, kw in SUITE:
        if args.layers and args.layers not in name:
            continue
        calls = make_calls(xs, ws, kw, args.dtype, args.backend, torch)
        for op in ops:
            ours, theirs = calls[op]
            a, b = time_pair(ours, theirs, args.reps, args.sleep_ms / 1000,
                             time.process_time if args.clock == "cpu" else time.perf_counter,
                             prime=not args.cold)
            r = a / b if b else float("nan")
            if b:
                ratios[op].append(r)
            print(f"{name:24s} {op:7s} {a * 1e3:11.3f} "
                  f"{(b or float('nan')) * 1e3:9.3f} {r:6.2f}", flush=True)
    for op in ops:
        rs = ratios[op]
        if rs:
            gm = math.exp(sum(map(math.log, rs)) / len(rs))
            print(f"# {op:7s} geometric mean {gm:.2f}x torch, worst {max(rs):.2f}x")
    all_r = [r for rs in ratios.values() for r in rs]
    if all_r:
        print(f"# all ops geometric mean {math.exp(sum(map(math.log, all_r)) / len(all_r)):.2f}x"
              f" torch; load(1min) at the end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
