"""The front end: output-size formula, shapes, and every invalid-argument error."""

from __future__ import annotations


import numpy as np
import pytest

import convreg
from convreg import ConvregError, ConvSpecError, ConvTypeError
from convreg._frontend.spec import prepare

# --------------------------------------------------------------------------- output size

# (size, pad_before, pad_after, kernel, stride, dilation) -> floor(...) + 1, by hand
OUTPUT_SIZES = [
    ((4, 0, 0, 3, 1, 1), 2),
    ((5, 1, 1, 3, 2, 1), 3),
    ((224, 3, 3, 7, 2, 1), 112),       # ResNet stem
    ((56, 1, 1, 3, 1, 1), 56),
    ((56, 0, 0, 1, 2, 1), 28),
    ((7, 0, 0, 3, 1, 2), 3),           # dilated kernel spans 5
    ((6, 0, 1, 2, 1, 1), 6),           # 'same' with an even kernel
    ((1, 0, 0, 1, 1, 1), 1),
    ((10, 0, 0, 3, 3, 1), 3),          # (10 - 3) // 3 + 1
    ((11, 0, 0, 3, 3, 1), 3),
    ((12, 0, 0, 3, 3, 1), 4),
    ((2, 0, 0, 3, 2, 1), 0),           # floor, not truncation: (-1)//2 + 1 == 0
    ((3, 0, 0, 5, 1, 1), -1),
    ((3, 2, 2, 5, 1, 2), -1),
    ((5, 2, 3, 4, 2, 2), 2),           # (5 + 5 - 6 - 1) // 2 + 1
]


@pytest.mark.parametrize("args, expected", OUTPUT_SIZES,
                         ids=[f"size{a[0]}-pad{a[1]},{a[2]}-k{a[3]}-s{a[4]}-d{a[5]}"
                              for a, _ in OUTPUT_SIZES])
def test_output_size_formula(args, expected):
    assert convreg.output_size(*args) == expected


# (input shape, weight shape, kwargs) -> output shape, by hand
SHAPES = [
    ((1, 1, 4, 4), (1, 1, 3, 3), {}, (1, 1, 2, 2)),
    ((2, 3, 7, 9), (5, 3, 3, 3), dict(stride=2), (2, 5, 3, 4)),
    ((1, 3, 224, 224), (2, 3, 7, 7), dict(stride=2, padding=3), (1, 2, 112, 112)),
    ((1, 2, 5, 6), (4, 2, 2, 3), dict(padding=(1, 2)), (1, 4, 6, 8)),
    ((1, 2, 5, 6), (4, 2, 2, 3), dict(padding="same"), (1, 4, 5, 6)),
    ((1, 2, 5, 6), (4, 2, 4, 4), dict(padding="same", dilation=(2, 3)), (1, 4, 5, 6)),
    ((1, 2, 5, 6), (4, 2, 2, 3), dict(padding="valid"), (1, 4, 4, 4)),
    ((1, 2, 9, 9), (4, 2, 3, 3), dict(dilation=(2, 4)), (1, 4, 5, 1)),
    ((1, 4, 6, 6), (8, 1, 3, 3), dict(groups=4, padding=1), (1, 8, 6, 6)),
    ((1, 1, 3, 3), (1, 1, 3, 3), dict(padding=2, padding_mode="reflect"), (1, 1, 5, 5)),
    ((1, 1, 2, 2), (1, 1, 3, 3), dict(padding=2, padding_mode="circular"), (1, 1, 4, 4)),
    ((3, 5, 5), (2, 3, 3, 3), {}, (2, 3, 3)),                        # unbatched
    ((0, 3, 5, 5), (2, 3, 3, 3), dict(stride=(1, 2)), (0, 2, 3, 2)),  # N = 0
    ((1, 1, 1, 1), (1, 1, 1, 1), dict(stride=5), (1, 1, 1, 1)),
    ((1, 1, 4, 4), (1, 1, 1, 1), dict(stride=3), (1, 1, 2, 2)),
]


