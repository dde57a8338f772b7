"""The cython-im2col backend against the reference: harness grid, band edges, workspace
setting, groups, 1x1 paths, threads and the GIL."""

import functools
import threading

import numpy as np
import pytest

import convreg
from conftest import assert_releases_gil
from convreg.harness import check_case, compare, random_cases, reference, standard_cases, Case

im2col = pytest.importorskip("convreg.backends.im2col")
from convreg.backends import _gradops  # noqa: E402
Backend = im2col.CythonIm2colBackend

NAME = "cython-im2col"


@pytest.mark.parametrize("case", standard_cases(), ids=lambda c: c.label())
def test_standard_grid(case):
    r = check_case(NAME, case)
    assert r.ok, r.error


@pytest.mark.parametrize("case", random_cases(60, seed=4), ids=lambda c: c.label())
def test_random_cases(case):
    r = check_case(NAME, case)
    assert r.ok, r.error


def _agree(backend, case):
    """Run ``backend`` (an object) on ``case`` and compare with the reference."""
    ref, bound = reference(case)
    x, w, b = case.arrays()
    out = convreg.conv2d(x, w, b, backend=backend, **case.kwargs())
    ok, worst, msg = compare(out, ref, bound, case.dtype)
    assert ok, msg


BAND_CASES = [
    # (name, input, weight, kwargs): output sizes that bands don't divide evenly
    ("3x3-pad1", (2, 3, 7, 9), (4, 3, 3, 3), dict(padding=1)),
    ("s2-odd", (1, 2, 11, 13), (3, 2, 3, 3), dict(stride=2, padding=(1, 2))),
    ("dilated", (2, 2, 10, 7), (3, 2, 3, 2), dict(dilation=(2, 3), padding=(2, 1))),
    ("groups", (1, 6, 9, 5), (4, 3, 3, 3), dict(groups=2, padding=1)),
    ("1x1-s2", (2, 5, 9, 7), (3, 5, 1, 1), dict(stride=2)),
    ("1x1-pad", (1, 4, 5, 6), (3, 4, 1, 1), dict(padding=(2, 1))),
    ("1x1-direct", (3, 4, 5, 7), (6, 4, 1, 1), {}),
    ("wide-kernel", (1, 2, 5, 40), (2, 2, 1, 35), dict(padding=(0, 3))),
]


BAND_CASES += [
    # stride 1 with ow == w: the flat-copy fill
    ("same-dilated", (2, 3, 9, 8), (4, 3, 3, 3), dict(padding="same", dilation=(2, 2))),
    ("same-even", (1, 2, 7, 10), (3, 2, 4, 2), dict(padding="same")),
    ("same-wide", (1, 2, 3, 11), (3, 2, 1, 9), dict(padding=(0, 4))),
    ("many-cout", (1, 3, 9, 11), (40, 3, 3, 3), dict(padding=1)),      # SHARED splits rows
    ("many-cout-1x1", (2, 8, 6, 7), (36, 8, 1, 1), {}),
]
MODES = {"rule": None, "serial-blas2": (im2col.SERIAL, 1), "tasks": (im2col.TASKS, 2),
         "shared": (im2col.SHARED, 2), "shared3": (im2col.SHARED, 3)}


@pytest.fixture(params=list(MODES))
def mode(request, monkeypatch):
    """Force each kernel mode (the size rule would run these small cases serially)."""
    forced = MODES[request.param]
    if forced is not None:
        monkeypatch.setattr(im2col, "split_threads", lambda spec, t: forced)
        monkeypatch.setattr(im2col, "SMALL_FLOPS", 0)
    return request.param


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("workspace_mb", [1e-4, 0.002, 0.01])
@pytest.mark.parametrize("name,xs,ws,kw", BAND_CASES, ids=[c[0] for c in BAND_CASES])
def test_band_edges(name, xs, ws, kw, workspace_mb, mode, dtype):
    be = Backend(workspace_mb=workspace_mb)
    case = Case(name, xs, ws, dtype=dtype, **kw)
    with convreg.use_threads(2):
        _agree(be, case)
    spec = _spec(xs, ws, dtype, **kw)
    plan = be.plan(spec, threads=2)
    one_pixel = spec.reduction * np.dtype(dtype).itemsize
    buffers = plan.omp_threads if plan.mode == im2col.TASKS else 1
    assert plan.workspace_bytes <= max(workspace_mb * 2**20, buffers * one_pixel)


@pytest.mark.parametrize("case", standard_cases()[::3], ids=lambda c: c.label())
def test_standard_grid_every_mode(case, mode):
    with convreg.use_threads(2):
        r = check_case(NAME, case)
    assert r.ok, r.error


def call_context():
    from convreg._settings.context import call_context

    return call_context()


def _spec(xs, ws, dtype="float32", **kw):
    from convreg._frontend.spec import prepare

    return prepare(np.zeros(xs, dtype), np.zeros(ws, dtype), **kw)[0]


def test_tiny_workspace_gives_one_pixel_bands():
    spec = _spec((1, 3, 7, 9), (4, 3, 3, 3), padding=1)
    plan = Backend(workspace_mb=1e-4).plan(spec, threads=1)
    assert plan.band == 1 and plan.nbands == spec.oh * spec.ow
    # A bound that holds one output row and a half: bands are one row.
    row_bytes = spec.reduction * 4 * spec.ow
    plan = Backend(workspace_mb=1.5 * row_bytes / 2**20).plan(spec, threads=1)
    assert plan.band == spec.ow


