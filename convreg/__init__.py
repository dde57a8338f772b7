"""convreg: 2-D convolution on NumPy arrays with PyTorch's Conv2d semantics,
sent through a registry to swappable backends.

    >>> import numpy as np, convreg
    >>> convreg.conv2d(np.ones((1, 1, 3, 3)), np.ones((1, 1, 2, 2)), backend="python")
    array([[[[4., 4.],
             [4., 4.]]]])
"""

__version__ = "0.1.0"

# Convolution
from ._api import conv2d
from ._layer import Conv2d
from ._spec import ConvSpec, output_size, spec_for_shapes

# Backend control
from ._backend import Backend, Support
from ._registry import (
    CurrentBackend,
    available_backends,
    current_backend,
    get_backend,
    register_backend,
    set_backend,
    unregister_backend,
    use_backend,
)
from ._threads import get_threads, set_threads, use_threads
from ._info import show_config
from ._explain import Explanation, explain

# Errors
from ._errors import BackendError, ConfigError, ConvregError, ConvSpecError, ConvTypeError

__all__ = [
    "conv2d", "Conv2d", "ConvSpec", "output_size", "spec_for_shapes",
    "Backend", "Support", "CurrentBackend", "available_backends", "current_backend",
    "get_backend", "register_backend", "set_backend", "unregister_backend", "use_backend",
    "get_threads", "set_threads", "use_threads", "show_config", "explain", "Explanation",
    "BackendError", "ConfigError", "ConvregError", "ConvSpecError", "ConvTypeError",
]
