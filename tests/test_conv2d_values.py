"""Hand-computed values for every feature of conv2d (DESIGN.md section 1).

Every expected array is written out by hand in the test, never computed by another
convolution. Rerun through one backend with ``CONVREG_TEST_BACKEND=name pytest``.
"""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import convreg

from conftest import TOL

DTYPES = [np.float32, np.float64]
dtype_ids = ["f32", "f64"]

# x3 = 0..8 as 3x3 and the 2x2 kernel k2; k2 is not symmetric so a flipped
# (true convolution) or transposed kernel gives different numbers.
X3 = [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
K2 = [[1, 2], [3, 4]]


def arr(values, dtype, ndim=4):
    a = np.asarray(values, dtype=dtype)
    while a.ndim < ndim:
        a = a[np.newaxis]
    return a


def check(got, expected, dtype):
    expected = np.asarray(expected, dtype=np.float64)
    assert got.dtype == np.dtype(dtype)
    assert got.shape == expected.shape
    assert_allclose(got, expected, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_ids)
class TestHandComputed:
    def test_plain_3x3(self, backend, dtype):
        x = arr(np.arange(16).reshape(4, 4), dtype)
        w = arr(np.ones((3, 3)), dtype)
        check(convreg.conv2d(x, w, backend=backend), [[[[45, 54], [81, 90]]]], dtype)

    def test_cross_correlation_not_flipped(self, backend, dtype):
        out = convreg.conv2d(arr(X3, dtype), arr(K2, dtype), backend=backend)
        # out[0,0] = 0*1 + 1*2 + 3*3 + 4*4
        check(out, [[[[27, 37], [57, 67]]]], dtype)

    def test_stride(self, backend, dtype):
        x = arr(np.arange(25).reshape(5, 5), dtype)      # x[r, c] = 5r + c
        w = arr(np.ones((3, 3)), dtype)
        # 9 * the window's centre: centres 6, 8, 16, 18
        check(convreg.conv2d(x, w, stride=2, backend=backend),
              [[[[54, 72], [144, 162]]]], dtype)

    @pytest.mark.parametrize("stride, expected", [
        ((2, 1), [[[[27, 37]]]]),
        ((1, 2), [[[[27], [57]]]]),
        ([2], [[[[27]]]]),
    ], ids=["s(2,1)", "s(1,2)", "s[2]"])
    def test_stride_pairs(self, backend, dtype, stride, expected):
        out = convreg.conv2d(arr(X3, dtype), arr(K2, dtype), stride=stride, backend=backend)
        check(out, expected, dtype)

    @pytest.mark.parametrize("padding, expected", [
        ((1, 0), [[4, 11], [27, 37], [57, 67], [20, 23]]),
        ((0, 1), [[12, 27, 37, 17], [30, 57, 67, 29]]),
        ([1, 0], [[4, 11], [27, 37], [57, 67], [20, 23]]),
    ], ids=["pad(1,0)", "pad(0,1)", "pad[1,0]"])
    def test_padding_per_axis(self, backend, dtype, padding, expected):
        out = convreg.conv2d(arr(X3, dtype), arr(K2, dtype), padding=padding, backend=backend)
        check(out, [[expected]], dtype)

    def test_padding_int(self, backend, dtype):
        x = arr([[1, 2], [3, 4]], dtype)
        w = arr([[1]], dtype)
        check(convreg.conv2d(x, w, padding=1, backend=backend),
              [[[[0, 0, 0, 0], [0, 1, 2, 0], [0, 3, 4, 0], [0, 0, 0, 0]]]], dtype)

    def test_same_odd_kernel(self, backend, dtype):
        out = convreg.conv2d(arr(X3, dtype), arr(np.ones((3, 3)), dtype), padding="same",
                             backend=backend)
        check(out, [[[[8, 15, 12], [21, 36, 27], [20, 33, 24]]]], dtype)

    def test_same_even_kernel_pads_bottom_right(self, backend, dtype):
        # total pad 1 per axis: 0 top/left, 1 bottom/right (as PyTorch)
        out = convreg.conv2d(arr(X3, dtype), arr(K2, dtype), padding="same", backend=backend)
        check(out, [[[[27, 37, 17], [57, 67, 29], [20, 23, 8]]]], dtype)

    def test_same_dilated_even_kernel(self, backend, dtype):
        # kernel (1, 2) dilation (1, 3): total width pad 3 -> 1 left, 2 right
        x = arr([[1, 2, 3, 4]], dtype)
        w = arr([[1, 10]], dtype)
        out = convreg.conv2d(x, w, padding="same", dilation=(1, 3), backend=backend)
        # out[j] = x[j-1] + 10*x[j+2]
        check(out, [[[[30, 41, 2, 3]]]], dtype)

    def test_valid(self, backend, dtype):
        out = convreg.conv2d(arr(X3, dtype), arr(K2, dtype), padding="valid", backend=backend)
        check(out, [[[[27, 37], [57, 67]]]], dtype)

    def test_dilation(self, backend, dtype):
        x = arr(np.arange(25).reshape(5, 5), dtype)
        # out[i,j] = x[i,j] + 2x[i,j+2] + 3x[i+2,j] + 4x[i+2,j+2] = 50i + 10j + 82
        out = convreg.conv2d(x, arr(K2, dtype), dilation=2, backend=backend)
        check(out, [[[[82, 92, 102], [132, 142, 152], [182, 192, 202]]]], dtype)

    def test_dilation_pair(self, backend, dtype):
        x = arr(np.arange(25).reshape(5, 5), dtype)
        # out[i,j] = x[i,j] + 2x[i,j+1] + 3x[i+2,j] + 4x[i+2,j+1] = 50i + 10j + 76
        out = convreg.conv2d(x, arr(K2, dtype), dilation=(2, 1), backend=backend)
        check(out, [[[[76, 86, 96, 106], [126, 136, 146, 156], [176, 186, 196, 206]]]],
              dtype)

    def test_groups(self, backend, dtype):
        # 4 input channels, channel c is [[c+1, 10(c+1)]]; 2 groups of 2 channels
        x = arr([[[1, 10]], [[2, 20]], [[3, 30]], [[4, 40]]], dtype)
        w = np.asarray([[1, 2], [3, 4]], dtype=dtype).reshape(2, 2, 1, 1)
        out = convreg.conv2d(x, w, groups=2, backend=backend)
        # out0 = 1*x0 + 2*x1, out1 = 3*x2 + 4*x3
        check(out, [[[[5, 50]], [[25, 250]]]], dtype)

    def test_depthwise(self, backend, dtype):
        base = np.array([[1, 2], [3, 4]])
        x = np.stack([base, 2 * base, 3 * base]).astype(dtype)[np.newaxis]
        w = np.zeros((3, 1, 2, 2), dtype=dtype)
        w[0, 0, 0, 0] = 1
        w[1, 0, 0, 1] = 1
        w[2, 0, 1, 1] = 1
        out = convreg.conv2d(x, w, groups=3, backend=backend)
        check(out, [[[[1]], [[4]], [[12]]]], dtype)

    def test_depthwise_multiplier(self, backend, dtype):
        x = np.asarray([[[2]], [[3]]], dtype=dtype)[np.newaxis]
        w = np.asarray([1, 10, 100, 1000], dtype=dtype).reshape(4, 1, 1, 1)
        check(convreg.conv2d(x, w, groups=2, backend=backend),
              [[[[2]], [[20]], [[300]], [[3000]]]], dtype)

    def test_bias(self, backend, dtype):
        x = arr([[0, 1], [2, 3]], dtype)
        w = np.asarray([1, 2], dtype=dtype).reshape(2, 1, 1, 1)
        b = np.asarray([1, -1], dtype=dtype)
        check(convreg.conv2d(x, w, b, backend=backend),
              [[[[1, 2], [3, 4]], [[-1, 1], [3, 5]]]], dtype)

    def test_bias_3x3(self, backend, dtype):
        x = arr(np.arange(16).reshape(4, 4), dtype)
        out = convreg.conv2d(x, arr(np.ones((3, 3)), dtype), np.asarray([0.5], dtype),
                             backend=backend)
        check(out, [[[[45.5, 54.5], [81.5, 90.5]]]], dtype)

    def test_no_bias_is_zero_bias(self, backend, dtype):
        x = arr(X3, dtype)
        w = arr(K2, dtype)
        check(convreg.conv2d(x, w, None, backend=backend), [[[[27, 37], [57, 67]]]], dtype)
        check(convreg.conv2d(x, w, np.zeros(1, dtype), backend=backend),
              [[[[27, 37], [57, 67]]]], dtype)

    def test_batch(self, backend, dtype):
        x = np.stack([arr(X3, dtype, 3), 2 * arr(X3, dtype, 3)])
        check(convreg.conv2d(x, arr(K2, dtype), backend=backend),
              [[[[27, 37], [57, 67]]], [[[54, 74], [114, 134]]]], dtype)

    def test_unbatched(self, backend, dtype):
        out = convreg.conv2d(arr(X3, dtype, 3), arr(K2, dtype), backend=backend)
        check(out, [[[27, 37], [57, 67]]], dtype)

    def test_unbatched_padding_mode(self, backend, dtype):
        out = convreg.conv2d(arr([[1, 2, 3]], dtype, 3), arr([[1]], dtype), padding=(0, 1),
                             padding_mode="circular", backend=backend)
        check(out, [[[3, 1, 2, 3, 1]]], dtype)


# Padding modes, seen through a 1x1 kernel of weight 1: the output *is* the padded input.
# x = 1..9 as 3x3.
PADDED = {
    "zeros": [[0, 0, 0, 0, 0],
              [0, 1, 2, 3, 0],
              [0, 4, 5, 6, 0],
              [0, 7, 8, 9, 0],
              [0, 0, 0, 0, 0]],
    "reflect": [[5, 4, 5, 6, 5],
                [2, 1, 2, 3, 2],
                [5, 4, 5, 6, 5],
                [8, 7, 8, 9, 8],
                [5, 4, 5, 6, 5]],
    "replicate": [[1, 1, 2, 3, 3],
                  [1, 1, 2, 3, 3],
                  [4, 4, 5, 6, 6],
                  [7, 7, 8, 9, 9],
                  [7, 7, 8, 9, 9]],
    "circular": [[9, 7, 8, 9, 7],
                 [3, 1, 2, 3, 1],
                 [6, 4, 5, 6, 4],
                 [9, 7, 8, 9, 7],
                 [3, 1, 2, 3, 1]],
}


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_ids)
@pytest.mark.parametrize("mode", list(PADDED))
def test_padding_mode_values(backend, mode, dtype):
    x = arr(np.arange(1, 10).reshape(3, 3), dtype)
    out = convreg.conv2d(x, arr([[1]], dtype), padding=1, padding_mode=mode, backend=backend)
    check(out, [[PADDED[mode]]], dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_ids)
