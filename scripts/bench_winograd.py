"""Benchmark cython-winograd against cython-direct, cython-im2col and torch on 3x3 stride-1
layers.

Per layer: ms (median of shuffled rounds, ``_bench_common.fair_medians``: the other
engines' pools idle before each timed call, its own warmed by one untimed call), GFLOP/s counted as the direct convolution's 2*MACs (so a faster
algorithm shows more than the machine's peak), and the ratio to torch's median.
Winograd is timed three ways: through the backend object on a prepared call with the
weights already transformed (what a Conv2d layer caching them pays), the same with the
weight transform in the call, and through convreg.conv2d (registered under its name for
the run when the registry does not list it yet).

    python scripts/bench_winograd.py [--threads 2] [--dtype float32] [--tile 0|2|4]
                                     [--reps 21] [--only 64]

Take timings only on a quiet machine (``uptime``), under the shared CPU lock:
``flock /tmp/convreg-cpu.lock python scripts/bench_winograd.py``.
"""

from __future__ import annotations

import argparse
import os
import sys
import types

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _bench_common as common  # noqa: E402

import convreg  # noqa: E402
from convreg._frontend.spec import prepare  # noqa: E402
from convreg._settings.context import threads_context  # noqa: E402

# name, n, c_in, h, w, c_out, padding, dilation, groups
LAYERS = [
    ("64ch 56²", 1, 64, 56, 56, 64, 1, 1, 1),
    ("128ch 28²", 1, 128, 28, 28, 128, 1, 1, 1),
    ("256ch 14²", 1, 256, 14, 14, 256, 1, 1, 1),
    ("512ch 7²", 1, 512, 7, 7, 512, 1, 1, 1),
    ("b8 128ch 28²", 8, 128, 28, 28, 128, 1, 1, 1),
    ("64ch 56² dil2", 1, 64, 56, 56, 64, 2, 2, 1),
    ("128ch 28² g4", 1, 128, 28, 28, 128, 1, 1, 4),
    ("32ch 112²", 1, 32, 112, 112, 32, 1, 1, 1),
]


def _ctx(threads, tile):
    """The per-call context the dispatcher would hand the backends (settings as resolved
    now, ``threads`` threads), with cython-winograd's tile forced when ``tile`` is set."""
    ctx = threads_context(threads)
    if not tile:
        return ctx
    own = ctx.options_for

    def options_for(name):
        opts = dict(own(name))
        if name == "cython-winograd":
            opts["tile"] = tile
        return opts
    return types.SimpleNamespace(threads=threads, options_for=options_for,
                                 option=lambda name, key, default=None:
                                 options_for(name).get(key, default))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_version(ap, "bench_winograd.py")
    ap.add_argument("--threads", type=common.positive_int, default=2)
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--tile", type=int, default=0, choices=[0, 2, 4])
    ap.add_argument("--reps", type=common.positive_int, default=21)
    ap.add_argument("--only", default="", help="run only layers whose name contains this")
    ap.add_argument("--no-torch", action="store_true")
    args = ap.parse_args(argv)

    from convreg.backends.winograd import CythonWinogradBackend

    wino = CythonWinogradBackend()
    direct = convreg.get_backend("cython-direct")
    im2col = convreg.get_backend("cython-im2col")
    torch = None
    if not args.no_torch:
        try:
            import torch
            import torch.nn.functional as F
            torch.set_num_threads(args.threads)
        except ImportError:
            torch = None
    ctx = _ctx(args.threads, args.tile)
    print(f"# cython-winograd {wino.variant}, {args.dtype}, threads={args.threads}, "
          f"tile={args.tile or 'auto'}; load: {os.getloadavg()[0]:.2f}")
    cols = ["wino(pre)", "wino", "wino(api)", "direct", "im2col"] + (["torch"] if torch else [])
    print(f"{'layer':16s} {'tile':>4s} " + " ".join(f"{c:>10s}" for c in cols)
          + "   GFLOP/s(pre)  pre/torch")
    rng = np.random.default_rng(0)
    for name, n, cin, h, w, cout, pad, dil, groups in LAYERS:
        if args.only and args.only not in name:
            continue
        x = rng.standard_normal((n, cin, h, w)).astype(args.dtype)
        wt = rng.standard_normal((cout, cin // groups, 3, 3)).astype(args.dtype)
        b = rng.standard_normal(cout).astype(args.dtype)
        spec, xs, ws, bs = prepare(x, wt, b, padding=pad, dilation=dil, groups=groups)
        tw = wino.transform(ws, spec, args.tile)
        fns = {
            "wino(pre)": lambda: wino.conv2d_pretransformed(spec, xs, tw, bs, ctx),
            "wino": lambda: wino.conv2d(spec, xs, ws, bs, ctx),
            "wino(api)": lambda: convreg.conv2d(x, wt, b, padding=pad, dilation=dil,
                                                groups=groups, backend="cython-winograd"),
            "direct": lambda: direct.conv2d(spec, xs, ws, bs, ctx),
            "im2col": lambda: im2col.conv2d(spec, xs, ws, bs, ctx),
        }
        if torch is not None:
            tx, tw_, tb = torch.from_numpy(x), torch.from_numpy(wt), torch.from_numpy(b)

            def run_torch():
                with torch.no_grad():
                    F.conv2d(tx, tw_, tb, padding=pad, dilation=dil, groups=groups)
            fns["torch"] = run_torch
        with convreg.use_threads(args.threads):
            med, _ = common.fair_medians(fns, args.reps)
        gf = spec.flops / med["wino(pre)"] / 1e9
        ratio = f"{med['wino(pre)'] / med['torch']:9.2f}" if torch is not None else "      n/a"
        print(f"{name:16s} {tw.tile:4d} " + " ".join(f"{med[c] * 1e3:10.3f}" for c in cols)
              + f"   {gf:12.1f}  {ratio}")
    print(f"# load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    sys.exit(main())
