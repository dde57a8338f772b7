"""The ``cython-im2col`` backend: im2col into a bounded workspace, then BLAS GEMM.

Per image, group and band of output pixels (``pyx/_im2col.pyx``)::

    col (K, bp)              = im2col of the band,      K = C_in/groups * kH * kW
    out[n, g-block, band]    = W_g (C_out/groups, K) @ col (K, bp)   (+ bias)

The GEMM writes straight into the NCHW result. A 1x1, stride-1, unpadded convolution
is a plain GEMM on the input (no buffer); other 1x1 calls gather through the same
im2col loop, which for 1x1 is a strided copy.

Workspace: the column buffers of all threads together never exceed ``workspace_mb``
MiB (config ``[backends.cython-im2col] workspace_mb``), except that a band always holds
at least one output pixel (K values per thread). Below the bound, bands are also kept
small enough to stay in cache.

Threads (``convreg.get_threads()``): see :meth:`CythonIm2colBackend.plan`. Either BLAS
runs multi-threaded on one GEMM at a time, or OpenMP runs bands in parallel with BLAS
held to one thread; never both.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import _im2col
from .._backend import YES, Backend, no
from .._config import OptionSpec
from .._errors import ConfigError
from .._registry import backend_settings
from .._threads import blas_threads, get_threads

NAME = "cython-im2col"
MIB = 2**20
_INT_MAX = 2**31 - 1      # BLAS dimensions and leading dimensions are 32-bit ints

# A band's column buffer is kept near this size (per thread) so the GEMM reads it from
# cache; measured by scripts/bench_im2col.py (see the module notes there).
CACHE_BYTES = 1 * MIB
# Minimum band (output pixels) the cache rule may choose: narrower GEMMs lose efficiency.
MIN_BAND = 128


@dataclass(frozen=True)
class Plan:
    """How one call runs: band size, thread split and workspace."""

    direct: bool            # 1x1 stride-1 unpadded: GEMM on the input, no buffer
    band: int               # output pixels per band
    nbands: int             # bands per image
    omp_threads: int        # OpenMP threads over (image, band) tasks (1: serial loop)
    blas_threads: int       # BLAS threads per GEMM
    workspace_bytes: int    # bytes of column buffer allocated
    bound_bytes: int        # the workspace bound in force


def _is_direct(spec) -> bool:
    return (spec.kh == 1 and spec.kw == 1 and spec.sh == 1 and spec.sw == 1
            and not spec.padded)


class CythonIm2colBackend(Backend):
    """im2col + BLAS GEMM (scipy's ``cython_blas``) over a bounded workspace."""

    name = NAME
    description = "Cython im2col into a bounded workspace, then BLAS GEMM (dense layers)"
    options = {
        "workspace_mb": OptionSpec(
            float, 256, minimum=0,
            doc="bound on the im2col column buffer in MiB (all threads together)"),
    }

    def __init__(self, workspace_mb=None):
        if workspace_mb is not None:
            workspace_mb = self.options["workspace_mb"].check(
                workspace_mb, "CythonIm2colBackend(workspace_mb=...)")
        self._workspace_mb = workspace_mb

    # ------------------------------------------------------------------ settings
    def workspace_mb(self) -> float:
        """The workspace bound in force now (constructor argument, else config, else 256)."""
        if self._workspace_mb is not None:
            return self._workspace_mb
        return backend_settings(NAME)["workspace_mb"]

    def supports(self, spec):
        if max(spec.oh * spec.ow, spec.reduction, spec.cog) > _INT_MAX:
            return no(f"a GEMM dimension exceeds BLAS's 32-bit limit {_INT_MAX} "
                      f"(oh*ow={spec.oh * spec.ow}, K={spec.reduction})")
        return YES

    def plan(self, spec, threads=None) -> Plan:
        """Band size and thread split for ``spec`` (``threads`` defaults to get_threads()).

        Threading rule: with T > 1 threads, BLAS gets all T threads on each GEMM when the
        per-group GEMM is large (cog >= 32 and K >= 64); otherwise OpenMP runs T
        (image, band) tasks at once with BLAS held to one thread.
        """
        t = get_threads() if threads is None else threads
        bound = int(self.workspace_mb() * MIB)
        ohw = spec.oh * spec.ow
        direct = _is_direct(spec)
        if t > 1 and not (spec.cog >= 32 and spec.reduction >= 64):
            omp, blas = t, 1
        else:
            omp, blas = 1, t
        per_pixel = spec.reduction * np.dtype(spec.dtype).itemsize   # bytes of one column
        if direct:
            band = ohw
        else:
            by_bound = bound // (omp * per_pixel)
            by_cache = max(CACHE_BYTES // per_pixel, MIN_BAND)
            band = max(1, min(ohw, by_bound, by_cache))
            if band >= spec.ow and band < ohw:
                band -= band % spec.ow          # whole output rows when they fit
        if omp > 1:
            # At least two tasks per thread so the static split balances.
            want = 2 * omp
            per_image = -(-want // spec.n)
            if per_image > 1:
                band = max(1, min(band, -(-ohw // per_image)))
        nbands = -(-ohw // band)
        if spec.n * nbands < omp:
            omp = max(1, spec.n * nbands)
        work = 0 if direct else omp * spec.reduction * band * np.dtype(spec.dtype).itemsize
        return Plan(direct, band, nbands, omp, blas, work, bound)

    # ------------------------------------------------------------------ the call
    def conv2d(self, spec, x, w, b):
        plan = self.plan(spec)
        out = np.empty(spec.output_shape, dtype=spec.dtype)
        work = np.empty(plan.workspace_bytes // np.dtype(spec.dtype).itemsize, dtype=spec.dtype)
        with blas_threads(plan.blas_threads):
            _im2col.conv2d(x, w, b, out, work, spec.sh, spec.sw, spec.pt, spec.pl,
                           spec.dh, spec.dw, spec.groups, plan.band, plan.omp_threads)
        return out

    def info(self) -> dict:
        try:
            bound = self.workspace_mb()
        except ConfigError as exc:
            bound = f"config error: {exc}"
        from threadpoolctl import threadpool_info

        blas = [{k: d.get(k) for k in ("internal_api", "version", "num_threads", "filepath")}
                for d in threadpool_info() if d.get("user_api") == "blas"]
        return {**super().info(), "workspace_mb": bound, "variant": "portable (no SIMD "
                "variants: the work is copies and BLAS, which picks its own kernels)",
                "openmp": _im2col.HAVE_OPENMP, "blas": blas}
