#!/usr/bin/env python
"""Compare convreg's backends: first prove they agree, then time them against torch as its users call it.

1. The harness: every chosen backend (plugins and convreg's torch backend included when
   present) against the float64 reference on the standard grid plus seeded random cases.
   A backend whose ``supports()`` refuses a case *declined* it: that is reported, never
   counted as a disagreement.
2. Timing: per layer, every backend through ``convreg.conv2d(..., backend=name)`` and the
   anchors: torch called directly (``torch.nn.functional.conv2d`` on tensors made once,
   under ``torch.no_grad()``, ``torch.set_num_threads(threads)``) and, with ``--anchors``,
   onnxruntime and OpenVINO on a one-node ONNX Conv model (their pools at the run's
   threads). Every ratio is against the direct torch call. Before every timed call the
   script sleeps until the previous engine's worker threads have stopped spinning (30 ms
   after onnxruntime/OpenVINO, 5 ms otherwise; outside the timed region), then makes one
   untimed call of the same engine so that its own pool is warm, as in a network that
   calls it back to back (``--cold``: no such call); the engine order is shuffled every
   round (seeded); each figure is the median of the rounds after a warm-up. Every
   engine's output on each layer is checked once against a float64
   reference computed with numpy alone (sliding windows and tensordot); an engine that
   disagreed (here or in the harness) is marked ``!`` and never ranked best.

Exit status: 0 when every convreg backend agrees, 1 on any disagreement, 2 on a usage error.

    python scripts/compare_backends.py                     # quick suite, < 1 minute
    python scripts/compare_backends.py --suite all --anchors torch,onnxruntime,openvino \\
        --json out.json --plot gflops.png
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _bench_common as common  # noqa: E402

import convreg  # noqa: E402
from convreg import harness  # noqa: E402

# name, input shape, weight shape, conv kwargs
SECTION7 = common.SECTION7

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
    ("1x7 128 17 (inception)", (1, 128, 17, 17), (128, 128, 1, 7), dict(padding=(0, 3))),
    ("1x1/2 256->512 56", (1, 256, 56, 56), (512, 256, 1, 1), dict(stride=2)),
]

SUITES = {"quick": SECTION7, "resnet": RESNET18, "all": SECTION7 + RESNET18 + EXTRA,
          # hidden: one small layer, for the tests and for trying the script out
          "tiny": [SECTION7[-1]]}
PUBLIC_SUITES = ("quick", "resnet", "all")

# The pure-Python reference is timed only where a call takes well under a second.
PYTHON_MAX_FLOP = 2e6
MAX_ROUNDS = 25
MIN_ROUNDS = 3
LIST_MAX = 20            # disagreements listed before "... and N more"

ANCHOR_LABEL = {"torch": "F.conv2d", "onnxruntime": "ort", "openvino": "openvino"}
TORCH_BACKEND_LABEL = "torch-backend"


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


def say(text=""):
    print(text, flush=True)


def format_rows(rows):
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    out = ["  ".join(str(c).rjust(wd) if i else str(c).ljust(wd)
                     for i, (c, wd) in enumerate(zip(r, widths))).rstrip() for r in rows]
    out.insert(1, "  ".join("-" * wd for wd in widths))
    return "\n".join(out)


# ---------------------------------------------------------------- the agreement harness

def declined_reason(result):
    """The reason a harness result is a decline, or None when it is not one.

    Uses ``Result.declined``/``Result.reason`` where the harness has them; before that,
    a failed result whose backend's ``supports()`` refuses the case is a decline too.
    """
    if getattr(result, "declined", False):
        return getattr(result, "reason", "") or "declined"
    if result.ok:
        return None
    case = result.case
    try:
        spec = convreg.spec_for_shapes(case.input_shape, case.weight_shape, bias=case.bias,
                                       dtype=case.dtype, **case.kwargs())
        answer = convreg.get_backend(result.backend).supports(spec)
    except Exception:   # noqa: BLE001 - cannot tell: leave it a disagreement
        return None
    return None if answer else (getattr(answer, "reason", "") or "declined")


def run_harness(backends, args, progress):
    cases = harness.standard_cases() + harness.random_cases(args.random, seed=args.seed)
    report = harness.run_checks(
        backends, cases, progress=lambda i, n: progress(f"harness: case {i}/{n}"))
    progress.done()
    summary = {}
    disagreements, declines = [], []
    for r in report.results:
        s = summary.setdefault(r.backend, {"cases": 0, "agree": 0, "declined": 0,
                                           "disagree": 0, "worst": 0.0})
        s["cases"] += 1
        reason = None if r.ok and not getattr(r, "declined", False) else declined_reason(r)
        if reason is not None:
            s["declined"] += 1
            declines.append((r, reason))
        elif r.ok:
            s["agree"] += 1
            s["worst"] = max(s["worst"], r.worst)
        else:
            s["disagree"] += 1
            s["worst"] = max(s["worst"], r.worst)
            disagreements.append(r)
    return report, summary, disagreements, declines


def harness_table(summary, disagreements, declines):
    rows = [("backend", "cases", "agree", "declined", "disagree", "worst err/bound", "verdict")]
    for name, s in summary.items():
        rows.append((name, s["cases"], s["agree"], s["declined"], s["disagree"],
                     f"{s['worst']:.3g}", "DISAGREE" if s["disagree"] else "ok"))
    lines = [format_rows(rows)]
    for r in disagreements[:LIST_MAX]:
        lines.append(f"  DISAGREE {r.backend} {r.case.label()}: {r.error}")
    if len(disagreements) > LIST_MAX:
        lines.append(f"  ... and {len(disagreements) - LIST_MAX} more disagreements")
    by_backend = {}
    for r, reason in declines:
        by_backend.setdefault(r.backend, []).append(reason)
    for name, reasons in by_backend.items():
        common_reasons = sorted(set(reasons))
        shown = "; ".join(common_reasons[:3]) + (
            f"; ... and {len(common_reasons) - 3} more reasons" if len(common_reasons) > 3 else "")
        lines.append(f"  {name} declined {len(reasons)} cases ({shown})")
    return "\n".join(lines)


# ---------------------------------------------------------------- timing

NUMPY_PAD_MODE = {"zeros": "constant", "reflect": "reflect", "replicate": "edge",
                  "circular": "wrap"}


def numpy_conv64(spec, x, w, b):
    """The float64 convolution with numpy alone (sliding windows and tensordot): a
    reference independent of convreg's kernels and of the anchors."""
    x = np.asarray(x, np.float64).reshape(spec.n, spec.c_in, spec.h, spec.w)
    w = np.asarray(w, np.float64)
    x = np.pad(x, ((0, 0), (0, 0), (spec.pt, spec.pb), (spec.pl, spec.pr)),
               mode=NUMPY_PAD_MODE[spec.padding_mode])
    eh, ew = spec.dh * (spec.kh - 1) + 1, spec.dw * (spec.kw - 1) + 1
    win = np.lib.stride_tricks.sliding_window_view(x, (eh, ew), axis=(2, 3))
    oh, ow = spec.output_shape[2], spec.output_shape[3]
    win = win[:, :, ::spec.sh, ::spec.sw, ::spec.dh, ::spec.dw][:, :, :oh, :ow]
    g, cig = spec.groups, spec.c_in // spec.groups
    cog = spec.c_out // g
    out = np.empty(spec.output_shape, np.float64)
    for i in range(g):
        part = win[:, i * cig:(i + 1) * cig]                  # n, cig, oh, ow, kh, kw
        out[:, i * cog:(i + 1) * cog] = np.tensordot(
            part, w[i * cog:(i + 1) * cog], axes=([1, 4, 5], [1, 2, 3])).transpose(0, 3, 1, 2)
    if b is not None:
        out += np.asarray(b, np.float64)[None, :, None, None]
    return out


