"""``python -m convreg tune``: measure the ``cython`` chooser's candidates ahead of time.

Each shape of the suite (or of ``--shapes FILE.json``) is called once with
``tune = "measure"`` on random arrays, which measures it unless the cache already knows
it; the table says what the rules pick, what was measured fastest and the times.
``--show`` prints the cache file, ``--clear`` deletes it.

A shapes file is a JSON list of objects: ``{"input": [1, 64, 56, 56], "weight":
[64, 64, 3, 3], "stride": 1, "padding": 1, "dilation": 1, "groups": 1}`` (all but
``input`` and ``weight`` optional).
"""

from __future__ import annotations

import contextlib
import json

import numpy as np

QUICK = [
    ((1, 3, 112, 112), (32, 3, 3, 3), dict(stride=2, padding=1)),
    ((1, 64, 56, 56), (64, 64, 3, 3), dict(padding=1)),
    ((1, 64, 56, 56), (256, 64, 1, 1), {}),
    ((1, 128, 28, 28), (128, 128, 3, 3), dict(padding=1)),
    ((1, 256, 14, 14), (256, 256, 3, 3), dict(padding=1)),
    ((1, 512, 7, 7), (512, 512, 3, 3), dict(padding=1)),
    ((1, 32, 56, 56), (32, 1, 3, 3), dict(padding=1, groups=32)),
    ((1, 256, 28, 28), (512, 256, 1, 1), dict(stride=2)),
]


def _resnet50():
    """The distinct convolutions of ResNet-50 on one 224x224 image."""
    out = [((1, 3, 224, 224), (64, 3, 7, 7), dict(stride=2, padding=3))]
    c_in, size = 64, 56
    for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for blk in range(blocks):
            s = stride if blk == 0 else 1
            h = size
            out.append(((1, c_in, h, h), (width, c_in, 1, 1), {}))
            out.append(((1, width, h, h), (width, width, 3, 3), dict(stride=s, padding=1)))
            h_out = (h - 1) // s + 1
            out.append(((1, width, h_out, h_out), (4 * width, width, 1, 1), {}))
            if blk == 0:
                out.append(((1, c_in, h, h), (4 * width, c_in, 1, 1), dict(stride=s)))
            c_in, size = 4 * width, h_out
    seen, unique = set(), []
    for item in out:
        key = repr(item)
        if key not in seen:
            seen.add(key)
            unique.append(item)
    return unique


SUITES = {"quick": lambda: QUICK, "resnet": _resnet50,
          "all": lambda: QUICK + [s for s in _resnet50() if s not in QUICK]}


def load_shapes(path):
    from ._errors import ConfigError

    try:
        with open(path, encoding="utf-8") as fh:
            items = json.load(fh)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--shapes {path}: cannot read a JSON list of shapes ({exc})") \
            from None
    if not isinstance(items, list):
        raise ConfigError(f"--shapes {path}: expected a JSON list of objects, but got "
                          f"{type(items).__name__}")
    shapes = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or "input" not in item or "weight" not in item:
            raise ConfigError(f"--shapes {path}: item {i} must be an object with 'input' and "
                              f"'weight' shapes, but got {item!r}")
        extra = {k: item[k] for k in ("stride", "padding", "dilation", "groups",
                                      "padding_mode") if k in item}
        shapes.append((tuple(item["input"]), tuple(item["weight"]), extra))
    return shapes


def _label(sh: dict) -> str:
    return (f"{sh['n']}x{sh['c_in']}x{sh['h']}x{sh['w']} * {sh['c_out']}x"
            f"{sh['c_in'] // sh['groups']}x{sh['kh']}x{sh['kw']} s{sh['sh']}"
            f"{'' if sh['sh'] == sh['sw'] else ',' + str(sh['sw'])} "
            f"p{sh['pt']}{'' if len({sh['pt'], sh['pb'], sh['pl'], sh['pr']}) == 1 else '...'}"
            f"{'' if sh['groups'] == 1 else ' g' + str(sh['groups'])}"
            f"{'' if sh['dh'] == sh['dw'] == 1 else ' d' + str(sh['dh'])} {sh['dtype']}")


def _times(entry) -> str:
    return ", ".join(f"{n.replace('cython-', '')} {t * 1e3:.3f}"
                     for n, t in sorted(entry["times"].items(), key=lambda kv: kv[1]))


def tune(shapes, threads=None, dtype="float32", out=print):
    from ._dispatch import tune as _tune
    from ._dispatch.select import run
    from ._frontend.spec import prepare
    from ._settings.context import call_context
    from ._settings.options import use_options
    from ._settings.threads import use_threads

    rng = np.random.default_rng(0)
    rows = []
    with contextlib.ExitStack() as stack:
        stack.enter_context(use_options("cython", tune="measure"))
        if threads is not None:
            stack.enter_context(use_threads(threads))
        for xs, ws, kw in shapes:
            x = rng.standard_normal(xs).astype(dtype)
            w = rng.standard_normal(ws).astype(dtype)
            b = rng.standard_normal(ws[0]).astype(dtype)
            spec, x4, w4, b4 = prepare(x, w, b, **kw)
            ctx = call_context("cython")
            run(spec, x4, w4, b4, ctx)
            hit = _tune.remembered("cython", spec, "conv2d", ctx.threads)
            entry = hit[2] if hit else None
            label = _label({k: v for k, v in vars(spec).items()})
            if entry is None:
                from ._dispatch.select import select

                rows.append((label, select(spec, ctx).runs, "-", "only candidate"))
            else:
                rows.append((label, entry.get("rules", "?"), entry["winner"], _times(entry)))
    _table(rows, ("shape", "rules", "measured", "times ms (best of runs)"), out)
    return rows


def _table(rows, head, out):
    rows = [tuple(str(c).replace("cython-", "") for c in r) for r in rows]
    widths = [max(len(head[i]), *(len(r[i]) for r in rows)) if rows else len(head[i])
              for i in range(len(head))]
    out("  ".join(h.ljust(wd) for h, wd in zip(head, widths)))
    for r in rows:
        out("  ".join(c.ljust(wd) for c, wd in zip(r, widths)))


def show(out=print) -> int:
    from ._dispatch import tuning_cache

    path = tuning_cache.cache_path()
    entries = tuning_cache._read(path, warn=True)
    out(f"tuning cache: {path} ({len(entries)} entries)")
    rows = []
    for entry in sorted(entries.values(), key=lambda e: e.get("when", "")):
        m = entry.get("machine", {})
        sh = entry.get("shape")
        try:
            label = _label(sh)
        except (TypeError, KeyError):
            label = "?"
        rows.append((entry.get("when", "?"), m.get("threads", "?"), m.get("simd", "?"),
                     m.get("convreg", "?"), label, entry.get("rules", "?"), entry["winner"],
                     _times(entry)))
    if rows:
        _table(rows, ("when", "threads", "simd", "convreg", "shape", "rules", "measured",
                      "times ms"), out)
    return 0


def clear(out=print) -> int:
    from ._dispatch import tune as _tune

    out(f"removed {_tune.clear()}")
    return 0
