"""Command line: ``python -m convreg {config,backends,check,explain,tune}``."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys


def _config(args) -> int:
    from ._dispatch.registry import available_backends
    from ._settings.backend import current_backend
    from ._settings.chain import snapshot
    from ._settings.options import option_sources
    from ._settings.threads import threads_and_source
    from .backends._simd import chosen_variant

    snap = snapshot()
    path, where = snap.file_path()
    current = current_backend()
    threads, tsrc = threads_and_source()
    rows = [("config file", f"{path} (found as {where})" if path else "none", ""),
            ("backend", current.name, current.source),
            ("threads", threads, tsrc),
            ("simd variant", chosen_variant(), "CPU features (CONVREG_SIMD caps it)")]
    for name in available_backends():
        for key, (value, src) in option_sources(name, snap).items():
            rows.append((f"backends.{name}.{key}", value, src))
    width = max(len(r[0]) for r in rows)
    for key, value, src in rows:
        print(f"{key.ljust(width)}  {value}" + (f"   <- {src}" if src else ""))
    return 0


def _padding_modes(info) -> str:
    native = info.get("padding_modes", ["zeros"])
    others = [m for m in ("reflect", "replicate", "circular") if m not in native]
    text = ", ".join(native) + " native"
    if others:
        text += "; " + "/".join(others) + " padded by the front end"
    return text


def _backends(args) -> int:
    from ._info import config_dict

    for name, info in config_dict()["backends"].items():
        if "unavailable" in info:
            kind = "unavailable" if info.get("builtin") else "plugin failed"
            print(f"{name}: {kind}: {info['unavailable']}")
            continue
        extra = "" if info.get("builtin") else " (plugin)"
        print(f"{name}{extra}: {info.get('description', '')}")
        print(f"    padding modes: {_padding_modes(info)}")
        for key, value in info.items():
            if key not in ("description", "padding_modes", "builtin"):
                print(f"    {key}: {value}")
    return 0


def _check(args) -> int:
    from ._dispatch.registry import available_backends, unavailable
    from .backends.catalog import BUILTINS
    from .harness import grad_cases, random_cases, random_grad_cases, run_checks, standard_cases

    if args.random < 0:
        raise _Usage(f"--random must be >= 0, but got {args.random}")
    have = available_backends()
    if args.backends:
        backends = [b.strip() for b in args.backends.split(",")]
        unknown = [b for b in backends if b not in have]
        if unknown:
            raise _Usage(f"--backends: unknown or unavailable backend {unknown[0]!r}; "
                         f"available backends are {have}")
    else:
        backends = have
    missing = {n: why for n, why in unavailable().items() if n in BUILTINS}
    cases = standard_cases() + random_cases(args.random, seed=args.seed)
    if not args.no_grad:
        cases += grad_cases() + random_grad_cases(args.random, seed=args.seed)
    report = run_checks(backends, cases)
    print(report.table())
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report.to_dict(), fh, indent=1, default=str)
    if missing and not args.backends:
        for name, why in sorted(missing.items()):
            print(f"MISSING built-in backend {name!r}: {why}", file=sys.stderr)
        print("not every built-in backend could be checked", file=sys.stderr)
        return 1
    print("all backends agree" if report.ok else "DISAGREEMENT", file=sys.stderr)
    return 0 if report.ok else 1


class _Usage(Exception):
    """A command-line mistake: reported with the usage, exit status 2."""


def _ints(text):
    parts = [p for p in re.split(r"[,x×\s]+", text.strip()) if p]
    try:
        return tuple(int(v) for v in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected integers separated by ',' or 'x' (e.g. 1,64,56,56 or 1x64x56x56), "
            f"but got {text!r}") from None


def _padding(text):
    return text if text in ("same", "valid") else _ints(text)


def _explain(args) -> int:
    from ._api import explain

    backend = args.backend
    if backend and "," in backend:
        backend = [b.strip() for b in backend.split(",")]
    print(explain(args.input, args.weight, bias=not args.no_bias, dtype=args.dtype,
                  stride=args.stride, padding=args.padding, dilation=args.dilation,
                  groups=args.groups, padding_mode=args.padding_mode, backend=backend,
                  op=args.op))
    return 0


def _tune(args) -> int:
    from . import _tune_cmd

    if args.show and args.clear:
        raise _Usage("--show and --clear cannot be combined")
    if args.clear:
        return _tune_cmd.clear()
    if args.show:
        return _tune_cmd.show()
    if args.threads is not None and args.threads < 1:
        raise _Usage(f"--threads must be >= 1, but got {args.threads}")
    shapes = (_tune_cmd.load_shapes(args.shapes) if args.shapes
              else _tune_cmd.SUITES[args.suite]())
    _tune_cmd.tune(shapes, threads=args.threads, dtype=args.dtype)
    return 0


def _parser():
    from . import __version__

    parser = argparse.ArgumentParser(prog="python -m convreg", description=__doc__)
    parser.add_argument("--version", action="version", version=f"convreg {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("config", help="print the effective settings and where each came from")
    sub.add_parser("backends", help="list the backends and what they support")
    chk = sub.add_parser("check", help="check that every backend agrees with the reference")
    chk.add_argument("--backends", help="comma-separated names (default: all available)")
    chk.add_argument("--random", type=int, default=40, help="random cases (default 40)")
    chk.add_argument("--seed", type=int, default=0)
    chk.add_argument("--json", help="write the results to this file")
    chk.add_argument("--no-grad", action="store_true",
                     help="only conv2d (skip conv2d_input, conv2d_weight, conv_transpose2d)")
    exp = sub.add_parser("explain", help="say which backend a call would run, and why")
    exp.add_argument("--input", type=_ints, required=True,
                     help="input shape, e.g. 1,64,56,56 or 1x64x56x56")
    exp.add_argument("--weight", type=_ints, required=True, help="weight shape, e.g. 64,64,3,3")
    exp.add_argument("--stride", type=_ints, default=1)
    exp.add_argument("--padding", type=_padding, default=0, help="int, pair, same or valid")
    exp.add_argument("--dilation", type=_ints, default=1)
    exp.add_argument("--groups", type=int, default=1)
    exp.add_argument("--padding-mode", default="zeros")
    exp.add_argument("--dtype", default="float32")
    exp.add_argument("--no-bias", action="store_true")
    exp.add_argument("--backend", help="a backend name or comma-separated ordered list "
                                       "(default: the selection rules)")
    exp.add_argument("--op", default="conv2d",
                     choices=["conv2d", "conv2d_input", "conv2d_weight"],
                     help="the operation (gradients on the same forward shapes)")
    tun = sub.add_parser("tune", help="measure the cython chooser's candidates ahead of time "
                                      "(the tuning cache), or show / clear the cache")
    tun.add_argument("--suite", choices=("quick", "resnet", "all"), default="quick",
                     help="shapes to tune (default quick)")
    tun.add_argument("--shapes", help="a JSON list of {input, weight, stride, padding, "
                                      "dilation, groups} to tune instead of a suite")
    tun.add_argument("--threads", type=int, help="kernel threads (default: the setting)")
    tun.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    tun.add_argument("--show", action="store_true", help="print the cache file's entries")
    tun.add_argument("--clear", action="store_true", help="delete the cache file")
    return parser


def main(argv=None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    from ._errors import ConvregError

    try:
        return {"config": _config, "backends": _backends, "check": _check,
                "explain": _explain, "tune": _tune}[args.command](args)
    except _Usage as exc:
        parser.error(str(exc))
    except ConvregError as exc:
        print(f"convreg: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # Output piped into a command that stopped reading (e.g. `| head`): not an error.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
