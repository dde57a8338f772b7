"""``tune = "measure"``: time a chooser's candidates on a call's own arrays, once per shape.

Selection (``select.py``) asks :func:`remembered` first: a shape measured before in this
process is one dict read, so a tuned call costs what a rules call costs. Otherwise it
asks the chooser for its ordered list and the candidates' ``supports()``, and looks the
shape up in the tuning cache (``tuning_cache.py``, the file read once per process). A
shape nobody measured yet gets a Choice that carries the candidates; ``run`` then calls
:func:`measure`, which runs each candidate on the call's arrays, the rules' choice first
(its result is the call's result: nothing is computed again for the answer), repeats
them in alternating order while the extra time stays within ``BUDGET_FACTOR`` times the
slowest single run (at least ``MIN_BUDGET``, at most ``MAX_RUNS`` runs each), and stores
the fastest (best of its runs) in the cache. ``MIN_RUNS`` runs each are made whenever
they fit in ``HARD_CAP`` seconds, so that one disturbed run (a first call warming up, a
busy machine) cannot decide; no call spends more than ``HARD_CAP`` on extra runs. A
candidate must beat the rules' choice by more than ``TIE`` to replace it.

``timer`` is the clock the measurement reads; tests replace it with scripted times.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

from . import tuning_cache

timer = time.perf_counter

MAX_RUNS = 5          # runs of each candidate, the first included
MIN_RUNS = 3          # ... and at least this many when they fit in HARD_CAP
TIE = 0.03            # the rules' choice stays unless another is this much faster
BUDGET_FACTOR = 3.0   # extra runs stop once they took this many times the slowest run
MIN_BUDGET = 0.002    # ... but tiny calls may take this long (s), to see past the noise
HARD_CAP = 1.0        # and no call spends more than this (s) on extra runs

_memo: dict = {}      # (chooser label, spec, op, threads) -> (backend name, reason, entry)
_MEMO_SIZE = 4096


def mode(ctx, label) -> str:
    """The chooser's ``tune`` option for this call ("rules" without one)."""
    option = getattr(ctx, "option", None)
    if option is None:                      # a context without the one-option accessor
        return ctx.options_for(label).get("tune", "rules")
    return option(label, "tune", "rules")


def remembered(label, spec, op, threads):
    """(backend name, reason, cache entry) measured for this shape, if this process
    knows it."""
    return _memo.get((label, spec, op, threads))


def _remember(label, spec, op, threads, answer):
    if len(_memo) >= _MEMO_SIZE:
        _memo.clear()
    _memo[(label, spec, op, threads)] = answer


def describe(entry) -> str:
    times = sorted(entry["times"].items(), key=lambda kv: kv[1])
    shown = ", ".join(f"{name} {t * 1e3:.3f} ms" for name, t in times)
    rules = entry.get("rules")
    if not rules:
        tail = ""
    elif rules == entry["winner"]:
        tail = "; the rules pick it too"
    else:
        tail = f"; the rules would pick {rules}"
    failed = "".join(f"; {name} failed ({why})" for name, why in
                     (entry.get("failed") or {}).items())
    return (f"measured fastest at {entry.get('when', '?')}: {shown} "
            f"(best of {entry.get('runs', '?')} runs each{tail}{failed})")


def cached(label, spec, op, threads, candidates):
    """For candidates ``[(name, backend, rule reason), ...]`` (the rules' order): the
    measured ``(name, backend, reason)`` and None, or None and the cache key to measure
    under when this shape was never measured."""
    names = [c[0] for c in candidates]
    key = tuning_cache.make_key(spec, op, threads, names)
    entry = tuning_cache.lookup(key)
    if entry is not None and entry["winner"] in names:
        i = names.index(entry["winner"])
        reason = describe(entry)
        _remember(label, spec, op, threads, (names[i], reason, entry))
        return (names[i], candidates[i][1], reason), None
    return None, key


def _timed(call, be, args):
    t0 = timer()
    out = call(be, *args)
    return out, timer() - t0


def measure(label, key, candidates, call, spec, x, w, b, ctx, op="conv2d"):
    """Run ``call(backend, spec, x, w, b, ctx)`` for each candidate, remember the fastest,
    and return the result of the first run of the first (the rules') candidate."""
    args = (spec, x, w, b, ctx)
    result, t = _timed(call, candidates[0][1], args)     # the rules' choice: may raise
    times = {candidates[0][0]: [t]}
    failed = {}
    for name, be, _ in candidates[1:]:
        try:
            _, t = _timed(call, be, args)
        except Exception as exc:     # a candidate that fails is not a candidate here
            failed[name] = f"{type(exc).__name__}: {exc}"
            continue
        times[name] = [t]
    candidates = [c for c in candidates if c[0] in times]
    slowest = max(ts[0] for ts in times.values())
    budget = min(HARD_CAP, max(BUDGET_FACTOR * slowest, MIN_BUDGET))
    spent, runs = 0.0, 1
    while runs < MAX_RUNS:
        ahead = spent + sum(min(ts) for ts in times.values())
        if ahead > (HARD_CAP if runs < MIN_RUNS else budget):
            break
        order = candidates if runs % 2 == 0 else candidates[::-1]
        try:
            for name, be, _ in order:
                _, t = _timed(call, be, args)
                times[name].append(t)
                spent += t
        except Exception as exc:     # failed on a repetition: stop measuring, keep the rules
            failed[name] = f"{type(exc).__name__}: {exc}"
            times = {candidates[0][0]: times[candidates[0][0]]}
            break
        runs += 1
    runs = min(len(ts) for ts in times.values())
    best = {name: min(ts) for name, ts in times.items()}
    winner = min(best, key=best.get)
    rules = candidates[0][0]
    if best[rules] <= best[winner] * (1 + TIE):
        winner = rules
    entry = {
        "winner": winner, "times": best, "runs": runs, "rules": rules,
        "when": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {**tuning_cache.machine(), "threads": ctx.threads},
        "shape": tuning_cache.shape_fields(spec), "op": op, "label": label,
    }
    if failed:
        entry["failed"] = failed
    tuning_cache.store(key, entry)
    _remember(label, spec, op, ctx.threads, (winner, describe(entry), entry))
    return result


def forget() -> None:
    """Forget this process's measured answers (the cache file is read again)."""
    _memo.clear()
    tuning_cache.reset()


def clear() -> str:
    """Delete the cache file and forget everything measured; returns the file's path."""
    _memo.clear()
    return tuning_cache.clear()
