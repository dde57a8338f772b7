"""The cython-direct backend against the reference: harness grid, random cases, fast paths,
SIMD variants, thread counts and the GIL."""

from dataclasses import replace

import numpy as np
import pytest

import convreg
from conftest import assert_releases_gil
import convreg._frontend.spec
from convreg.backends import _simd
from convreg.harness import (Case, check_case, compare, random_cases, reference, standard_cases,
                             summation_bound)

pytest.importorskip("convreg._direct_baseline", reason="cython-direct is not built")

BACKEND = "cython-direct"


@pytest.mark.parametrize("case", standard_cases(), ids=lambda c: c.label())
def test_standard_grid(case):
    r = check_case(BACKEND, case)
    assert r.ok, r.error


@pytest.mark.parametrize("case", random_cases(60, seed=3), ids=lambda c: c.label())
def test_random_cases(case):
    r = check_case(BACKEND, case)
    assert r.ok, r.error


# Cases aimed at the tiling: widths that are not multiples of any vector or block width,
# padding on one side only, odd sizes with stride 2, channel counts that are not
# multiples of the output-channel block, several row tiles and channel chunks.
def _fast_path_cases():
    C = Case
    yield C("dw3x3-odd", (1, 7, 13, 37), (7, 1, 3, 3), groups=7, padding=1)
    yield C("dw3x3-top-left-only", (2, 5, 11, 19), (5, 1, 3, 3), groups=5, padding=(1, 0))
    yield C("dw3x3-same-even", (1, 3, 10, 33), (3, 1, 3, 3), groups=3, padding="same")
    yield C("dw3x3-s2-odd", (1, 6, 15, 35), (6, 1, 3, 3), groups=6, stride=2, padding=1)
    yield C("dw3x3-s2-nopad", (1, 4, 16, 17), (4, 1, 3, 3), groups=4, stride=2)
    yield C("dw3x3-x2", (1, 5, 9, 23), (10, 1, 3, 3), groups=5, padding=1)
    yield C("dw3x3-x3-s2", (1, 4, 9, 21), (12, 1, 3, 3), groups=4, stride=2, padding=1)
    yield C("dw5x5-odd", (1, 5, 13, 41), (5, 1, 5, 5), groups=5, padding=2)
    yield C("dw5x5-s2-odd", (1, 9, 17, 29), (9, 1, 5, 5), groups=9, stride=2, padding=2)
    yield C("dw5x5-s2-asym", (1, 3, 14, 31), (3, 1, 5, 5), groups=3, stride=2, padding=(2, 1))
    yield C("dw5x5-x2-s2", (1, 3, 11, 27), (6, 1, 5, 5), groups=3, stride=2, padding=2)
    yield C("dw3x3-dilated-s2", (1, 3, 17, 19), (3, 1, 3, 3), groups=3, stride=2, dilation=2,
            padding=2)
    # rows straight into the output (depthwise rows of 52-64 or > 103 outputs)
    yield C("dwrows3x3-odd-rows", (1, 3, 9, 60), (3, 1, 3, 3), groups=3, padding=1)
    yield C("dwrows3x3-left-only", (2, 2, 8, 57), (2, 1, 3, 3), groups=2, padding=(1, 0))
    yield C("dwrows3x3-s2", (1, 2, 11, 119), (2, 1, 3, 3), groups=2, stride=2, padding=1)
    yield C("dwrows3x3-s2-even", (1, 2, 12, 124), (2, 1, 3, 3), groups=2, stride=2,
            padding=(0, 1))
    yield C("dwrows5x5", (1, 2, 7, 57), (2, 1, 5, 5), groups=2, padding=2)
    yield C("dwrows5x5-wide", (1, 1, 6, 133), (1, 1, 5, 5), padding=(2, 1))
    yield C("dwrows5x5-s2", (1, 3, 13, 121), (3, 1, 5, 5), groups=3, stride=2, padding=2)
    yield C("dwrows5x5-s2-nopad", (1, 2, 10, 131), (2, 1, 5, 5), groups=2, stride=(2, 2))
    # stride 2 straight from the input (float32 AVX-512): masked edge loads, rows above /
    # below the input, steps of 8 / 7 / 14 rows with a partial last step
    yield C("dwdirect3x3-s2-14", (1, 3, 28, 28), (3, 1, 3, 3), groups=3, stride=2,
            padding=1)
    yield C("dwdirect3x3-s2-odd", (1, 2, 35, 113), (2, 1, 3, 3), groups=2, stride=2,
            padding=(1, 0))
    yield C("dwdirect5x5-s2-14", (1, 4, 28, 28), (4, 1, 5, 5), groups=4, stride=2,
            padding=2)
    yield C("dwdirect5x5-s2-22", (2, 2, 44, 27), (2, 1, 5, 5), groups=2, stride=2,
            padding=(2, 1))
    yield C("dwdirect5x5-s2-9", (1, 2, 19, 90), (2, 1, 5, 5), groups=2, stride=2,
            padding=(0, 2))
    yield C("dwrows3x3-colstride2", (1, 2, 9, 120), (2, 1, 3, 3), groups=2, stride=(1, 2),
            padding=1, dilation=(1, 2))
    yield C("stem7x7-s2-odd", (1, 3, 29, 45), (13, 3, 7, 7), stride=2, padding=3)
    yield C("stem7x7-s2-wide", (1, 3, 13, 71), (7, 3, 7, 7), stride=2, padding=3)
    yield C("stem7x7-s2-asym", (2, 3, 19, 23), (8, 3, 7, 7), stride=2, padding=(3, 2))
    yield C("stem7x7-s(2,3)", (1, 3, 21, 40), (5, 3, 7, 7), stride=(2, 3), padding=(3, 1))
    yield C("dense3x3-cout13", (1, 5, 9, 35), (13, 5, 3, 3), padding=1)
    yield C("dense3x3-cout7-b2", (2, 4, 7, 7), (7, 4, 3, 3), padding=1)
    yield C("dense3x3-s2-odd", (1, 6, 13, 33), (11, 6, 3, 3), stride=2, padding=1)
    yield C("dense1x1-wide", (1, 8, 3, 97), (9, 8, 1, 1))
    yield C("dense1x1-s2", (1, 5, 9, 67), (7, 5, 1, 1), stride=2)
    yield C("grouped-cog5", (1, 6, 9, 21), (10, 3, 3, 3), groups=2, padding=(0, 1))
    yield C("stride(3,2)-rows-outside", (1, 3, 8, 23), (4, 3, 3, 3), stride=(3, 2),
            padding=(4, 1))
    yield C("stride(2,2)-dil(3,1)", (1, 2, 19, 21), (3, 2, 3, 3), stride=2, dilation=(3, 1),
            padding=(3, 0))
    yield C("kernel-1x7", (1, 3, 5, 41), (4, 3, 1, 7), padding=(0, 3))
    yield C("kernel-7x1-s3", (1, 2, 23, 11), (3, 2, 7, 1), stride=3, padding=(3, 0))
    yield C("pad-right-only", (1, 2, 8, 30), (3, 2, 3, 3), padding="same", dilation=(1, 2))
    yield C("tall-1ch", (1, 1, 70, 5), (1, 1, 3, 3), padding=1)
    yield C("wide-1ch", (1, 1, 3, 150), (1, 1, 3, 3), padding=(0, 1), stride=(1, 2))
    yield C("pad-bigger-than-kernel", (1, 2, 4, 6), (3, 2, 2, 3), padding=(4, 5), stride=2)


