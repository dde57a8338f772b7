"""The public calls: signature, docstring and a hand-off.

    conv2d(...) -> front end (validated spec) -> settings resolved once (CallContext)
                -> selection (registry, chooser, supports()) -> padding -> backend kernel
"""

from __future__ import annotations

from typing import NamedTuple

from ._dispatch.grad import run_transpose
from ._dispatch.select import OPS, run, select
from ._errors import ConvSpecError
from ._frontend.grad import prepare_transpose
from ._frontend.spec import prepare, spec_for_shapes
from ._settings.context import call_context


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
    out = run(spec, x, w, b, call_context(backend))
    return out[0] if spec.unbatched else out


def conv2d_checked(input, weight, bias, hyper, backend=None, weight_cache=None):
    """``conv2d`` with stride, padding, dilation, groups and padding mode already
    normalised (``hyper``, from ``normalize_hyper``): what a layer calls, having checked
    its own settings once at construction, as torch's layers do. ``weight_cache``: the
    layer's dict for work derived from its weights (see ``CallContext.weight_cache``)."""
    spec, x, w, b = prepare(input, weight, bias, hyper=hyper)
    ctx = call_context(backend)
    ctx.weight_cache = weight_cache
    out = run(spec, x, w, b, ctx)
    return out[0] if spec.unbatched else out


class Explanation(NamedTuple):
    """``backend``: what the selection rules give; ``runs``: the concrete backend that
    would compute the call; ``source``: the rule that chose ``backend``; ``reason``;
    ``decided_by``: how a chooser picked ``runs`` — "rule" (its shape rules) or
    "measurement" (the tuning cache, ``tune = "measure"``; ``reason`` gives the measured
    times and when) — or "list" (no chooser: the first backend that supports the call)."""

    backend: str
    runs: str
    source: str
    reason: str
    decided_by: str = "list"

    def __str__(self) -> str:
        runs = "" if self.runs == self.backend else f" -> {self.runs}"
        how = "" if self.decided_by == "list" else f"; by {self.decided_by}"
        return f"{self.backend}{runs} (chosen by {self.source}{how}): {self.reason}"


def explain(input_shape, weight_shape, *, bias=True, dtype="float32", stride=1, padding=0,
            dilation=1, groups=1, padding_mode="zeros", backend=None,
            op="conv2d") -> Explanation:
    """Say which backend a ``conv2d`` call on arrays of these shapes would run, and why.

    ``op`` names the operation on the same forward shapes: ``"conv2d"``, or a gradient,
    ``"conv2d_input"`` (also what ``conv_transpose2d`` runs) or ``"conv2d_weight"``.

    >>> import convreg
    >>> str(convreg.explain((1, 8, 16, 16), (8, 8, 3, 3), backend="python"))
    'python (chosen by argument): first backend in the list that supports the call'
    """
    spec = spec_for_shapes(input_shape, weight_shape, bias=bias, dtype=dtype, stride=stride,
                           padding=padding, dilation=dilation, groups=groups,
                           padding_mode=padding_mode)
    if op not in OPS:
        raise ConvSpecError(f"op must be one of {list(OPS)}, but got op={op!r}")
    ctx = call_context(backend)
    choice = select(spec, ctx, op)
    prefix = "".join(f"skipped {r}; " for r in choice.refusals)
    return Explanation(choice.label, choice.runs, ctx.backend_source, prefix + choice.reason,
                       choice.decided_by)


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0,
                     groups=1, dilation=1, *, backend=None):
    """2-D transposed convolution with the semantics of
    ``torch.nn.functional.conv_transpose2d`` (note torch's order: groups before dilation).

    Parameters
    ----------
    input : array_like, shape (N, C_in, H, W) or (C_in, H, W)
    weight : array_like, shape (C_in, C_out / groups, kH, kW)
    bias : array_like, shape (C_out,), optional
    stride, dilation : int or (int, int), each >= 1
    padding : int or (int, int)
        ``dilation*(kernel-1) - padding`` zeros are (conceptually) added on each side.
    output_padding : int or (int, int)
        Extra size added to one side of the output; must be smaller than either the
        stride or the dilation of that axis.
    groups : int
    backend : as for :func:`conv2d`.

    Returns
    -------
    numpy.ndarray of shape (N, C_out, H_out, W_out) (or unbatched), with
    ``H_out = (H-1)*stride - 2*padding + dilation*(kH-1) + output_padding + 1``.
    It is the gradient of ``conv2d`` w.r.t. its input (plus the bias), and is computed
    by the selected backend's ``conv2d_input``.
    """
    spec, x, w, b = prepare_transpose(input, weight, bias, stride, padding, output_padding,
                                      groups, dilation)
    out = run_transpose(spec, x, w, b, call_context(backend))
    return out[0] if spec.unbatched else out