def reference(spec, x, w, b):
    """(ref, bound): the float64 result and the harness's error bound in the run's dtype."""
    ref = numpy_conv64(spec, x, w, b)
    mag = numpy_conv64(spec, np.abs(x), np.abs(w), None if b is None else np.abs(b))
    k = w.shape[1] * w.shape[2] * w.shape[3] + 1
    return ref, 4 * k * np.finfo(x.dtype).eps * mag


def agrees(out, ref, bound, dtype):
    if hasattr(out, "numpy") and not isinstance(out, np.ndarray):
        out = out.numpy()
    ok, worst, msg = harness.compare(np.asarray(out), ref, bound, dtype)
    return ok, worst, msg


def engines_for_layer(backends, anchors, torch, x, w, b, kwargs, spec, threads):
    """(calls, status): name -> zero-argument callable, and name -> status for the rest."""
    calls, status = {}, {}
    for a in anchors:
        label = ANCHOR_LABEL[a]
        try:
            if a == "torch":
                calls[label] = common.torch_direct(torch, x, w, b, kwargs)
            elif a == "onnxruntime":
                calls[label] = common.ort_call(spec, x, w, b, threads)
            else:
                calls[label] = common.openvino_call(spec, x, w, b, threads)
        except common.Unavailable as exc:
            status[label] = f"n/a: {exc}"
        except Exception as exc:  # noqa: BLE001 - an anchor that breaks is n/a, not fatal
            status[label] = f"n/a: {type(exc).__name__}: {str(exc).splitlines()[0][:80]}"
    for n in backends:
        label = TORCH_BACKEND_LABEL if n == "torch" else n
        if n == "python" and spec.flops > PYTHON_MAX_FLOP:
            status[label] = "skipped: pure Python, too slow for this layer"
            continue
        try:
            answer = convreg.get_backend(n).supports(spec)
        except Exception as exc:  # noqa: BLE001 - a broken supports() is an error, not fatal
            status[label] = f"error: supports() raised {type(exc).__name__}: {exc}"[:160]
            continue
        if not answer:
            status[label] = f"declined: {getattr(answer, 'reason', '') or 'no reason given'}"
            continue
        calls[label] = (lambda n=n: convreg.conv2d(x, w, b, backend=n, **kwargs))
    return calls, status


