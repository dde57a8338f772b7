"""``Conv2d`` and ``ConvTranspose2d``: layers holding weight and bias as NumPy arrays, like
``torch.nn.Conv2d`` / ``torch.nn.ConvTranspose2d``, with a hand-driven ``backward``.

Training by hand: ``y = layer(x)`` keeps a reference to ``x`` (the layer's last input;
it is not copied, so do not modify it in place before ``backward``);
``gx = layer.backward(gy)`` returns the gradient w.r.t. that input and *adds* the
gradients w.r.t. the parameters to ``layer.weight_grad`` / ``layer.bias_grad`` (arrays of
the parameters' shapes, created as zeros on first use); ``layer.zero_grad()`` resets them.
An SGD step is then ``layer.weight -= lr * layer.weight_grad`` (see docs/training.md).
"""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np

from . import grad as _grad
from ._api import conv2d, conv2d_checked, conv_transpose2d
from ._errors import ConvSpecError, ConvTypeError
from ._frontend.arrays import DTYPES, torch_to_numpy
from ._frontend.grad import output_padding_for
from ._frontend.hyper import _pair, is_int, normalize_hyper, normalize_kernel_size


def _positive(name, value) -> int:
    if not is_int(value):
        raise ConvTypeError(f"{name} must be an int, but got {name}={value!r}")
    if value < 1:
        raise ConvSpecError(f"{name} must be >= 1, but got {name}={value!r}")
    return int(value)


class _ConvLayer:
    """What Conv2d and ConvTranspose2d share: arguments, init, state dict, gradients."""

    _kind = "layer"

    def _setup(self, in_channels, out_channels, kernel_size, stride, padding, dilation,
               groups, bias, padding_mode, dtype, backend, seed, weight_shape):
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
        self.weight = np.empty(weight_shape(), dtype=self.dtype)
        self.bias = np.empty(self.out_channels, dtype=self.dtype) if bias else None
        self.weight_grad = None
        self.bias_grad = None
        self._input = None
        self.reset_parameters(seed)

    def reset_parameters(self, seed=None) -> None:
        """Draw weight and bias uniform in ±1/sqrt(fan_in), fan_in = weight.shape[1]*kH*kW.

        PyTorch uses kaiming_uniform_(a=sqrt(5)), whose bound gain*sqrt(3/fan_in) with
        gain = sqrt(2/(1+a^2)) reduces to 1/sqrt(fan_in); see
        https://github.com/pytorch/pytorch/issues/15314#issuecomment-477448573 (cited in
        torch/nn/modules/conv.py). ``init._calculate_fan_in_and_fan_out`` takes fan_in
        from the weight's second dimension: in_channels/groups for Conv2d,
        out_channels/groups for ConvTranspose2d; the bias bound uses the same fan_in.
        """
        rng = np.random.default_rng(seed)
        fan_in = self.weight.shape[1] * self.kernel_size[0] * self.kernel_size[1]
        bound = 1.0 / math.sqrt(fan_in)
        self.weight[...] = rng.uniform(-bound, bound, self.weight.shape)
        if self.bias is not None:
            self.bias[...] = rng.uniform(-bound, bound, self.bias.shape)

    def __call__(self, *args, **kwargs):
        """``layer(x)`` is ``layer.forward(x)`` (also when a subclass overrides forward)."""
        return self.forward(*args, **kwargs)

    # ------------------------------------------------------------- gradients
    def zero_grad(self) -> None:
        """Set ``weight_grad`` (and ``bias_grad`` when the layer has a bias) to zeros."""
        self.weight_grad = np.zeros_like(self.weight)
        self.bias_grad = None if self.bias is None else np.zeros_like(self.bias)

    def _last_input(self):
        if self._input is None:
            raise ConvSpecError(
                f"{type(self).__name__}.backward() needs the input of a forward call: call "
                f"the layer on an input first (the layer keeps a reference to its last input)")
        return self._input

    def _accumulate(self, weight_grad, grad_output) -> None:
        if self.weight_grad is None:
            self.zero_grad()
        self.weight_grad += weight_grad
        if self.bias is not None:
            if self.bias_grad is None:
                self.bias_grad = np.zeros_like(self.bias)
            self.bias_grad += _grad.conv2d_bias(grad_output)

    # ------------------------------------------------------------- state
    def state_dict(self) -> "OrderedDict":
        """``{'weight': ..., 'bias': ...}`` (no 'bias' key when the layer has none)."""
        state = OrderedDict(weight=self.weight)
        if self.bias is not None:
            state["bias"] = self.bias
        return state

    def load_state_dict(self, state_dict, strict=True) -> None:
        """Copy weight and bias from a mapping of arrays or torch tensors (e.g. a torch
        layer's ``state_dict()``), cast to the layer's dtype. With ``strict`` (default)
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

    def _repr_middle(self) -> str:
        return ""

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        s += self._repr_middle()
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
        return f"{type(self).__name__}({self.extra_repr()})"


class Conv2d(_ConvLayer):
    """A 2-D convolution layer with PyTorch's ``Conv2d`` arguments, init and state dict.

    ``weight`` has shape (out_channels, in_channels/groups, kH, kW) and ``bias``
    (out_channels,) or None; both are initialised uniform in ``±1/sqrt(fan_in)`` with
    ``fan_in = in_channels/groups * kH * kW``, as PyTorch does. Two fresh layers
    therefore differ; give the same ``seed`` (or ``load_state_dict``) to make them agree.

    ``backward(grad_output)`` returns the gradient w.r.t. the last input and adds the
    parameter gradients to ``weight_grad`` / ``bias_grad`` (see the module docstring).

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
        self._setup(in_channels, out_channels, kernel_size, stride, padding, dilation,
                    groups, bias, padding_mode, dtype, backend, seed,
                    lambda: (self.out_channels, self.in_channels // self.groups,
                             *self.kernel_size))

    def forward(self, input):
        """conv2d(input, self.weight, self.bias, ...) with the layer's settings; keeps a
        reference to ``input`` for :meth:`backward`."""
        raw = (self.stride, self.padding, self.dilation, self.groups, self.padding_mode)
        if raw != getattr(self, "_hyper_raw", None):
            # Checked at construction; re-checked only if an attribute was reassigned.
            self._hyper, self._hyper_raw = normalize_hyper(*raw), raw
        cache = self.__dict__.setdefault("_weight_cache", {})
        out = conv2d_checked(input, self.weight, self.bias, self._hyper,
                             backend=self.backend, weight_cache=cache)
        self._input = input
        return out

    def backward(self, grad_output):
        """Gradient w.r.t. the last forward call's input; adds d/dweight and d/dbias to
        ``weight_grad`` / ``bias_grad``. ``grad_output`` has the forward output's shape."""
        x = self._last_input()
        args = (self.stride, self.padding, self.dilation, self.groups, self.padding_mode)
        shape = np.shape(torch_to_numpy(x))
        gx = _grad.conv2d_input(shape, self.weight, grad_output, *args, backend=self.backend)
        gw = _grad.conv2d_weight(x, self.weight.shape, grad_output, *args,
                                 backend=self.backend)
        self._accumulate(gw, grad_output)
        return gx