def test_small_weight_slices_take_small_bands():
    """Builds without the fused mode keep a batch-1 column buffer near
    CACHE_BYTES_SMALL_SLICE where W's K-chunk slice is small (3x3/2 64->128: 128 rows), near
    CACHE_BYTES where it is large (256->512) or each thread has whole images."""
    from convreg.backends import im2col as mod

    small = _spec((1, 64, 56, 56), (128, 64, 3, 3), stride=2, padding=1)
    large = _spec((1, 128, 56, 56), (512, 128, 3, 3), stride=2, padding=1)
    batch = _spec((8, 64, 56, 56), (128, 64, 3, 3), stride=2, padding=1)
    b = Backend()

    def col_bytes(spec):
        plan = b.plan(spec, threads=2)
        assert plan.own_kernel and not plan.direct
        return spec.reduction * 4 * plan.band

    if mod.has_fused_mode() or not mod._im2col.HAVE_KERNEL:
        pytest.skip("the rule is for builds with the GEMM kernel and no fused mode")
    assert col_bytes(small) <= 1.5 * mod.CACHE_BYTES_SMALL_SLICE
    assert col_bytes(large) > 1.5 * mod.CACHE_BYTES_SMALL_SLICE
    assert col_bytes(batch) > 1.5 * mod.CACHE_BYTES_SMALL_SLICE


@pytest.mark.parametrize("threads", [1, 2])
def test_workspace_never_above_bound(threads):
    # N=8, 64->64, 112x112, 3x3: the full buffer would be 231 MB.
    spec = _spec((8, 64, 112, 112), (64, 64, 3, 3), padding=1)
    for mb in (32, 1, 0.1):
        plan = Backend(workspace_mb=mb).plan(spec, threads=threads)
        assert 0 < plan.workspace_bytes <= mb * 2**20
        assert plan.band * plan.nbands >= spec.oh * spec.ow


def test_workspace_from_config_file(tmp_path, monkeypatch):
    cfg = tmp_path / "convreg.toml"
    cfg.write_text("[backends.cython-im2col]\nworkspace_mb = 0.001\n")
    monkeypatch.setenv("CONVREG_CONFIG", str(cfg))
    be = Backend()
    assert call_context().options_for(NAME)["workspace_mb"] == 0.001
    spec = _spec((1, 3, 12, 10), (4, 3, 3, 3), padding=1)
    plan = be.plan(spec, 1, call_context().options_for(NAME)["workspace_mb"])
    assert plan.workspace_bytes <= 0.001 * 2**20 and plan.nbands > 1
    _agree(be, Case("cfg", (1, 3, 12, 10), (4, 3, 3, 3), padding=1))
    # The dispatcher resolves the setting per call and hands it to the backend.
    check = check_case(NAME, Case("cfg-registered", (2, 3, 12, 10), (4, 3, 3, 3), padding=1))
    assert check.ok, check.error
    # A change of the file applies to the next call.
    cfg.write_text("[backends.cython-im2col]\nworkspace_mb = 64\n")
    assert call_context().options_for(NAME)["workspace_mb"] == 64


def test_invalid_workspace_argument():
    with pytest.raises(convreg.ConfigError):
        Backend(workspace_mb=0)
    with pytest.raises(convreg.ConfigError):
        Backend(workspace_mb="big")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", [
    Case("groups2", (2, 8, 9, 9), (6, 4, 3, 3), groups=2, padding=1),
    Case("groups4-s2", (1, 8, 11, 10), (12, 2, 3, 3), groups=4, stride=2, padding=(1, 0)),
    Case("depthwise", (2, 6, 10, 11), (6, 1, 3, 3), groups=6, padding=1),
    Case("depthwise-x3-dil", (1, 4, 12, 12), (12, 1, 3, 3), groups=4, dilation=2, padding=2),
    Case("depthwise5x5-s2", (1, 5, 13, 14), (5, 1, 5, 5), groups=5, stride=2, padding=2),
    Case("1x1-direct", (2, 16, 7, 9), (8, 16, 1, 1)),
    Case("1x1-direct-groups", (2, 16, 7, 9), (8, 4, 1, 1), groups=4),
    Case("1x1-stride2", (2, 16, 9, 9), (8, 16, 1, 1), stride=2),
    Case("1x1-stride(1,3)", (1, 6, 8, 10), (4, 6, 1, 1), stride=(1, 3)),
    Case("1x1-padded", (1, 6, 5, 5), (4, 6, 1, 1), padding=1),
    Case("no-bias", (2, 5, 8, 8), (7, 5, 3, 3), bias=False, padding=1),
], ids=lambda c: c.name)
def test_groups_depthwise_and_1x1(case, dtype):
    from dataclasses import replace

    for threads in (1, 2):
        with convreg.use_threads(threads):
            r = check_case(NAME, replace(case, dtype=dtype))
        assert r.ok, r.error