@pytest.mark.parametrize("mode, x, padding, expected", [
    ("reflect", [[1, 2, 3], [4, 5, 6]], (1, 2),
     [[6, 5, 4, 5, 6, 5, 4],
      [3, 2, 1, 2, 3, 2, 1],
      [6, 5, 4, 5, 6, 5, 4],
      [3, 2, 1, 2, 3, 2, 1]]),
    ("circular", [[1, 2], [3, 4]], (2, 1),      # pad == size wraps once
     [[2, 1, 2, 1],
      [4, 3, 4, 3],
      [2, 1, 2, 1],
      [4, 3, 4, 3],
      [2, 1, 2, 1],
      [4, 3, 4, 3]]),
    ("replicate", [[1, 2]], 2,                  # pad beyond the size is fine
     [[1, 1, 1, 2, 2, 2]] * 5),
    ("zeros", [[1, 2]], (0, 2), [[0, 0, 1, 2, 0, 0]]),
], ids=["reflect(1,2)", "circular(2,1)-equal", "replicate-beyond", "zeros(0,2)"])
def test_padding_mode_uneven(backend, mode, x, padding, expected, dtype):
    out = convreg.conv2d(arr(x, dtype), arr([[1]], dtype), padding=padding, padding_mode=mode,
                         backend=backend)
    check(out, [[expected]], dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_ids)
