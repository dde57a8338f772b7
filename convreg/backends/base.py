"""The backend protocol: what the dispatcher asks of every backend, built-in or plugin.

A backend is any object with ``supports(spec)`` and ``conv2d(spec, x, w, b[, ctx])``;
subclassing :class:`Backend` is optional. The gradient operations are optional too: a
backend without ``conv2d_input`` / ``conv2d_weight`` is declined for them, with that reason.
"""

from __future__ import annotations

from dataclasses import dataclass

from .._errors import ConfigError


@dataclass(frozen=True)
class Support:
    """The answer of ``Backend.supports``: truthy when the backend runs the call."""

    ok: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.ok


YES = Support(True)


def no(reason: str) -> Support:
    """A refusal with the reason shown to the user."""
    return Support(False, reason)


@dataclass(frozen=True)
class OptionSpec:
    """A per-backend setting (``[backends.<name>] key = value``): its type, bound, default."""

    kind: type
    default: object
    minimum: float = None
    choices: tuple = None
    doc: str = ""

    def check(self, value, label: str):
        """``value`` if it is valid, else a ConfigError naming ``label`` and what is allowed."""
        if self.kind is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        elif self.kind is bool:
            ok = isinstance(value, bool)
        else:
            ok = isinstance(value, self.kind) and not isinstance(value, bool)
        if not ok:
            raise ConfigError(
                f"{label}: expected {self.kind.__name__}"
                f"{'' if self.minimum is None else f' > {self.minimum}'}"
                f"{'' if self.choices is None else f' (one of {list(self.choices)})'}, "
                f"but got {value!r}")
        if self.minimum is not None and not value > self.minimum:
            raise ConfigError(f"{label}: expected a value > {self.minimum}, but got {value!r}")
        if self.choices is not None and value not in self.choices:
            raise ConfigError(
                f"{label}: expected one of {list(self.choices)}, but got {value!r}")
        return value


class Backend:
    """Base class for backends.

    ``conv2d(spec, x, w, b, ctx)`` receives a validated :class:`convreg.ConvSpec` and
    C-contiguous arrays of ``spec.dtype``: ``x`` (n, c_in, h, w) with n >= 1, ``w``
    (c_out, c_in/groups, kh, kw), ``b`` (c_out,) or None. They may be read-only and must
    not be written. It returns the (n, c_out, oh, ow) result. ``ctx`` carries what the
    dispatcher resolved for this call: ``ctx.threads`` and ``ctx.options_for(name)``
    (this backend's ``[backends.<name>]`` settings over the defaults in ``options``).
    A plugin whose ``conv2d`` takes only ``(spec, x, w, b)`` is called without it.
    Padding modes not in ``padding_modes`` are written into ``x`` before the call (the
    spec then says ``padding_mode='zeros'`` with the padding already applied).

    Optional gradient operations, on the spec of the forward call:
    ``conv2d_input(spec, grad_output, w, ctx)`` -> (n, c_in, h, w) and
    ``conv2d_weight(spec, x, grad_output, ctx)`` -> (c_out, c_in/groups, kh, kw).
    """

    name = "unnamed"
    description = ""
    padding_modes = frozenset({"zeros"})
    options = {}      # config keys under [backends.<name>]: key -> OptionSpec

    def supports(self, spec) -> Support:
        return YES

    def conv2d(self, spec, x, w, b, ctx=None):  # pragma: no cover - abstract
        raise NotImplementedError

    def info(self) -> dict:
        """What show_config() prints about this backend."""
        return {"description": self.description,
                "padding_modes": sorted(self.padding_modes)}

    def __repr__(self) -> str:
        return f"<convreg backend {self.name!r}>"