def test_direct_path_is_chosen():
    be = Backend()
    assert be.plan(_spec((1, 8, 5, 5), (4, 8, 1, 1)), threads=1).direct
    assert be.plan(_spec((1, 8, 5, 5), (4, 8, 1, 1)), threads=1).workspace_bytes == 0
    assert not be.plan(_spec((1, 8, 5, 5), (4, 8, 1, 1), stride=2), threads=1).direct
    assert not be.plan(_spec((1, 8, 5, 5), (4, 8, 1, 1), padding=1), threads=1).direct


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [
    ((2, 32, 20, 20), (64, 32, 3, 3), dict(padding=1)),     # BLAS-threaded plan
    ((3, 8, 17, 15), (8, 8, 3, 3), dict(padding=1)),        # OpenMP-over-bands plan
    ((1, 12, 19, 21), (12, 1, 3, 3), dict(groups=12, padding=1, stride=2)),
], ids=["dense", "small", "depthwise"])
def test_threads_1_and_2_agree(shape, dtype):
    xs, ws, kw = shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(ws[0]).astype(dtype)
    outs = []
    for t in (1, 2):
        with convreg.use_threads(t):
            outs.append(convreg.conv2d(x, w, b, backend=NAME, **kw))
    ref, bound = reference(Case("t", xs, ws, dtype=dtype, **kw))
    for out in outs:
        ok, _, msg = compare(out, ref, bound, dtype)
        assert ok, msg
    # Two results each within the bound differ by at most twice the bound.
    assert np.all(np.abs(outs[0].astype(np.float64) - outs[1]) <= 2 * bound)


def test_nan_and_inf_propagate():
    x = np.ones((1, 2, 5, 5), np.float32)
    x[0, 0, 2, 2] = np.nan
    x[0, 1, 0, 0] = np.inf
    w = np.ones((1, 2, 3, 3), np.float32)
    out = convreg.conv2d(x, w, padding=1, backend=NAME)[0, 0]
    assert np.isnan(out[1:4, 1:4]).all()
    assert np.isposinf(out[0, 0])
    assert np.isfinite(out[4, 0])


def test_concurrent_calls_agree():
    """Two Python threads convolve at once; both finish and agree with the reference."""
    x, w, _ = Case("gil", (2, 16, 20, 20), (16, 16, 3, 3), bias=False).arrays()
    results = [None, None]
    inside = threading.Barrier(2, timeout=30)

    def work(k):
        with convreg.use_threads(1):
            inside.wait()
            for _ in range(3):
                results[k] = convreg.conv2d(x, w, padding=1, backend=NAME)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    # Concurrent BLAS calls may block differently, so agreement is within the bound.
    ref, bound = reference(Case("gil", x.shape, w.shape, bias=False, padding=1))
    for r in results:
        assert r is not None
        ok, _, msg = compare(r, ref, bound, "float32")
        assert ok, msg


def test_gil_released():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((8, 64, 56, 56)).astype(np.float32)
    w = rng.standard_normal((64, 64, 3, 3)).astype(np.float32)
    with convreg.use_threads(1):
        assert_releases_gil(lambda: convreg.conv2d(x, w, padding=1, backend=NAME))


def test_info_reports_workspace_and_blas():
    info = Backend(workspace_mb=8).info()
    assert info["workspace_mb"] == 8
    assert "blas" in info and "variant" in info


def test_read_only_inputs():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    expected = convreg.conv2d(x, w, b, padding=1, backend=NAME)
    for a in (x, w, b):
        a.flags.writeable = False
    np.testing.assert_array_equal(convreg.conv2d(x, w, b, padding=1, backend=NAME), expected)


def _variant_modules():
    from convreg.backends._simd import ORDER, cpu_variants, load_family

    mods = {}
    for v in ORDER:
        if v in cpu_variants():
            try:
                mod = load_family("_im2col", v)
            except ImportError:
                continue
            mods[mod.__name__] = mod
    return list(mods.values())


KERNEL_CASES = [
    # (input, weight, kwargs): output channels around the kernel's 12-row tiles and
    # band widths around its 32 (float32) / 16 (float64) columns
    ((1, 5, 9, 11), (12, 5, 3, 3), dict(padding=1)),
    ((2, 4, 7, 9), (13, 4, 3, 3), dict(padding=(1, 0))),
    ((1, 6, 10, 10), (25, 6, 3, 3), dict(padding=1, stride=2)),
    ((1, 8, 6, 7), (40, 8, 1, 1), {}),
    ((1, 6, 12, 12), (26, 3, 3, 3), dict(groups=2, dilation=2, padding=2)),
    # K = 360 > the kernel's K chunk (256 float32 / 128 float64): chunks add into the
    # output, and the partial last row block must not add twice
    ((1, 40, 5, 7), (25, 40, 3, 3), dict(padding=(1, 0))),
    ((1, 30, 4, 6), (13, 30, 3, 4), dict(padding=1)),
]


@functools.lru_cache(maxsize=None)
def _cached_reference(xs, ws, kw_items, dtype, bias=True):
    return reference(Case("kernel", xs, ws, dtype=dtype, bias=bias, **dict(kw_items)))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("own", [True, False], ids=["own-kernel", "blas"])
