"""The front end: validate every argument of a convolution call once, into a frozen spec.

Backends receive a :class:`ConvSpec` (all plain ints, explicit four-sided padding)
and C-contiguous arrays of one float dtype; they never re-validate user input.

Legend of short names used here and in every kernel:

    n         batch size            c_in, c_out  channels (whole layer)
    h, w      input height/width    oh, ow       output height/width
    kh, kw    kernel size           sh, sw       stride
    dh, dw    dilation              pt, pb, pl, pr  padding top/bottom/left/right
    g         groups                cig, cog     channels per group (in / out)
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .._errors import ConvSpecError, ConvTypeError
from .arrays import DTYPE_NAMES, as_array, check_memory, torch_to_numpy
from .hyper import four_sided_padding, is_int, normalize_hyper, output_size


_ndarray = np.ndarray
_NATIVE = (np.dtype(np.float32), np.dtype(np.float64))
_F32, _F64 = _NATIVE
_new = object.__new__
_setattr = object.__setattr__


@dataclass(frozen=True)
class ConvSpec:
    """A validated, normalised convolution call (batched view: input is always 4-D)."""

    n: int
    c_in: int
    h: int
    w: int
    c_out: int
    kh: int
    kw: int
    sh: int
    sw: int
    pt: int
    pb: int
    pl: int
    pr: int
    dh: int
    dw: int
    groups: int
    padding_mode: str
    dtype: str
    has_bias: bool
    unbatched: bool
    oh: int
    ow: int

    @classmethod
    def _trusted(cls, fields: dict) -> "ConvSpec":
        """Build from a dict of fields the front end has just checked, skipping the frozen
        dataclass __init__ (one object.__setattr__ per field costs microseconds per call)."""
        spec = _new(cls)
        _setattr(spec, "__dict__", fields)
        return spec

    @property
    def cig(self) -> int:
        return self.c_in // self.groups

    @property
    def cog(self) -> int:
        return self.c_out // self.groups

    @property
    def depthwise(self) -> bool:
        return self.groups == self.c_in and self.groups > 1

    @property
    def reduction(self) -> int:
        """Terms summed per output element (bias excluded): cig*kh*kw."""
        return self.cig * self.kh * self.kw

    @property
    def flops(self) -> int:
        """Multiply-adds counted as two flops."""
        return 2 * self.n * self.c_out * self.oh * self.ow * self.reduction

    @property
    def input_shape(self) -> tuple:
        return (self.n, self.c_in, self.h, self.w)

    @property
    def weight_shape(self) -> tuple:
        return (self.c_out, self.cig, self.kh, self.kw)

    @property
    def output_shape(self) -> tuple:
        """Shape of the (batched) result: (n, c_out, oh, ow)."""
        return (self.n, self.c_out, self.oh, self.ow)

    @property
    def padded(self) -> bool:
        return bool(self.pt or self.pb or self.pl or self.pr)

    def after_explicit_padding(self) -> "ConvSpec":
        """The spec of the same call once the padding has been written into the input."""
        return replace(
            self,
            h=self.h + self.pt + self.pb,
            w=self.w + self.pl + self.pr,
            pt=0, pb=0, pl=0, pr=0,
            padding_mode="zeros",
        )

    def describe(self) -> str:
        parts = [
            f"input={self.input_shape}", f"weight={self.weight_shape}",
            f"stride=({self.sh}, {self.sw})",
            f"padding=(top={self.pt}, bottom={self.pb}, left={self.pl}, right={self.pr})",
            f"dilation=({self.dh}, {self.dw})", f"groups={self.groups}",
            f"padding_mode={self.padding_mode!r}", f"dtype={self.dtype}",
        ]
        return ", ".join(parts)


# Specs validated before, by call signature (see ``signature``): everything ``prepare``
# checks depends only on it, except the layout of the arrays, whose checks run per call.
# A call that fails validation is never stored, so it fails the same way every time. The
# spec of a repeated signature is the same object, which downstream memos key by identity.
_SPECS: dict = {}
_SPECS_MAX = 512


def remember(memo, key, spec):
    """Store ``spec`` under ``key`` (None: not memoisable) in one of the front end's spec
    memos, emptying the memo first when it holds ``_SPECS_MAX`` entries."""
    if key is not None:
        if len(memo) >= _SPECS_MAX:
            memo.clear()
        memo[key] = spec


def _plain(value) -> bool:
    """An int, a str or a tuple of ints, by exact type: values whose equality (and hash)
    imply the same validation. ``True == 1`` and ``1.0 == 1`` but both are refused where
    1 is accepted, so bools, floats, NumPy scalars and subclasses never key a memo."""
    t = type(value)
    return t is int or t is str or (t is tuple and all(type(v) is int for v in value))


def signature(input, weight, bias, hyper):
    """The memo key of a call on native float32/float64 ndarrays (the arrays ``as_array``
    returns unchanged), or None: other arguments take the full path every time. ``hyper``:
    the five non-array arguments as given, or a layer's normalised tuple."""
    if type(input) is not _ndarray or type(weight) is not _ndarray:
        return None
    dt = input.dtype
    if dt is _F32 or dt == _F32:      # a layer's dtype is an equal, separate object
        f64 = False
    elif dt is _F64 or dt == _F64:
        f64 = True
    else:
        return None
    wt = weight.dtype
    if wt is not dt and wt != dt:
        return None
    if bias is None:
        bshape = None
    elif type(bias) is _ndarray and (bias.dtype is dt or bias.dtype == dt):
        bshape = bias.shape
    else:
        return None
    return (input.shape, weight.shape, bshape, f64, hyper)


