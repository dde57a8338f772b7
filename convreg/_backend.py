"""The backend protocol: what the registry asks of every backend, built-in or plugin."""

from __future__ import annotations

from dataclasses import dataclass


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


class Backend:
    """Base class for backends; a plugin may also be any object with the same attributes.

    ``conv2d(spec, x, w, b)`` receives a validated :class:`convreg.ConvSpec` and
    C-contiguous arrays of ``spec.dtype``: ``x`` (n, c_in, h, w), ``w``
    (c_out, c_in/groups, kh, kw), ``b`` (c_out,) or None. The arrays may be read-only
    and must not be written. It returns the (n, c_out, oh, ow) result. Padding modes
    not in ``padding_modes`` are written into ``x`` before the call (and the spec then
    says ``padding_mode='zeros'`` with zero padding).
    """

    name = "unnamed"
    description = ""
    padding_modes = frozenset({"zeros"})
    options = {}      # config keys under [backends.<name>]: key -> convreg._config.OptionSpec

    def supports(self, spec) -> Support:
        return YES

    def conv2d(self, spec, x, w, b):  # pragma: no cover - abstract
        raise NotImplementedError

    def info(self) -> dict:
        """What show_config() prints about this backend."""
        return {"description": self.description,
                "padding_modes": sorted(self.padding_modes)}

    def __repr__(self) -> str:
        return f"<convreg backend {self.name!r}>"