def kind(label):
    return {"ort": "onnxruntime", "openvino": "openvino"}.get(label, label)


def time_layer(layer, args, backends, anchors, torch, threads, progress, tag, rng):
    label, xs, ws, kwargs = layer
    dtype = np.dtype(args.dtype)
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(ws[0]).astype(dtype)
    spec = convreg.spec_for_shapes(xs, ws, dtype=dtype, **kwargs)
    calls, status = engines_for_layer(backends, anchors, torch, x, w, b, kwargs, spec, threads)
    ref, bound = reference(spec, x, w, b)
    single, check = {}, {}
    for name in list(calls):
        progress(f"{tag}: warm-up {name}")
        try:
            out = calls[name]()          # warm-up 1 (its output is checked)
            time.sleep(common.idle_after(kind(name)))
            t0 = time.perf_counter()
            calls[name]()                # warm-up 2 (sizes the number of rounds)
            single[name] = time.perf_counter() - t0
            time.sleep(common.idle_after(kind(name)))
        except convreg.BackendError as exc:
            # the front end's "no backend ... supports this call" is a decline; any other
            # BackendError (e.g. a result of the wrong shape) is an error of the backend
            what = "declined" if "supports this call" in str(exc) else "error: BackendError"
            status[name] = f"{what}: {str(exc)[:120]}"
            del calls[name]
            continue
        except Exception as exc:  # noqa: BLE001 - shown in the table, never fatal
            status[name] = f"error: {type(exc).__name__}: {str(exc).splitlines()[0][:100]}"
            del calls[name]
            continue
        ok, worst, msg = agrees(out, ref, bound, dtype.name)
        check[name] = {"ok": ok, "worst": worst, "error": msg}
        status[name] = "ok" if ok else f"disagree: {msg}"
    rounds = 0
    med = {}
    if calls:
        slowest = max(single.values())
        rounds = int(min(MAX_ROUNDS, max(MIN_ROUNDS, args.budget / max(slowest, 1e-9))))
        med, _ = common.fair_medians(
            calls, rounds, seed=args.seed, kinds={n: kind(n) for n in calls},
            prime=not args.cold,
            progress=lambda text: progress(f"{tag}: {text}"))
    return {"layer": label, "input": list(xs), "weight": list(ws), "kwargs": kwargs,
            "gflop": spec.flops / 1e9, "rounds": rounds,
            "seconds": med, "status": status, "check": check}


def finish_layer(r, bad_engines, engines):
    """Derived figures: ms, GFLOP/s, ratios to torch direct, best (agreeing engines only)."""
    secs = r["seconds"]
    anchor = secs.get(ANCHOR_LABEL["torch"])
    r["torch_direct_ms"] = anchor * 1e3 if anchor else None
    r["ms"] = {e: (secs[e] * 1e3 if e in secs else None) for e in engines}
    r["gflops"] = {e: (r["gflop"] / secs[e] if e in secs else None) for e in engines}
    r["ratio_vs_torch_direct"] = {e: (secs[e] / anchor if e in secs and anchor else None)
                                  for e in engines}
    ok = {e: s for e, s in secs.items() if e not in bad_engines
          and r["status"].get(e) == "ok"}
    r["best"] = min(ok, key=ok.get) if ok else None
    return r