def test_reflect_with_2x2_kernel(backend, dtype):
    # The reflect-padded 1..9 (PADDED["reflect"]) convolved with K2.
    x = arr(np.arange(1, 10).reshape(3, 3), dtype)
    out = convreg.conv2d(x, arr(K2, dtype), padding=1, padding_mode="reflect", backend=backend)
    check(out, [[[[23, 25, 35, 33],
                  [35, 37, 47, 45],
                  [65, 67, 77, 75],
                  [53, 55, 65, 63]]]], dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_ids)
def test_padding_mode_same_even_kernel(backend, dtype):
    # 'same' with a 2x2 kernel pads only bottom/right: replicate repeats the last row/col.
    x = arr([[1, 2], [3, 4]], dtype)
    w = arr([[0, 0], [0, 1]], dtype)          # picks xpad[i+1, j+1]
    out = convreg.conv2d(x, w, padding="same", padding_mode="replicate", backend=backend)
    check(out, [[[[4, 4], [4, 4]]]], dtype)
    out = convreg.conv2d(x, w, padding="same", padding_mode="circular", backend=backend)
    check(out, [[[[4, 3], [2, 1]]]], dtype)


# --------------------------------------------------------------------------- shapes, dtypes

@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_ids)
def test_empty_batch(backend, dtype):
    x = np.zeros((0, 3, 5, 5), dtype=dtype)
    w = np.ones((4, 3, 3, 3), dtype=dtype)
    out = convreg.conv2d(x, w, np.ones(4, dtype), padding=1, backend=backend)
    assert out.shape == (0, 4, 5, 5)
    assert out.dtype == np.dtype(dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_ids)
