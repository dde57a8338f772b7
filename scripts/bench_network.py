"""Whole-network convolution time: a ResNet-18-shaped and a MobileNetV2-shaped stack of
convolutions (shapes below; no torchvision needed) through ``convreg`` layers and through
torch's ``F.conv2d`` called directly, at batch 1 and 8.

    python scripts/bench_network.py [--threads 2] [--batch 1 8] [--rounds 7] [--json FILE]

Each network's convolutions run back to back, in order (the activations between them
are fixed random arrays of the right shapes: only convolution time is measured), as
``convreg.Conv2d`` layers (weights cached on the layer, as a network holds them) and as
torch tensors made once under ``no_grad``. Median of alternating, shuffled rounds with the
other engine's thread pool let go idle before each timed pass; the load is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _bench_common as common  # noqa: E402

import convreg  # noqa: E402


def resnet18():
    """(in, out, kernel, stride, padding, groups, input size) of ResNet-18's convolutions."""
    layers = [(3, 64, 7, 2, 3, 1, 224)]
    size, cin = 56, 64
    for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        for block in range(2):
            s = stride if block == 0 else 1
            layers.append((cin, cout, 3, s, 1, 1, size))
            out = size // s
            layers.append((cout, cout, 3, 1, 1, 1, out))
            if s != 1 or cin != cout:
                layers.append((cin, cout, 1, s, 0, 1, size))     # downsample
            cin, size = cout, out
    return layers


def mobilenet_v2():
    """The same for MobileNetV2 (expansion 1x1, depthwise 3x3, projection 1x1)."""
    layers = [(3, 32, 3, 2, 1, 1, 224)]
    cin, size = 32, 112
    for t, c, n, s in ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                       (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)):
        for i in range(n):
            stride = s if i == 0 else 1
            hidden = cin * t
            if t != 1:
                layers.append((cin, hidden, 1, 1, 0, 1, size))
            layers.append((hidden, hidden, 3, stride, 1, hidden, size))
            size = (size + 2 - 3) // stride + 1
            layers.append((hidden, c, 1, 1, 0, 1, size))
            cin = c
    layers.append((cin, 1280, 1, 1, 0, 1, size))
    return layers


NETWORKS = {"resnet18": resnet18, "mobilenet_v2": mobilenet_v2}


def build(net, batch, dtype, torch):
    rng = np.random.default_rng(0)
    ours, theirs = [], []
    for cin, cout, k, s, p, g, size in NETWORKS[net]():
        layer = convreg.Conv2d(cin, cout, k, stride=s, padding=p, groups=g, dtype=dtype,
                               backend="cython", seed=len(ours))
        x = rng.standard_normal((batch, cin, size, size)).astype(dtype)
        ours.append((layer, x))
        if torch is not None:
            theirs.append(common.torch_direct(torch, x, layer.weight, layer.bias,
                                              dict(stride=s, padding=p, groups=g)))
    return ours, theirs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_version(ap, "bench_network.py")
    ap.add_argument("--threads", type=common.positive_int, default=2)
    ap.add_argument("--batch", type=common.positive_int, nargs="+", default=[1, 8])
    ap.add_argument("--rounds", type=common.positive_int, default=7)
    ap.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    ap.add_argument("--networks", nargs="+", choices=sorted(NETWORKS), default=sorted(NETWORKS))
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args(argv)
    convreg.set_threads(args.threads)
    torch = common.import_torch(args.threads)
    text, load_start = common.load_line("start")
    print(f"convreg {convreg.__version__}, torch "
          f"{torch.__version__ if torch else 'not installed'}, {args.threads} threads, "
          f"{args.dtype}; median of {args.rounds} shuffled rounds\n{text}", flush=True)
    rows = []
    for net in args.networks:
        for batch in args.batch:
            ours, theirs = build(net, batch, args.dtype, torch)
            calls = {"convreg": lambda ours=ours: [layer(x) for layer, x in ours]}
            if theirs:
                calls["torch"] = lambda theirs=theirs: [f() for f in theirs]
            med, _ = common.fair_medians(calls, args.rounds)
            row = {"network": net, "batch": batch, "layers": len(ours),
                   "convreg_ms": med["convreg"] * 1e3,
                   "torch_ms": med["torch"] * 1e3 if "torch" in med else None}
            row["ratio"] = (row["convreg_ms"] / row["torch_ms"]) if row["torch_ms"] else None
            rows.append(row)
            ratio = f"{row['ratio']:.2f}x torch" if row["ratio"] else "torch not installed"
            torch_ms = f"{row['torch_ms']:.1f} ms" if row["torch_ms"] else "-"
            print(f"{net:13s} batch {batch}: {len(ours):2d} convolutions, convreg "
                  f"{row['convreg_ms']:.1f} ms, torch {torch_ms}: {ratio}", flush=True)
    text, load_end = common.load_line("end")
    print(text)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"command": common.command_line(), "threads": args.threads,
                       "dtype": args.dtype, "load_start": load_start, "load_end": load_end,
                       "versions": common.versions(), "rows": rows}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(common.run_main(main))