@pytest.mark.parametrize("mode", [im2col.SERIAL, im2col.TASKS, im2col.SHARED],
                         ids=["serial", "tasks", "shared"])
@pytest.mark.parametrize("xs,ws,kw", KERNEL_CASES, ids=[str(c[1]) for c in KERNEL_CASES])
def test_every_variant_and_gemm(xs, ws, kw, mode, own, dtype):
    """Each built SIMD variant, with its own GEMM kernel and with BLAS, in every mode."""
    from convreg.backends._blas import blas_threads

    case = Case("kernel", xs, ws, dtype=dtype, **kw)
    ref, bound = _cached_reference(xs, ws, tuple(sorted(kw.items())), dtype)
    x, w, b = case.arrays()
    spec = _spec(xs, ws, dtype, **kw)
    for mod in _variant_modules():
        for band in (7, 33, spec.oh * spec.ow):
            out = np.full(spec.output_shape, np.nan, dtype)
            threads = 1 if mode == im2col.SERIAL else 2
            work = np.empty(threads * spec.reduction * band, dtype)
            with blas_threads(1):
                mod.conv2d(x, w, b, out, work, spec.sh, spec.sw, spec.pt, spec.pl, spec.dh,
                           spec.dw, spec.groups, band, threads, mode, own)
            ok, _, msg = compare(out, ref, bound, dtype)
            assert ok, f"{mod.__name__} band={band}: {msg}"


def test_kernel_propagates_nan_and_inf():
    x = np.ones((1, 3, 6, 40), np.float32)
    x[0, 1, 2, 33] = np.nan
    x[0, 2, 4, 5] = np.inf
    w = np.ones((16, 3, 3, 3), np.float32)
    out = convreg.conv2d(x, w, padding=1, backend=NAME)
    assert np.isnan(out[:, :, 1:4, 32:35]).all()
    assert np.isposinf(out[:, :, 4, 5]).all()
    assert np.isfinite(out[:, :, 0, :30]).all()


@pytest.mark.parametrize("shape", [
    ((1, 64, 56, 56), (64, 64, 3, 3)),
    ((1, 512, 7, 7), (512, 512, 3, 3)),
    ((8, 128, 28, 28), (128, 128, 3, 3)),
    ((1, 32, 40, 40), (4, 32, 3, 3)),          # BLAS path (fewer than 8 output channels)
], ids=["56x64", "7x512", "batch8", "blas-path"])
def test_threads_setting_governs_and_never_both(shape):
    spec = _spec(*shape, padding=1)
    be = Backend()
    one = be.plan(spec, threads=1)
    assert one.mode in (im2col.SERIAL, im2col.FLAT)
    assert (one.omp_threads, one.blas_threads) == (1, 1)
    two = be.plan(spec, threads=2)
    assert two.omp_threads == 2 and two.blas_threads == 1
    assert two.mode in (im2col.TASKS, im2col.SHARED, im2col.FLAT)
    with convreg.use_threads(1):
        assert be.plan(spec) == one
    # Small calls stay on the calling thread whatever the setting.
    tiny = _spec((1, 8, 16, 16), (8, 8, 3, 3), padding=1)
    assert be.plan(tiny, threads=2).omp_threads == 1


def test_refuses_gemm_dimensions_beyond_32_bits():
    from dataclasses import replace

    spec = _spec((1, 2, 5, 5), (3, 2, 3, 3))
    assert Backend().supports(spec)
    huge = replace(spec, oh=2**16, ow=2**16)
    answer = Backend().supports(huge)
    assert not answer and "32-bit" in answer.reason