def prepare(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
            padding_mode="zeros", *, hyper=None):
    """Validate a conv2d call; return ``(spec, x, w, b)``.

    ``x`` is the 4-D input, ``w`` the weight and ``b`` the bias (or None), all
    C-contiguous with the spec's dtype. They may be the caller's own arrays (never
    written) or read-only. ``hyper``: the result of :func:`normalize_hyper` made once
    (a layer's own checked settings), in place of the five arguments.

    A call whose signature was validated before reuses its spec (``_SPECS``); only the
    arrays' layout is looked at again.
    """
    if hyper is not None:
        key = signature(input, weight, bias, (hyper,))   # never equal to five raw values
    elif (type(stride) is int and type(padding) is int and type(dilation) is int
          and type(groups) is int and type(padding_mode) is str) or (
            _plain(stride) and _plain(padding) and _plain(dilation) and _plain(groups)
            and type(padding_mode) is str):
        key = signature(input, weight, bias, (stride, padding, dilation, groups, padding_mode))
    else:
        key = None
    if key is not None:
        try:
            spec = _SPECS.get(key)
        except TypeError:       # a hyper tuple holding a list: no memo
            spec = key = None
        if spec is not None:
            return spec, *_laid_out(spec, input, weight, bias)
    out = _prepare(input, weight, bias, stride, padding, dilation, groups, padding_mode,
                   hyper)
    remember(_SPECS, key, out[0])
    return out


def _laid_out(spec, x, w, b):
    """The arrays of a call whose signature ``spec`` was validated from: batched and
    C-contiguous, with the size check of a strided view that a copy would make."""
    if spec.unbatched:
        x = x[np.newaxis]
    if not x.flags.c_contiguous:
        check_memory("the input", x.shape, x.dtype.itemsize)
        x = np.ascontiguousarray(x)
    if not w.flags.c_contiguous:
        check_memory("the weight", w.shape, w.dtype.itemsize)
        w = np.ascontiguousarray(w)
    if b is not None and not b.flags.c_contiguous:
        b = np.ascontiguousarray(b)
    return x, w, b


