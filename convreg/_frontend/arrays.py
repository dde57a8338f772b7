"""Conversion of array arguments: ndarrays, array-likes and CPU torch tensors to native
float32 / float64 ndarrays (no copy when possible), and checks that what a call would
allocate fits in memory."""

from __future__ import annotations

import functools
import os

import numpy as np

from .._errors import ConvSpecError, ConvTypeError
from .hyper import MAX_EXTENT

DTYPES = ("float32", "float64")


def torch_to_numpy(obj):
    """CPU torch tensors (and anything with .detach().cpu().numpy()) become ndarrays."""
    mod = type(obj).__module__ or ""
    if mod.startswith("torch") and hasattr(obj, "detach"):
        try:
            return obj.detach().cpu().numpy()
        except (TypeError, RuntimeError):
            return obj   # e.g. bfloat16, which NumPy lacks: _as_array reports it by name
    return obj


def as_array(name: str, obj, dtype_hint):
    """Convert an argument to an ndarray of float32/float64 without copying when possible.

    ndarrays (and tensors) keep their dtype, which must be float32 or float64; plain
    Python array-likes of numbers take ``dtype_hint`` (float64 for ints/bools without one).
    """
    if type(obj) is np.ndarray and obj.dtype in _NATIVE_FLOATS:
        return obj
    try:
        obj = torch_to_numpy(obj)
        has_own_dtype = hasattr(obj, "dtype")
        arr = np.asarray(obj)
    except Exception as exc:  # any failure to convert is the caller's type error
        raise ConvTypeError(
            f"{name} must be an array of float32 or float64 numbers, but got an object of "
            f"type {type(obj).__name__} that NumPy cannot convert: {exc}") from None
    kind = arr.dtype.kind
    if not has_own_dtype and kind == "f" and dtype_hint is not None:
        return arr.astype(dtype_hint)
    if kind == "f" and arr.dtype.itemsize in (4, 8):
        # Compiled kernels read native-endian floats only.
        return arr if arr.dtype.isnative else arr.astype(arr.dtype.newbyteorder("="))
    if kind in "iub" and not has_own_dtype:
        return arr.astype(dtype_hint or np.float64)
    raise ConvTypeError(
        f"{name} must have dtype float32 or float64, but got {name} with dtype "
        f"{arr.dtype}{'; convert it with .astype(np.float32)' if kind in 'iubf' else ''}")


_NATIVE_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
DTYPE_NAMES = {np.dtype(np.float32): "float32", np.dtype(np.float64): "float64"}


def check_memory(what: str, shape: tuple, itemsize: int) -> None:
    count = 1
    for s in shape:
        count *= s
    nbytes = count * itemsize
    limit = physical_memory()
    if count >= MAX_EXTENT or (limit and nbytes > limit):
        raise ConvSpecError(
            f"{what} of shape {shape} would need {nbytes / 2**30:.3g} GiB, more than the "
            f"{limit / 2**30:.3g} GiB of memory this machine has")


@functools.lru_cache(maxsize=None)
def physical_memory() -> int:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 0


