"""The front end of the gradient operations and of the transposed convolution.

Each call is validated into the *forward* :class:`ConvSpec` it belongs to (the
convolution whose gradient is asked for; for ``conv_transpose2d`` the convolution whose
input gradient the transposed convolution is) plus C-contiguous arrays of its dtype,
batched (4-D). Errors name the argument, the value received and what is allowed.
"""

from __future__ import annotations

import numpy as np

from .._errors import ConvSpecError, ConvTypeError
from .arrays import DTYPE_NAMES, as_array, check_memory, torch_to_numpy
from .hyper import _pair, is_int, normalize_hyper, output_size
from .spec import ConvSpec, _plain, remember, signature, spec_for_shapes


def _dtype_hint(*objs):
    for obj in objs:
        dt = getattr(torch_to_numpy(obj), "dtype", None)
        if dt is not None and getattr(dt, "kind", "") == "f" and dt.itemsize in (4, 8):
            return np.dtype(dt)
    return None


def _arrays(**named):
    """Convert named array arguments; all must share one float dtype."""
    hint = _dtype_hint(*named.values())
    out = {k: as_array(k, v, hint) for k, v in named.items()}
    dtypes = {k: a.dtype for k, a in out.items()}
    if len(set(dtypes.values())) > 1:
        got = ", ".join(f"{k} {v}" for k, v in dtypes.items())
        raise ConvTypeError(
            f"{' and '.join(dtypes)} must share one dtype (float32 or float64), but got {got}")
    return out


def _shape_arg(name: str, value, lengths: tuple, what: str) -> tuple:
    """A shape argument (tuple, list, torch.Size, 1-D integer array) of one of ``lengths``."""
    value = torch_to_numpy(value)
    if isinstance(value, np.ndarray) and value.ndim == 1 and value.dtype.kind in "iu":
        value = tuple(int(v) for v in value)
    if not isinstance(value, (tuple, list)) or not all(map(is_int, value)):
        raise ConvTypeError(
            f"{name} must be a sequence of ints {what}, but got {name}={value!r}")
    shape = tuple(int(v) for v in value)
    if len(shape) not in lengths:
        raise ConvSpecError(f"{name} must have {' or '.join(map(str, lengths))} entries "
                            f"{what}, but got {name}={shape}")
    if any(v < 0 for v in shape):
        raise ConvSpecError(f"{name} must not have negative entries, but got {name}={shape}")
    return shape


# Specs validated before, by (input shape, weight shape, dtype, normalised hyper): the
# spec depends on nothing else, so a call repeating a shape (every training step) skips
# rebuilding it; a call that fails validation is never stored and fails every time.
_SPECS = {}


def _forward_spec(input_shape, weight_shape, dtype, hyper, context: str, unbatched=False):
    """The forward spec (of an unbatched call: ``unbatched``); its errors are prefixed by
    which call's arguments made them."""
    key = (input_shape, weight_shape, dtype, hyper, unbatched)
    spec = _SPECS.get(key)
    if spec is not None:
        return spec
    if unbatched:
        spec = _replace(_forward_spec(input_shape, weight_shape, dtype, hyper, context),
                        unbatched=True)
        remember(_SPECS, key, spec)
        return spec
    stride, padding, dilation, groups, padding_mode = hyper
    try:
        spec = spec_for_shapes(input_shape, weight_shape, bias=False, dtype=dtype,
                               stride=stride, padding=padding, dilation=dilation,
                               groups=groups, padding_mode=padding_mode)
    except ConvSpecError as exc:
        raise ConvSpecError(f"{context}: {exc}") from None
    remember(_SPECS, key, spec)
    return spec


def _check_grad_output(go, spec, context: str):
    """grad_output (3-D or 4-D) must have exactly the forward call's output shape."""
    if go.ndim not in (3, 4):
        raise ConvSpecError(
            f"grad_output must be 3-D (C_out, H_out, W_out) or 4-D (N, C_out, H_out, W_out), "
            f"but got grad_output of shape {go.shape}")
    expected = spec.output_shape[1:] if spec.unbatched else spec.output_shape
    if go.shape != expected:
        raise ConvSpecError(
            f"grad_output must have shape {expected} (the output of conv2d for {context}), "
            f"but got grad_output of shape {go.shape}")