def test_empty_batch_padding_mode(backend, dtype):
    out = convreg.conv2d(np.zeros((0, 1, 3, 3), dtype), np.ones((2, 1, 2, 2), dtype),
                         padding=1, padding_mode="reflect", backend=backend)
    assert out.shape == (0, 2, 4, 4)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_ids)
def test_output_dtype_follows_input(backend, dtype):
    out = convreg.conv2d(arr(X3, dtype), arr(K2, dtype), backend=backend)
    assert out.dtype == np.dtype(dtype)
    assert isinstance(out, np.ndarray)


def test_float32_keeps_float32_precision(backend):
    # 2**24 + 1 is not a float32: the result must be rounded to float32, not float64.
    x = np.asarray([[[[2.0**24, 1.0]]]], dtype=np.float32)
    w = np.ones((1, 1, 1, 2), dtype=np.float32)
    out = convreg.conv2d(x, w, backend=backend)
    assert out.dtype == np.float32
    assert out[0, 0, 0, 0] in (np.float32(2**24), np.float32(2**24 + 2))


def test_lists_as_input(backend):
    out = convreg.conv2d([[[[0, 1, 2], [3, 4, 5], [6, 7, 8]]]], [[[[1, 2], [3, 4]]]], [1],
                         backend=backend)
    check(out, [[[[28, 38], [58, 68]]]], np.float64)


def test_lists_take_the_dtype_of_the_array(backend):
    w = arr(K2, np.float32)
    out = convreg.conv2d([[[0, 1, 2], [3, 4, 5], [6, 7, 8]]], w, backend=backend)
    check(out, [[[27, 37], [57, 67]]], np.float32)