def cell(r, e, value, bad_engines):
    st = r["status"].get(e)
    if st is None:
        return "-"
    if st.startswith(("declined", "n/a", "skipped", "error")):
        return st.split(":")[0]
    if value is None:
        return "-"
    return value + ("!" if e in bad_engines or not st.startswith("ok") else "")


def timing_tables(results, engines, bad_engines, peak=None):
    anchor = ANCHOR_LABEL["torch"]
    blocks = []
    if peak:
        for r in results:
            r["peak_pct"] = {e: (100 * v / peak if v else None) for e, v in r["gflops"].items()}
    for title, key, fmt in (("ms per call (median)", "ms", "{:.3f}"),
                            ("GFLOP/s", "gflops", "{:.1f}"),
                            *([(f"% of the FMA peak ({peak:.0f} GFLOP/s, measured in this "
                                "run; over 100: fewer multiplies than the direct sum, "
                                "e.g. Winograd)", "peak_pct", "{:.0f}")] if peak else []),
                            (f"time / {anchor} time (< 1: faster than torch called directly)",
                             "ratio_vs_torch_direct", "{:.2f}")):
        if key == "ratio_vs_torch_direct" and not any(r["torch_direct_ms"] for r in results):
            continue
        cols = [e for e in engines if not (key == "ratio_vs_torch_direct" and e == anchor)]
        rows = [["layer", "GFLOP"] + cols + (["best"] if key == "ms" else [])]
        for r in results:
            row = [r["layer"], f"{r['gflop']:.4g}"]
            for e in cols:
                v = r[key].get(e)
                row.append(cell(r, e, None if v is None else fmt.format(v), bad_engines))
            if key == "ms":
                row.append(r["best"] or "-")
            rows.append(row)
        blocks.append(f"{title}:\n{format_rows(rows)}")
    lines = ["\n\n".join(blocks)]
    if any(r["torch_direct_ms"] for r in results):
        for e in engines:
            if e == anchor:
                continue
            rs = [r["ratio_vs_torch_direct"][e] for r in results
                  if r["ratio_vs_torch_direct"].get(e)]
            if rs:
                geo = math.exp(sum(math.log(v) for v in rs) / len(rs))
                mark = "  (DISAGREED: marked !)" if e in bad_engines else ""
                lines.append(f"{e}: time vs {anchor} geometric mean {geo:.2f}x, best "
                             f"{min(rs):.2f}x, worst {max(rs):.2f}x over {len(rs)} layers{mark}")
    notes = []
    for r in results:
        for e, st in r["status"].items():
            if not st.startswith(("ok", "skipped")):
                notes.append(f"  {r['layer']}: {e} {st}")
    skipped = sorted({e for r in results for e, st in r["status"].items()
                      if st.startswith("skipped")})
    for e in skipped:
        lines.append(f"{e}: skipped on layers over {PYTHON_MAX_FLOP:.0e} flop (pure Python)")
    if notes:
        lines.append("not timed or disagreeing:")
        lines += notes[:LIST_MAX]
        if len(notes) > LIST_MAX:
            lines.append(f"  ... and {len(notes) - LIST_MAX} more")
    return "\n".join(lines)