def _batched_input_shape(input_size, go):
    """(batched 4-D shape, unbatched) from a 4-entry size, or 3 entries with 3-D grad_output."""
    if len(input_size) == 3:
        if go.ndim != 3:
            raise ConvSpecError(
                f"input_size={input_size} has 3 entries (an unbatched input), so grad_output "
                f"must be 3-D (C_out, H_out, W_out), but got grad_output of shape {go.shape}")
        return (1,) + input_size, True
    return input_size, False


def _hyper(stride, padding, dilation, groups, padding_mode):
    return normalize_hyper(stride, padding, dilation, groups, padding_mode)


# Gradient calls validated before, by call signature (as ``spec._SPECS``; the operation,
# the size argument as a tuple of ints and the two arrays' shapes and dtype): a repeated
# call skips validation; only the arrays' layout is looked at again.
_GSPECS = {}


def _grad_key(op, size, a, b, hyper):
    if type(size) is not tuple or not _plain(size) or not all(map(_plain, hyper)):
        return None
    key = signature(a, b, None, hyper)
    return None if key is None else (op, size, key)


def _batched(a, spec):
    """``a`` as the C-contiguous 4-D array of a call whose spec is known."""
    return np.ascontiguousarray(a[np.newaxis] if spec.unbatched else a)


def _memoised(memo, key, known, validate):
    """``known(spec)`` when a call of this signature (``key``, None: not memoisable) was
    validated before (``memo``), else ``validate()``, whose spec is then remembered."""
    spec = memo.get(key) if key is not None else None
    if spec is not None:
        return known(spec)
    out = validate()
    remember(memo, key, out[0])
    return out


def prepare_input_grad(input_size, weight, grad_output, stride=1, padding=0, dilation=1,
                       groups=1, padding_mode="zeros"):
    """Validate ``conv2d_input``; return ``(spec, grad_output4, weight)``."""
    return _memoised(
        _GSPECS,
        _grad_key("input", input_size, grad_output, weight,
                  (stride, padding, dilation, groups, padding_mode)),
        lambda spec: (spec, _batched(grad_output, spec), np.ascontiguousarray(weight)),
        lambda: _prepare_input_grad(input_size, weight, grad_output, stride, padding,
                                    dilation, groups, padding_mode))


def _prepare_input_grad(input_size, weight, grad_output, stride, padding, dilation, groups,
                        padding_mode):
    hyper = _hyper(stride, padding, dilation, groups, padding_mode)
    arrs = _arrays(weight=weight, grad_output=grad_output)
    w, go = arrs["weight"], arrs["grad_output"]
    size = _shape_arg("input_size", input_size, (3, 4),
                      "(N, C_in, H, W), the shape of the convolution's input")
    shape, unbatched = _batched_input_shape(size, go)
    if w.ndim != 4:
        raise ConvSpecError(
            f"weight must be 4-D (C_out, C_in/groups, kH, kW), but got weight of shape {w.shape}")
    context = f"input_size={size} and weight of shape {w.shape}"
    spec = _forward_spec(shape, w.shape, DTYPE_NAMES[w.dtype], hyper, context, unbatched)
    _check_grad_output(go, spec, f"input_size={size}, weight of shape {w.shape} and these "
                                 f"stride, padding and dilation")
    if unbatched:
        go = go[np.newaxis]
    check_memory("the input gradient", spec.input_shape, w.dtype.itemsize)
    return spec, np.ascontiguousarray(go), np.ascontiguousarray(w)


def prepare_weight_grad(input, weight_size, grad_output, stride=1, padding=0, dilation=1,
                        groups=1, padding_mode="zeros"):
    """Validate ``conv2d_weight``; return ``(spec, input4, grad_output4)``."""
    return _memoised(
        _GSPECS,
        _grad_key("weight", weight_size, input, grad_output,
                  (stride, padding, dilation, groups, padding_mode)),
        lambda spec: (spec, _batched(input, spec), _batched(grad_output, spec)),
        lambda: _prepare_weight_grad(input, weight_size, grad_output, stride, padding,
                                     dilation, groups, padding_mode))


