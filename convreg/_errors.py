"""Exceptions raised by convreg.

Every error a user can trigger is a subclass of ``ValueError`` or ``TypeError`` so
that code written against NumPy or PyTorch conventions catches it, and of
``ConvregError`` so that code can catch convreg's errors specifically.
"""


class ConvregError(Exception):
    """Base class of every error convreg raises on purpose."""


class ConvSpecError(ConvregError, ValueError):
    """An argument of a convolution call has an invalid value."""


class ConvTypeError(ConvregError, TypeError):
    """An argument of a convolution call has an invalid type or dtype."""


class ConfigError(ConvregError, ValueError):
    """The configuration (file or environment) is malformed or names unknown things."""


class BackendError(ConvregError, ValueError):
    """A backend name is unknown, or no backend in the chosen chain supports the call."""