def plot(results, engines, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(8, len(results) * 1.1), 5))
    width = 0.8 / max(1, len(engines))
    for i, e in enumerate(engines):
        vals = [r["gflops"].get(e) or 0 for r in results]
        ax.bar([j + i * width for j in range(len(results))], vals, width, label=e)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(results))])
    ax.set_xticklabels([r["layer"] for r in results], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("GFLOP/s")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    say(f"plot written to {path}")


# ---------------------------------------------------------------- arguments

def ensure_torch_backend():
    """Register convreg's torch backend when torch is installed but the plugin entry point
    is not seen (convreg run from a source tree without being installed), so that it takes
    part in the agreement check. Returns a note for the header, or ""."""
    import importlib.util

    if "torch" in convreg.available_backends() or importlib.util.find_spec("torch") is None:
        return ""
    from convreg.backends.torch import make_backend

    backend = make_backend()
    if backend is None:
        return ""
    convreg.register_backend("torch", backend)
    return ("torch backend registered by the script (convreg is not installed here, so its "
            "plugin entry point is not seen)")


def parse_args(argv):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Exit status: 0 all backends agree, 1 a disagreement, 2 usage error.")
    common.add_version(p, "compare_backends.py")
    p.add_argument("--suite", choices=SUITES, default="quick",
                   metavar="{" + ",".join(PUBLIC_SUITES) + "}",
                   help="layer suite (default quick: DESIGN.md §7's layers)")
    p.add_argument("--backends", help="comma-separated convreg backends (default: every "
                   "available one)")
    p.add_argument("--anchors", default="torch",
                   help="comma-separated engines timed as their users call them, from "
                   "torch,onnxruntime,openvino; 'none' for none (default: torch). Ratios are "
                   "always against torch called directly")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--threads", type=common.positive_int,
                   help="threads for every engine and BLAS (default: convreg's setting)")
    p.add_argument("--json", metavar="FILE", help="write machine-readable results to FILE")
    p.add_argument("--plot", metavar="FILE", help="write a bar chart of GFLOP/s (matplotlib)")
    p.add_argument("--random", type=common.nonnegative_int, default=40,
                   help="random harness cases besides the standard grid (default 40; 0: grid only)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random cases and the "
                   "engine order")
    p.add_argument("--budget", type=common.positive_float, default=0.25,
                   help="seconds of timing per layer and engine, at most "
                   f"{MAX_ROUNDS} rounds, at least {MIN_ROUNDS} (default 0.25)")
    p.add_argument("--cold", action="store_true",
                   help="no untimed call of the same engine between the idle sleep and the "
                   "timed call: every sample then includes waking the engine's own threads")
    p.add_argument("--no-check", action="store_true", help="skip the harness")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    # hidden: a smaller matmul for the ceiling (the tests' short runs)
    p.add_argument("--ceiling-size", type=common.positive_int, default=2048,
                   help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    # Usage errors, all before any work.
    if args.threads is not None and args.threads > 4096:
        p.error(f"--threads must be at most 4096, got {args.threads}")
    args.torch_note = ""
    if args.backends is not None:
        names = [n.strip() for n in args.backends.split(",")]
        if not all(names):
            p.error(f"--backends: empty name in {args.backends!r}")
        if "torch" in names:
            args.torch_note = ensure_torch_backend()
        for n in names:
            try:
                convreg.get_backend(n)
            except convreg.ConvregError as exc:
                p.error(f"--backends: {exc}")
        args.backend_list = list(dict.fromkeys(names))
    else:
        args.backend_list = None          # every available one, torch's included (in main)
    anchors = [] if args.anchors.strip().lower() in ("", "none") else [
        a.strip() for a in args.anchors.split(",")]
    unknown = [a for a in anchors if a not in common.ANCHORS]
    if unknown:
        p.error(f"--anchors: unknown {unknown}; choose from {','.join(common.ANCHORS)} or none")
    args.anchor_list = list(dict.fromkeys(anchors))
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            p.error("--plot needs matplotlib, which does not import here "
                    "(pip install matplotlib)")
    if args.json:
        folder = os.path.dirname(os.path.abspath(args.json))
        if not os.path.isdir(folder):
            p.error(f"--json: folder {folder} does not exist")
    return args


# ---------------------------------------------------------------- main

def main(argv=None) -> int:
    args = parse_args(argv)
    started = datetime.datetime.now(datetime.timezone.utc)
    threads = args.threads or convreg.get_threads()
    convreg.set_threads(threads)
    if args.backend_list is None:
        args.torch_note = ensure_torch_backend()
        args.backend_list = convreg.available_backends()
    backends = args.backend_list
    progress = Progress(not args.quiet)

    anchors, skipped_anchors = [], {}
    for a in args.anchor_list:
        why = common.anchor_available(a)
        if why:
            skipped_anchors[a] = why
        else:
            anchors.append(a)
    torch_for_ref = common.import_torch(threads) if "torch" in anchors else None

    load_text, load_start = common.load_line("start")
    info = convreg.show_config(mode="dicts")
    vers = common.versions()
    say(f"convreg {info['convreg']}, numpy {info['numpy']}, {info['platform']}")
    say(f"SIMD variant {info['simd']['chosen']}, OpenMP {info['openmp']}, threads {threads}, "
        f"dtype {args.dtype}, backends {backends}")
    say("anchors: " + (", ".join(f"{ANCHOR_LABEL[a]} ({a} {vers.get(a)})" for a in anchors)
                       or "none"))
    if args.torch_note:
        say(args.torch_note)
    for a, why in skipped_anchors.items():
        say(f"anchor {a} skipped: {why}")
    say(load_text)

    harness_doc, bad_backends, report_ok = None, set(), True
    if not args.no_check:
        report, summary, disagreements, declines = run_harness(backends, args, progress)
        say("\n== agreement with the float64 reference ==")
        say(harness_table(summary, disagreements, declines))
        bad_backends = {r.backend for r in disagreements}
        report_ok = not disagreements
        harness_doc = {"ok": report_ok, "summary": summary,
                       "disagreements": [r.to_dict() for r in disagreements],
                       "declined": [{**r.to_dict(), "reason": why} for r, why in declines]}

    ceiling = common.matmul_ceiling(args.dtype, threads, n=args.ceiling_size)
    peak = common.fma_peak(args.dtype, threads)
    layers = SUITES[args.suite]
    rng = np.random.default_rng(0)
    results = []
    for li, layer in enumerate(layers):
        results.append(time_layer(layer, args, backends, anchors, torch_for_ref, threads,
                                  progress, f"[{li + 1}/{len(layers)}] {layer[0]}", rng))
    progress.done()

    engines = [ANCHOR_LABEL[a] for a in anchors] + [
        TORCH_BACKEND_LABEL if n == "torch" else n for n in backends]
    bad_engines = {TORCH_BACKEND_LABEL if n == "torch" else n for n in bad_backends}
    for r in results:
        bad_engines |= {e for e, st in r["status"].items()
                        if st.startswith(("disagree", "error"))}
    results = [finish_layer(r, bad_engines, engines) for r in results]

    say(f"\n== timing: suite {args.suite}, {args.dtype}, {threads} threads; median of "
        f"{MIN_ROUNDS}-{MAX_ROUNDS} shuffled rounds; other engines' pools idle before each "
        f"timed call, {'own pool cold' if args.cold else 'own pool warmed by one untimed call'} ==")
    say(f"legend: {ANCHOR_LABEL['torch']} = torch.nn.functional.conv2d called directly (the "
        f"anchor); {TORCH_BACKEND_LABEL} = convreg.conv2d(..., backend='torch'); "
        "! = disagreed with the reference")
    say(timing_tables(results, engines, bad_engines, peak))
    n = args.ceiling_size
    say(f"ceiling: numpy {args.dtype} {n}x{n} matmul {ceiling:.1f} GFLOP/s with BLAS at "
        f"{threads} threads, in this run")
    say(common.fma_line(peak, args.dtype, threads))
    load_end_text, load_end = common.load_line("end")
    say(load_end_text)

    anchor_bad = [e for e in bad_engines if e in ANCHOR_LABEL.values()]
    convreg_bad = sorted(bad_engines - set(anchor_bad))
    if args.json:
        doc = {"command": common.command_line(), "cwd": os.getcwd(),
               "started_utc": started.isoformat(timespec="seconds"),
               "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                           "python": platform.python_version()},
               "versions": vers, "config": info, "threads": threads, "dtype": args.dtype,
               "suite": args.suite, "backends": backends, "anchors": anchors,
               "anchors_skipped": skipped_anchors, "engines": engines,
               "load_start": load_start, "load_end": load_end,
               "own_pool": "cold" if args.cold else "warmed by one untimed call",
               "matmul_gflops": ceiling, "matmul_size": args.ceiling_size,
               "fma_peak_gflops": peak,
               "idle_after_s": {**common.IDLE_AFTER, "other": common.IDLE_DEFAULT},
               "harness": harness_doc, "disagreeing": sorted(bad_engines),
               "layers": results}
        with open(args.json, "w") as fh:
            json.dump(doc, fh, indent=1, default=str)
        say(f"results written to {args.json}")
    if args.plot:
        plot(results, engines, args.plot)
    if anchor_bad:
        say(f"WARNING: anchor(s) {sorted(anchor_bad)} disagreed with the float64 reference "
            "(not convreg's; exit status unaffected)")
    if not report_ok or convreg_bad:
        print(f"DISAGREEMENT: {convreg_bad or sorted(bad_backends)}; see above",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    common.run_main(main)