@pytest.mark.parametrize("xs, ws, kw, expected", SHAPES,
                         ids=[f"{i}-{'-'.join(f'{k}={v}' for k, v in s[2].items()) or 'plain'}"
                              for i, s in enumerate(SHAPES)])
def test_output_shapes(xs, ws, kw, expected):
    out = convreg.conv2d(np.zeros(xs, np.float32), np.zeros(ws, np.float32), backend="python",
                         **kw)
    assert out.shape == expected
    spec, _, _, _ = prepare(np.zeros(xs), np.zeros(ws), **kw)
    assert spec.output_shape == ((1,) + expected if len(xs) == 3 else expected)
    assert spec.unbatched == (len(xs) == 3)


def test_spec_is_frozen_and_normalised():
    spec, x, w, b = prepare(np.zeros((2, 4, 6, 7)), np.zeros((6, 2, 3, 2)), np.zeros(6),
                            stride=(2, 1), padding=(1, 0), dilation=2,
                            groups=2, padding_mode="circular")
    assert (spec.sh, spec.sw, spec.pt, spec.pb, spec.pl, spec.pr, spec.dh, spec.dw) == \
        (2, 1, 1, 1, 0, 0, 2, 2)
    assert (spec.cig, spec.cog, spec.groups, spec.padding_mode) == (2, 3, 2, "circular")
    assert all(type(getattr(spec, f)) is int for f in ("n", "c_in", "h", "w", "sh", "pt"))
    with pytest.raises(Exception):
        spec.sh = 3
    assert x.flags.c_contiguous and w.flags.c_contiguous and b.flags.c_contiguous


def test_same_padding_is_four_sided():
    spec, *_ = prepare(np.zeros((1, 1, 8, 8)), np.zeros((1, 1, 4, 2)), padding="same",
                       dilation=(1, 3))
    # height: total 3 -> 1 top, 2 bottom; width: total 3 -> 1 left, 2 right
    assert (spec.pt, spec.pb, spec.pl, spec.pr) == (1, 2, 1, 2)


def test_numpy_integer_arguments_accepted():
    out = convreg.conv2d(np.zeros((1, 2, 5, 5)), np.zeros((2, 1, 3, 3)), stride=np.int64(2),
                         padding=(np.int32(1), 1), groups=np.int8(2), backend="python")
    assert out.shape == (1, 2, 3, 3)


# --------------------------------------------------------------------------------- errors

X = np.zeros((1, 4, 6, 6), np.float32)
W = np.zeros((2, 4, 3, 3), np.float32)


def case(x=X, w=W, b=None, **kw):
    return dict(input=x, weight=w, bias=b, **kw)


