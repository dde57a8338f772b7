"""The ``torch`` backend: ``torch.nn.functional.conv2d``, shipped through the plugin entry point.

``make_backend`` returns None when torch does not import, so the backend is simply
absent (no warning) on machines without torch.
"""

from __future__ import annotations

import numpy as np

from .base import Backend


class TorchBackend(Backend):
    name = "torch"
    description = "torch.nn.functional.conv2d (PyTorch's CPU convolution)"

    def __init__(self, torch):
        self._torch = torch

    def conv2d(self, spec, x, w, b, ctx):
        torch = self._torch
        F = torch.nn.functional
        threads = ctx.threads
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        with torch.no_grad():
            xt = _tensor(torch, x)
            if (spec.pt, spec.pl) == (spec.pb, spec.pr):
                padding = (spec.pt, spec.pl)
            else:  # F.conv2d pads symmetrically only
                xt, padding = F.pad(xt, (spec.pl, spec.pr, spec.pt, spec.pb)), 0
            out = F.conv2d(xt, _tensor(torch, w), None if b is None else _tensor(torch, b),
                           stride=(spec.sh, spec.sw), padding=padding,
                           dilation=(spec.dh, spec.dw), groups=spec.groups)
        return out.numpy()

    # ------------------------------------------------------------- gradients
    def _threads(self, ctx):
        if self._torch.get_num_threads() != ctx.threads:
            self._torch.set_num_threads(ctx.threads)

    def conv2d_input(self, spec, grad_output, w, ctx):
        """torch.nn.grad.conv2d_input (asymmetric padding: on the padded input, cropped)."""
        torch = self._torch
        self._threads(ctx)
        sym = (spec.pt, spec.pl) == (spec.pb, spec.pr)
        full = spec if sym else spec.after_explicit_padding()
        with torch.no_grad():
            g = torch.nn.grad.conv2d_input(
                full.input_shape, _tensor(torch, w), _tensor(torch, grad_output),
                stride=(spec.sh, spec.sw), padding=(full.pt, full.pl),
                dilation=(spec.dh, spec.dw), groups=spec.groups).numpy()
        if not sym:
            g = np.ascontiguousarray(g[:, :, spec.pt:spec.pt + spec.h,
                                       spec.pl:spec.pl + spec.w])
        return g

    def conv2d_weight(self, spec, x, grad_output, ctx):
        """torch.nn.grad.conv2d_weight (asymmetric padding: written into the input)."""
        torch = self._torch
        F = torch.nn.functional
        self._threads(ctx)
        with torch.no_grad():
            xt = _tensor(torch, x)
            if (spec.pt, spec.pl) == (spec.pb, spec.pr):
                padding = (spec.pt, spec.pl)
            else:
                xt, padding = F.pad(xt, (spec.pl, spec.pr, spec.pt, spec.pb)), (0, 0)
            g = torch.nn.grad.conv2d_weight(
                xt, spec.weight_shape, _tensor(torch, grad_output), stride=(spec.sh, spec.sw),
                padding=padding, dilation=(spec.dh, spec.dw), groups=spec.groups)
        return g.numpy()

    def info(self) -> dict:
        return {**super().info(), "version": self._torch.__version__}


def _tensor(torch, a):
    # torch.from_numpy warns on read-only arrays; a copy is cheaper than the warning.
    return torch.from_numpy(a if a.flags.writeable else a.copy())


def make_backend():
    try:
        import torch
    except ImportError:
        return None
    return TorchBackend(torch)
