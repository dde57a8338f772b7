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


# ------------------------------------------------------------------ the selection memo
#
# A selection is remembered per (spec object, op, the context's backend list, whether
# the call has a layer's weight cache, the registry's generation) when it is a function
# of those alone:
#
# * every backend it asked is a built-in one (its class from ``convreg.backends``) and
#   answered through its class's own functions (``supports``, ``supports_op``,
#   ``choose``), whose answers depend on the spec and, for a chooser, on the chooser's
#   own options and ``ctx.weight_cache`` only. A hit checks that each of those backends
#   still has the same functions (a patched method, on the instance or the class, is a
#   miss), and that each chooser's options (``ctx.options_for(label)``) equal those it
#   was chosen with;
# * the list is made of names (``registry.generation`` changes whenever a name is
#   registered, unregistered, discovered or loaded, or found unavailable);
# * no chooser measured (``tune = "measure"``: tune.py has its own memo).
#
# Specs repeat by identity: the front end returns the same object for a repeated call
# signature, so the key holds ``id(spec)`` and a hit checks ``entry.spec is spec`` (the
# entry keeps its spec alive, so the id cannot be reused meanwhile). Plugins and
# registered objects are asked on every call.

_memo: dict = {}
_MEMO_SIZE = 512
_BUILTIN_MODULES = "convreg.backends."
_DTYPES = {"float32": np.dtype(np.float32), "float64": np.dtype(np.float64)}
_NDARRAY = np.ndarray


class _Trace:
    """What a selection asked: ``checks`` ((backend, attribute, function), ...) and
    ``deps`` ((chooser label, its options), ...); ``pure``: every answer came from a
    built-in backend's own functions, without measuring."""

    __slots__ = ("pure", "checks", "deps")

    def __init__(self):
        self.pure = True
        self.checks = []
        self.deps = []

    def asked(self, be, attr):
        if not self.pure:
            return
        method = getattr(be, attr, None)
        fn = getattr(method, "__func__", method)
        if not (_builtin_obj(type(be)) and _builtin_obj(fn)):
            self.pure = False
        else:
            self.checks.append((be, attr, fn))


_builtin = set()     # classes and functions defined in convreg.backends


def _builtin_obj(obj) -> bool:
    """Whether a class or function comes from convreg.backends (remembered when so)."""
    try:
        if obj in _builtin:
            return True
        if getattr(obj, "__module__", None).startswith(_BUILTIN_MODULES):
            _builtin.add(obj)
            return True
    except (AttributeError, TypeError):     # no __module__, or unhashable
        pass
    return False


class _Entry:
    """A selection and what calling it needs, worked out once: ``choice``; ``method``'s
    function and whether it takes ``ctx``; whether the spec's padding mode is native to
    the backend; the result's shape and dtype."""

    __slots__ = ("spec", "choice", "checks", "deps", "func", "takes_ctx", "native", "shape",
                 "dtype")

    def __init__(self, spec, choice, op, trace):
        self.spec = spec
        self.choice = choice
        self.checks = tuple(trace.checks)
        self.deps = tuple(trace.deps)
        be = choice.backend
        method = getattr(be, op)
        self.func = getattr(method, "__func__", method)
        self.takes_ctx = registry.takes_ctx(method, 4 if op == "conv2d" else 3)
        self.native = spec.padding_mode == "zeros" or spec.padding_mode in getattr(
            be, "padding_modes", ("zeros",))
        self.shape = (spec.output_shape if op == "conv2d" else
                      spec.input_shape if op == "conv2d_input" else spec.weight_shape)
        self.dtype = _DTYPES.get(spec.dtype) or np.dtype(spec.dtype)

    def current(self, ctx) -> bool:
        """Whether the backends asked still answer with the same functions and each
        chooser's options are those it chose with."""
        for be, attr, fn in self.checks:
            method = getattr(be, attr, None)
            if getattr(method, "__func__", method) is not fn:
                return False
        for label, opts in self.deps:
            now = ctx.options_for(label)
            if now is not opts and now != opts:
                return False
        return True


def _ask(be, spec, op, trace=None):
    """Support answer of ``be`` for ``op``; a backend lacking the operation declines it."""
    if op != "conv2d":
        if not callable(getattr(be, op, None)):
            if trace is not None:
                trace.pure = False
            return False, f"has no {op}()"
        ask = getattr(be, "supports_op", None)
        if callable(ask):
            if trace is not None:
                trace.asked(be, "supports_op")
            answer = ask(spec, op)
        else:
            if trace is not None:
                trace.asked(be, "supports")
            answer = be.supports(spec)
    else:
        if trace is not None:
            trace.asked(be, "supports")
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