# (id, kwargs of conv2d, exception class, regex the message must match)
ERRORS = [
    ("input-2d", case(x=np.zeros((6, 6), np.float32)), ConvSpecError,
     r"input must be 3-D .* or 4-D .* got input of shape \(6, 6\)"),
    ("input-5d", case(x=np.zeros((1, 1, 4, 6, 6), np.float32)), ConvSpecError,
     r"input .*shape \(1, 1, 4, 6, 6\)"),
    ("input-0d", case(x=np.float32(1)), ConvSpecError, r"input .*shape \(\)"),
    ("weight-3d", case(w=np.zeros((2, 3, 3), np.float32)), ConvSpecError,
     r"weight must be 4-D .* got weight of shape \(2, 3, 3\)"),
    ("weight-5d", case(w=np.zeros((2, 4, 1, 3, 3), np.float32)), ConvSpecError,
     r"weight .*shape \(2, 4, 1, 3, 3\)"),
    ("channel-mismatch", case(w=np.zeros((2, 3, 3, 3), np.float32)), ConvSpecError,
     r"expects input with 3 channels, but got input with 4 channels"),
    ("groups-vs-cin", case(x=np.zeros((1, 3, 6, 6), np.float32),
                           w=np.zeros((2, 1, 3, 3), np.float32), groups=2),
     ConvSpecError, r"groups=2 must divide the input channels.* 3 channels"),
    ("groups-vs-cout", case(w=np.zeros((3, 2, 3, 3), np.float32), groups=2), ConvSpecError,
     r"groups=2 must divide the output channels.*\(3, 2, 3, 3\)"),
    ("groups-vs-weight", case(w=np.zeros((2, 4, 3, 3), np.float32), groups=2),
     ConvSpecError, r"groups=2 expects input with 8 channels, but got input with 4"),
    ("stride-0", case(stride=0), ConvSpecError, r"stride must be >= 1, but got stride=0"),
    ("stride-neg", case(stride=-1), ConvSpecError, r"stride must be >= 1, but got stride=-1"),
    ("stride-pair-0", case(stride=(1, 0)), ConvSpecError, r"stride=\(1, 0\)"),
    ("dilation-0", case(dilation=0), ConvSpecError,
     r"dilation must be >= 1, but got dilation=0"),
    ("dilation-neg", case(dilation=(2, -3)), ConvSpecError, r"dilation=\(2, -3\)"),
    ("groups-0", case(groups=0), ConvSpecError, r"groups must be >= 1, but got groups=0"),
    ("groups-neg", case(groups=-2), ConvSpecError, r"groups must be >= 1, but got groups=-2"),
    ("padding-neg", case(padding=-1), ConvSpecError,
     r"padding must be >= 0, but got padding=-1"),
    ("padding-pair-neg", case(padding=(0, -2)), ConvSpecError, r"padding=\(0, -2\)"),
    ("padding-string", case(padding="full"), ConvSpecError,
     r"padding must be one of .*'same'.*'valid'|padding must be one of .*'valid'.*'same'"),
    ("padding-string-case", case(padding="SAME"), ConvSpecError, r"padding='SAME'"),
    ("padding-mode", case(padding_mode="zero"), ConvSpecError,
     r"padding_mode must be one of \{.*'zeros'.*\}, but got padding_mode='zero'"),
    ("padding-mode-none", case(padding_mode=None), ConvSpecError, r"padding_mode=None"),
    ("padding-mode-int", case(padding_mode=0), ConvSpecError, r"padding_mode=0"),
    ("same-stride2", case(padding="same", stride=2), ConvSpecError,
     r"padding='same' .*strided.*stride=\(2, 2\)"),
    ("same-stride(1,2)", case(padding="same", stride=(1, 2)), ConvSpecError,
     r"padding='same'.*stride=\(1, 2\)"),
    ("reflect-pad-eq-size", case(x=np.zeros((1, 4, 3, 6), np.float32), padding=3,
                                 padding_mode="reflect"),
     ConvSpecError, r"reflect.*padding 3 for input height 3"),
    ("reflect-pad-gt-size", case(x=np.zeros((1, 4, 6, 2), np.float32), padding=(0, 2),
                                 w=np.zeros((2, 4, 1, 1), np.float32), padding_mode="reflect"),
     ConvSpecError, r"reflect.*padding 2 for input width 2"),
    ("reflect-same-even", case(x=np.zeros((1, 4, 1, 6), np.float32),
                               w=np.zeros((2, 4, 2, 1), np.float32), padding="same",
                               padding_mode="reflect"),
     ConvSpecError, r"reflect.*bottom padding 1 for input height 1"),
    ("circular-pad-gt-size", case(x=np.zeros((1, 4, 3, 6), np.float32), padding=4,
                                  padding_mode="circular"),
     ConvSpecError, r"circular.*padding 4 for input height 3"),
    ("output-too-small", case(x=np.zeros((1, 4, 2, 6), np.float32)), ConvSpecError,
     r"output size would be \(0, 4\).*\(2, 6\)"),
    ("output-too-small-dilation", case(dilation=3), ConvSpecError,
     r"output size .*\(7, 7\)"),
    ("output-too-small-stride", case(x=np.zeros((1, 4, 2, 2), np.float32), stride=2),
     ConvSpecError, r"output size would be \(0, 0\)"),
    ("empty-height", case(x=np.zeros((1, 4, 0, 6), np.float32)), ConvSpecError,
     r"height and width must be >= 1.*\(1, 4, 0, 6\)"),
    ("zero-channels", case(x=np.zeros((1, 0, 6, 6), np.float32),
                           w=np.zeros((2, 0, 3, 3), np.float32)),
     ConvSpecError, r"at least one channel"),
    ("zero-out-channels", case(w=np.zeros((0, 4, 3, 3), np.float32)), ConvSpecError,
     r"at least one output channel.*\(0, 4, 3, 3\)"),
    ("kernel-0", case(w=np.zeros((2, 4, 0, 3), np.float32)), ConvSpecError,
     r"kernel size must be >= 1.*\(2, 4, 0, 3\)"),
    ("bias-len", case(b=np.zeros(3, np.float32)), ConvSpecError,
     r"bias must be 1-D with 2 elements.*bias of shape \(3,\)"),
    ("bias-2d", case(b=np.zeros((2, 1), np.float32)), ConvSpecError,
     r"bias .*shape \(2, 1\)"),
    ("bias-scalar", case(b=np.float32(1)), ConvSpecError, r"bias .*shape \(\)"),
    ("dtype-mismatch-w", case(w=W.astype(np.float64)), ConvTypeError,
     r"share one dtype.*input float32, weight float64"),
    ("dtype-mismatch-b", case(b=np.zeros(2, np.float64)), ConvTypeError,
     r"share one dtype.*bias float64"),
    ("complex-input", case(x=X.astype(np.complex64)), ConvTypeError,
     r"input must have dtype float32 or float64, but got input with dtype complex64"),
    ("complex-list", case(x=[[[[1j]]]]), ConvTypeError, r"input .*complex128"),
    ("object-input", case(x=np.zeros((1, 4, 6, 6), dtype=object)), ConvTypeError,
     r"input .*dtype object"),
    ("string-input", case(x=np.full((1, 4, 6, 6), "a")), ConvTypeError, r"input .*dtype <U1"),
    ("string-list", case(x=[[[["a"]]]]), ConvTypeError, r"input"),
    ("string-scalar", case(x="abc"), ConvTypeError, r"input"),
    ("none-input", case(x=None), ConvTypeError, r"input .*dtype object"),
    ("dict-input", case(x={"a": 1}), ConvTypeError, r"input"),
    ("float16-input", case(x=X.astype(np.float16)), ConvTypeError,
     r"input must have dtype float32 or float64, but got input with dtype float16"),
    ("longdouble-weight", case(w=W.astype(np.longdouble)), ConvTypeError,
     r"weight must have dtype float32 or float64"),
    ("int-ndarray", case(x=X.astype(np.int32)), ConvTypeError, r"input .*dtype int32.*astype"),
    ("bool-ndarray", case(x=X.astype(bool)), ConvTypeError, r"input .*dtype bool"),
    ("int-weight", case(w=W.astype(np.int64)), ConvTypeError, r"weight .*dtype int64"),
    ("datetime-bias", case(b=np.zeros(2, "M8[s]")), ConvTypeError, r"bias .*datetime64"),
    ("ragged-list", case(x=[[[[1.0, 2.0], [3.0]]]]), ConvTypeError,
     r"input must be an array .*cannot convert"),
    ("ragged-weight", case(w=[[[[1.0], [1.0, 2.0]]]]), ConvTypeError, r"weight"),
    ("stride-bool", case(stride=True), ConvTypeError,
     r"stride must be an int or a pair of ints, but got stride=True"),
    ("stride-float", case(stride=1.0), ConvTypeError, r"stride=1\.0"),
    ("stride-str", case(stride="1"), ConvTypeError, r"stride='1'"),
    ("stride-none", case(stride=None), ConvTypeError, r"stride=None"),
    ("stride-triple", case(stride=(1, 1, 1)), ConvTypeError, r"stride=\(1, 1, 1\)"),
    ("stride-empty", case(stride=()), ConvTypeError, r"stride=\(\)"),
    ("stride-pair-float", case(stride=(1, 1.5)), ConvTypeError, r"stride=\(1, 1\.5\)"),
    ("stride-np-bool", case(stride=np.True_), ConvTypeError, r"stride"),
    ("padding-bool", case(padding=False), ConvTypeError, r"padding=False"),
    ("padding-float", case(padding=0.5), ConvTypeError, r"padding=0\.5"),
    ("padding-none", case(padding=None), ConvTypeError, r"padding=None"),
    ("dilation-float", case(dilation=2.0), ConvTypeError, r"dilation=2\.0"),
    ("groups-float", case(groups=1.0), ConvTypeError, r"groups must be an int.*groups=1\.0"),
    ("groups-bool", case(groups=True), ConvTypeError, r"groups=True"),
    ("groups-str", case(groups="2"), ConvTypeError, r"groups='2'"),
    ("padding-1e12", case(padding=10**12), ConvSpecError, r"GiB"),
    ("padding-1e30", case(padding=10**30), ConvSpecError, r"padding .*too large"),
    ("stride-2**64", case(stride=2**64), ConvSpecError, r"stride .*too large"),
    ("dilation-1e12", case(dilation=10**12), ConvSpecError, r"output size"),
    ("huge-output", case(x=np.broadcast_to(np.float32(0), (2**20, 4, 2**10, 2**10))),
     ConvSpecError, r"the output of shape .* GiB"),
    # A 1x1 output from a 64 TiB (broadcast) input: the contiguous copy must not be tried.
    ("huge-input-small-output", case(x=np.broadcast_to(np.float32(0), (1, 4, 2**21, 2**21)),
                                     w=np.broadcast_to(np.float32(0), (1, 4, 2**21, 2**21))),
     ConvSpecError, r"the input of shape \(1, 4, 2097152, 2097152\) would need .*GiB"),
    ("huge-weight", case(x=np.zeros((1, 1, 1, 1), np.float32), padding=2**15,
                         w=np.broadcast_to(np.float32(0), (2**16, 1, 2**16, 2**16))),
     ConvSpecError, r"weight of shape .* GiB"),
    ("huge-padded-reflect", case(x=np.broadcast_to(np.float32(0), (2**16, 4, 2**10, 2**10)),
                                 w=np.zeros((1, 4, 2**10, 2**10), np.float32), padding=1,
                                 padding_mode="reflect"),
     ConvSpecError, r"padded input .*GiB"),
]


