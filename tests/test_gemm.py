"""convreg._gemm_<variant>.gemm: C := bias[:, None] + W @ B against NumPy in float64.

Every SIMD variant built here and runnable on this CPU is tested; the avx512 build runs
its register-tiled kernel (gemm/gemm.h) for M >= 8, the avx2 build for M >= 6, the
baseline BLAS. The reference is the float64 product of the same (rounded) inputs, and the tolerance the classical bound for a
length-K dot product in the tested dtype, |error| <= (K + 2) * eps * (|W| @ |B| + |bias|),
whatever the summation order.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from convreg.backends._simd import ORDER, cpu_variants


def _modules():
    out = []
    runnable = set(cpu_variants())
    for v in ORDER:
        if v not in runnable:
            continue        # importing a build this CPU cannot run may execute its instructions
        try:
            mod = importlib.import_module(f"convreg._gemm_{v}")
        except ImportError:
            continue
        out.append(pytest.param(mod, id=v))
    return out


MODULES = _modules()
if not MODULES:
    pytest.skip("no convreg._gemm_<variant> built", allow_module_level=True)

DTYPES = [pytest.param(np.float32, id="float32"), pytest.param(np.float64, id="float64")]
BIAS = [pytest.param(True, id="bias"), pytest.param(False, id="nobias")]
SIZES = [pytest.param(m, n, k, id=f"M{m}xN{n}xK{k}")
         for m in (8, 9, 15, 17, 64, 100)
         for n in (1, 15, 16, 17, 18, 31, 32, 33, 100)
         for k in (1, 7, 256, 257, 600)]


def _operands(m, n, k, dtype, bias, seed=0):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((m, k)).astype(dtype)
    B = rng.standard_normal((k, n)).astype(dtype)
    b = rng.standard_normal(m).astype(dtype) if bias else None
    return W, B, b


def _check(C, W, B, b):
    """C against the float64 product, within the dot-product error bound of C's dtype."""
    W64, B64 = W.astype(np.float64), B.astype(np.float64)
    ref = W64 @ B64
    scale = np.abs(W64) @ np.abs(B64)
    if b is not None:
        ref += b.astype(np.float64)[:, None]
        scale += np.abs(b.astype(np.float64))[:, None]
    eps = np.finfo(C.dtype).eps
    bound = (W.shape[1] + 2) * eps * scale + np.finfo(C.dtype).tiny
    err = np.abs(C.astype(np.float64) - ref)
    worst = np.unravel_index(np.argmax(err - bound), err.shape)
    assert np.all(err <= bound), (f"C{worst} = {C[worst]!r}, want {ref[worst]!r} "
                                  f"(error {err[worst]:.3g} > bound {bound[worst]:.3g})")


