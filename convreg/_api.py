"""``conv2d``: signature, docstring and a hand-off to the chosen backend."""

from __future__ import annotations

import numpy as np

from ._config import begin_call, end_call
from ._errors import BackendError
from ._registry import get_backend, is_unavailable_builtin, resolve
from ._spec import prepare


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
           padding_mode="zeros", *, backend=None):
    """2-D convolution (cross-correlation) with the semantics of ``torch.nn.functional.conv2d``.

    Parameters
    ----------
    input : array_like, shape (N, C_in, H, W) or (C_in, H, W)
        float32 or float64; any memory layout; read-only arrays and CPU torch tensors
        are accepted. Never modified.
    weight : array_like, shape (C_out, C_in / groups, kH, kW)
        Same dtype as ``input``.
    bias : array_like, shape (C_out,), optional
    stride, dilation : int or (int, int), each >= 1
    padding : int, (int, int), ``"valid"`` or ``"same"``
        ``"same"`` (stride 1 only) pads ``dilation*(k-1)`` in total per axis, the odd
        extra at the bottom/right, as PyTorch does.
    groups : int
        Divides both C_in and C_out; ``groups == C_in`` is a depthwise convolution.
    padding_mode : {"zeros", "reflect", "replicate", "circular"}
        As ``torch.nn.Conv2d``: reflect needs padding < the input size of that axis,
        circular wraps around at most once.
    backend : str or list of str, optional
        Backend for this call (an ordered list: the first that supports the call runs).
        Without it the selection rules apply: ``use_backend()`` > ``set_backend()`` >
        ``CONVREG_BACKEND`` > config file > ``"cython"``.

    Returns
    -------
    numpy.ndarray, shape (N, C_out, H_out, W_out) or (C_out, H_out, W_out)
        In the input's dtype, with
        ``H_out = floor((H + pad_top + pad_bottom - dilation[0]*(kH-1) - 1) / stride[0]) + 1``
        and likewise ``W_out``::

            out[n, o, i, j] = bias[o] + sum_{c, p, q} weight[o, c, p, q]
                              * xpad[n, g(o)*C_in/groups + c, i*sH + p*dH, j*sW + q*dW]

    Raises
    ------
    ConvSpecError (a ValueError), ConvTypeError (a TypeError)
        For any invalid argument; the message names the argument, the value and what
        is allowed.
    BackendError (a ValueError)
        Unknown backend name, or no backend in the chosen list supports the call.

    Examples
    --------
    >>> import numpy as np, convreg
    >>> x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    >>> w = np.ones((1, 1, 3, 3), dtype=np.float32)
    >>> convreg.conv2d(x, w, backend="python")
    array([[[[45., 54.],
             [81., 90.]]]], dtype=float32)
    >>> convreg.conv2d(x, w, padding="same", backend="python").shape
    (1, 1, 4, 4)
    """
    spec, x, w, b = prepare(input, weight, bias, stride, padding, dilation, groups,
                            padding_mode)
    token = begin_call()
    try:
        names, source = resolve(backend)
        out = run(spec, x, w, b, names, source)
    finally:
        end_call(token)
    return out[0] if spec.unbatched else out


def run(spec, x, w, b, names, source):
    """Run the first backend in ``names`` that supports ``spec``; return the 4-D result."""
    return call_backend(select(spec, names, source)[0], spec, x, w, b)


def select(spec, names, source):
    """(backend, refusals): the first backend in ``names`` that supports ``spec``, and why
    each one before it did not. Raises BackendError when none does."""
    refusals = []
    for name in names:
        if len(names) > 1 and isinstance(name, str) and is_unavailable_builtin(name):
            refusals.append(f"{name!r}: not available here")
            continue
        be = get_backend(name) if isinstance(name, str) else name
        answer = be.supports(spec)
        if answer:
            return be, refusals
        refusals.append(f"{getattr(be, 'name', name)!r}: {getattr(answer, 'reason', '') or 'no'}")
    raise BackendError(
        f"no backend chosen by {source} supports this call ({spec.describe()}); "
        + "; ".join(refusals))


def call_backend(be, spec, x, w, b):
    """Hand a validated call to one backend, realising padding it does not do natively."""
    if spec.n == 0:
        # Nothing to compute; compiled kernels never see an empty batch.
        return np.zeros(spec.output_shape, dtype=spec.dtype)
    if spec.padding_mode != "zeros" and spec.padding_mode not in getattr(
            be, "padding_modes", ("zeros",)):
        from ._padding import pad_explicitly
        from ._threads import get_threads

        spec, x = pad_explicitly(spec, x, get_threads())
    out = be.conv2d(spec, x, w, b)
    if not isinstance(out, np.ndarray) or out.shape != spec.output_shape or \
            out.dtype != np.dtype(spec.dtype):
        got = (f"{type(out).__name__} of shape {getattr(out, 'shape', None)} and dtype "
               f"{getattr(out, 'dtype', None)}")
        raise BackendError(
            f"backend {getattr(be, 'name', be)!r} returned {got}; expected an ndarray of shape "
            f"{spec.output_shape} and dtype {spec.dtype}")
    return out