@pytest.mark.parametrize("kwargs, exc, match", [e[1:] for e in ERRORS],
                         ids=[e[0] for e in ERRORS])
def test_invalid_arguments(kwargs, exc, match):
    assert issubclass(exc, (ValueError, TypeError)) and issubclass(exc, ConvregError)
    with pytest.raises(exc, match=match) as info:
        convreg.conv2d(**kwargs, backend="python")
    assert isinstance(info.value, (ValueError, TypeError))
    assert isinstance(info.value, ConvregError)


def test_errors_are_raised_before_any_backend(mock):
    with pytest.raises(ConvSpecError):
        convreg.conv2d(X, W, stride=0, backend="mock")
    assert mock.ncalls == 0 and not mock.asked


def test_exception_hierarchy():
    assert issubclass(ConvSpecError, ValueError)
    assert issubclass(ConvTypeError, TypeError)
    assert issubclass(convreg.ConfigError, ValueError)
    assert issubclass(convreg.BackendError, ValueError)
    for cls in (ConvSpecError, ConvTypeError, convreg.ConfigError, convreg.BackendError):
        assert issubclass(cls, ConvregError)


def test_list_input_with_bool_and_int_entries():
    # Plain Python numbers are not a dtype choice: they are converted.
    out = convreg.conv2d([[[[1, 0], [True, 2]]]], [[[[1, 1], [1, 1]]]], backend="python")
    assert out.dtype == np.float64 and out.item() == 4.0


