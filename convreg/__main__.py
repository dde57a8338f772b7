"""Command line: ``python -m convreg {config,backends,check,explain}``."""

from __future__ import annotations

import argparse
import json
import sys


def _config(args) -> int:
    from ._config import config_path, load_config
    from ._registry import backend_settings, current_backend
    from ._simd import chosen_variant
    from ._threads import threads_and_source

    path, where = config_path()
    cfg = load_config()
    current = current_backend()
    threads, tsrc = threads_and_source()
    rows = [("config file", f"{path} (found as {where})" if path else "none", ""),
            ("backend", current.name, current.source),
            ("threads", threads, tsrc),
            ("simd variant", chosen_variant(), "CPU features (CONVREG_SIMD caps it)")]
    from ._registry import available_backends

    for name in available_backends():
        settings = backend_settings(name)
        for key, value in settings.items():
            src = (f"config {cfg.path}" if cfg and key in cfg.backends.get(name, {})
                   else "default")
            rows.append((f"backends.{name}.{key}", value, src))
    width = max(len(r[0]) for r in rows)
    for key, value, src in rows:
        print(f"{key.ljust(width)}  {value}" + (f"   <- {src}" if src else ""))
    return 0


def _backends(args) -> int:
    from ._info import config_dict

    for name, info in config_dict()["backends"].items():
        if "unavailable" in info:
            print(f"{name}: unavailable: {info['unavailable']}")
            continue
        extra = "" if info.get("builtin") else " (plugin)"
        print(f"{name}{extra}: {info.get('description', '')}")
        print(f"    padding modes: {', '.join(info.get('padding_modes', ['zeros']))}")
        for key, value in info.items():
            if key not in ("description", "padding_modes", "builtin"):
                print(f"    {key}: {value}")
    return 0


def _check(args) -> int:
    from .harness import random_cases, run_checks, standard_cases

    cases = standard_cases() + random_cases(args.random, seed=args.seed)
    backends = args.backends.split(",") if args.backends else None
    report = run_checks(backends, cases)
    print(report.table())
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report.to_dict(), fh, indent=1, default=str)
    print("all backends agree" if report.ok else "DISAGREEMENT", file=sys.stderr)
    return 0 if report.ok else 1


def _ints(text):
    return tuple(int(v) for v in text.split(","))


def _padding(text):
    return text if text in ("same", "valid") else _ints(text)


def _explain(args) -> int:
    from ._explain import explain

    print(explain(args.input, args.weight, bias=not args.no_bias, dtype=args.dtype,
                  stride=args.stride, padding=args.padding, dilation=args.dilation,
                  groups=args.groups, padding_mode=args.padding_mode, backend=args.backend))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m convreg", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("config", help="print the effective settings and where each came from")
    sub.add_parser("backends", help="list the backends and what they support")
    chk = sub.add_parser("check", help="check that every backend agrees with the reference")
    chk.add_argument("--backends", help="comma-separated names (default: all available)")
    chk.add_argument("--random", type=int, default=40, help="random cases (default 40)")
    chk.add_argument("--seed", type=int, default=0)
    chk.add_argument("--json", help="write the results to this file")
    exp = sub.add_parser("explain", help="say which backend a call would run, and why")
    exp.add_argument("--input", type=_ints, required=True, help="input shape, e.g. 1,64,56,56")
    exp.add_argument("--weight", type=_ints, required=True, help="weight shape, e.g. 64,64,3,3")
    exp.add_argument("--stride", type=_ints, default=1)
    exp.add_argument("--padding", type=_padding, default=0, help="int, pair, same or valid")
    exp.add_argument("--dilation", type=_ints, default=1)
    exp.add_argument("--groups", type=int, default=1)
    exp.add_argument("--padding-mode", default="zeros")
    exp.add_argument("--dtype", default="float32")
    exp.add_argument("--no-bias", action="store_true")
    exp.add_argument("--backend", help="a backend name (default: the selection rules)")
    args = parser.parse_args(argv)
    from ._errors import ConvregError

    try:
        return {"config": _config, "backends": _backends, "check": _check,
                "explain": _explain}[args.command](args)
    except ConvregError as exc:
        print(f"convreg: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