FLAT_CASES = [
    # (input, weight, kwargs): stride 1, output as wide as the input (the fused mode)
    ((1, 3, 5, 7), (8, 3, 3, 3), dict(padding=1)),
    ((2, 16, 9, 11), (20, 16, 3, 3), dict(padding=1)),              # rows not a multiple of 8
    ((1, 8, 33, 33), (16, 8, 5, 5), dict(padding=2)),               # tail panel > 16 pixels
    ((1, 8, 10, 10), (16, 4, 3, 3), dict(padding=2, dilation=2, groups=2)),
    ((3, 40, 7, 13), (24, 40, 3, 3), dict(padding=(1, 1))),          # K-chunks (360 > 256)
    ((1, 300, 6, 6), (8, 300, 3, 3), dict(padding=1)),              # K = 2700: many chunks
    ((1, 4, 3, 3), (8, 4, 7, 7), dict(padding=3)),                  # kernel wider than image
    ((1, 2, 7, 10), (9, 2, 4, 2), dict(padding="same")),            # even kernel, odd pad
    ((2, 5, 4, 30), (12, 5, 1, 9), dict(padding=(0, 4))),           # stride 1, no row pad
    ((1, 6, 14, 14), (64, 6, 3, 3), dict(padding=1)),               # 196 pixels: 6 panels + 4
    ((1, 3, 2, 70), (16, 3, 2, 3), dict(padding=(0, 1))),           # fewer rows out than in
    ((2, 260, 5, 9), (40, 260, 1, 1), dict()),                      # 1x1 reducing: K-chunks
    # row blocks: 12-row tiles, then 8-row ones (the last may end at M, overlapping)
    ((1, 260, 6, 6), (28, 260, 3, 3), dict(padding=1)),     # 12 + 2 x 8 rows, K-chunks
    ((2, 7, 9, 9), (13, 7, 3, 3), dict(padding=1)),         # 12 rows + 8 ending at row 13
    ((1, 5, 7, 7), (44, 5, 3, 3), dict(padding=1)),         # 3 x 12 + 8; 49 pixels
    # remainder pixels past the last whole vector (<= 8) as dot products along K, in the
    # last panel's row loop (or alone when there is no panel)
    ((1, 7, 7, 7), (13, 7, 3, 3), dict(padding=1)),         # 48 + 1 pixel, rows 12 + 1
    ((1, 5, 4, 6), (20, 5, 3, 3), dict(padding=1)),         # 16 + 8 pixels (two groups)
    ((2, 3, 2, 2), (10, 3, 3, 3), dict(padding=1)),         # 4 pixels, no panel at all
    ((1, 260, 7, 7), (118, 260, 3, 3), dict(padding=1)),    # W > 1 MiB, two K-chunks
    ((1, 9, 5, 5), (16, 9, 3, 3), dict(padding=1)),         # 16 + 9: a vector tile again
    # strided: the fused mode on stride-phase planes (flat_planes >= 0)
    ((1, 6, 14, 14), (16, 6, 3, 3), dict(stride=2, padding=1)),     # ResNet's downsampling 3x3
    ((1, 3, 23, 23), (16, 3, 7, 7), dict(stride=2, padding=3)),     # the stem, odd size
    ((2, 5, 13, 11), (16, 5, 3, 3), dict(stride=(2, 3), padding=1)),
    ((1, 4, 12, 12), (16, 2, 3, 3), dict(stride=2, padding=3, dilation=3, groups=2)),
    ((1, 3, 8, 8), (8, 3, 4, 4), dict(stride=2, padding=1)),        # even kernel
    ((1, 40, 9, 9), (300, 40, 3, 3), dict(stride=2, padding=1)),    # K-chunks, 300 rows
    ((1, 6, 10, 10), (8, 6, 3, 3), dict(stride=3, padding=1)),      # nine phases
    ((3, 5, 9, 9), (16, 5, 3, 3), dict(stride=2, padding=1)),       # images in 2 + 1 copies
    ((1, 2, 5, 30), (9, 2, 1, 9), dict(stride=(1, 2), padding=(0, 4))),  # column phases only
]


@pytest.mark.skipif(not im2col._im2col.HAVE_FLAT, reason="no fused mode (avx512 build) on this CPU")
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("parts", [(1, 1, 1), (1, 1, 2), (2, 1, 2), (1, 3, 2), (2, 2, 3)],
                         ids=lambda p: "m{}p{}t{}".format(*p))
@pytest.mark.parametrize("xs,ws,kw", FLAT_CASES, ids=[str(c[:2]) for c in FLAT_CASES])
def test_fused_mode_every_split(xs, ws, kw, parts, bias):
    """Mode 3 (fused im2col + GEMM) with row and pixel parts over 1-3 threads, on the
    input (stride 1) or on its stride-phase planes (strided)."""
    mparts, pparts, threads = parts
    case = Case("flat", xs, ws, bias=bias, **kw)
    ref, bound = _cached_reference(xs, ws, tuple(sorted(kw.items())), "float32", bias)
    x, w, b = case.arrays()
    x_before = x.copy()
    spec = _spec(xs, ws, **kw)
    mod = im2col._im2col
    planes = mod.flat_planes(spec.n, spec.c_in, spec.h, spec.w, spec.oh, spec.ow, spec.kh,
                             spec.kw, spec.sh, spec.sw, spec.dh, spec.dw, spec.pt, spec.pl,
                             threads)
    images = min(spec.n, threads)       # the images whose planes are held at once
    assert planes == (0 if spec.sh == spec.sw == 1 else images * spec.c_in * spec.sh * spec.sw)
    if spec.cog < 8 * mparts:
        mparts = 1
    need = mod.flat_work(spec.cig, spec.kh * spec.kw, spec.oh * spec.ow, threads, planes)
    work = np.full(need, np.nan, np.float32)
    out = np.full(spec.output_shape, np.nan, np.float32)
    mod.conv2d(x, w, b, out, work, spec.sh, spec.sw, spec.pt, spec.pl, spec.dh, spec.dw,
               spec.groups, 0, threads, im2col.FLAT, True, mparts, pparts)
    ok, _, msg = compare(out, ref, bound, "float32")
    assert ok, msg
    assert np.array_equal(x, x_before)
    with pytest.raises(ValueError, match="work holds"):
        mod.conv2d(x, w, b, out, work[:-1], spec.sh, spec.sw, spec.pt, spec.pl, spec.dh,
                   spec.dw, spec.groups, 0, threads, im2col.FLAT, True, mparts, pparts)