def _through_chooser(be, choose, label, spec, ctx, op, refusals, trace=None):
    """The Choice a chooser leads to, or None when none of its backends runs the call."""
    trace = trace or _Trace()
    trace.asked(be, "choose")
    if trace.pure:
        trace.deps.append((label, ctx.options_for(label)))
    tuning = op == "conv2d" and tune.mode(ctx, label) == "measure"
    if tuning:
        trace.pure = False
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
        ok, why = _ask(sub, spec, op, trace)
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


def _select(spec, ctx, op, trace) -> Choice:
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
            trace.pure = False
        label = _name(be, entry if isinstance(entry, str) else None)
        choose = getattr(be, "choose", None)
        if callable(choose):
            ok, why = _ask(be, spec, op, trace) if op == "conv2d" else (True, "")
            if not ok:
                refusals.append(f"{label!r}: {why}")
                continue
            got = _through_chooser(be, choose, label, spec, ctx, op, refusals, trace)
            if got is not None:
                return got
            continue
        ok, why = _ask(be, spec, op, trace)
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


def selected(spec, ctx, op="conv2d") -> _Entry:
    """The :class:`_Entry` of ``spec`` for ``op`` under ``ctx``: remembered (``_memo``)
    or selected now."""
    key = (id(spec), op, ctx.backend, getattr(ctx, "weight_cache", None) is None,
           registry.generation)
    try:
        got = _memo.get(key)
    except TypeError:                      # an unhashable backend object in the list
        got = key = None
    if got is not None and got.spec is spec and got.current(ctx):
        return got
    trace = _Trace()
    choice = _select(spec, ctx, op, trace)
    entry = _Entry(spec, choice, op, trace)
    if key is not None and trace.pure and not choice.measure:
        if len(_memo) >= _MEMO_SIZE:
            _memo.clear()
        _memo[key] = entry
    return entry


def select(spec, ctx, op="conv2d") -> Choice:
    """The first backend of ``ctx.backend`` that supports ``spec`` (for ``op``)."""
    return selected(spec, ctx, op).choice


def _invoke(be, op, spec, a, b, c, ctx):
    method = getattr(be, op)
    nargs = 4 if op == "conv2d" else 3
    args = (spec, a, b, c) if op == "conv2d" else (spec, a, b)
    if registry.takes_ctx(method, nargs):
        return method(*args, ctx)
    return method(*args)


def _invoke_entry(entry, op, spec, a, b, c, ctx):
    """``_invoke`` with what ``entry`` worked out: the bound method is looked up per call
    (so a method replaced since is called), its ctx answer reused while it is the same."""
    method = getattr(entry.choice.backend, op)
    if getattr(method, "__func__", method) is not entry.func:
        return _invoke(entry.choice.backend, op, spec, a, b, c, ctx)
    if op == "conv2d":
        return method(spec, a, b, c, ctx) if entry.takes_ctx else method(spec, a, b, c)
    return method(spec, a, b, ctx) if entry.takes_ctx else method(spec, a, b)


def _checked(out, be, shape, dtype, what):
    want = _DTYPES.get(dtype) if type(dtype) is str else None
    if want is None:
        want = np.dtype(dtype)
    if not isinstance(out, _NDARRAY) or out.shape != shape or (
            out.dtype is not want and out.dtype != want):
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


def _result(out, entry, what):
    """``out`` when it is what ``entry``'s operation must return (the common case, checked
    by identity), else through :func:`_checked` (which raises naming the backend)."""
    if out.__class__ is _NDARRAY and out.dtype is entry.dtype and out.shape == entry.shape:
        return out
    return _checked(out, entry.choice.backend, entry.shape, entry.spec.dtype, what)


def run(spec, x, w, b, ctx):
    """The (batched) result of a validated conv2d call."""
    entry = selected(spec, ctx)
    if spec.n == 0:
        # Nothing to compute; compiled kernels never see an empty batch.
        return np.zeros(spec.output_shape, dtype=spec.dtype)
    choice = entry.choice
    if choice.measure:
        key, candidates = choice.measure
        return tune.measure(choice.label, key, candidates, _call, spec, x, w, b, ctx)
    if not entry.native:
        spec, x = pad_explicitly(spec, x, ctx.threads)
    return _result(_invoke_entry(entry, "conv2d", spec, x, w, b, ctx), entry, "conv2d")