def _prepare(input, weight, bias, stride, padding, dilation, groups, padding_mode, hyper):
    """The full validation of :func:`prepare`."""
    (sh, sw), padding, (dh, dw), g, padding_mode = hyper or normalize_hyper(
        stride, padding, dilation, groups, padding_mode)

    # Plain lists take the dtype of whichever argument is a real array.
    hint = None
    if type(input) is _ndarray:          # the common case: no search needed
        hint = input.dtype if input.dtype in _NATIVE else None
    else:
        for obj in (input, weight, bias):
            dt = getattr(torch_to_numpy(obj), "dtype", None)
            if dt is not None and getattr(dt, "kind", "") == "f" and dt.itemsize in (4, 8):
                hint = np.dtype(dt)
                break
    x = as_array("input", input, hint)
    w = as_array("weight", weight, hint)
    b = None if bias is None else as_array("bias", bias, hint)

    if x.ndim not in (3, 4):
        raise ConvSpecError(
            f"input must be 3-D (C_in, H, W) or 4-D (N, C_in, H, W), but got input of "
            f"shape {x.shape}")
    if w.ndim != 4:
        raise ConvSpecError(
            f"weight must be 4-D (C_out, C_in/groups, kH, kW), but got weight of shape {w.shape}")
    unbatched = x.ndim == 3
    if unbatched:
        x = x[np.newaxis]
    dtypes = {"input": x.dtype, "weight": w.dtype}
    if b is not None:
        dtypes["bias"] = b.dtype
    if len(set(dtypes.values())) > 1:
        got = ", ".join(f"{k} {v}" for k, v in dtypes.items())
        raise ConvTypeError(
            f"input, weight and bias must share one dtype (float32 or float64), but got {got}")

    n, c_in, h, w_ = x.shape
    c_out, cig, kh, kw = w.shape
    if c_in < 1:
        raise ConvSpecError(f"input must have at least one channel, but got input of shape "
                            f"{tuple(x.shape[1:] if unbatched else x.shape)}")
    if h < 1 or w_ < 1:
        raise ConvSpecError(
            f"input height and width must be >= 1, but got input of shape "
            f"{tuple(x.shape[1:] if unbatched else x.shape)}")
    if c_out < 1:
        raise ConvSpecError(
            f"weight must have at least one output channel, but got weight of shape {w.shape}")
    if kh < 1 or kw < 1:
        raise ConvSpecError(
            f"kernel size must be >= 1, but got weight of shape {w.shape} "
            f"(kernel {kh}x{kw})")
    if c_out % g:
        raise ConvSpecError(
            f"groups={g} must divide the output channels, but got weight of shape {w.shape} "
            f"({c_out} output channels)")
    if c_in % g:
        raise ConvSpecError(
            f"groups={g} must divide the input channels, but got input with {c_in} channels")
    if cig * g != c_in:
        raise ConvSpecError(
            f"weight of shape {w.shape} with groups={g} expects input with {cig * g} channels, "
            f"but got input with {c_in} channels (shape {tuple(x.shape)})")
    if b is not None and b.shape != (c_out,):
        raise ConvSpecError(
            f"bias must be 1-D with {c_out} elements (one per output channel), but got bias of "
            f"shape {b.shape}")

    pt, pb, pl, pr = four_sided_padding(padding, (kh, kw), (dh, dw))
    sides = () if padding_mode == "zeros" else (
        ("top", pt, h, "height"), ("bottom", pb, h, "height"),
        ("left", pl, w_, "width"), ("right", pr, w_, "width"))
    for side, pad, size, dim in sides:
        if padding_mode == "reflect" and pad >= size:
            raise ConvSpecError(
                f"padding_mode='reflect' needs padding < the input {dim}, but got {side} "
                f"padding {pad} for input {dim} {size}")
        if padding_mode == "circular" and pad > size:
            raise ConvSpecError(
                f"padding_mode='circular' needs padding <= the input {dim} (it wraps around "
                f"once at most), but got {side} padding {pad} for input {dim} {size}")
    oh = output_size(h, pt, pb, kh, sh, dh)
    ow = output_size(w_, pl, pr, kw, sw, dw)
    if oh < 1 or ow < 1:
        raise ConvSpecError(
            f"output size would be ({oh}, {ow}), must be at least 1: input (H, W)=({h}, {w_}) "
            f"padded by (top, bottom, left, right)=({pt}, {pb}, {pl}, {pr}) is smaller than "
            f"the dilated kernel ({dh * (kh - 1) + 1}, {dw * (kw - 1) + 1})")

    itemsize = x.dtype.itemsize
    check_memory("the output", (n, c_out, oh, ow), itemsize)
    if padding_mode != "zeros":
        check_memory("the padded input", (n, c_in, h + pt + pb, w_ + pl + pr), itemsize)
    # Broadcast / strided views may be far larger than memory once made contiguous below.
    if not x.flags.c_contiguous:
        check_memory("the input", x.shape, itemsize)
    if not w.flags.c_contiguous:
        check_memory("the weight", w.shape, itemsize)

    spec = ConvSpec._trusted({
        "n": n, "c_in": c_in, "h": h, "w": w_, "c_out": c_out, "kh": kh, "kw": kw,
        "sh": sh, "sw": sw, "pt": pt, "pb": pb, "pl": pl, "pr": pr, "dh": dh, "dw": dw,
        "groups": g, "padding_mode": padding_mode, "dtype": DTYPE_NAMES[x.dtype],
        "has_bias": b is not None, "unbatched": unbatched, "oh": oh, "ow": ow})
    if not x.flags.c_contiguous:
        x = np.ascontiguousarray(x)
    if not w.flags.c_contiguous:
        w = np.ascontiguousarray(w)
    if b is not None and not b.flags.c_contiguous:
        b = np.ascontiguousarray(b)
    return spec, x, w, b


def spec_for_shapes(input_shape, weight_shape, *, bias=True, dtype="float32", stride=1,
                    padding=0, dilation=1, groups=1, padding_mode="zeros") -> ConvSpec:
    """The validated spec of a call on arrays of these shapes (nothing is allocated)."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt not in DTYPE_NAMES:
        raise ConvTypeError(f"dtype must be 'float32' or 'float64', but got dtype={dtype!r}")
    zero = dt.type(0)
    input_shape = _shape_arg("input_shape", input_shape)
    weight_shape = _shape_arg("weight_shape", weight_shape)
    x = np.broadcast_to(zero, input_shape)
    w = np.broadcast_to(zero, weight_shape)
    b = np.broadcast_to(zero, weight_shape[:1]) if bias and weight_shape else None
    return prepare(x, w, b, stride, padding, dilation, groups, padding_mode)[0]


def _shape_arg(name, value):
    """``value`` as a tuple of sizes: a tuple or list of non-negative ints (an array's
    ``.shape``), else ConvTypeError / ConvSpecError naming ``name``."""
    if not isinstance(value, (tuple, list)) or not all(is_int(v) for v in value):
        if isinstance(value, np.ndarray):
            got = f"an array of shape {value.shape} (pass its .shape)"
        else:
            text = repr(value)
            got = f"{text if len(text) <= 80 else text[:77] + '...'} of type " \
                  f"{type(value).__name__}"
        raise ConvTypeError(f"{name} must be a tuple of ints, but got {got}")
    if any(v < 0 for v in value):
        raise ConvSpecError(f"{name} must hold sizes >= 0, but got {tuple(value)}")
    return tuple(int(v) for v in value)