def _prepare_weight_grad(input, weight_size, grad_output, stride, padding, dilation, groups,
                         padding_mode):
    hyper = _hyper(stride, padding, dilation, groups, padding_mode)
    arrs = _arrays(input=input, grad_output=grad_output)
    x, go = arrs["input"], arrs["grad_output"]
    size = _shape_arg("weight_size", weight_size, (4,),
                      "(C_out, C_in/groups, kH, kW), the shape of the weight")
    if x.ndim not in (3, 4):
        raise ConvSpecError(
            f"input must be 3-D (C_in, H, W) or 4-D (N, C_in, H, W), but got input of shape "
            f"{x.shape}")
    unbatched = x.ndim == 3
    shape = (1,) + x.shape if unbatched else x.shape
    context = f"input of shape {x.shape} and weight_size={size}"
    spec = _forward_spec(shape, size, DTYPE_NAMES[x.dtype], hyper, context, unbatched)
    _check_grad_output(go, spec, f"input of shape {x.shape}, weight_size={size} and these "
                                 f"stride, padding and dilation")
    if unbatched:
        x, go = x[np.newaxis], go[np.newaxis]
    if spec.padding_mode != "zeros":
        check_memory("the padded input", (spec.n, spec.c_in, spec.h + spec.pt + spec.pb,
                                          spec.w + spec.pl + spec.pr), x.dtype.itemsize)
    return spec, np.ascontiguousarray(x), np.ascontiguousarray(go)


