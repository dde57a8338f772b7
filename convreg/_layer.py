"""``Conv2d``: a layer holding weight and bias as NumPy arrays, like ``torch.nn.Conv2d``."""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np

from ._api import conv2d
from ._errors import ConvSpecError, ConvTypeError
from ._frontend.arrays import DTYPES, torch_to_numpy
from ._frontend.hyper import is_int, normalize_hyper, normalize_kernel_size


def _positive(name, value) -> int:
    if not is_int(value):
        raise ConvTypeError(f"{name} must be an int, but got {name}={value!r}")
    if value < 1:
        raise ConvSpecError(f"{name} must be >= 1, but got {name}={value!r}")
    return int(value)


class Conv2d:
    """A 2-D convolution layer with PyTorch's ``Conv2d`` arguments, init and state dict.

    ``weight`` has shape (out_channels, in_channels/groups, kH, kW) and ``bias``
    (out_channels,) or None; both are initialised uniform in ``±1/sqrt(fan_in)`` with
    ``fan_in = in_channels/groups * kH * kW``, as PyTorch does. Two fresh layers
    therefore differ; give the same ``seed`` (or ``load_state_dict``) to make them agree.

    Examples
    --------
    >>> import numpy as np, convreg
    >>> layer = convreg.Conv2d(1, 1, 3, seed=0)
    >>> layer(np.zeros((1, 1, 4, 4), dtype=np.float32)).shape
    (1, 1, 2, 2)
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 dilation=1, groups=1, bias=True, padding_mode="zeros", *, dtype="float32",
                 backend=None, seed=None):
        self.in_channels = _positive("in_channels", in_channels)
        self.out_channels = _positive("out_channels", out_channels)
        self.kernel_size = normalize_kernel_size(kernel_size)
        (self.stride, self.padding, self.dilation, self.groups,
         self.padding_mode) = normalize_hyper(stride, padding, dilation, groups, padding_mode)
        if self.in_channels % self.groups:
            raise ConvSpecError(f"in_channels must be divisible by groups, but got "
                                f"in_channels={in_channels} and groups={groups}")
        if self.out_channels % self.groups:
            raise ConvSpecError(f"out_channels must be divisible by groups, but got "
                                f"out_channels={out_channels} and groups={groups}")
        if not isinstance(bias, (bool, np.bool_)):
            raise ConvTypeError(f"bias must be True or False, but got bias={bias!r}")
        try:
            # None means the default, as in torch; layers hold native-endian arrays.
            self.dtype = np.dtype("float32" if dtype is None else dtype).newbyteorder("=")
        except TypeError:
            self.dtype = None
        if self.dtype is None or self.dtype.name not in DTYPES:
            raise ConvTypeError(f"dtype must be one of {list(DTYPES)}, but got dtype={dtype!r}")
        self.backend = backend
        self.weight = np.empty((self.out_channels, self.in_channels // self.groups,
                                *self.kernel_size), dtype=self.dtype)
        self.bias = np.empty(self.out_channels, dtype=self.dtype) if bias else None
        self.reset_parameters(seed)

    def reset_parameters(self, seed=None) -> None:
        """Draw weight and bias uniform in ±1/sqrt(fan_in).

        PyTorch uses kaiming_uniform_(a=sqrt(5)), whose bound gain*sqrt(3/fan_in) with
        gain = sqrt(2/(1+a^2)) reduces to 1/sqrt(fan_in); see
        https://github.com/pytorch/pytorch/issues/15314#issuecomment-477448573 (cited in
        torch/nn/modules/conv.py).
        """
        rng = np.random.default_rng(seed)
        fan_in = self.weight.shape[1] * self.kernel_size[0] * self.kernel_size[1]
        bound = 1.0 / math.sqrt(fan_in)
        self.weight[...] = rng.uniform(-bound, bound, self.weight.shape)
        if self.bias is not None:
            self.bias[...] = rng.uniform(-bound, bound, self.bias.shape)

    def forward(self, input):
        """conv2d(input, self.weight, self.bias, ...) with the layer's settings."""
        return conv2d(input, self.weight, self.bias, self.stride, self.padding, self.dilation,
                      self.groups, self.padding_mode, backend=self.backend)

    def __call__(self, input):
        """``layer(x)`` is ``layer.forward(x)`` (also when a subclass overrides forward)."""
        return self.forward(input)

    def state_dict(self) -> "OrderedDict":
        """``{'weight': ..., 'bias': ...}`` (no 'bias' key when the layer has none)."""
        state = OrderedDict(weight=self.weight)
        if self.bias is not None:
            state["bias"] = self.bias
        return state

    def load_state_dict(self, state_dict, strict=True) -> None:
        """Copy weight and bias from a mapping of arrays or torch tensors (e.g. a torch
        ``Conv2d.state_dict()``), cast to the layer's dtype. With ``strict`` (default)
        missing and unexpected keys are errors."""
        expected = set(self.state_dict())
        given = set(state_dict)
        missing, unexpected = sorted(expected - given), sorted(given - expected)
        if strict and (missing or unexpected):
            raise ConvSpecError(
                f"state_dict does not match the layer: missing keys {missing}, unexpected "
                f"keys {unexpected}; expected exactly {sorted(expected)}")
        new = {}
        for key in sorted(expected & given):
            value = np.asarray(torch_to_numpy(state_dict[key]))
            target = getattr(self, key)
            if value.shape != target.shape:
                raise ConvSpecError(f"state_dict[{key!r}] has shape {value.shape}, but the "
                                    f"layer's {key} has shape {target.shape}")
            if value.dtype.kind not in "fiu":
                raise ConvTypeError(f"state_dict[{key!r}] must hold real numbers, but got "
                                    f"dtype {value.dtype}")
            new[key] = value.astype(self.dtype, copy=True)
        for key, value in new.items():
            setattr(self, key, value)

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        if self.dtype != np.float32:
            s += f", dtype={self.dtype.name}"
        if self.backend is not None:
            s += f", backend={self.backend!r}"
        return s

    def __repr__(self) -> str:
        return f"Conv2d({self.extra_repr()})"
