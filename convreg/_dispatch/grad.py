"""Running the gradient operations: selection as for conv2d (``select(spec, ctx, op)``),
then padding modes, the empty batch and the returned array's check.

Backends receive the forward spec with zero padding unless they list the call's padding
mode in ``padding_modes``: for the input gradient the dispatcher asks for the gradient
w.r.t. the explicitly padded input and folds it back (``fold.fold_padding``); for the
weight gradient it pads the input explicitly, as for conv2d.
"""

from __future__ import annotations

import numpy as np

from .fold import fold_padding
from .padding import _after_padding, pad_explicitly
from .select import _checked, _invoke_entry, _result, selected


def run_input(spec, grad_output, w, ctx):
    """The (batched) gradient w.r.t. the input of the forward call ``spec``."""
    entry = selected(spec, ctx, "conv2d_input")
    if spec.n == 0:
        return np.zeros(spec.input_shape, dtype=spec.dtype)
    if entry.native:
        return _result(_invoke_entry(entry, "conv2d_input", spec, grad_output, w, None, ctx),
                       entry, "conv2d_input")
    padded = _after_padding(spec)
    out = _invoke_entry(entry, "conv2d_input", padded, grad_output, w, None, ctx)
    out = _checked(out, entry.choice.backend, padded.input_shape, spec.dtype, "conv2d_input")
    return fold_padding(out, spec)


def run_weight(spec, x, grad_output, ctx):
    """The gradient w.r.t. the weight of the forward call ``spec``."""
    entry = selected(spec, ctx, "conv2d_weight")
    if spec.n == 0:
        return np.zeros(spec.weight_shape, dtype=spec.dtype)
    if not entry.native:
        spec, x = pad_explicitly(spec, x, ctx.threads)
    return _result(_invoke_entry(entry, "conv2d_weight", spec, x, grad_output, None, ctx),
                   entry, "conv2d_weight")


def run_transpose(spec, x, w, b, ctx):
    """conv_transpose2d: the input gradient of ``spec`` for grad_output ``x``, plus bias."""
    out = run_input(spec, x, w, ctx)
    if b is not None:
        if not out.flags.writeable:
            out = out.copy()
        out += b[:, None, None]
    return out
