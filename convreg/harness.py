"""The agreement harness: every backend against the float64 reference, within the error bound.

For each case, each backend's output must have the reference's shape and dtype, and
every element must satisfy the summation error bound

    |out - ref| <= 4 * K * eps(dtype) * ((|x| conv |w|) + |b|),   K = C_in/groups*kH*kW + 1

where ``ref`` is the ``python`` backend's result on the float64 copies of the inputs.

A case's ``op`` says which operation it checks (default ``"conv2d"``); the gradient
operations reuse the convolution's geometry, with a seeded ``grad_output`` of its
output's shape, and have their own bound (same form, the op applied to magnitudes):

    conv2d_input      |gx - ref| <= 4*K*eps*(conv2d_input(|go|, |w|)),  K = C_out/groups*kH*kW + 1
    conv2d_weight     |gw - ref| <= 4*K*eps*(conv2d_weight(|x|, |go|)), K = N*H_out*W_out + 1
    conv_transpose2d  as conv2d with K = C_in/groups*kH*kW + 1 of the transposed call
                      (its input channels), plus |bias|
``python -m convreg check`` runs it and prints a table (exit status 1 on disagreement).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace

import numpy as np

from . import grad as _grad
from ._api import conv2d, conv_transpose2d
from ._dispatch.registry import available_backends
from ._errors import BackendError, ConvregError
from ._frontend.spec import prepare, spec_for_shapes

OPS = ("conv2d", "conv2d_input", "conv2d_weight", "conv_transpose2d")

LAYOUTS = ("c", "fortran", "strided", "nhwc", "readonly")


@dataclass(frozen=True)
class Case:
    """One convolution call of the harness; ``arrays()`` makes its (seeded) inputs."""

    name: str
    input_shape: tuple
    weight_shape: tuple
    bias: bool = True
    stride: object = 1
    padding: object = 0
    dilation: object = 1
    groups: int = 1
    padding_mode: str = "zeros"
    dtype: str = "float32"
    layout: str = "c"
    seed: int = 0
    op: str = "conv2d"          # or conv2d_input, conv2d_weight, conv_transpose2d
    output_padding: object = 0  # conv_transpose2d only

    def kwargs(self) -> dict:
        if self.op == "conv_transpose2d":
            return dict(stride=self.stride, padding=self.padding,
                        output_padding=self.output_padding, groups=self.groups,
                        dilation=self.dilation)
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation,
                    groups=self.groups, padding_mode=self.padding_mode)

    def grad_output(self):
        """The seeded upstream gradient of a gradient case (the forward output's shape)."""
        shape = spec_for_shapes(
            self.input_shape if len(self.input_shape) == 4 else (1,) + self.input_shape,
            self.weight_shape, dtype=self.dtype, **self.kwargs()).output_shape
        if len(self.input_shape) == 3:
            shape = shape[1:]
        rng = np.random.default_rng(self.seed + 1)
        return _with_layout(rng.standard_normal(shape).astype(self.dtype), self.layout)

    def arrays(self):
        """(x, w, b) in the case's dtype, x in the case's memory layout."""
        rng = np.random.default_rng(self.seed)
        x = rng.standard_normal(self.input_shape).astype(self.dtype)
        w = rng.standard_normal(self.weight_shape).astype(self.dtype)
        b = rng.standard_normal(self.weight_shape[0]).astype(self.dtype) if self.bias else None
        return _with_layout(x, self.layout), w, b

    def label(self) -> str:
        op = "" if self.op == "conv2d" else f"{self.op}:"
        return f"{op}{self.name}[{self.dtype}]"


def _with_layout(x, layout):
    if layout == "fortran":
        return np.asfortranarray(x)
    if layout == "strided":  # every other element of a larger buffer
        big = np.zeros(x.shape[:-1] + (2 * x.shape[-1],), dtype=x.dtype)
        big[..., ::2] = x
        return big[..., ::2]
    if layout == "nhwc" and x.ndim == 4:  # channels-last memory seen as NCHW
        return np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    if layout == "readonly":
        x = x.copy()
        x.flags.writeable = False
    return x


def _grid():
    C = Case
    yield C("basic", (2, 3, 6, 7), (4, 3, 3, 3))
    yield C("no-bias", (1, 2, 5, 5), (3, 2, 3, 3), bias=False)
    yield C("1x1", (2, 5, 4, 3), (6, 5, 1, 1))
    yield C("1x1-stride2", (1, 4, 7, 6), (3, 4, 1, 1), stride=2)
    yield C("1x1-pad1", (1, 3, 4, 4), (2, 3, 1, 1), padding=1)
    yield C("stride2-odd", (1, 3, 9, 11), (4, 3, 3, 3), stride=2)
    yield C("stride(2,1)", (1, 2, 7, 8), (3, 2, 3, 2), stride=(2, 1))
    yield C("stride3-pad1", (2, 2, 10, 9), (2, 2, 3, 3), stride=3, padding=1)
    yield C("pad(1,2)", (1, 2, 5, 6), (3, 2, 3, 3), padding=(1, 2))
    yield C("pad-large", (1, 1, 3, 3), (2, 1, 2, 2), padding=3)
    yield C("valid", (1, 2, 6, 6), (2, 2, 4, 4), padding="valid")
    yield C("same-odd", (1, 3, 6, 5), (2, 3, 3, 3), padding="same")
    yield C("same-even", (1, 2, 6, 7), (2, 2, 4, 2), padding="same")
    yield C("same-dilated", (1, 2, 7, 7), (3, 2, 3, 2), padding="same", dilation=(2, 3))
    yield C("dilation2", (1, 2, 9, 9), (3, 2, 3, 3), dilation=2)
    yield C("dilation(2,3)-pad", (2, 2, 8, 10), (2, 2, 2, 3), dilation=(2, 3), padding=(1, 2))
    yield C("kernel-equals-input", (1, 2, 4, 5), (3, 2, 4, 5))
    yield C("kernel(1,5)", (1, 2, 4, 9), (2, 2, 1, 5), padding=(0, 2))
    yield C("asym-kernel", (1, 3, 8, 9), (5, 3, 3, 5), stride=(1, 2), padding=(1, 2))
    yield C("groups2", (2, 4, 6, 6), (6, 2, 3, 3), groups=2)
    yield C("groups3-s2", (1, 6, 9, 8), (3, 2, 3, 3), groups=3, stride=2, padding=1)
    yield C("depthwise3x3", (2, 5, 9, 13), (5, 1, 3, 3), groups=5, padding=1)
    yield C("depthwise3x3-s2", (1, 4, 11, 13), (4, 1, 3, 3), groups=4, stride=2, padding=1)
    yield C("depthwise5x5-s2", (1, 3, 13, 15), (3, 1, 5, 5), groups=3, stride=2, padding=2)
    yield C("depthwise5x5", (1, 3, 7, 19), (3, 1, 5, 5), groups=3, padding=(2, 1))
    yield C("depthwise-x2", (1, 3, 6, 7), (6, 1, 3, 3), groups=3, padding=1)
    yield C("depthwise-dilated", (1, 4, 9, 9), (4, 1, 3, 3), groups=4, dilation=2, padding=2)
    yield C("stem7x7-s2", (1, 3, 23, 21), (5, 3, 7, 7), stride=2, padding=3)
    yield C("stem7x7-s2-odd", (2, 3, 15, 17), (4, 3, 7, 7), stride=2, padding=(3, 2))
    yield C("mnist5x5", (3, 1, 12, 12), (5, 1, 5, 5))
    yield C("wide-cout", (1, 3, 11, 37), (19, 3, 3, 3), padding=1)
    yield C("many-cin", (1, 17, 6, 6), (3, 17, 3, 3), padding=1)
    yield C("pad-top-only", (1, 2, 6, 7), (3, 2, 3, 3), padding="same", stride=1)
    for mode in ("reflect", "replicate", "circular"):
        yield C(f"{mode}-pad1", (2, 2, 5, 6), (3, 2, 3, 3), padding=1, padding_mode=mode)
        yield C(f"{mode}-pad(2,1)-s2", (1, 3, 7, 5), (2, 3, 3, 3), padding=(2, 1), stride=2,
                padding_mode=mode)
        yield C(f"{mode}-same-even", (1, 2, 6, 5), (2, 2, 4, 3), padding="same",
                padding_mode=mode)
        yield C(f"{mode}-depthwise", (1, 3, 6, 6), (3, 1, 3, 3), padding=2, groups=3,
                padding_mode=mode)
    yield C("replicate-pad-beyond", (1, 1, 3, 2), (2, 1, 3, 3), padding=4,
            padding_mode="replicate")
    yield C("circular-pad-equal", (1, 2, 3, 4), (2, 2, 3, 3), padding=(3, 4),
            padding_mode="circular")
    yield C("reflect-max", (1, 1, 4, 3), (1, 1, 3, 3), padding=(3, 2), padding_mode="reflect")
    yield C("unbatched", (3, 6, 5), (2, 3, 3, 3), padding=1)
    yield C("unbatched-reflect", (2, 5, 5), (2, 2, 3, 3), padding=1, padding_mode="reflect")
    yield C("batch0", (0, 3, 6, 6), (4, 3, 3, 3), padding=1)
    yield C("single-pixel", (1, 1, 1, 1), (1, 1, 1, 1))
    yield C("single-pixel-pad", (1, 2, 1, 1), (3, 2, 3, 3), padding=1)
    for layout in LAYOUTS[1:]:
        yield C(f"layout-{layout}", (2, 3, 6, 7), (4, 3, 3, 3), padding=1, layout=layout)
    # Dense 3x3 stride-1 layers summing >= 8 channels per output (forward and input
    # gradient): the calls cython-winograd accepts, over its features.
    yield C("3x3-8ch-pad(1,2)", (2, 8, 7, 9), (8, 8, 3, 3), padding=(1, 2))
    yield C("3x3-8ch-dilated", (1, 8, 9, 10), (9, 8, 3, 3), dilation=(2, 1), padding=(2, 1))
    yield C("3x3-8ch-groups2", (1, 16, 6, 7), (16, 8, 3, 3), groups=2, padding=1)
    yield C("3x3-9ch-pad3", (1, 9, 5, 6), (10, 9, 3, 3), padding=3, bias=False)
    yield C("3x3-8ch-reflect", (1, 8, 6, 6), (8, 8, 3, 3), padding=1, padding_mode="reflect")
    yield C("3x3-8ch-nhwc", (2, 8, 6, 7), (8, 8, 3, 3), padding=1, layout="nhwc")


def standard_cases(dtypes=("float32", "float64")) -> list:
    """The standard grid: every feature of the semantics, each in every dtype."""
    return [replace(c, dtype=dt, seed=i) for i, c in enumerate(_grid()) for dt in dtypes]


def _transpose_grid():
    """conv_transpose2d cases: the mirror of every zero-padded conv2d grid case (its
    output as input, output_padding restoring its input size), plus the corners."""
    plain = [c for c in _grid() if c.padding_mode == "zeros" and not isinstance(c.padding, str)]
    for m in _transpose_grid_of(plain):
        yield replace(m, name=f"T-{m.name}")
    C = Case
    t = "conv_transpose2d"
    yield C("T-outpad<dilation", (1, 2, 4, 5), (2, 3, 3, 3), stride=1, dilation=2,
            output_padding=1, op=t)
    yield C("T-outpad(1,2)-s(2,3)", (2, 3, 4, 3), (3, 2, 3, 2), stride=(2, 3),
            output_padding=(1, 2), padding=(1, 0), op=t)
    yield C("T-pad>kernel", (1, 2, 7, 6), (2, 2, 2, 2), stride=3, padding=2, op=t)
    yield C("T-groups2-dil", (1, 4, 5, 5), (4, 3, 3, 2), groups=2, dilation=(2, 1),
            stride=2, padding=1, output_padding=(1, 1), op=t)
    yield C("T-depthwise-s2", (2, 3, 5, 4), (3, 1, 3, 3), groups=3, stride=2, padding=1,
            output_padding=1, op=t)


def grad_cases(dtypes=("float32", "float64"),
               ops=("conv2d_input", "conv2d_weight", "conv_transpose2d")) -> list:
    """The grid of the gradient operations: every conv2d grid case as an input gradient
    and a weight gradient, and the transposed-convolution grid, each in every dtype."""
    base = list(_grid())
    cases = []
    for op in ops:
        source = list(_transpose_grid()) if op == "conv_transpose2d" else base
        cases += [replace(c, op=op, dtype=dt, seed=1000 * (OPS.index(op)) + i)
                  for i, c in enumerate(source) for dt in dtypes]
    return cases


def random_grad_cases(count=30, seed=0, dtypes=("float32", "float64")) -> list:
    """Seeded random cases of the gradient operations (conv_transpose2d: the mirror of a
    zero-padded random convolution)."""
    rng = random.Random(seed + 7919)
    out = []
    ops = ("conv2d_input", "conv2d_weight", "conv_transpose2d")
    for i in range(count):
        op = ops[i % 3]
        c = random_case(rng, dtypes[i % len(dtypes)], i)
        if op == "conv_transpose2d":
            # the mirror of the case with zero padding; where that is no valid convolution
            # ("same" became 0 on a kernel larger than the input), the case as drawn runs
            # as an input gradient instead
            zeroed = replace(c, padding_mode="zeros",
                             padding=(0, 0) if isinstance(c.padding, str) else c.padding)
            try:
                mirror = next(_transpose_grid_of([zeroed]))
            except (StopIteration, ConvregError):
                op = "conv2d_input"
            else:
                out.append(replace(mirror, name=f"random-grad{i}"))
                continue
        out.append(replace(c, name=f"random-grad{i}", op=op))
    return out


def _transpose_grid_of(cases):
    for c in cases:
        spec = spec_for_shapes(c.input_shape if len(c.input_shape) == 4 else
                               (1,) + c.input_shape, c.weight_shape, **c.kwargs())
        op = ((spec.h + spec.pt + spec.pb - spec.dh * (spec.kh - 1) - 1) % spec.sh,
              (spec.w + spec.pl + spec.pr - spec.dw * (spec.kw - 1) - 1) % spec.sw)
        shape = spec.output_shape if len(c.input_shape) == 4 else spec.output_shape[1:]
        yield replace(c, input_shape=shape, op="conv_transpose2d", output_padding=op)


def random_case(rng: random.Random, dtype="float32", index=0) -> Case:
    """One random *valid* configuration, small enough for the Python reference."""


    while True:
        g = rng.choice([1, 1, 1, 2, 3])
        cig, cog = rng.randint(1, 3), rng.randint(1, 3)
        depthwise = rng.random() < 0.2
        if depthwise:
            g, cig, cog = rng.randint(2, 5), 1, rng.choice([1, 1, 2])
        kh, kw = rng.randint(1, 5), rng.randint(1, 5)
        sh, sw = rng.randint(1, 3), rng.randint(1, 3)
        dh, dw = rng.choice([1, 1, 2]), rng.choice([1, 1, 2, 3])
        n, h, w = rng.choice([0, 1, 1, 2, 3]), rng.randint(1, 14), rng.randint(1, 14)
        mode = rng.choice(["zeros", "zeros", "reflect", "replicate", "circular"])
        r = rng.random()
        if r < 0.15 and (sh, sw) == (1, 1):
            padding = "same"
        elif r < 0.25:
            padding = "valid"
        else:
            padding = (rng.randint(0, 3), rng.randint(0, 3))
        case = Case(f"random{index}", (n, cig * g, h, w) if rng.random() < 0.9 else
                    (cig * g, h, w), (cog * g, cig, kh, kw), bias=rng.random() < 0.8,
                    stride=(sh, sw), padding=padding, dilation=(dh, dw), groups=g,
                    padding_mode=mode, dtype=dtype, layout=rng.choice(LAYOUTS),
                    seed=rng.randrange(2**31))
        try:
            prepare(np.empty(case.input_shape, dtype), np.empty(case.weight_shape, dtype),
                    **case.kwargs())
        except ConvregError:
            continue
        return case


def random_cases(count=40, seed=0, dtypes=("float32", "float64")) -> list:
    rng = random.Random(seed)
    return [random_case(rng, dtypes[i % len(dtypes)], i) for i in range(count)]


def summation_bound(mag, terms: int, dtype):
    """``4 * K * eps(dtype) * mag`` with ``K = terms + 1`` (the bias): the elementwise
    bound every backend must hold, ``mag`` being |a| op |b| + |bias| in float64."""
    return 4 * (terms + 1) * np.finfo(dtype).eps * mag


def reference_and_bound(x, w, b=None, dtype=None, **kwargs):
    """(ref, bound) of a conv2d call: the python backend's result on float64 copies of the
    arrays, and :func:`summation_bound` for the output dtype (default: ``x``'s)."""
    dtype = dtype or np.asarray(x).dtype
    x64, w64 = np.asarray(x, np.float64), np.asarray(w, np.float64)
    b64 = None if b is None else np.asarray(b, np.float64)
    ref = conv2d(x64, w64, b64, backend="python", **kwargs)
    mag = conv2d(np.abs(x64), np.abs(w64), None if b is None else np.abs(b64),
                 backend="python", **kwargs)
    _, cig, kh, kw = w64.shape
    return ref, summation_bound(mag, cig * kh * kw, dtype)


def run_case(case: Case, backend, arrays=None):
    """Run the case's operation through ``backend`` (``arrays`` from :func:`case_arrays`)."""
    a = case_arrays(case) if arrays is None else arrays
    kw = case.kwargs()
    if case.op == "conv2d":
        return conv2d(a["x"], a["w"], a["b"], backend=backend, **kw)
    if case.op == "conv2d_input":
        return _grad.conv2d_input(np.shape(a["x"]), a["w"], a["go"], backend=backend, **kw)
    if case.op == "conv2d_weight":
        return _grad.conv2d_weight(a["x"], np.shape(a["w"]), a["go"], backend=backend, **kw)
    return conv_transpose2d(a["x"], a["w"], a["b"], backend=backend, **kw)


def case_arrays(case: Case) -> dict:
    """The arrays of a case's call: x, w, b and (gradient ops) go."""
    x, w, b = case.arrays()
    out = {"x": x, "w": w, "b": b}
    if case.op == "conv_transpose2d":
        # bias of the transposed call: one per output channel
        rng = np.random.default_rng(case.seed + 2)
        cout = case.weight_shape[1] * case.groups
        out["b"] = rng.standard_normal(cout).astype(case.dtype) if case.bias else None
    elif case.op != "conv2d":
        out["b"] = None
        out["go"] = case.grad_output()
    return out


def reduction_length(case: Case) -> int:
    """K of the case's summation bound (terms per output element, plus one)."""
    cout, cig, kh, kw = case.weight_shape
    if case.op == "conv2d_input":
        return (cout // case.groups) * kh * kw + 1
    if case.op == "conv2d_weight":
        spec = spec_for_shapes(case.input_shape if len(case.input_shape) == 4 else
                               (1,) + case.input_shape, case.weight_shape, **case.kwargs())
        return max(spec.n, 1) * spec.oh * spec.ow + 1
    if case.op == "conv_transpose2d":
        return (cout // case.groups) * kh * kw + 1
    return cig * kh * kw + 1


def reference(case: Case):
    """(ref, bound): the float64 reference result and the elementwise error bound."""
    a = case_arrays(case)
    a64 = {k: None if v is None else np.asarray(v, np.float64) for k, v in a.items()}
    mags = {k: None if v is None else np.abs(v) for k, v in a64.items()}
    ref = run_case(case, "python", a64)
    mag = run_case(case, "python", mags)
    return ref, summation_bound(mag, reduction_length(case) - 1, case.dtype)


@dataclass
class Result:
    """One backend on one case. ``declined``: its ``supports()`` refused the case (with
    ``reason``), which is never a disagreement; ``ok`` is then True."""

    backend: str
    case: Case
    ok: bool
    worst: float = 0.0     # max |out - ref| / bound (<= 1 passes)
    error: str = ""
    declined: bool = False
    reason: str = ""

    def to_dict(self) -> dict:
        return {"backend": self.backend, "case": self.case.label(), "ok": self.ok,
                "worst": self.worst, "error": self.error, "declined": self.declined,
                "reason": self.reason}


def compare(out, ref, bound, dtype) -> tuple:
    """(ok, worst ratio, message) for one output against its reference and bound."""
    if not isinstance(out, np.ndarray):
        return False, float("inf"), f"returned {type(out).__name__}, not an ndarray"
    if out.shape != ref.shape or out.dtype != np.dtype(dtype):
        return False, float("inf"), (f"shape/dtype {out.shape} {out.dtype}, expected "
                                     f"{ref.shape} {dtype}")
    if out.size == 0:
        return True, 0.0, ""
    err = np.abs(out.astype(np.float64) - ref)
    bad = ~(err <= bound)           # NaN counts as a disagreement
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(bound > 0, err / bound, np.where(err > 0, np.inf, 0.0))
    worst = float(np.nanmax(np.where(np.isnan(ratio), np.inf, ratio)))
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        return False, worst, (f"{int(bad.sum())} elements outside the bound; first at {idx}: "
                              f"got {out[idx]!r}, reference {ref[idx]!r}, bound {bound[idx]:.3g}")
    return True, worst, ""


@dataclass
class Report:
    results: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    def failures(self) -> list:
        return [r for r in self.results if not r.ok]

    def by_backend(self) -> dict:
        out = {}
        for r in self.results:
            out.setdefault(r.backend, []).append(r)
        return out

    def declined(self) -> list:
        return [r for r in self.results if r.declined]

    def table(self, limit: int = 20) -> str:
        rows = [("backend", "cases", "agree", "declined", "worst err/bound", "verdict")]
        rows_by = {}
        for name, rs in self.by_backend().items():
            for r in rs:
                label = name if r.case.op == "conv2d" else f"{name} [{r.case.op}]"
                rows_by.setdefault(label, []).append(r)
        for name, rs in rows_by.items():
            ran = [r for r in rs if not r.declined]
            agree = sum(r.ok for r in ran)
            worst = max((r.worst for r in ran), default=0.0)
            rows.append((name, str(len(rs)), str(agree), str(len(rs) - len(ran)),
                         f"{worst:.3g}", "ok" if agree == len(ran) else "DISAGREE"))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(c.ljust(wd) for c, wd in zip(r, widths)).rstrip() for r in rows]
        lines.insert(1, "  ".join("-" * wd for wd in widths))
        for title, items, text in (("disagreements", self.failures(), lambda r: r.error),
                                   ("declined", self.declined(),
                                    lambda r: f"declined ({r.reason})")):
            for r in items[:limit]:
                lines.append(f"  {r.backend} {r.case.label()}: {text(r)}")
            if len(items) > limit:
                lines.append(f"  ... and {len(items) - limit} more {title} not shown")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"ok": self.ok, "results": [r.to_dict() for r in self.results]}


def check_case(backend: str, case: Case, expected=None) -> Result:
    """Run one backend on one case and compare it with the reference."""
    ref, bound = expected if expected is not None else reference(case)
    label = backend if isinstance(backend, str) else getattr(backend, "name", repr(backend))
    arrays = case_arrays(case)
    before = {k: None if v is None else v.copy() for k, v in arrays.items()}
    try:
        out = run_case(case, backend, arrays)
    except BackendError as exc:
        refusals = getattr(exc, "refusals", None)
        if refusals:     # selection: the backend's supports() refused (or it lacks the op)
            reason = "; ".join(r.partition(": ")[2] for r in refusals)
            return Result(label, case, True, 0.0, "", declined=True, reason=reason)
        return Result(label, case, False, float("inf"), f"raised BackendError: {exc}")
    except Exception as exc:  # a backend failure is a disagreement, reported, not raised
        return Result(label, case, False, float("inf"), f"raised {type(exc).__name__}: {exc}")
    if not all(v is None or np.array_equal(v, before[k], equal_nan=True)
               for k, v in arrays.items()):
        return Result(label, case, False, float("inf"), "modified its input")
    ok, worst, msg = compare(out, ref, bound, case.dtype)
    return Result(label, case, ok, worst, msg)


def run_checks(backends=None, cases=None, progress=None) -> Report:
    """Check ``backends`` (default: every available one) on ``cases`` (default: the
    standard grid plus 40 seeded random cases)."""
    backends = list(backends) if backends is not None else available_backends()
    cases = list(cases) if cases is not None else standard_cases() + random_cases()
    report = Report()
    for i, case in enumerate(cases):
        expected = reference(case)
        for name in backends:
            report.results.append(check_case(name, case, expected))
        if progress is not None:
            progress(i + 1, len(cases))
    return report


__all__ = ["Case", "OPS", "Report", "Result", "case_arrays", "check_case", "compare",
           "grad_cases", "random_cases", "random_grad_cases", "reduction_length", "reference",
           "reference_and_bound", "run_case", "run_checks", "standard_cases", "summation_bound"]
