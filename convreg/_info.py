"""``show_config()``: what this installation is and how it is set up."""

from __future__ import annotations

import json
import platform
import sys

import numpy as np


def _blas_info() -> list:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    return [{k: d.get(k) for k in ("internal_api", "version", "num_threads", "filepath")}
            for d in threadpool_info() if d.get("user_api") == "blas"]


def config_dict() -> dict:
    """Everything show_config prints, as a dict."""
    from . import __version__
    from ._dispatch.registry import available_backends, get_backend, unavailable
    from ._settings.backend import current_backend
    from ._settings.chain import snapshot
    from ._settings.threads import threads_and_source
    from .backends._simd import chosen_variant, cpu_variants
    from .backends.catalog import BUILTINS

    try:
        from . import _pad
        openmp = _pad.HAVE_OPENMP
    except ImportError:
        openmp = None
    backends = {}
    for name in available_backends():
        be = get_backend(name)
        info = be.info() if hasattr(be, "info") else {}
        backends[name] = {"builtin": name in BUILTINS, **info}
    for name, why in unavailable().items():
        backends[name] = {"builtin": name in BUILTINS, "unavailable": why}
    snap = snapshot()
    path, where = snap.file_path()
    threads, threads_src = threads_and_source()
    current = current_backend()
    return {
        "convreg": __version__,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "compiled": openmp is not None,
        "openmp": openmp,
        "simd": {"chosen": chosen_variant(), "cpu_supports": cpu_variants()},
        "threads": {"value": threads, "source": threads_src},
        "blas": _blas_info(),
        "backend": {"current": current.name, "source": current.source},
        "config_file": {"path": path, "found_as": where},
        "backends": backends,
    }


def show_config(mode: str = "stdout"):
    """Print (``mode="stdout"``) or return (``mode="dicts"``) the configuration."""
    info = config_dict()
    if mode == "dicts":
        return info
    if mode != "stdout":
        from ._errors import ConvSpecError

        raise ConvSpecError(f"mode must be 'stdout' or 'dicts', but got mode={mode!r}")
    print(json.dumps(info, indent=2, default=str))
    return None