@pytest.mark.skipif(not im2col._im2col.HAVE_FLAT, reason="no fused mode (avx512 build) on this CPU")
@pytest.mark.parametrize("xs,ws,kw,planes", [
    ((1, 64, 56, 56), (64, 64, 3, 3), dict(stride=2, padding=1), 64 * 4),
    ((2, 3, 224, 224), (64, 3, 7, 7), dict(stride=2, padding=3), 2 * 3 * 4),
    # a batch: the planes of one image per thread at a time, not the batch's
    ((8, 64, 56, 56), (128, 64, 3, 3), dict(stride=2, padding=1), 2 * 64 * 4),
    ((1, 6, 10, 10), (8, 6, 3, 3), dict(stride=3, padding=1), 6 * 9),
    ((1, 8, 12, 12), (8, 8, 3, 3), dict(padding=1), 0),            # stride 1: the input
    # declined: a phase no tap reads (1x1 stride 2 would copy four planes to use one)
    ((1, 3, 8, 8), (8, 3, 1, 1), dict(stride=2), -1),
    # declined: the last output row's last tap reads input row 6 (of 7) = plane row 3,
    # past the 3-row plane
    ((1, 6, 7, 7), (8, 6, 3, 3), dict(stride=2), -1),
    ((1, 6, 9, 9), (8, 6, 3, 3), dict(stride=2), -1),
    ((1, 8, 12, 12), (8, 8, 3, 3), dict(), -1),                    # stride 1, narrower output
])
def test_fused_mode_phase_planes(xs, ws, kw, planes):
    spec = _spec(xs, ws, **kw)
    got = im2col._im2col.flat_planes(spec.n, spec.c_in, spec.h, spec.w, spec.oh, spec.ow,
                                     spec.kh, spec.kw, spec.sh, spec.sw, spec.dh, spec.dw,
                                     spec.pt, spec.pl, 2)
    assert got == planes
    plan = Backend().plan(spec, threads=2)
    assert (plan.mode == im2col.FLAT) == (planes >= 0)
    if planes < 0:
        return
    # The plan's workspace holds the planes on top of the panels: strided, room for a
    # scratch per thread (a batch: each thread copies and multiplies its own images).
    taps, ohw, t = spec.kh * spec.kw, spec.oh * spec.ow, plan.omp_threads
    flat = im2col._im2col.flat_work(spec.cig, taps, ohw, t, planes)
    assert plan.workspace_bytes == 4 * flat
    if planes == 0:
        assert flat == im2col._im2col.flat_work(spec.cig, taps, ohw, t)
    else:
        one = im2col._im2col.flat_work(spec.cig, taps, ohw, 1)
        assert flat == t * (one + 16) + planes * ohw


def test_fused_mode_declines_sizes_past_32_bit_lane_arithmetic():
    """The panel masks compare rows, columns and tap shifts as 32-bit ints."""
    planes = im2col._im2col.flat_planes
    args = dict(n=1, c_in=8, h=12, w=12, oh=12, ow=12, kh=3, kw=3, sh=1, sw=1, dh=1, dw=1,
                pt=1, pl=1, threads=2)
    assert planes(*args.values()) == 0
    for name, value in [("h", 2**30), ("oh", 2**30), ("pt", 2**30), ("dh", 2**29)]:
        big = dict(args, **{name: value})
        assert planes(*big.values()) == -1, name