FAST = [replace(c, dtype=dt, seed=i)
        for i, c in enumerate(_fast_path_cases()) for dt in ("float32", "float64")]


# Depthwise with at least a vector of channels (dwchan.h on avx2: a vector of channels per
# call): channel counts with a partial last vector, output rows shorter than a vector,
# exactly one, one plus a part (the last columns rewritten by an overlapping vector), strides,
# dilation, asymmetric and oversized padding, 1x1 / 7x7 / non-square kernels, batches.
def _dwchan_cases():
    C = Case
    yield C("dwc-7x7-8ch", (1, 8, 7, 7), (8, 1, 3, 3), groups=8, padding=1)
    yield C("dwc-14-13ch-b2", (2, 13, 14, 14), (13, 1, 3, 3), groups=13, padding=1)
    yield C("dwc-ow9", (1, 9, 9, 9), (9, 1, 3, 3), groups=9, padding=1)
    yield C("dwc-ow16-17ch", (1, 17, 5, 16), (17, 1, 3, 3), groups=17, padding=1)
    yield C("dwc-ow3-rows", (3, 8, 11, 3), (8, 1, 3, 3), groups=8, padding=1)
    yield C("dwc-s2-asym", (1, 12, 11, 17), (12, 1, 3, 3), groups=12, stride=2,
            padding=(1, 0))
    yield C("dwc-5x5-s2", (1, 10, 28, 28), (10, 1, 5, 5), groups=10, stride=2, padding=2)
    yield C("dwc-dil2", (1, 8, 12, 10), (8, 1, 3, 3), groups=8, dilation=2, padding=2)
    yield C("dwc-s3-2x4", (2, 9, 13, 19), (9, 1, 2, 4), groups=9, stride=3, padding=(0, 3))
    yield C("dwc-s(1,2)-dil(2,1)", (1, 11, 10, 21), (11, 1, 3, 3), groups=11,
            stride=(1, 2), dilation=(2, 1), padding=(2, 1))
    yield C("dwc-1x1", (1, 8, 5, 5), (8, 1, 1, 1), groups=8)
    yield C("dwc-7x7", (1, 11, 8, 9), (11, 1, 7, 7), groups=11, padding=3)
    yield C("dwc-pad-over-input", (1, 8, 2, 3), (8, 1, 3, 3), groups=8, padding=3)
    yield C("dwc-one-output", (1, 20, 3, 3), (20, 1, 3, 3), groups=20)
    yield C("dwc-no-bias", (1, 16, 6, 13), (16, 1, 3, 3), groups=16, padding=1, bias=False)


