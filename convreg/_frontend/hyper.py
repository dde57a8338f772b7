"""Normalisation of the non-array arguments (stride, padding, dilation, groups, padding
mode, kernel size) into plain ints, with errors that name the argument, the value received
and what is allowed (as ``torch.nn.modules.utils._pair`` and ``conv.py`` do)."""

from __future__ import annotations

import numbers

import numpy as np

from .._errors import ConvSpecError, ConvTypeError

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
PADDING_STRINGS = ("valid", "same")

# Offsets inside compiled loops are Py_ssize_t products such as n*c*h*w; keeping every
# extent below this bound means no such product can overflow 64 bits.
MAX_EXTENT = 2**62



def is_int(value) -> bool:
    if type(value) is int:  # the common case, without the slow ABC check
        return True
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _pair(name: str, value, minimum: int) -> tuple:
    """Normalise an int or a 1-/2-sequence of ints into a pair, each at least ``minimum``."""
    if type(value) is int and minimum <= value < MAX_EXTENT:
        return (value, value)
    if is_int(value):
        items = (int(value), int(value))
    elif isinstance(value, (tuple, list)) and len(value) in (1, 2) and all(map(is_int, value)):
        items = tuple(int(v) for v in value) * (2 if len(value) == 1 else 1)
    else:
        raise ConvTypeError(
            f"{name} must be an int or a pair of ints, but got {name}={value!r}")
    for v in items:
        if v < minimum:
            raise ConvSpecError(
                f"{name} must be >= {minimum}, but got {name}={value!r}")
        if v >= MAX_EXTENT:
            raise ConvSpecError(f"{name} is too large: got {name}={value!r}")
    return items


def _groups(value) -> int:
    if not is_int(value):
        raise ConvTypeError(f"groups must be an int, but got groups={value!r}")
    if value < 1:
        raise ConvSpecError(f"groups must be >= 1, but got groups={value!r}")
    return int(value)


def _padding_mode(value) -> str:
    if not isinstance(value, str) or value not in PADDING_MODES:
        raise ConvSpecError(
            f"padding_mode must be one of {set(PADDING_MODES)}, but got padding_mode={value!r}")
    return value


def normalize_kernel_size(value) -> tuple:
    """kernel_size of a layer: an int or a pair of ints, each >= 1."""
    return _pair("kernel_size", value, 1)


def normalize_hyper(stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros"):
    """Check the call's non-array arguments; padding strings are resolved later (need kernel)."""
    stride = _pair("stride", stride, 1)
    dilation = _pair("dilation", dilation, 1)
    groups = _groups(groups)
    padding_mode = _padding_mode(padding_mode)
    if isinstance(padding, str):
        if padding not in PADDING_STRINGS:
            raise ConvSpecError(
                f"padding must be one of {set(PADDING_STRINGS)}, an int or a pair of ints, "
                f"but got padding={padding!r}")
        if padding == "same" and stride != (1, 1):
            raise ConvSpecError(
                f"padding='same' is not supported for strided convolutions, but got "
                f"stride={stride}; use an explicit padding or stride=1")
    else:
        padding = _pair("padding", padding, 0)
    return stride, padding, dilation, groups, padding_mode


def four_sided_padding(padding, kernel: tuple, dilation: tuple) -> tuple:
    """(pt, pb, pl, pr) from an int pair, 'valid', or 'same' (odd extra at bottom/right)."""
    if padding == "valid":
        return (0, 0, 0, 0)
    if padding == "same":
        sides = []
        for k, d in zip(kernel, dilation):
            total = d * (k - 1)
            sides += [total // 2, total - total // 2]
        return tuple(sides)
    ph, pw = padding
    return (ph, ph, pw, pw)




def output_size(size: int, pad_before: int, pad_after: int, kernel: int, stride: int,
                dilation: int) -> int:
    """``floor((size + pad_before + pad_after - dilation*(kernel-1) - 1) / stride) + 1``."""
    return (size + pad_before + pad_after - dilation * (kernel - 1) - 1) // stride + 1


def source_index(k: int, size: int, mode: str):
    """The input index padded coordinate ``k`` (shifted by the pad, so 0 is the first
    input element) reads under ``mode``, or None where zero padding reads nothing. The
    front end guarantees one fold suffices (reflect pads < size, circular pads <= size)."""
    if 0 <= k < size:
        return k
    if mode == "zeros":
        return None
    if mode == "reflect":
        return -k if k < 0 else 2 * size - 2 - k
    if mode == "replicate":
        return 0 if k < 0 else size - 1
    return k % size  # circular
