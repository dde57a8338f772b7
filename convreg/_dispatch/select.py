"""Selection and the call: the first backend of the call's list that supports it runs it.

A *chooser* backend (one with ``choose``, e.g. ``cython``) names concrete backends in its
order of preference for the call; each is asked ``supports()`` like any other, so a
concrete backend that declines is never run through the chooser either. The dispatcher
realises padding modes the chosen backend does not do natively, hands it the per-call
context, and checks what it returns.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .._errors import BackendError
from . import registry, tune
from .padding import pad_explicitly

OPS = ("conv2d", "conv2d_input", "conv2d_weight")


class Choice(NamedTuple):
    """The backend that runs a call: ``backend`` (the object), ``label`` (the name the
    settings gave), ``runs`` (the concrete backend's name), ``reason``, and why each
    backend tried before it declined. ``decided_by``: "list" (the first backend of the
    setting's list), "rule" (a chooser's rules) or "measurement" (the tuning cache).
    ``measure``: when the chooser's ``tune = "measure"`` and this shape was never
    measured, ``(cache key, ((name, backend, reason), ...))``, the rules' choice first."""

    backend: object
    label: str
    runs: str
    reason: str
    refusals: tuple
    decided_by: str = "list"
    measure: tuple = ()


def _name(be, fallback=None) -> str:
    return getattr(be, "name", None) or fallback or repr(be)


def _ask(be, spec, op):
    """Support answer of ``be`` for ``op``; a backend lacking the operation declines it."""
    if op != "conv2d":
        if not callable(getattr(be, op, None)):
            return False, f"has no {op}()"
        ask = getattr(be, "supports_op", None)
        answer = ask(spec, op) if callable(ask) else be.supports(spec)
    else:
        answer = be.supports(spec)
    if answer:
        return True, ""
    return False, getattr(answer, "reason", "") or "declined"


def _lookup(name, several):
    """The backend for a name in a list, or None (with why) when it cannot run here."""
    be = registry._loaded.get(name)        # the hot path: one dict read, no lock
    if be is not None:
        return be, ""
    if several and registry.is_unavailable(name):
        return None, "not available here"
    return registry.get_backend(name), ""


def _through_chooser(be, choose, label, spec, ctx, op, refusals):
    """The Choice a chooser leads to, or None when none of its backends runs the call."""
    tuning = op == "conv2d" and tune.mode(ctx, label) == "measure"
    if tuning:
        hit = tune.remembered(label, spec, op, ctx.threads)
        if hit is not None:
            sub = registry._loaded.get(hit[0])
            if sub is not None and _ask(sub, spec, op)[0]:
                return Choice(sub, label, hit[0], hit[1], tuple(refusals), "measurement")
    supported = []
    for concrete, reason in choose(spec, ctx, op):
        sub, why = _lookup(concrete, True)
        if sub is None:
            refusals.append(f"{label!r} -> {concrete!r}: {why}")
            continue
        ok, why = _ask(sub, spec, op)
        if not ok:
            refusals.append(f"{label!r} -> {concrete!r}: {why}")
        elif not tuning:
            return Choice(sub, label, concrete, reason, tuple(refusals), "rule")
        else:
            supported.append((concrete, sub, reason))
    if not supported:
        return None
    name, sub, reason = supported[0]
    if len(supported) == 1:
        return Choice(sub, label, name, reason + " (the only candidate: nothing to measure)",
                      tuple(refusals), "rule")
    known, key = tune.cached(label, spec, op, ctx.threads, supported)
    if known is not None:
        return Choice(known[1], label, known[0], known[2], tuple(refusals), "measurement")
    others = ", ".join(c[0] for c in supported[1:])
    return Choice(sub, label, name, f"{reason} (not measured yet: the first call times it "
                  f"against {others} and remembers the fastest)", tuple(refusals), "rule",
                  (key, tuple(supported)))


def select(spec, ctx, op="conv2d") -> Choice:
    """The first backend of ``ctx.backend`` that supports ``spec`` (for ``op``)."""
    names = ctx.backend
    several = len(names) > 1
    refusals = []
    for entry in names:
        if isinstance(entry, str):
            be, why = _lookup(entry, several)
            if be is None:
                refusals.append(f"{entry!r}: {why}")
                continue
        else:
            be = entry
        label = _name(be, entry if isinstance(entry, str) else None)
        choose = getattr(be, "choose", None)
        if callable(choose):
            ok, why = _ask(be, spec, op) if op == "conv2d" else (True, "")
            if not ok:
                refusals.append(f"{label!r}: {why}")
                continue
            got = _through_chooser(be, choose, label, spec, ctx, op, refusals)
            if got is not None:
                return got
            continue
        ok, why = _ask(be, spec, op)
        if ok:
            return Choice(be, label, label, "first backend in the list that supports the call",
                          tuple(refusals), "list")
        refusals.append(f"{label!r}: {why}")
    what = "this call" if op == "conv2d" else f"{op} of this call"
    err = BackendError(
        f"no backend chosen by {ctx.backend_source} supports {what} ({spec.describe()}); "
        + "; ".join(refusals))
    err.refusals = tuple(refusals)
    raise err


def _invoke(be, op, spec, a, b, c, ctx):
    method = getattr(be, op)
    nargs = 4 if op == "conv2d" else 3
    args = (spec, a, b, c) if op == "conv2d" else (spec, a, b)
    if registry.takes_ctx(method, nargs):
        return method(*args, ctx)
    return method(*args)


def _checked(out, be, shape, dtype, what):
    if not isinstance(out, np.ndarray) or out.shape != shape or out.dtype != np.dtype(dtype):
        got = (f"{type(out).__name__} of shape {getattr(out, 'shape', None)} and dtype "
               f"{getattr(out, 'dtype', None)}")
        raise BackendError(
            f"backend {_name(be)!r} returned {got} from {what}; expected an ndarray of shape "
            f"{shape} and dtype {dtype}")
    return out


def _call(be, spec, x, w, b, ctx):
    """``be``'s checked conv2d result, with the padding modes it lacks written first."""
    if spec.padding_mode != "zeros" and spec.padding_mode not in getattr(
            be, "padding_modes", ("zeros",)):
        spec, x = pad_explicitly(spec, x, ctx.threads)
    out = _invoke(be, "conv2d", spec, x, w, b, ctx)
    return _checked(out, be, spec.output_shape, spec.dtype, "conv2d")


def run(spec, x, w, b, ctx):
    """The (batched) result of a validated conv2d call."""
    choice = select(spec, ctx)
    if spec.n == 0:
        # Nothing to compute; compiled kernels never see an empty batch.
        return np.zeros(spec.output_shape, dtype=spec.dtype)
    if choice.measure:
        key, candidates = choice.measure
        return tune.measure(choice.label, key, candidates, _call, spec, x, w, b, ctx)
    return _call(choice.backend, spec, x, w, b, ctx)