@pytest.mark.skipif(not im2col._im2col.HAVE_FLAT, reason="no fused mode (avx512 build) on this CPU")
def test_fused_strided_mode_nan_inf_and_readonly_input():
    """Stride-phase copies keep NaN and inf where they were and never write the input;
    padding stays an exact zero (inf only from real inputs)."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 16, 15, 15)).astype(np.float32)
    w = rng.standard_normal((24, 16, 3, 3)).astype(np.float32)
    x[0, 2, 7, 7] = np.nan
    x[0, 3, 14, 14] = np.inf
    x.setflags(write=False)
    spec = _spec(x.shape, w.shape, stride=2, padding=1)
    assert Backend().plan(spec, threads=2).mode == im2col.FLAT
    out = convreg.conv2d(x, w, stride=2, padding=1, backend=NAME)
    ref = convreg.conv2d(x, w, stride=2, padding=1, backend="python")
    assert np.array_equal(np.isnan(out), np.isnan(ref))
    assert np.array_equal(np.isinf(out), np.isinf(ref))
    assert np.isnan(out[0, :, 3:5, 3:5]).all()          # outputs whose window holds the NaN
    assert not np.isnan(out[0, :, 0, 0]).any()
    fin = np.isfinite(ref)
    assert np.allclose(out[fin], ref[fin], rtol=1e-4, atol=1e-3)


@pytest.mark.skipif(not im2col._im2col.HAVE_FLAT, reason="no fused mode (avx512 build) on this CPU")
def test_fused_mode_is_planned_within_the_bound():
    spec = _spec((1, 64, 56, 56), (64, 64, 3, 3), padding=1)
    plan = Backend().plan(spec, threads=2)
    assert plan.mode == im2col.FLAT and plan.omp_threads == 2 and plan.blas_threads == 1
    assert (plan.mparts, plan.pparts) == (1, 2)
    big = Backend().plan(_spec((1, 256, 14, 14), (256, 256, 3, 3), padding=1), threads=2)
    assert (big.mode, big.mparts, big.pparts) == (im2col.FLAT, 2, 1)
    batch = Backend().plan(_spec((8, 128, 28, 28), (128, 128, 3, 3), padding=1), threads=2)
    assert (batch.mode, batch.mparts, batch.pparts) == (im2col.FLAT, 1, 1)
    # A bound below the packed panel's scratch: the banded modes, within the bound.
    tight = Backend(workspace_mb=0.01).plan(spec, threads=2)
    assert tight.mode != im2col.FLAT and tight.workspace_bytes <= 0.01 * 2**20
    # float64 or narrower output: not fused. Strided 'same' calls are (phase planes).
    assert Backend().plan(_spec((1, 64, 56, 56), (64, 64, 3, 3), "float64", padding=1),
                          threads=2).mode != im2col.FLAT
    strided = Backend().plan(_spec((1, 64, 56, 56), (128, 64, 3, 3), padding=1, stride=2),
                             threads=2)
    assert (strided.mode, strided.mparts, strided.pparts) == (im2col.FLAT, 1, 2)
    # 784 output pixels give each thread 392 >= FLAT_MIN_PIXELS: pixel parts, though
    # there are rows enough for row parts.
    wide = Backend().plan(_spec((1, 128, 28, 28), (128, 128, 3, 3), padding=1), threads=2)
    assert (wide.mode, wide.mparts, wide.pparts) == (im2col.FLAT, 1, 2)
    # 1x1 stride-1 unpadded: the GEMM on the input itself (it packs its own panels).
    for xs, ws in [((1, 256, 56, 56), (64, 256, 1, 1)), ((1, 64, 56, 56), (256, 64, 1, 1))]:
        plan = Backend().plan(_spec(xs, ws), threads=2)
        assert plan.mode != im2col.FLAT and plan.direct and plan.workspace_bytes == 0
    assert Backend().plan(_spec((1, 64, 56, 56), (64, 64, 3, 3)), threads=2).mode != im2col.FLAT


@pytest.mark.skipif(not im2col._im2col.HAVE_FLAT, reason="no fused mode (avx512 build) on this CPU")
def test_fused_mode_threads_agree_and_nan_inf():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 32, 15, 15)).astype(np.float32)
    w = rng.standard_normal((48, 32, 3, 3)).astype(np.float32)
    x[1, 5, 7, 7] = np.nan
    x[2, 3, 0, 0] = np.inf
    outs = []
    for t in (1, 2):
        with convreg.use_threads(t):
            assert Backend().plan(_spec(x.shape, w.shape, padding=1)).mode == im2col.FLAT
            outs.append(convreg.conv2d(x, w, padding=1, backend=NAME))
    ref, bound = reference(Case("t", x.shape, w.shape, bias=False, padding=1))
    assert np.array_equal(np.isnan(outs[0]), np.isnan(outs[1]))
    assert np.isnan(outs[0][1, :, 6:9, 6:9]).all()
    assert np.isinf(outs[0][2, :, 0, 0]).all() or np.isnan(outs[0][2, :, 0, 0]).any()
    fin = np.isfinite(outs[0])
    assert np.all(np.abs(outs[0][fin].astype(np.float64) - outs[1][fin]) <= 2 * bound[fin]
                  if np.ndim(bound) else np.abs(outs[0][fin] - outs[1][fin]) <= 2 * bound)


def _random_fused_cases(seed, count):
    """Random float32 layers the fused mode takes (flat_planes >= 0): strides 1-3 per
    axis, kernels 1-7, padding 0-3, dilation 1-3, groups 1-2, 8-40 output channels."""
    rng = np.random.default_rng(seed)
    cases = []
    while len(cases) < count:
        groups = int(rng.integers(1, 3))
        cig, cog = int(rng.integers(1, 12)), int(rng.integers(8, 21))
        kh, kw = (int(v) for v in rng.integers(1, 8, 2))
        kw_ = dict(stride=tuple(int(v) for v in rng.integers(1, 4, 2)),
                   padding=tuple(int(v) for v in rng.integers(0, 4, 2)),
                   dilation=tuple(int(v) for v in rng.integers(1, 4, 2)), groups=groups)
        xs = (int(rng.integers(1, 3)), cig * groups, int(rng.integers(1, 31)),
              int(rng.integers(1, 31)))
        ws = (cog * groups, cig, kh, kw)
        try:
            spec = _spec(xs, ws, **kw_)
        except ValueError:
            continue
        planes = im2col._im2col.flat_planes(spec.n, spec.c_in, spec.h, spec.w, spec.oh,
                                            spec.ow, spec.kh, spec.kw, spec.sh, spec.sw,
                                            spec.dh, spec.dw, spec.pt, spec.pl, 2)
        if planes >= 0:
            cases.append((xs, ws, kw_, spec, planes))
    return cases


@pytest.mark.skipif(not im2col._im2col.HAVE_FLAT, reason="no fused mode (avx512 build) on this CPU")
@pytest.mark.parametrize("seed", range(4))
def test_fused_mode_random_layers_within_the_bound(seed):
    """Every random layer the fused mode takes agrees with the float64 reference within
    the harness bound, on 1 and 2 threads, strided ones on their phase planes."""
    mod = im2col._im2col
    cases = _random_fused_cases(seed, 25)
    assert sum(spec.sh * spec.sw > 1 for *_, spec, _ in cases) >= 5
    for xs, ws, kw_, spec, planes in cases:
        case = Case("rand", xs, ws, bias=True, **kw_)
        ref, bound = reference(case)
        x, w, b = case.arrays()
        for threads in (1, 2):
            need = mod.flat_work(spec.cig, spec.kh * spec.kw, spec.oh * spec.ow, threads,
                                 planes)
            out = np.full(spec.output_shape, np.nan, np.float32)
            mod.conv2d(x, w, b, out, np.full(need, np.nan, np.float32), spec.sh, spec.sw,
                       spec.pt, spec.pl, spec.dh, spec.dw, spec.groups, 0, threads,
                       im2col.FLAT, True, 1, threads)
            ok, _, msg = compare(out, ref, bound, "float32")
            assert ok, f"{xs} {ws} {kw_} threads={threads}: {msg}"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("xs,ws,kw", [
    ((2, 6, 14, 14), (16, 6, 3, 3), dict(stride=2, padding=1)),     # phase planes (float32)
    ((1, 8, 12, 12), (16, 8, 3, 3), dict(padding=1)),                # fused, stride 1
    ((2, 5, 9, 11), (7, 5, 3, 3), dict(stride=(2, 1))),               # column buffer bands
])
def test_reused_workspace_contents_never_reach_the_output(xs, ws, kw, dtype):
    """The calling thread's workspace is kept for its next call: NaN left in it changes
    nothing, and a call on another thread gets a workspace of its own."""
    be = Backend()
    case = Case("reuse", xs, ws, dtype=dtype, **kw)
    x, w, b = case.arrays()
    first = convreg.conv2d(x, w, b, backend=[be], **case.kwargs())
    kept = _kept_work(dtype)
    kept.fill(np.nan)
    again = convreg.conv2d(x, w, b, backend=[be], **case.kwargs())
    assert _kept_work(dtype) is kept                        # reused, not reallocated
    assert np.isfinite(again).all()
    np.testing.assert_array_equal(first, again)
    seen = []
    t = threading.Thread(target=lambda: seen.append(
        (convreg.conv2d(x, w, b, backend=[be], **case.kwargs()), _kept_work(dtype))))
    t.start()
    t.join()
    np.testing.assert_array_equal(seen[0][0], first)
    assert seen[0][1] is not None and seen[0][1] is not kept
    be.release_workspace()
    assert _kept_work(dtype) is None


def _kept_work(dtype):
    """The calling thread's kept im2col workspace (_gradops._scratch), or None."""
    arrays = getattr(_gradops._local, "arrays", {})
    return arrays.get((im2col.WORK_SCRATCH, np.dtype(dtype)))


