#!/usr/bin/env python
"""Per-call overhead: the tiny layer through convreg's entry points against torch called directly.

The layer is 1x8x16x16 input, 8->8 channels, 3x3, padding 1, bias, float32 (about 0.3
MFLOP: the time is almost all per-call overhead). Rows:

* ``conv2d(backend="cython")``: ``convreg.conv2d`` as users call it;
* ``Conv2d layer``: a ``convreg.Conv2d(8, 8, 3, padding=1, backend="cython")`` holding the
  same weight and bias, called on the input;
* ``backend object, prepared``: the ``cython`` backend object's ``conv2d(spec, x, w, b)``
  on a call validated once (the kernel without convreg's front end);
* ``torch F.conv2d``: ``torch.nn.functional.conv2d`` on tensors made once, under
  ``torch.no_grad()``, ``torch.set_num_threads(threads)`` (the anchor);
* ``conv2d(backend="torch")``: convreg's torch backend, for the front end's cost on torch.

Each sample is ``--inner`` back-to-back calls of one entry point; the entry points take
turns in a seeded shuffled order per round, with a 5 ms sleep before each sample (the
previous one's OpenMP workers go idle) and one untimed call before it (its own pool warm).
Medians over ``--rounds`` rounds, µs per call, and the ratio to torch's median.

    python scripts/bench_overhead.py [--threads 2] [--rounds 200] [--inner 50]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _bench_common as common  # noqa: E402

import convreg  # noqa: E402
from convreg._frontend.spec import prepare  # noqa: E402
from convreg._settings.context import threads_context  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_version(ap, "bench_overhead.py")
    ap.add_argument("--threads", type=common.positive_int,
                    help="threads for convreg and torch (default: convreg's setting)")
    ap.add_argument("--rounds", type=common.positive_int, default=200)
    ap.add_argument("--inner", type=common.positive_int, default=50,
                    help="calls per timed sample (default 50)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", metavar="FILE", help="write the results to FILE")
    args = ap.parse_args(argv)

    threads = args.threads or convreg.get_threads()
    convreg.set_threads(threads)
    torch = common.import_torch(threads)
    text, load_start = common.load_line("start")
    print(f"convreg {convreg.__version__}, torch "
          f"{torch.__version__ if torch else 'not installed'}, threads {threads}, float32, "
          f"{args.rounds} rounds x {args.inner} calls", flush=True)
    print(text, flush=True)

    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 8, 16, 16)).astype(np.float32)
    w = (rng.standard_normal((8, 8, 3, 3)) / 8).astype(np.float32)
    b = rng.standard_normal(8).astype(np.float32)
    layer = convreg.Conv2d(8, 8, 3, padding=1, backend="cython")
    layer.weight[...] = w
    layer.bias[...] = b
    spec, xc, wc, bc = prepare(x, w, b, 1, 1)
    # the concrete backend the chooser picks for this call, on a prepared call and context
    be = convreg.get_backend(convreg.explain(x.shape, w.shape, padding=1, backend="cython").runs)
    ctx = threads_context(threads)

    calls = {
        'conv2d(backend="cython")': lambda: convreg.conv2d(x, w, b, padding=1, backend="cython"),
        "Conv2d layer": lambda: layer(x),
        "backend object, prepared": lambda: be.conv2d(spec, xc, wc, bc, ctx),
    }
    if torch is not None:
        calls["torch F.conv2d"] = common.torch_direct(torch, x, w, b, dict(padding=1))
        if "torch" in convreg.available_backends():
            calls['conv2d(backend="torch")'] = (
                lambda: convreg.conv2d(x, w, b, padding=1, backend="torch"))
    ref = calls['conv2d(backend="cython")']()
    for name, fn in calls.items():
        out = fn()
        out = out.numpy() if hasattr(out, "numpy") else out
        if not np.allclose(out, ref, rtol=1e-4, atol=1e-4):
            print(f"WARNING: {name} disagrees with conv2d(backend='cython')", flush=True)

    med, samples = common.fair_medians(calls, args.rounds, seed=args.seed, inner=args.inner)
    anchor = med.get("torch F.conv2d")
    width = max(len(n) for n in calls)
    print(f"\n{'entry point':{width}}  {'µs/call':>8}  {'p25':>7}  {'p75':>7}  {'/ torch':>7}")
    rows = []
    for name in calls:
        qs = statistics.quantiles(samples[name], n=4) if len(samples[name]) > 1 else [med[name]] * 3
        ratio = med[name] / anchor if anchor else None
        rows.append({"entry": name, "us": med[name] * 1e6, "p25_us": qs[0] * 1e6,
                     "p75_us": qs[2] * 1e6, "ratio_vs_torch_direct": ratio})
        print(f"{name:{width}}  {med[name] * 1e6:8.2f}  {qs[0] * 1e6:7.2f}  {qs[2] * 1e6:7.2f}  "
              + (f"{ratio:7.2f}" if ratio else "      -"))
    text, load_end = common.load_line("end")
    print(text)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"command": common.command_line(), "versions": common.versions(),
                       "threads": threads, "rounds": args.rounds, "inner": args.inner,
                       "load_start": load_start, "load_end": load_end, "rows": rows},
                      fh, indent=1)
        print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    common.run_main(main)