def test_message_names_argument_value_and_allowed():
    with pytest.raises(ConvSpecError) as info:
        convreg.conv2d(X, W, padding_mode="mirror")
    msg = str(info.value)
    for part in ("padding_mode", "'mirror'", "'zeros'", "'reflect'", "'replicate'",
                 "'circular'"):
        assert part in msg


def test_public_api_matches_design():
    import inspect

    for name in ("conv2d", "Conv2d", "output_size", "available_backends", "register_backend",
                 "get_backend", "use_backend", "set_backend", "current_backend", "show_config",
                 "ConvSpecError", "ConfigError", "BackendError", "Support", "Backend"):
        assert hasattr(convreg, name) and name in convreg.__all__, name
    sig = inspect.signature(convreg.conv2d)
    assert str(sig) == ("(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, "
                        "padding_mode='zeros', *, backend=None)")
    sig = inspect.signature(convreg.Conv2d)
    assert str(sig) == ("(in_channels, out_channels, kernel_size, stride=1, padding=0, "
                        "dilation=1, groups=1, bias=True, padding_mode='zeros', *, "
                        "dtype='float32', backend=None, seed=None)")
    assert list(inspect.signature(convreg.register_backend).parameters) == \
        ["name", "backend", "replace"]
    assert inspect.signature(convreg.register_backend).parameters["replace"].kind is \
        inspect.Parameter.KEYWORD_ONLY


