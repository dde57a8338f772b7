"""Shared pieces of the scripts under scripts/: honest anchors, fair timing, machine state.

Not part of the convreg package; the scripts import it from their own directory.

* Anchors are other engines timed *as their users call them*: torch through
  ``torch.nn.functional.conv2d`` on tensors made once (never through convreg's ``torch``
  backend), and onnxruntime / OpenVINO on a one-node ONNX ``Conv`` model. Each has its
  thread pool set to the run's thread count.
* Fair timing on a small machine: OpenMP workers spin for a few ms after a call, and
  onnxruntime's for ~24 ms; a timed call of the next engine would share the cores with
  them. :func:`fair_medians` therefore sleeps before every timed call (long enough for the
  previous engine's pool to go idle; the sleep is outside the timed region), shuffles the
  engine order every round (seeded) and takes medians.
"""

from __future__ import annotations

import argparse
import os
import random
import shlex
import statistics
import sys
import time

import numpy as np

# Seconds to sleep after an engine's call before the next timed call, so that its worker
# threads have stopped spinning. OpenMP (convreg's kernels, torch) spins ~3 ms; ORT ~24 ms;
# OpenVINO's TBB workers are given the same margin as ORT.
IDLE_AFTER = {"onnxruntime": 0.030, "openvino": 0.030}
IDLE_DEFAULT = 0.005
BLAS_IDLE = 0.3          # after a threaded numpy/OpenBLAS call (its workers spin ~0.1 s)
LOAD_WARN = 0.5          # 1-minute load above this on a 2-core machine distorts timings

ANCHORS = ("torch", "onnxruntime", "openvino")


# ---------------------------------------------------------------- argument types

def _int_at_least(text, minimum):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a whole number >= {minimum}, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
    return value


def positive_int(text):
    return _int_at_least(text, 1)


def nonnegative_int(text):
    return _int_at_least(text, 0)


def positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not (value > 0 and value < float("inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def add_version(parser, prog):
    import convreg

    parser.add_argument("--version", action="version",
                        version=f"{prog} (convreg {convreg.__version__})")


# ---------------------------------------------------------------- process plumbing

def run_main(main):
    """``sys.exit(main())`` that exits quietly when stdout is closed (``... | head``)."""
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:
        # Python's recommended handling: point stdout at devnull so the interpreter's
        # final flush does not raise again, and exit like a process killed by SIGPIPE.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = 141
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    sys.exit(code)


def command_line():
    return " ".join(shlex.quote(a) for a in [os.path.basename(sys.executable)] + sys.argv)


# ---------------------------------------------------------------- machine state

def load():
    """(1, 5, 15)-minute load averages, or None where the OS does not report them."""
    try:
        return tuple(round(v, 2) for v in os.getloadavg())
    except (AttributeError, OSError):
        return None


def load_line(when):
    """One line about the machine load; warns when it is not near zero."""
    la = load()
    if la is None:
        return f"load at {when}: not available on this OS", la
    text = (f"load at {when}: {la[0]:.2f} {la[1]:.2f} {la[2]:.2f} (1/5/15 min, "
            f"{os.cpu_count()} cores)")
    if la[0] > LOAD_WARN:
        text += (f"\nWARNING: 1-minute load {la[0]:.2f} > {LOAD_WARN}: other work is running; "
                 "timings of this run are not trustworthy")
    return text, la


def matmul_ceiling(dtype, threads, n=2048, reps=5):
    """GFLOP/s of numpy's n x n matmul in ``dtype`` with BLAS held to ``threads`` (median)."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(1)
    a = rng.standard_normal((n, n)).astype(dtype)
    b = rng.standard_normal((n, n)).astype(dtype)
    ts = []
    with threadpool_limits(threads, user_api="blas"):
        a @ b
        for _ in range(reps):
            t0 = time.perf_counter()
            a @ b
            ts.append(time.perf_counter() - t0)
    # OpenBLAS's workers keep spinning for ~0.1 s after a threaded call and would share
    # the cores with whatever is timed next.
    time.sleep(BLAS_IDLE)
    return 2 * n**3 / statistics.median(ts) / 1e9


def fma_peak(dtype, threads, seconds=0.3):
    """GFLOP/s of the machine's FMA peak in ``dtype`` on ``threads`` threads, measured now
    by ``convreg._cpu.fma_peak_gflops`` (independent vector FMA chains; float64 runs half
    the lanes), or None when the compiled module is missing. Median of three probes."""
    try:
        from convreg._cpu import fma_peak_gflops
    except ImportError:
        return None
    runs = sorted(fma_peak_gflops(threads, seconds / 3) for _ in range(3))
    return runs[1] / (2 if np.dtype(dtype).itemsize == 8 else 1)


def fma_line(peak, dtype, threads):
    if peak is None:
        return ("FMA peak: not measured (convreg._cpu is not built); numpy's matmul above "
                "is the practical ceiling")
    return (f"FMA peak: {peak:.1f} GFLOP/s {np.dtype(dtype).name} on {threads} threads, "
            "measured in this run (convreg._cpu.fma_peak_gflops: independent vector FMA "
            "chains)")


# ---------------------------------------------------------------- versions

def versions():
    import platform

    import convreg

    out = {"python": platform.python_version(), "numpy": np.__version__,
           "convreg": convreg.__version__}
    from importlib import metadata

    for mod in ("torch", "onnxruntime", "openvino", "onnx", "threadpoolctl"):
        m = sys.modules.get(mod)      # the imported module's own word first
        if m is not None and getattr(m, "__version__", None):
            out[mod] = str(m.__version__)
            continue
        try:                          # else the installed distribution's, without importing
            out[mod] = metadata.version(mod)
        except metadata.PackageNotFoundError:
            out[mod] = None
    return out


# ---------------------------------------------------------------- anchors

class Unavailable(Exception):
    """An anchor cannot run this layer (reason in the message): shown as n/a."""


def import_torch(threads):
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    return torch


def torch_direct(torch, x, w, b, kwargs):
    """A zero-argument callable: F.conv2d as a torch user calls it (tensors made once).

    Non-zero padding modes are what ``nn.Conv2d`` does in its forward: ``F.pad`` then
    ``F.conv2d`` without padding, both inside the timed call.
    """
    F = torch.nn.functional
    xt = torch.from_numpy(x)
    wt = torch.from_numpy(w)
    bt = None if b is None else torch.from_numpy(b)
    kw = dict(kwargs)
    mode = kw.pop("padding_mode", "zeros")
    conv = {k: kw[k] for k in ("stride", "padding", "dilation", "groups") if k in kw}
    if mode != "zeros":
        pad = conv.pop("padding", 0)
        ph, pw = (pad, pad) if isinstance(pad, int) else pad
        torch_mode = {"reflect": "reflect", "replicate": "replicate",
                      "circular": "circular"}[mode]

        def call():
            with torch.no_grad():
                return F.conv2d(F.pad(xt, (pw, pw, ph, ph), mode=torch_mode), wt, bt, **conv)
    else:
        def call():
            with torch.no_grad():
                return F.conv2d(xt, wt, bt, **conv)
    return call


def onnx_conv_model(spec, w, b):
    """A one-node ONNX Conv model (opset 13) of this call, weights as initializers."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if spec.padding_mode != "zeros":
        raise Unavailable(f"padding_mode={spec.padding_mode!r} (ONNX Conv pads with zeros)")
    elem = {np.dtype("float32"): TensorProto.FLOAT,
            np.dtype("float64"): TensorProto.DOUBLE}[np.dtype(w.dtype)]
    xshape = [spec.n, spec.c_in, spec.h, spec.w]
    yshape = list(spec.output_shape)
    inits = [numpy_helper.from_array(np.ascontiguousarray(w), "W")]
    inputs = ["X", "W"]
    if b is not None:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(b), "B"))
        inputs.append("B")
    node = helper.make_node(
        "Conv", inputs, ["Y"], kernel_shape=[spec.kh, spec.kw], strides=[spec.sh, spec.sw],
        pads=[spec.pt, spec.pl, spec.pb, spec.pr],          # ONNX: [top, left, bottom, right]
        dilations=[spec.dh, spec.dw], group=spec.groups)
    graph = helper.make_graph([node], "conv", [helper.make_tensor_value_info("X", elem, xshape)],
                              [helper.make_tensor_value_info("Y", elem, yshape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="convreg-scripts")
    model.ir_version = min(model.ir_version, 8)
    onnx.checker.check_model(model)
    return model


def ort_call(spec, x, w, b, threads):
    """onnxruntime on the one-node model: intra-op threads = run threads, inter-op 1,
    sequential execution; the thread pool's default spinning is left on (the timing
    sleeps ~30 ms before each timed call instead)."""
    import onnxruntime as ort

    model = onnx_conv_model(spec, w, b)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    try:
        sess = ort.InferenceSession(model.SerializeToString(), so,
                                    providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - e.g. no double Conv kernel
        if "NOT_IMPLEMENTED" in str(exc):
            raise Unavailable(f"onnxruntime has no {np.dtype(x.dtype).name} Conv kernel on "
                              "CPU") from None
        raise Unavailable(f"onnxruntime: {str(exc).splitlines()[0][:80]}") from None
    feed = {"X": np.ascontiguousarray(x)}
    return lambda: sess.run(None, feed)[0]


_ov_core = None


def openvino_call(spec, x, w, b, threads):
    """OpenVINO (CPU plugin) on the one-node model: INFERENCE_NUM_THREADS = run threads,
    one stream, latency hint, f32 inference precision (no silent bf16 on CPUs that have it)."""
    global _ov_core
    import openvino as ov

    if np.dtype(x.dtype) != np.float32:
        raise Unavailable("OpenVINO's CPU plugin computes in float32 at best")
    model = onnx_conv_model(spec, w, b)
    if _ov_core is None:
        _ov_core = ov.Core()
    ovm = _ov_core.read_model(model.SerializeToString())
    compiled = _ov_core.compile_model(ovm, "CPU", {
        "INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_PRECISION_HINT": "f32"})
    req = compiled.create_infer_request()
    xc = np.ascontiguousarray(x)
    return lambda: req.infer({0: xc})[0]


def anchor_available(name):
    mods = {"torch": ("torch",), "onnxruntime": ("onnx", "onnxruntime"),
            "openvino": ("onnx", "openvino")}[name]
    for m in mods:
        try:
            __import__(m)
        except Exception as exc:  # noqa: BLE001
            return f"{m} does not import ({type(exc).__name__})"
    return ""


# ---------------------------------------------------------------- fair timing

def idle_after(engine):
    return IDLE_AFTER.get(engine.split(":")[0], IDLE_DEFAULT)


def fair_medians(calls, rounds, seed=0, inner=1, progress=None, kinds=None, prime=True):
    """Median seconds per call of every callable in ``calls`` (name -> fn).

    Each round runs every engine once in a seeded shuffled order; before each timed call
    the script sleeps long enough for the previous engine's workers to go idle (outside
    the timed region). With ``prime`` (the default) one untimed call of the same engine
    follows the sleep: the timed call then finds the *other* engines' pools idle and its
    own warm, as in a network that calls it back to back; without it every timed call
    also pays for waking its own sleeping threads (tens of µs on an idle machine, ms on a
    loaded one). ``inner`` calls make one sample (for calls of a few µs).
    ``kinds`` maps a name to its engine kind for the idle time (default: the name).
    """
    kinds = kinds or {}
    rng = random.Random(seed)
    names = list(calls)
    times = {n: [] for n in names}
    prev = None
    sleep, perf = time.sleep, time.perf_counter
    for r in range(rounds):
        rng.shuffle(names)
        for n in names:
            fn = calls[n]
            sleep(idle_after(kinds.get(prev, prev)) if prev else IDLE_DEFAULT)
            if progress:
                progress(f"{n} round {r + 1}/{rounds}")
            if prime:
                fn()
            if inner == 1:
                t0 = perf()
                fn()
                t = perf() - t0
            else:
                t0 = perf()
                for _ in range(inner):
                    fn()
                t = (perf() - t0) / inner
            times[n].append(t)
            prev = n
    return {n: statistics.median(ts) for n, ts in times.items()}, times


# The DESIGN.md section 7 layer suite: (name, input shape, weight shape, conv kwargs).
SECTION7 = [  # DESIGN.md §7: the quick (default) suite
    ("stem 7x7/2 3->64 224", (1, 3, 224, 224), (64, 3, 7, 7), dict(stride=2, padding=3)),
    ("3x3 64 56", (1, 64, 56, 56), (64, 64, 3, 3), dict(padding=1)),
    ("3x3 128 28", (1, 128, 28, 28), (128, 128, 3, 3), dict(padding=1)),
    ("3x3 256 14", (1, 256, 14, 14), (256, 256, 3, 3), dict(padding=1)),
    ("3x3 512 7", (1, 512, 7, 7), (512, 512, 3, 3), dict(padding=1)),
    ("1x1 256->64 56", (1, 256, 56, 56), (64, 256, 1, 1), {}),
    ("dw 3x3 128 56", (1, 128, 56, 56), (128, 1, 3, 3), dict(padding=1, groups=128)),
    ("b8 3x3 128 28", (8, 128, 28, 28), (128, 128, 3, 3), dict(padding=1)),
    ("mnist 5x5 1->32 b64", (64, 1, 28, 28), (32, 1, 5, 5), {}),
    ("tiny 3x3 8->8 16", (1, 8, 16, 16), (8, 8, 3, 3), dict(padding=1)),
]