def test_float_lists_take_the_dtype_of_the_array(backend):
    # plain Python floats are not a dtype choice either
    w = arr(K2, np.float32)
    out = convreg.conv2d([[[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0]]], w, [0.5],
                         backend=backend)
    check(out, [[[27.5, 37.5], [57.5, 67.5]]], np.float32)


def test_tuples_of_floats(backend):
    out = convreg.conv2d((((0.5, 1.5),),), ((((2.0,),),),), backend=backend)
    check(out, [[[1.0, 3.0]]], np.float64)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_ids)
def test_read_only_arrays(backend, dtype):
    x, w, b = arr(X3, dtype), arr(K2, dtype), np.asarray([1], dtype)
    for a in (x, w, b):
        a.flags.writeable = False
    for mode in ("zeros", "reflect"):
        out = convreg.conv2d(x, w, b, padding=0, padding_mode=mode, backend=backend)
        check(out, [[[[28, 38], [58, 68]]]], dtype)
        assert out.flags.writeable        # the result is the caller's own array
    out = convreg.conv2d(np.broadcast_to(x, (3, 1, 3, 3)), w, b, backend=backend)
    check(out, [[[[28, 38], [58, 68]]]] * 3, dtype)


def _layouts(x):
    """The same values in different memory layouts."""
    big = np.zeros(x.shape[:-1] + (3 * x.shape[-1],), dtype=x.dtype)
    big[..., ::3] = x
    rev = np.ascontiguousarray(x[..., ::-1])[..., ::-1]
    return {
        "fortran": np.asfortranarray(x),
        "strided": big[..., ::3],
        "transposed": np.ascontiguousarray(x.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2),
        "channels-last": np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2),
        "negative-strides": rev,
        "big-endian": x.astype(x.dtype.newbyteorder(">")),
    }


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_ids)
@pytest.mark.parametrize("layout", ["fortran", "strided", "transposed", "channels-last",
                                    "negative-strides", "big-endian"])
@pytest.mark.parametrize("mode", ["zeros", "reflect", "circular"])
def test_layouts_give_the_same_result(backend, layout, mode, dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 5, 6)).astype(dtype)
    w = rng.standard_normal((4, 3, 3, 2)).astype(dtype)
    b = rng.standard_normal(4).astype(dtype)
    kw = dict(padding=1, padding_mode=mode, stride=(1, 2), backend=backend)
    ref = convreg.conv2d(x, w, b, **kw)
    other = _layouts(x)[layout]
    assert_array_equal(other, x)
    assert_array_equal(convreg.conv2d(other, w, b, **kw), ref)
    # The weight and bias may be in any layout too.
    wl = _layouts(w)[layout]
    bl = np.repeat(b, 2)[::2] if layout == "strided" else b
    assert_array_equal(convreg.conv2d(x, wl, bl, **kw), ref)


@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
def test_inputs_never_modified(backend, mode):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 2, 5, 5))
    w = rng.standard_normal((2, 1, 3, 3))
    b = rng.standard_normal(2)
    copies = x.copy(), w.copy(), b.copy()
    for xi in (x, np.asfortranarray(x), x[0]):
        convreg.conv2d(xi, w, b, padding=2, groups=2, padding_mode=mode, backend=backend)
    for a, c in zip((x, w, b), copies):
        assert_array_equal(a, c)


def test_result_does_not_alias_inputs(backend):
    x = arr(np.ones((3, 3)), np.float64)
    w = arr([[1]], np.float64)
    out = convreg.conv2d(x, w, backend=backend)
    assert not np.shares_memory(out, x)
    out[...] = 5
    assert (x == 1).all()


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_ids)
def test_nan_propagates(backend, dtype):
    x = arr(np.ones((4, 4)), dtype)
    x[0, 0, 0, 0] = np.nan
    out = convreg.conv2d(x, arr(np.ones((2, 2)), dtype), backend=backend)
    nan = np.isnan(out[0, 0])
    assert_array_equal(nan, [[True, False, False], [False, False, False],
                             [False, False, False]])
    assert_array_equal(out[0, 0][~nan], 4)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_ids)