@pytest.mark.filterwarnings("ignore:convreg. the compiled extension:RuntimeWarning")
@pytest.mark.parametrize("module", ["convreg", "convreg._api", "convreg._layer"])
def test_docstring_examples_run(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


@pytest.mark.parametrize("input_shape,weight_shape,dtype,err,match", [
    (np.zeros((1, 2, 5, 5)), (3, 2, 3, 3), "float32", convreg.ConvTypeError,
     r"input_shape must be a tuple of ints, but got an array of shape \(1, 2, 5, 5\)"),
    ((1, 2, 5, 5), "abc", "float32", convreg.ConvTypeError,
     "weight_shape must be a tuple of ints, but got 'abc' of type str"),
    ((1, 2, 5, 5), (3, 2, 3, True), "float32", convreg.ConvTypeError, "weight_shape"),
    ((1, 2, 5.0, 5), (3, 2, 3, 3), "float32", convreg.ConvTypeError, "input_shape"),
    ((1, 2, -5, 5), (3, 2, 3, 3), "float32", convreg.ConvSpecError,
     r"input_shape must hold sizes >= 0, but got \(1, 2, -5, 5\)"),
    ((1, 2, 5, 5), (3, 2, 3, 3), "foo", convreg.ConvTypeError,
     "dtype must be 'float32' or 'float64', but got dtype='foo'"),
    ((1, 2, 5, 5), (3, 2, 3, 3), "int32", convreg.ConvTypeError, "dtype='int32'"),
])
def test_shape_arguments_are_checked(input_shape, weight_shape, dtype, err, match):
    """spec_for_shapes / explain name the bad argument (not numpy's broadcast error)."""
    with pytest.raises(err, match=match):
        convreg.spec_for_shapes(input_shape, weight_shape, dtype=dtype)
    with pytest.raises(err, match=match):
        convreg.explain(input_shape, weight_shape, dtype=dtype)


def test_shape_arguments_accept_lists_and_numpy_ints():
    a = convreg.spec_for_shapes([1, np.int64(2), 5, 5], (3, 2, np.int32(3), 3), dtype=np.float64)
    assert a == convreg.spec_for_shapes((1, 2, 5, 5), (3, 2, 3, 3), dtype="float64")
