"""Choose, at import, which SIMD build of a compiled kernel family runs on this CPU.

Each family is built as ``convreg.<family>_<variant>`` for variant in baseline, avx2
(+FMA) and avx512; the best variant the CPU supports is used. ``CONVREG_SIMD`` caps
the choice (e.g. ``CONVREG_SIMD=baseline`` to test the portable build).
"""

from __future__ import annotations

import importlib
import os

ORDER = ("baseline", "avx2", "avx512")


def cpu_variants() -> list:
    """Variants this CPU can run, best last."""
    try:
        from .. import _cpu
    except ImportError:
        return ["baseline"]
    return _cpu.supported_variants()


def chosen_variant() -> str:
    """The variant in use: the best the CPU runs, capped by ``CONVREG_SIMD``."""
    variants = cpu_variants()
    cap = os.environ.get("CONVREG_SIMD", "").strip().lower()
    if cap:
        if cap not in ORDER:
            from .._errors import ConfigError

            raise ConfigError(f"CONVREG_SIMD must be one of {list(ORDER)}, but got "
                              f"CONVREG_SIMD={cap!r}")
        variants = [v for v in variants if ORDER.index(v) <= ORDER.index(cap)]
    return variants[-1]


def load_family(family: str, variant: str = None):
    """The compiled module of ``family`` for ``variant`` (default: chosen_variant()).

    Falls back to lesser variants that were built when the chosen one was not (e.g. a
    compiler without AVX-512 support); raises ImportError when none was.
    """
    # The small common module carries the OpenMP runtime query the thread setting asks
    # (threadpoolctl limits) once compiled kernels are in use.
    importlib.import_module("convreg._pad")
    wanted = variant or chosen_variant()
    last = None
    for v in reversed(ORDER[: ORDER.index(wanted) + 1]):
        try:
            return importlib.import_module(f"convreg.{family}_{v}")
        except ImportError as exc:
            last = exc
    raise ImportError(f"no compiled build of convreg.{family}: {last}")