def test_inf_propagates(backend, dtype):
    x = arr([[np.inf, 1, 1], [1, 1, -np.inf]], dtype)
    w = arr([[1, 1]], dtype)
    out = convreg.conv2d(x, w, backend=backend)
    assert_array_equal(out[0, 0], [[np.inf, 2], [2, -np.inf]])
    # inf - inf and 0 * inf are NaN (IEEE), never silently skipped
    x2 = arr([[np.inf, -np.inf]], dtype)
    assert np.isnan(convreg.conv2d(x2, w, backend=backend)).all()
    assert np.isnan(convreg.conv2d(x2, arr([[0, 1]], dtype), backend=backend)).all()
    assert np.isnan(convreg.conv2d(arr([[np.inf, 2]], dtype), arr([[0, 1]], dtype),
                                   backend=backend)).all()


def test_nan_in_weight_and_bias(backend):
    x = arr(np.ones((2, 2)), np.float64)
    w = arr([[np.nan]], np.float64)
    assert np.isnan(convreg.conv2d(x, w, backend=backend)).all()
    out = convreg.conv2d(x, arr([[1]], np.float64), np.asarray([np.nan]), backend=backend)
    assert np.isnan(out).all()


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning")
def test_large_values_overflow_to_inf_in_float32(backend):
    x = arr([[3e38, 3e38]], np.float32)
    out = convreg.conv2d(x, arr([[1, 1]], np.float32), backend=backend)
    assert out.dtype == np.float32
    assert out[0, 0, 0, 0] == np.inf


# ------------------------------------------- padding realised in the front end (_pad / numpy)

class ZerosOnly(convreg.Backend):
    """The reference, declaring only zero padding: the front end pads for it."""

    name = "zeros-only"

    def __init__(self):
        from convreg.backends.python import PythonBackend
        self._py = PythonBackend()
        self.seen = []

    def conv2d(self, spec, x, w, b):
        assert spec.padding_mode == "zeros" and not spec.padded
        self.seen.append(spec)
        return self._py.conv2d(spec, x, w, b)


@pytest.fixture(params=["compiled", "numpy-fallback"])
def zeros_only(request, monkeypatch):
    if request.param == "numpy-fallback":
        import sys
        monkeypatch.setitem(sys.modules, "convreg._pad", None)
    else:
        pytest.importorskip("convreg._pad")
    be = ZerosOnly()
    convreg.register_backend("zeros-only", be, replace=True)
    yield be
    convreg.unregister_backend("zeros-only")


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_ids)
@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_explicit_padding_values(zeros_only, mode, dtype):
    x = arr(np.arange(1, 10).reshape(3, 3), dtype)
    out = convreg.conv2d(x, arr([[1]], dtype), padding=1, padding_mode=mode,
                         backend="zeros-only")
    check(out, [[PADDED[mode]]], dtype)
    assert zeros_only.seen[-1].h == 5


@pytest.mark.parametrize("threads", [1, 2])
def test_explicit_padding_matches_native(zeros_only, threads):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 4, 6, 5))
    w = rng.standard_normal((2, 2, 3, 2))
    for mode, padding in [("reflect", (2, 4)), ("replicate", 5), ("circular", (6, 5)),
                          ("circular", "same"), ("reflect", "same")]:
        with convreg.use_threads(threads):
            got = convreg.conv2d(x, w, padding=padding, groups=2, padding_mode=mode,
                                 backend="zeros-only")
        want = convreg.conv2d(x, w, padding=padding, groups=2, padding_mode=mode,
                              backend="python")
        assert_array_equal(got, want)