def test_large_workspaces_are_not_kept(monkeypatch):
    be = Backend()
    be.release_workspace()
    monkeypatch.setattr(_gradops, "SCRATCH_KEEP_BYTES", 1024)
    case = Case("big", (1, 6, 14, 14), (16, 6, 3, 3), stride=2, padding=1)
    x, w, b = case.arrays()
    convreg.conv2d(x, w, b, backend=[be], **case.kwargs())
    assert _kept_work("float32") is None


def test_plans_are_remembered_per_spec_and_knob(monkeypatch):
    """A call's plan is kept for its spec object, and made again when the threads, the
    workspace bound or a module knob (split_threads, ...) changed."""
    be = Backend()
    case = Case("memo", (2, 5, 9, 11), (7, 5, 3, 3), stride=(2, 1))
    x, w, b = case.arrays()
    ref = convreg.conv2d(x, w, b, backend=[be], **case.kwargs())

    def entry():
        (got,) = be._plans.values()
        return got

    first = entry()
    convreg.conv2d(x, w, b, backend=[be], **case.kwargs())
    assert entry() is first
    monkeypatch.setattr(im2col, "split_threads", lambda spec, t: (im2col.TASKS, 2))
    monkeypatch.setattr(im2col, "SMALL_FLOPS", 0)
    with convreg.use_threads(2):
        out = convreg.conv2d(x, w, b, backend=[be], **case.kwargs())
    assert entry() is not first and entry()[2].mode == im2col.TASKS
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("threads", [2, 3])
def test_shared_mode_threads_agree_every_run(threads, monkeypatch):
    """SHARED fills one col by input channels, then splits the GEMM, task after task:
    both steps must see the whole col (a barrier after each, as Cython's prange inside a
    parallel block ends with none). Repeated calls give the one-thread bits."""
    monkeypatch.setattr(im2col, "split_threads", lambda spec, t: (im2col.SHARED, t))
    monkeypatch.setattr(im2col, "SMALL_FLOPS", 0)
    rng = np.random.default_rng(11)
    x = rng.standard_normal((1, 200, 9, 9))
    w = rng.standard_normal((72, 200, 3, 3))
    be = Backend(workspace_mb=0.3)          # several bands: several fill/GEMM rounds
    spec = _spec(x.shape, w.shape, "float64", padding=1)
    plan = be.plan(spec, threads=threads)
    assert plan.mode == im2col.SHARED and plan.nbands > 1
    with convreg.use_threads(1):
        one = convreg.conv2d(x, w, padding=1, backend=be)
    with convreg.use_threads(threads):
        for _ in range(30):
            np.testing.assert_array_equal(convreg.conv2d(x, w, padding=1, backend=be), one)