@pytest.mark.parametrize("m, n, k", SIZES)
@pytest.mark.parametrize("bias", BIAS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mod", MODULES)
def test_gemm_matches_numpy(mod, dtype, bias, m, n, k):
    W, B, b = _operands(m, n, k, dtype, bias)
    C = np.full((m, n), np.nan, dtype=dtype)      # every element must be written
    mod.gemm(W, B, b, C)
    _check(C, W, B, b)


@pytest.mark.parametrize("m, n, k", [pytest.param(m, n, k, id=f"M{m}xN{n}xK{k}")
                                     for m, n, k in [(1, 5, 3), (3, 33, 17), (7, 16, 300)]])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mod", MODULES)
def test_fewer_rows_than_a_tile(mod, dtype, m, n, k):
    """M < MR: the BLAS path in every build."""
    W, B, b = _operands(m, n, k, dtype, True)
    C = np.full((m, n), np.nan, dtype=dtype)
    mod.gemm(W, B, b, C)
    _check(C, W, B, b)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mod", MODULES)
def test_kernel_and_blas_agree(mod, dtype):
    W, B, b = _operands(37, 70, 300, dtype, True, seed=1)
    C1 = np.empty((37, 70), dtype)
    C2 = np.empty((37, 70), dtype)
    mod.gemm(W, B, b, C1)
    mod.gemm(W, B, b, C2, use_kernel=False)
    _check(C1, W, B, b)
    _check(C2, W, B, b)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mod", MODULES)
def test_sub_views_use_their_leading_dimension(mod, dtype):
    """Operands are views into wider arrays; C's neighbours are left alone."""
    m, n, k = 19, 45, 70
    Wbig, Bbig, b = _operands(m, k + 9, 2 * n + 3, dtype, True, seed=2)
    W = Wbig[:, 4:4 + k]
    B = np.ascontiguousarray(Bbig.T)[:k + 9][5:5 + k, 2:2 + n]
    Cbig = np.full((m + 2, n + 11), -7.0, dtype=dtype)
    C = Cbig[1:1 + m, 6:6 + n]
    mod.gemm(W, B, b, C)
    _check(C, W, B, b)
    untouched = np.ones(Cbig.shape, bool)
    untouched[1:1 + m, 6:6 + n] = False
    assert np.all(Cbig[untouched] == -7.0)


@pytest.mark.parametrize("n", [5, 32, 45, 100])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mod", MODULES)
def test_packed_panels_of_wide_products(mod, dtype, n):
    """Products of >= 64 rows copy each B panel contiguous first (gemm_tile.h): B a view
    with a cache-aliasing row stride (256 elements), a tail panel, K over two chunks;
    NaN in B reaches its whole column, C's neighbours are left alone."""
    m, k = 72, 300
    W, _, b = _operands(m, 1, k, dtype, True, seed=4)
    Bbig = _operands(k, 1, 256, dtype, False, seed=5)[0]          # (k, 256)
    B = Bbig[:, 3:3 + n]
    B[17, n - 1] = np.nan
    Cbig = np.full((m, n + 8), -7.0, dtype=dtype)
    C = Cbig[:, 4:4 + n]
    mod.gemm(W, B, b, C)
    assert np.all(np.isnan(C[:, n - 1]))
    _check(C[:, :n - 1], W, B[:, :n - 1], b)
    assert np.all(Cbig[:, :4] == -7.0) and np.all(Cbig[:, 4 + n:] == -7.0)


@pytest.mark.parametrize("n", [1, 9, 18, 33, 49, 50])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mod", MODULES)
def test_many_rows_few_columns(mod, dtype, n):
    """Products whose (rows, K-chunk) slice of W outgrows the kernel's L2 budget while the
    chunk of B fits it run row tiles outermost (gemm_tile.h), with one-vector tiles or
    (avx2: one or two columns) dot products for a narrow last panel: 1100 rows (a partial last row tile), K over chunks, B a view;
    NaN in one W row reaches only that row, C's neighbours are left alone."""
    m, k = 1100, 600
    W, _, b = _operands(m, 1, k, dtype, True, seed=6)
    B = _operands(k, 1, n + 5, dtype, False, seed=7)[0][:, 2:2 + n]
    W[1097, 300] = np.nan
    Cbig = np.full((m, n + 6), -7.0, dtype=dtype)
    C = Cbig[:, 3:3 + n]
    mod.gemm(W, B, b, C)
    assert np.all(np.isnan(C[1097])) and not np.isnan(np.delete(C, 1097, 0)).any()
    _check(np.delete(C, 1097, 0), np.delete(W, 1097, 0), B, np.delete(b, 1097))
    assert np.all(Cbig[:, :3] == -7.0) and np.all(Cbig[:, 3 + n:] == -7.0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mod", MODULES)
def test_nan_and_inf_propagate(mod, dtype):
    m, n, k = 17, 40, 33
    rng = np.random.default_rng(3)
    W = np.abs(rng.standard_normal((m, k))).astype(dtype) + 0.5     # all positive
    B = rng.standard_normal((k, n)).astype(dtype)
    W[3, 5] = np.nan                  # row 3 of C
    B[2, 7] = np.inf                  # column 7: +inf (positive weights)...
    W[0, 9] = 0.0
    B[9, 11] = np.inf                 # ...and 0 * inf = NaN at C[0, 11], not skipped
    b = np.zeros(m, dtype)
    b[12] = -np.inf                   # a bias of -inf gives row 12 -inf, or NaN at column 7
    C = np.zeros((m, n), dtype)
    mod.gemm(W, B, b, C)
    assert np.all(np.isnan(C[3]))
    rows = [r for r in range(m) if r not in (3, 12)]
    assert np.all(np.isposinf(C[rows, 7]))
    assert np.isnan(C[0, 11])
    assert np.isnan(C[12, 7])
    assert np.all(np.isneginf(np.delete(C[12], [7, 11])))
    finite = np.ones((m, n), bool)
    finite[[3, 12]] = False
    finite[:, [7, 11]] = False
    assert np.all(np.isfinite(C[finite]))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mod", MODULES)
def test_empty_sum_is_the_bias(mod, dtype):
    W = np.empty((9, 0), dtype)
    B = np.empty((0, 5), dtype)
    b = np.arange(9, dtype=dtype)
    C = np.full((9, 5), np.nan, dtype)
    mod.gemm(W, B, b, C)
    assert np.array_equal(C, np.repeat(b[:, None], 5, axis=1))
    mod.gemm(W, B, None, C)
    assert np.array_equal(C, np.zeros((9, 5), dtype))


@pytest.mark.parametrize("mod", MODULES)
def test_bad_arguments(mod):
    W, B, b = _operands(9, 6, 4, np.float64, True)
    with pytest.raises(ValueError, match="do not multiply"):
        mod.gemm(W, B, b, np.empty((9, 7)))
    with pytest.raises(ValueError, match="bias"):
        mod.gemm(W, B, b[:5], np.empty((9, 6)))
    buf = np.zeros((9, 10))
    with pytest.raises(ValueError, match="overlap"):
        mod.gemm(buf[:, :4], B, b, buf[:, 4:])
    with pytest.raises((TypeError, ValueError)):
        mod.gemm(W.astype(np.float32), B, b, np.empty((9, 6)))


def test_kernel_flag_matches_the_build():
    for p in MODULES:
        mod = p.values[0]
        simd = not mod.__name__.endswith("baseline")
        assert mod.HAVE_KERNEL == simd
        assert mod.MR == (6 if mod.__name__.endswith("avx2") else 8)


@pytest.mark.parametrize("mod", MODULES)
def test_rows_must_be_contiguous(mod):
    W, B, b = _operands(9, 6, 4, np.float64, True)
    with pytest.raises(ValueError, match="contiguous"):
        mod.gemm(np.asfortranarray(W), B, b, np.empty((9, 6)))
    with pytest.raises(ValueError, match="contiguous"):
        mod.gemm(W, B, b, np.empty((6, 9)).T)


# ------------------------------------------------------------------ matmul_into
# The threaded product the gradient GEMMs use: blocks of columns (or rows) over OpenMP
# threads, one single-threaded BLAS call each, operands read in place when transposed.

MATMUL_SIZES = [(1, 37, 29, 300), (3, 5, 17, 9), (1, 300, 11, 3), (2, 64, 1, 200),
                (1, 1, 5, 1), (5, 16, 40, 130)]


def _as_layout(a, transposed):
    """``a`` itself, or the same values stored transposed (a view with contiguous columns)."""
    return np.ascontiguousarray(a.swapaxes(-1, -2)).swapaxes(-1, -2) if transposed else a


@pytest.mark.parametrize("g, m, k, n", MATMUL_SIZES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mod", MODULES)
def test_matmul_into_matches_the_product(mod, dtype, g, m, k, n):
    rng = np.random.default_rng(g * m + k * n)
    A = rng.standard_normal((g, m, k)).astype(dtype)
    B = rng.standard_normal((g, k, n)).astype(dtype)
    for ta in (False, True):
        for tb in (False, True):
            a, b = _as_layout(A, ta), _as_layout(B, tb)
            for threads in (1, 2, 3):
                C = np.full((g, m, n), np.nan, dtype)
                assert mod.matmul_into(a, b, C, threads) is C
                for i in range(g):
                    _check(C[i], A[i], B[i], None)
                acc = C.copy()          # accumulate: twice the product, halved exactly
                mod.matmul_into(a, b, acc, threads, True)
                for i in range(g):
                    _check(acc[i] / 2, A[i], B[i], None)
    # 2-D operands too (BLAS blocks by column ranges, so the last bits may depend on the
    # thread count: each result is checked against the bound, not against another)
    _check(mod.matmul_into(A[0], B[0], np.empty((m, n), dtype), 2), A[0], B[0], None)


@pytest.mark.parametrize("fn", ["matmul_into", "gemm_rows"])
@pytest.mark.parametrize("mod", MODULES)
def test_products_reject_bad_arguments(mod, fn):
    """The checks matmul_into and gemm_rows share."""
    f = getattr(mod, fn)
    A = np.ones((4, 3), np.float32)
    B = np.ones((3, 5), np.float32)
    with pytest.raises(ValueError, match="do not multiply"):
        f(A, B, np.empty((4, 6), np.float32))
    with pytest.raises(TypeError, match="one float dtype"):
        f(A, B.astype(np.float64), np.empty((4, 5), np.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        f(A, B, np.empty((5, 4), np.float32).T)
    buf = np.ones(64, np.float32)
    with pytest.raises(ValueError, match="must not overlap"):
        f(buf[:12].reshape(4, 3), B, buf[10:30].reshape(4, 5))
    with pytest.raises(ValueError, match="threads must be >= 1"):
        f(A, B, np.empty((4, 5), np.float32), 0)


@pytest.mark.parametrize("mod", MODULES)
def test_matmul_into_rejects_bad_layouts(mod):
    B = np.ones((3, 5), np.float32)
    with pytest.raises(ValueError, match="contiguous rows or contiguous columns"):
        mod.matmul_into(np.ones((8, 6), np.float32)[::2, ::2], B, np.empty((4, 5), np.float32))
    with pytest.raises(ValueError, match="all be 2-D or all 3-D"):
        mod.matmul_into(np.ones((1, 4, 3), np.float32), B, np.empty((4, 5), np.float32))


@pytest.mark.parametrize("m, k, n", [(1, 5, 3), (7, 300, 9), (8, 3136, 64), (37, 196, 45),
                                     (256, 49, 33)])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mod", MODULES)
def test_gemm_rows_matches_the_product(mod, dtype, m, k, n):
    """Row blocks over threads (partial tiles, fewer rows than a tile: the BLAS path) give
    the product within the bound whatever the thread count."""
    rng = np.random.default_rng(m * k + n)
    A = rng.standard_normal((m, k)).astype(dtype)
    B = rng.standard_normal((k, n)).astype(dtype)
    for threads in (1, 2, 3, 8):
        C = np.full((m, n), np.nan, dtype)
        assert mod.gemm_rows(A, B, C, threads) is C
        _check(C, A, B, None)


@pytest.mark.parametrize("mod", MODULES)
def test_gemm_rows_wants_contiguous_operands_and_empty_sums_zero(mod):
    B = np.ones((3, 5), np.float32)
    with pytest.raises(ValueError, match="C-contiguous"):
        mod.gemm_rows(np.ones((4, 6), np.float32)[:, ::2], B, np.empty((4, 5), np.float32))
    C = np.full((4, 5), np.nan, np.float32)
    mod.gemm_rows(np.ones((4, 0), np.float32), np.ones((0, 5), np.float32), C)
    assert (C == 0).all()
