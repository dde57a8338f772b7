"""convreg: 2-D convolution on NumPy arrays with PyTorch's Conv2d semantics,
sent through a registry to swappable backends.

    >>> import numpy as np, convreg
    >>> convreg.conv2d(np.ones((1, 1, 3, 3)), np.ones((1, 1, 2, 2)), backend="python")
    array([[[[4., 4.],
             [4., 4.]]]])

How a call flows, and where each part lives: docs/architecture.md.
"""

__version__ = "0.2.0"

# Convolution
from ._api import Explanation, conv2d, conv_transpose2d, explain
from ._layer import Conv2d, ConvTranspose2d
from . import grad
from ._frontend.hyper import output_size
from ._frontend.spec import ConvSpec, spec_for_shapes

# Backend control
from .backends.base import Backend, OptionSpec, Support
from ._dispatch.registry import (
    available_backends,
    get_backend,
    register_backend,
    unregister_backend,
)
from ._settings.backend import CurrentBackend, current_backend, set_backend, use_backend
from ._settings.threads import get_threads, set_threads, use_threads
from ._settings.options import set_options, use_options
from ._settings.chain import reload_config
from ._info import show_config

# Errors
from ._errors import BackendError, ConfigError, ConvregError, ConvSpecError, ConvTypeError

from ._source_tree import warn_if_unbuilt as _warn_if_unbuilt

_warn_if_unbuilt()

__all__ = [
    "conv2d", "Conv2d", "conv_transpose2d", "ConvTranspose2d", "grad", "ConvSpec", "output_size", "spec_for_shapes", "explain",
    "Explanation",
    "Backend", "OptionSpec", "Support", "CurrentBackend", "available_backends",
    "current_backend", "get_backend", "register_backend", "set_backend",
    "unregister_backend", "use_backend", "get_threads", "set_threads", "use_threads",
    "set_options", "use_options", "reload_config", "show_config",
    "BackendError", "ConfigError", "ConvregError", "ConvSpecError", "ConvTypeError",
]