DWCHAN = [replace(c, dtype=dt, seed=100 + i)
          for i, c in enumerate(_dwchan_cases()) for dt in ("float32", "float64")]


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("case", DWCHAN, ids=lambda c: c.label())
def test_depthwise_channel_vectors(case, threads):
    """Every output written, with the right value, over a NaN-filled output, through the
    kernel module itself (thread counts that split the channel vectors unevenly)."""
    mod = _simd.load_family("_direct")
    ref, bound = reference(case)
    x, w, b = case.arrays()
    spec = convreg._frontend.spec.prepare(x, w, **case.kwargs())[0]
    out = np.full(spec.output_shape, np.nan, case.dtype)
    bias = b if b is not None else np.zeros(spec.c_out, case.dtype)
    mod.conv2d_direct(x, w, bias, out, spec.pt, spec.pl, spec.sh, spec.sw, spec.dh, spec.dw,
                      spec.groups, threads)
    ok, _, msg = compare(out, ref, bound, case.dtype)
    assert ok, msg


def test_depthwise_channel_vectors_are_chosen():
    """The cases above take the channel-vector path on avx2 builds (only there); fewer
    channels than a vector, a window over its cap, or two outputs per channel do not."""
    mod = _simd.load_family("_direct")
    on = mod.ISA == "avx2"
    for c in _dwchan_cases():
        spec = convreg._frontend.spec.prepare(np.empty(c.input_shape, np.float32),
                                              np.empty(c.weight_shape, np.float32),
                                              **c.kwargs())[0]
        for itemsize in (4, 8):
            p = mod.plan_info(spec.n, spec.groups, spec.cig, spec.cog, spec.oh, spec.ow,
                              spec.kh, spec.kw, spec.sh, spec.sw, spec.dh, spec.dw, itemsize,
                              2)
            assert bool(p["dwchan"]) == (on and spec.groups >= mod.VECTOR_BYTES // itemsize)
    # (n, groups, cig, cog, oh, ow, kh, kw, sh, sw, dh, dw, itemsize, threads)
    assert not mod.plan_info(1, 7, 1, 1, 7, 7, 3, 3, 1, 1, 1, 1, 4, 2)["dwchan"]
    assert not mod.plan_info(1, 64, 1, 1, 300, 300, 3, 3, 1, 1, 1, 1, 4, 2)["dwchan"]
    assert not mod.plan_info(1, 64, 1, 2, 7, 7, 3, 3, 1, 1, 1, 1, 4, 2)["dwchan"]
    if on:
        p = mod.plan_info(8, 960, 1, 1, 7, 7, 3, 3, 1, 1, 1, 1, 4, 2)
        assert p["dwchan"] and p["items"] == 8 * 960 // 8


def test_nan_and_inf_propagate_depthwise_channel_vectors():
    """Padding taps and the zero lanes of a partial channel vector still multiply: an inf
    weight times the padding is NaN on the edge, a NaN input spreads to its window only,
    and the channels past the last one never leak into the output."""
    for dtype in (np.float32, np.float64):
        x = np.ones((2, 11, 7, 9), dtype)
        x[1, 10, 3, 4] = np.nan
        w = np.ones((11, 1, 3, 3), dtype)
        w[2, 0, 0, 0] = np.inf
        out = convreg.conv2d(x, w, padding=1, groups=11, backend=BACKEND)
        ref = convreg.conv2d(x, w, padding=1, groups=11, backend="python")
        assert np.array_equal(np.isnan(out), np.isnan(ref))
        assert np.array_equal(np.isinf(out), np.isinf(ref))
        assert np.isnan(out[:, 2, 0]).all() and np.isnan(out[:, 2, :, 0]).all()
        assert np.isnan(out[1, 10, 2:5, 3:6]).all() and np.isfinite(out[0, 10]).all()


@pytest.mark.parametrize("case", FAST, ids=lambda c: c.label())
def test_fast_paths(case):
    r = check_case(BACKEND, case)
    assert r.ok, r.error


def test_tiling_is_exercised():
    """The cases above really span several row tiles and several channel chunks."""
    mod = _simd.load_family("_direct")
    # (n, groups, cig, cog, oh, ow, kh, kw, sh, sw, dh, dw, itemsize, threads)
    p = mod.plan_info(1, 1, 1, 1, 70, 5, 3, 3, 1, 1, 1, 1, 4, 2)
    assert p["tiles"] > 1
    p = mod.plan_info(1, 1, 5, 13, 9, 35, 3, 3, 1, 1, 1, 1, 4, 2)
    assert p["occ"] > 1 or p["tiles"] > 1
    p = mod.plan_info(1, 1, 3, 64, 112, 112, 7, 7, 2, 2, 1, 1, 4, 2)
    assert p["tiles"] > 1 and p["items"] >= 2


def test_row_path_is_exercised():
    """The dwrows cases above take the depthwise rows path with the chosen variant."""
    mod = _simd.load_family("_direct")
    hits = 0
    for c in FAST:
        if c.name.startswith("dwrows") and c.dtype == "float32":
            n, cin, h, w = c.input_shape
            spec = convreg._frontend.spec.prepare(np.empty(c.input_shape, np.float32),
                                         np.empty(c.weight_shape, np.float32),
                                         **c.kwargs())[0]
            p = mod.plan_info(n, spec.groups, spec.cig, spec.cog, spec.oh, spec.ow, spec.kh,
                              spec.kw, spec.sh, spec.sw, spec.dh, spec.dw, 4, 2)
            hits += bool(p["rowmode"])
    assert hits >= 6


def test_stride2_direct_path_is_exercised():
    """float32 stride-2 depthwise cases take the band-free path when AVX-512 runs."""
    mod = _simd.load_family("_direct")
    p = mod.plan_info(1, 240, 1, 1, 14, 14, 5, 5, 2, 2, 1, 1, 4, 2)
    assert p["dwdirect"] == (mod.ISA == "avx512")
    assert not mod.plan_info(1, 240, 1, 1, 14, 14, 5, 5, 2, 2, 1, 1, 8, 2)["dwdirect"]


def _variant_ids():
    out = []
    for v in _simd.cpu_variants():
        try:
            mod = _simd.load_family("_direct", v)
        except ImportError:
            continue
        if mod.__name__.endswith(v):
            out.append(v)
    return out


VARIANT_CASES = [c for c in FAST if c.name in (
    "dw3x3-odd", "dw5x5-s2-odd", "stem7x7-s2-odd", "dense3x3-cout13", "dw3x3-x2",
    "kernel-7x1-s3", "dwrows3x3-odd-rows", "dwrows5x5-s2", "dwrows3x3-s2")]


@pytest.mark.parametrize("variant", _variant_ids())
@pytest.mark.parametrize("case", VARIANT_CASES, ids=lambda c: c.label())
def test_each_simd_variant(variant, case):
    from convreg.backends.direct import CythonDirectBackend

    be = CythonDirectBackend(variant)
    assert be.variant == variant
    ref, bound = reference(case)
    x, w, b = case.arrays()
    out = convreg.conv2d(x, w, b, backend=[be], **case.kwargs())
    ok, worst, msg = compare(out, ref, bound, case.dtype)
    assert ok, msg


def test_info_names_variant():
    be = convreg.get_backend(BACKEND)
    assert be.info()["simd"] in _simd.ORDER


def _big(dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 16, 40, 40)).astype(dtype)
    w = rng.standard_normal((24, 16, 3, 3)).astype(dtype)
    b = rng.standard_normal(24).astype(dtype)
    return x, w, b


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_threads_give_identical_results(dtype):
    x, w, b = _big(dtype)
    outs = []
    for n in (1, 2, 3):
        with convreg.use_threads(n):
            outs.append(convreg.conv2d(x, w, b, padding=1, backend=BACKEND))
    xd = np.ascontiguousarray(x[:, :8])
    wd = np.ascontiguousarray(w[:8, :1])
    for n in (1, 2):
        with convreg.use_threads(n):
            outs.append(convreg.conv2d(xd, wd, None, padding=1, groups=8, stride=2,
                                       backend=BACKEND))
    assert np.array_equal(outs[0], outs[1]) and np.array_equal(outs[0], outs[2])
    assert np.array_equal(outs[3], outs[4])