def transpose_output_size(size, stride, padding, kernel, dilation, output_padding) -> int:
    """``(size-1)*stride - 2*padding + dilation*(kernel-1) + output_padding + 1``."""
    return (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1


def output_padding_for(output_size, input_hw, stride, padding, kernel, dilation) -> tuple:
    """torch's ``_ConvTransposeNd._output_padding``: the output_padding giving
    ``output_size`` (its last two entries), which must lie in [min, min + stride - 1]."""
    size = _shape_arg("output_size", output_size, (2, 3, 4), "(H_out, W_out)")[-2:]
    pads = []
    for d, name in enumerate(("height", "width")):
        lo = transpose_output_size(input_hw[d], stride[d], padding[d], kernel[d],
                                   dilation[d], 0)
        hi = lo + stride[d] - 1
        if not lo <= size[d] <= hi:
            raise ConvSpecError(
                f"output_size={tuple(output_size)} asks for output {name} {size[d]}, but "
                f"this input {name} {input_hw[d]} with stride {stride[d]}, padding "
                f"{padding[d]}, kernel {kernel[d]} and dilation {dilation[d]} gives an "
                f"output {name} between {lo} and {hi}")
        pads.append(size[d] - lo)
    return tuple(pads)


# Transposed-convolution specs validated before, by call signature (as
# ``spec._SPECS``): a repeated call skips validation and gets the same spec object.
_TSPECS = {}


def prepare_transpose(input, weight, bias=None, stride=1, padding=0, output_padding=0,
                      groups=1, dilation=1):
    """Validate ``conv_transpose2d``; return ``(spec, x4, w, b)``.

    ``spec`` is the forward convolution whose input gradient the transposed convolution
    is (its input is the transposed convolution's output). ``x4`` is the batched input,
    with rows/columns of zeros appended when an output_padding of at least the stride
    (allowed when below the dilation) makes that forward convolution's output larger
    than the input (the extra outputs receive no contribution, as in torch).
    """
    hyper = (stride, padding, output_padding, groups, dilation)
    return _memoised(
        _TSPECS, signature(input, weight, bias, hyper) if all(map(_plain, hyper)) else None,
        lambda spec: (spec, _extended(_batched(input, spec), spec),
                      np.ascontiguousarray(weight),
                      None if bias is None else np.ascontiguousarray(bias)),
        lambda: _prepare_transpose(input, weight, bias, stride, padding, output_padding,
                                   groups, dilation))


def _extended(x, spec):
    """The batched input with the rows / columns of zeros the spec's output has beyond it
    (an output_padding of at least the stride, allowed below the dilation)."""
    extra = (spec.oh - x.shape[2], spec.ow - x.shape[3])
    if extra != (0, 0):
        x = np.pad(x, ((0, 0), (0, 0), (0, extra[0]), (0, extra[1])))
    return x


def _prepare_transpose(input, weight, bias, stride, padding, output_padding, groups,
                       dilation):
    """The full validation of :func:`prepare_transpose`."""
    if isinstance(padding, str):
        raise ConvTypeError(
            f"padding of conv_transpose2d must be an int or a pair of ints (no 'same' or "
            f"'valid'), but got padding={padding!r}")
    (sh, sw), (ph, pw), (dh, dw), g, _ = normalize_hyper(stride, padding, dilation, groups)
    oph, opw = _pair("output_padding", output_padding, 0)
    named = {"input": input, "weight": weight}
    if bias is not None:
        named["bias"] = bias
    arrs = _arrays(**named)
    x, w, b = arrs["input"], arrs["weight"], arrs.get("bias")
    if x.ndim not in (3, 4):
        raise ConvSpecError(
            f"input must be 3-D (C_in, H, W) or 4-D (N, C_in, H, W), but got input of shape "
            f"{x.shape}")
    if w.ndim != 4:
        raise ConvSpecError(
            f"weight must be 4-D (C_in, C_out/groups, kH, kW), but got weight of shape "
            f"{w.shape}")
    unbatched = x.ndim == 3
    if unbatched:
        x = x[np.newaxis]
    n, c_in, h, w_ = x.shape
    wc_in, cog, kh, kw = w.shape
    if wc_in != c_in:
        raise ConvSpecError(
            f"weight of shape {w.shape} expects input with {wc_in} channels (its first "
            f"dimension), but got input with {c_in} channels (shape {tuple(x.shape)})")
    if c_in % g:
        raise ConvSpecError(
            f"groups={g} must divide the input channels, but got input with {c_in} channels")
    if min(c_in, cog, kh, kw) < 1 or h < 1 or w_ < 1:
        raise ConvSpecError(
            f"input and weight must have no empty dimension other than the batch, but got "
            f"input of shape {tuple(x.shape)} and weight of shape {w.shape}")
    c_out = cog * g
    if b is not None and b.shape != (c_out,):
        raise ConvSpecError(
            f"bias must be 1-D with {c_out} elements (one per output channel: "
            f"weight.shape[1]*groups), but got bias of shape {b.shape}")
    for name, op, s, d in (("height", oph, sh, dh), ("width", opw, sw, dw)):
        if op >= s and op >= d:
            raise ConvSpecError(
                f"output_padding must be smaller than either stride or dilation, but got "
                f"output_padding={output_padding!r} with stride={stride!r} and "
                f"dilation={dilation!r} ({name}: {op} >= stride {s} and >= dilation {d})")
    oh = transpose_output_size(h, sh, ph, kh, dh, oph)
    ow = transpose_output_size(w_, sw, pw, kw, dw, opw)
    if oh < 1 or ow < 1:
        raise ConvSpecError(
            f"conv_transpose2d output size would be ({oh}, {ow}), must be at least 1: "
            f"(H-1)*stride - 2*padding + dilation*(kernel-1) + output_padding + 1 for input "
            f"(H, W)=({h}, {w_}), stride=({sh}, {sw}), padding=({ph}, {pw}), kernel=({kh}, "
            f"{kw}), dilation=({dh}, {dw}), output_padding=({oph}, {opw})")
    check_memory("the output", (n, c_out, oh, ow), x.dtype.itemsize)
    # The forward convolution of an (oh, ow) input by this weight: every field is checked
    # above (its output size is at least h, w since output_padding >= 0).
    spec = ConvSpec._trusted(dict(
        n=n, c_in=c_out, h=oh, w=ow, c_out=c_in, kh=kh, kw=kw, sh=sh, sw=sw, pt=ph, pb=ph,
        pl=pw, pr=pw, dh=dh, dw=dw, groups=g, padding_mode="zeros",
        dtype=DTYPE_NAMES[x.dtype], has_bias=b is not None, unbatched=unbatched,
        oh=output_size(oh, ph, ph, kh, sh, dh), ow=output_size(ow, pw, pw, kw, sw, dw)))
    x = _extended(np.ascontiguousarray(x), spec)
    w = np.ascontiguousarray(w)
    if b is not None:
        b = np.ascontiguousarray(b)
    return spec, x, w, b


def _replace(spec, **fields):
    new = type(spec)._trusted({**spec.__dict__, **fields})
    return new