class ConvTranspose2d(_ConvLayer):
    """A 2-D transposed convolution layer with PyTorch's ``ConvTranspose2d`` arguments,
    init, repr and state dict.

    ``weight`` has shape (in_channels, out_channels/groups, kH, kW) and ``bias``
    (out_channels,); both uniform in ``±1/sqrt(fan_in)`` with
    ``fan_in = out_channels/groups * kH * kW`` (torch's fan_in of this weight).
    ``forward(input, output_size=None)``: ``output_size`` (H_out, W_out), or a longer
    shape whose last two entries are used, picks the output_padding as torch does.
    Only ``padding_mode='zeros'`` exists, as in torch.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 output_padding=0, groups=1, bias=True, dilation=1, padding_mode="zeros", *,
                 dtype="float32", backend=None, seed=None):
        if isinstance(padding, str):
            raise ConvTypeError(f"padding of ConvTranspose2d must be an int or a pair of "
                                f"ints, but got padding={padding!r}")
        if padding_mode != "zeros":
            raise ConvSpecError(f'Only "zeros" padding mode is supported for '
                                f'ConvTranspose2d, but got padding_mode={padding_mode!r}')
        self.output_padding = _pair("output_padding", output_padding, 0)
        self._setup(in_channels, out_channels, kernel_size, stride, padding, dilation,
                    groups, bias, padding_mode, dtype, backend, seed,
                    lambda: (self.in_channels, self.out_channels // self.groups,
                             *self.kernel_size))
        for d, name in enumerate(("height", "width")):
            if (self.output_padding[d] >= self.stride[d]
                    and self.output_padding[d] >= self.dilation[d]):
                raise ConvSpecError(
                    f"output_padding must be smaller than either stride or dilation, but got "
                    f"output_padding={output_padding!r} with stride={stride!r} and "
                    f"dilation={dilation!r}")
        self._last_output_padding = self.output_padding

    def _repr_middle(self) -> str:
        if self.output_padding != (0, 0):
            return f", output_padding={self.output_padding}"
        return ""

    def _output_padding(self, input, output_size):
        if output_size is None:
            return self.output_padding
        shape = np.shape(torch_to_numpy(input))
        if len(shape) not in (3, 4):
            raise ConvSpecError(f"input must be 3-D (C_in, H, W) or 4-D (N, C_in, H, W), but "
                                f"got input of shape {shape}")
        return output_padding_for(output_size, shape[-2:], self.stride, self.padding,
                                  self.kernel_size, self.dilation)

    def forward(self, input, output_size=None):
        """conv_transpose2d(input, self.weight, self.bias, ...) with the layer's settings;
        keeps a reference to ``input`` for :meth:`backward`."""
        op = self._output_padding(input, output_size)
        out = conv_transpose2d(input, self.weight, self.bias, self.stride, self.padding, op,
                               self.groups, self.dilation, backend=self.backend)
        self._input, self._last_output_padding = input, op
        return out

    def backward(self, grad_output):
        """Gradient w.r.t. the last forward call's input; adds d/dweight and d/dbias to
        ``weight_grad`` / ``bias_grad``.

        The transposed convolution is the adjoint of ``conv2d(., weight)``, so the input
        gradient is that forward convolution of ``grad_output`` and the weight gradient is
        ``conv2d_weight(grad_output, weight.shape, input)``.
        """
        x = self._last_input()
        xa = np.asarray(torch_to_numpy(x))
        go = np.asarray(torch_to_numpy(grad_output))
        args = (self.stride, self.padding, self.dilation, self.groups)
        gx = conv2d(go, self.weight, None, *args, backend=self.backend)
        h, w = xa.shape[-2:]
        extra = (gx.shape[-2] - h, gx.shape[-1] - w)
        xw = xa
        if extra != (0, 0):
            # output_padding >= stride (allowed below the dilation): the forward
            # convolution of the output is larger than the input; those rows got nothing.
            gx = np.ascontiguousarray(gx[..., :h, :w])
            pads = [(0, 0)] * (xa.ndim - 2) + [(0, extra[0]), (0, extra[1])]
            xw = np.pad(xa, pads)
        gw = _grad.conv2d_weight(go, self.weight.shape, xw, *args, backend=self.backend)
        self._accumulate(gw, grad_output)
        return gx