def test_gil_released():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((8, 64, 56, 56)).astype(np.float32)
    w = rng.standard_normal((64, 64, 3, 3)).astype(np.float32)
    with convreg.use_threads(1):
        expected = convreg.conv2d(x[:1], w, padding=1, backend=BACKEND)
        out = []
        assert_releases_gil(lambda: out.append(convreg.conv2d(x, w, padding=1,
                                                               backend=BACKEND)))
    assert np.array_equal(out[-1][:1], expected)


LARGE = [  # (input, weight, stride, padding, dilation, groups): real layer shapes
    ((1, 3, 64, 70), (64, 3, 7, 7), 2, 3, 1, 1),
    ((1, 64, 30, 29), (64, 64, 3, 3), 1, 1, 1, 1),
    ((2, 32, 17, 19), (48, 32, 3, 3), 2, 1, 1, 1),
    ((1, 96, 33, 31), (96, 1, 3, 3), 1, 1, 1, 96),
    ((1, 96, 33, 31), (96, 1, 3, 3), 2, 1, 1, 96),
    ((1, 40, 29, 27), (40, 1, 5, 5), 2, 2, 1, 40),
    ((1, 40, 29, 27), (80, 1, 5, 5), 1, (2, 1), 1, 40),
    ((1, 300, 9, 11), (20, 300, 3, 3), 1, 1, 2, 1),       # band above its cache cap
    ((1, 64, 20, 20), (64, 16, 3, 3), 1, 1, 1, 4),
    ((1, 8, 9, 1200), (4, 8, 3, 5), 1, (1, 2), 1, 1),      # very wide rows
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("layer", LARGE, ids=lambda l: f"{l[0]}x{l[1]}s{l[2]}g{l[5]}")
def test_layers_against_torch(layer, dtype):
    torch = pytest.importorskip("torch")
    xs, ws, stride, padding, dilation, groups = layer
    rng = np.random.default_rng(7)
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(ws[0]).astype(dtype)
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    out = convreg.conv2d(x, w, b, backend=BACKEND, **kw)
    with torch.no_grad():
        t = lambda a: torch.from_numpy(a.astype(np.float64))
        ref = torch.nn.functional.conv2d(t(x), t(w), t(b), **kw).numpy()
        mag = torch.nn.functional.conv2d(t(np.abs(x)), t(np.abs(w)), t(np.abs(b)),
                                         **kw).numpy()
    ok, worst, msg = compare(out, ref, summation_bound(mag, ws[1] * ws[2] * ws[3], dtype), dtype)
    assert ok, msg


def test_nan_and_inf_propagate():
    x = np.ones((1, 2, 6, 7), np.float32)
    x[0, 0, 2, 3] = np.nan
    x[0, 1, 4, 1] = np.inf
    w = np.zeros((3, 2, 3, 3), np.float32)   # zero weights must still multiply the NaN
    out = convreg.conv2d(x, w, padding=1, backend=BACKEND)
    ref = convreg.conv2d(x, w, padding=1, backend="python")
    assert np.array_equal(np.isnan(out), np.isnan(ref))
    assert np.isnan(out[:, :, 1:4, 2:5]).all()
    xd = np.ones((1, 3, 9, 11), np.float64)
    xd[0, 1, 4, 5] = np.inf
    wd = np.ones((3, 1, 3, 3), np.float64)
    out = convreg.conv2d(xd, wd, padding=1, groups=3, backend=BACKEND)
    assert np.isinf(out[0, 1, 3:6, 4:7]).all() and np.isfinite(out[0, 0]).all()


def test_nan_and_inf_propagate_depthwise_stride2():
    """Padding taps of the stride-2 direct path still multiply (inf / NaN weights)."""
    for k in (3, 5):
        x = np.ones((1, 2, 28, 28), np.float32)
        x[0, 1, 9, 6] = np.nan
        w = np.ones((2, 1, k, k), np.float32)
        w[0, 0, 0, 0] = np.inf          # times the zero padding above row 0: NaN
        out = convreg.conv2d(x, w, padding=k // 2, stride=2, groups=2, backend=BACKEND)
        ref = convreg.conv2d(x, w, padding=k // 2, stride=2, groups=2, backend="python")
        assert np.array_equal(np.isnan(out), np.isnan(ref))
        assert np.isnan(out[0, 0, 0]).all() and np.isnan(out[0, 1]).any()
        assert np.array_equal(np.isinf(out), np.isinf(ref))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("xs,ws,kw", [
    ((2, 3, 9, 14), (5, 3, 3, 3), dict(padding=1)),              # band rows of 16: one vector
    ((1, 2, 7, 13), (7, 2, 3, 3), dict()),                       # rows of 13 outputs in 15
    ((1, 3, 23, 23), (13, 3, 7, 7), dict(stride=2, padding=3)),  # the stem, odd size
    ((3, 1, 28, 28), (9, 1, 5, 5), dict()),                      # MNIST-like, no padding
    ((1, 4, 5, 40), (6, 4, 1, 1), dict()),                       # band rows = output rows
    ((1, 2, 6, 9), (3, 2, 3, 3), dict(dilation=(1, 4), padding=(1, 4))),
    ((1, 2, 4, 5), (3, 2, 3, 3), dict(padding=1)),               # rows shorter than a vector
    ((1, 3, 70, 19), (8, 3, 3, 3), dict(padding=1)),             # several row tiles
])
@pytest.mark.parametrize("threads", [1, 2])
def test_blocks_store_into_every_output_once(xs, ws, kw, dtype, threads):
    """Blocks write straight into the output rows (masked stores, AVX-512) or through the
    output tile: every output is written, with the right value, over a NaN-filled
    output (np.empty could hand back a previous call's correct result)."""
    mod = _simd.load_family("_direct")
    case = Case("store", xs, ws, dtype=dtype, **kw)
    ref, bound = reference(case)
    x, w, b = case.arrays()
    spec = convreg._frontend.spec.prepare(x, w, **case.kwargs())[0]
    out = np.full(spec.output_shape, np.nan, dtype)
    mod.conv2d_direct(x, w, b, out, spec.pt, spec.pl, spec.sh, spec.sw, spec.dh, spec.dw,
                      spec.groups, threads)
    ok, _, msg = compare(out, ref, bound, dtype)
    assert ok, msg
    p = mod.plan_info(spec.n, spec.groups, spec.cig, spec.cog, spec.oh, spec.ow, spec.kh,
                      spec.kw, spec.sh, spec.sw, spec.dh, spec.dw, np.dtype(dtype).itemsize,
                      threads)
    lanes = mod.VECTOR_BYTES // np.dtype(dtype).itemsize
    assert p["dstore"] == (mod.ISA == "avx512" and p["wk"] >= lanes)


def test_readonly_inputs_and_no_bias():
    x, w, b = _big(np.float64)
    x.flags.writeable = False
    w.flags.writeable = False
    out = convreg.conv2d(x[:1, :, :9, :13], w, None, padding=(2, 0), stride=(1, 2),
                         backend=BACKEND)
    ref = convreg.conv2d(x[:1, :, :9, :13], w, None, padding=(2, 0), stride=(1, 2),
                         backend="python")
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)
