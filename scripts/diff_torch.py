#!/usr/bin/env python
"""Differential run against torch: random configurations, small and wide, through every
convreg backend, for conv2d, the input gradient and the weight gradient.

Each configuration draws groups (depthwise included), channels (1-24, or 8-96 for the
wide half), image sizes, kernels (3x3 half the time, else 1..7 per axis), strides,
dilations, paddings, batch and dtype (float32 mostly, float64). The reference is torch in
float64 (``F.conv2d`` and autograd); every output must lie within the harness bound

    |out - ref| <= 4 * K * eps * (|x| conv |w| + |b|)

with K the number of terms each output sums (per operation) and eps the dtype's. A
backend that declines a call (``BackendError``) is counted, not failed.

    python scripts/diff_torch.py [--configs 500] [--seed 0] [--backends cython,...]

Exit status: 0 every output within the bound, 1 a failure (each is printed), 2 usage.
Needs torch (``pip install torch==2.13.0``).
"""

from __future__ import annotations

import argparse
import os
import random
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _bench_common as common  # noqa: E402

import convreg  # noqa: E402
from convreg import grad  # noqa: E402

DEFAULT_BACKENDS = ("cython", "cython-direct", "cython-im2col", "cython-winograd")


def draw(rnd):
    """One random valid configuration: (n, groups, cig, cog, h, w, kh, kw, stride,
    padding, dilation, dtype), or None when the drawn sizes give no output."""
    wide = rnd.random() < 0.5
    g = rnd.choice([1, 1, 1, 2, 4])
    if wide:
        cig, cog = rnd.randint(8, 96), rnd.randint(8, 96)
        h, w, n = rnd.randint(5, 40), rnd.randint(5, 40), rnd.choice([1, 1, 2, 4])
    else:
        cig, cog = rnd.randint(1, 24), rnd.randint(1, 24)
        h, w, n = rnd.randint(1, 20), rnd.randint(1, 20), rnd.choice([1, 2, 3])
    if rnd.random() < 0.15:
        g, cig, cog = rnd.randint(2, 32), 1, rnd.choice([1, 2])
    k3 = rnd.random() < 0.5
    kh, kw = (3, 3) if k3 else (rnd.randint(1, 7), rnd.randint(1, 7))
    s = (1, 1) if (k3 and rnd.random() < 0.7) else (rnd.randint(1, 3), rnd.randint(1, 3))
    d = (1, 1) if rnd.random() < 0.7 else (rnd.randint(1, 3), rnd.randint(1, 3))
    p = (rnd.randint(0, 4), rnd.randint(0, 4))
    dtype = np.float32 if rnd.random() < 0.8 else np.float64
    oh = (h + 2 * p[0] - d[0] * (kh - 1) - 1) // s[0] + 1
    ow = (w + 2 * p[1] - d[1] * (kw - 1) - 1) // s[1] + 1
    if oh < 1 or ow < 1:
        return None
    return n, g, cig, cog, h, w, kh, kw, s, p, d, dtype, oh, ow


def worst_ratio(out, ref, refabs, terms, dtype):
    """max |out - ref| / bound (inf when out is not finite)."""
    out = np.asarray(out, dtype=np.float64)
    if not np.isfinite(out).all():
        return float("inf")
    bound = 4 * terms * np.finfo(dtype).eps * refabs + np.finfo(dtype).tiny
    return float((np.abs(out - ref) / bound).max())


def references(torch, x, wt, b, go, kwargs):
    """float64 torch: conv2d and its |.| version, input and weight gradients and theirs."""
    F = torch.nn.functional
    X, W, B, GO = (torch.from_numpy(a.astype(np.float64)) for a in (x, wt, b, go))
    ref = {"conv2d": (F.conv2d(X, W, B, **kwargs).numpy(),
                      F.conv2d(X.abs(), W.abs(), B.abs(), **kwargs).numpy())}
    xr, wr = X.clone().requires_grad_(), W.clone().requires_grad_()
    F.conv2d(xr, wr, None, **kwargs).backward(GO)
    xa, wa = X.abs().requires_grad_(), W.abs().requires_grad_()
    F.conv2d(xa, wa, None, **kwargs).backward(GO.abs())
    ref["conv2d_input"] = (xr.grad.numpy(), xa.grad.numpy())
    ref["conv2d_weight"] = (wr.grad.numpy(), wa.grad.numpy())
    return ref


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_version(ap, "diff_torch.py")
    ap.add_argument("--configs", type=common.positive_int, default=500)
    ap.add_argument("--seed", type=common.nonnegative_int, default=0)
    ap.add_argument("--backends", default=",".join(DEFAULT_BACKENDS),
                    help="comma-separated convreg backends")
    ap.add_argument("--threads", type=common.positive_int, default=None)
    args = ap.parse_args(argv)
    backends = [b for b in args.backends.split(",") if b]
    available = convreg.available_backends()
    unknown = [b for b in backends if b not in available]
    if unknown:
        ap.error(f"--backends: not available here: {', '.join(unknown)} "
                 f"(available: {', '.join(available)})")
    try:
        import torch
    except ImportError:
        print("diff_torch.py needs torch: pip install torch==2.13.0", file=sys.stderr)
        return 2
    if args.threads:
        convreg.set_threads(args.threads)
    rnd = random.Random(args.seed)
    runs = declined = failures = configs = 0
    while configs < args.configs:
        cfg = draw(rnd)
        if cfg is None:
            continue
        configs += 1
        n, g, cig, cog, h, w, kh, kw, s, p, d, dtype, oh, ow = cfg
        rng = np.random.default_rng(rnd.randrange(2**31))
        x = rng.standard_normal((n, cig * g, h, w)).astype(dtype)
        wt = rng.standard_normal((cog * g, cig, kh, kw)).astype(dtype)
        b = rng.standard_normal(cog * g).astype(dtype)
        go = rng.standard_normal((n, cog * g, oh, ow)).astype(dtype)
        kwargs = dict(stride=s, padding=p, dilation=d, groups=g)
        ref = references(torch, x, wt, b, go, kwargs)
        terms = {"conv2d": cig * kh * kw + 1, "conv2d_input": cog * kh * kw,
                 "conv2d_weight": n * oh * ow}
        calls = {
            "conv2d": lambda be: convreg.conv2d(x, wt, b, backend=be, **kwargs),
            "conv2d_input": lambda be: grad.conv2d_input(x.shape, wt, go, s, p, d, g,
                                                         backend=be),
            "conv2d_weight": lambda be: grad.conv2d_weight(x, wt.shape, go, s, p, d, g,
                                                           backend=be),
        }
        for be in backends:
            for op, call in calls.items():
                try:
                    out = call(be)
                except convreg.BackendError:
                    declined += 1
                    continue
                runs += 1
                r = worst_ratio(out, *ref[op], terms[op], dtype)
                if r > 1.0:
                    failures += 1
                    print(f"FAIL {be} {op}: n={n} groups={g} cig={cig} cog={cog} {h}x{w} "
                          f"kernel {kh}x{kw} stride={s} padding={p} dilation={d} "
                          f"{np.dtype(dtype).name}: worst |err|/bound {r:.3g}", flush=True)
    print(f"{configs} configurations, {runs} calls, {declined} declined, "
          f"{failures} outside the bound (seed {args.seed}; backends {', '.join(backends)})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(common.run_main(main))
