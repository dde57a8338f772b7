"""The ``cython-im2col`` backend: im2col into a bounded workspace, then GEMM.

Per image, group and band of output pixels (``pyx/im2col/im2col_impl.pxi``; GEMM in ``pyx/gemm/``)::

    col (K, bp)              = im2col of the band,      K = C_in/groups * kH * kW
    out[n, g-block, band]    = W_g (C_out/groups, K) @ col (K, bp)   (+ bias)

The GEMM writes straight into the NCHW result. On the avx512 build, float32 stride-1
calls whose output is as wide as the input (3x3 'same' layers) skip the column buffer:
the FLAT mode packs each 32-pixel panel of the im2col matrix from the input just before
the multiply (a few hundred KiB of scratch per thread at most, within the workspace
bound), with (image, group, row part, pixel part) tasks over the threads. Strided calls
take the same mode on the input's stride-phase planes (plane (r, s) holds
x[.., sh*i + r, sw*j + s], an (oh, ow) image, so each tap reads a shifted plane as a
stride-1 tap reads the input): the input is copied into the workspace one image per
thread at a time (a batch of at least one image per thread: each thread copies and
multiplies its own images, no barrier between), when every phase is read by some tap
and no tap reads past a plane (ResNet's 3x3 stride-2 'same' layers and its 7x7 stem
fit; ``_im2col.flat_planes`` decides).
A 1x1, stride-1, unpadded convolution
is a plain GEMM on the input (no buffer); other 1x1 calls gather through the same
im2col loop, which for 1x1 is a strided copy.

GEMM: the avx512 build multiplies with its own register-tiled kernel (8 output channels
x 32 float32 / 16 float64 pixels per tile; the fused mode's 12 x 32), the avx2 build with
the same kernel at 6 x 16 / 6 x 8 (no fused mode), when a group has at least 8 output
channels; otherwise BLAS through ``scipy.linalg.cython_blas``. (On the reference machine scipy's
OpenBLAS runs its Haswell kernels, as ``OPENBLAS_CORETYPE=Haswell`` asks, at ~100
GFLOP/s per core; the own kernel reaches ~250 GFLOP/s per core there.)

Workspace: the column buffers of all threads together never exceed ``workspace_mb``
MiB (config ``[backends.cython-im2col] workspace_mb``, read at every call), except that
a band always holds at least one output pixel (K values per thread). Below the bound,
each thread's band is kept near CACHE_BYTES so it stays in L2 with the weight slice.

Threads (``convreg.get_threads()``, see :func:`choose_mode`): OpenMP over
(image, group, band) tasks, or each task split over the threads, with BLAS held to one
thread; never OpenMP and BLAS threads at once. A BLAS-threaded plan (one loop, BLAS on
every GEMM) measured 2-8x slower in the alternating benchmark against torch, whose
OpenMP pool spins while OpenBLAS's threads want the same two cores; OpenMP plans share
torch's (and any other) libgomp pool instead. Calls under SMALL_FLOPS run on the calling
thread.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import _alloc, _gradops
from ._blas import blas_threads
from ._simd import load_family
from .base import YES, Backend, no
from .catalog import BUILTINS

_im2col = load_family("_im2col")      # ImportError: the registry marks us unavailable

NAME = "cython-im2col"
MIB = 2**20
_INT_MAX = 2**31 - 1      # BLAS dimensions and leading dimensions are 32-bit ints
# OpenBLAS multiplies on one thread when m*n*k <= 65536 * GEMM_MULTITHREAD_THRESHOLD (4).
_BLAS_SERIAL_MNK = 65536 * 4

# A band's column buffer is kept near this size (per thread) so the GEMM reads it from
# cache; measured with scripts/bench_im2col.py --cache-kb.
CACHE_BYTES = MIB // 2
# ... and this size when every thread has whole images of its own (measured +3-4% on
# batch 8; on batch 1 the smaller bands win by 5-10%).
CACHE_BYTES_BATCH = MIB
# Builds without the fused mode (avx2, baseline; measured on Zen 3, 512 KiB of L2): where
# the (rows, K-chunk) slice of W the GEMM keeps in L2 (1 KiB per row, gemm.h) takes at most
# SMALL_SLICE_BYTES, the column buffer is kept near this instead, so both stay in L2. In-
# process A/B, 2 threads, batch 1: 3x3/2 64->128 56^2 0.91-0.98x the time, 128->256 28^2
# 0.87-1.07x, the 7x7/2 stem 0.89-0.96x; with larger slices (256->512 14^2: 4.6 MB of W
# read again per band) small bands lost (1.03-1.18x), so those keep CACHE_BYTES, and so do
# calls where each thread has whole images (CACHE_BYTES_BATCH: batch 8 lost 1.02-1.12x).
CACHE_BYTES_SMALL_SLICE = 128 * 1024
SMALL_SLICE_BYTES = 256 * 1024
# Minimum band (output pixels) the cache rule may choose: narrower GEMMs lose efficiency.
MIN_BAND = 128
# Below this many flops a call runs on the calling thread: starting threads costs more.
SMALL_FLOPS = 2_000_000

# Plans remembered per spec object (_call_plan), at most.
_PLANS_MAX = 512

# The workspace is the calling thread's scratch (_gradops._scratch: kept for the next call
# up to 64 MiB): inside ResNet-18 at batch 8 a fresh 1.6 MB of stride-phase planes per
# call cost the 64->128 stride-2 layer 11 % (4.39 -> 3.92 ms), its lines fetched from
# memory before being overwritten.
WORK_SCRATCH = "im2col_work"

# The own GEMM kernel (avx512 and avx2 builds) takes groups with at least this many output
# channels.
KERNEL_MIN_COG = 8
use_own_kernel = True     # False: always BLAS (for comparisons)

# Kernel modes (pyx/im2col/im2col_impl.pxi): how the (image, group, band) tasks meet the threads.
SERIAL, TASKS, SHARED, FLAT = 0, 1, 2, 3
MODE_NAMES = {SERIAL: "serial", TASKS: "tasks", SHARED: "shared", FLAT: "fused"}
# FLAT: the avx512 build's fused im2col + GEMM for float32 stride-1 calls whose output is
# as wide as the input (e.g. 'same' padding), and strided calls on the input's
# stride-phase planes: no column buffer, each K-chunk of a 32-pixel panel packed (zeros
# for padding) just before the multiply: the scratch is one (K-chunk, 32) panel per
# thread, at most 288 KiB, plus (strided) the planes, one copy of the input; all of it
# counts against workspace_mb.
use_flat = True           # False: never FLAT (for comparisons)
# In FLAT mode a (image, group) is split into row parts (output channels) when each
# thread's part keeps at least FLAT_MIN_ROWS rows and the output is too small to give
# each thread FLAT_MIN_PIXELS pixels, else into pixel parts: a pixel part packs each
# panel once for all the rows. Measured (2026-12-02, 2-core AVX-512 Xeon, in-process
# A/B of the two splits, 2 alternating runs): pixel parts took 0.90-0.96x the time on
# 128ch 28^2 and 64->128 stride-2 56^2 (784 pixels), row parts 0.92-0.97x on 256ch
# 14^2 and 512ch 7^2 (196 and 49 pixels: 7 and 2 panels to share).
FLAT_MIN_ROWS = 64
FLAT_MIN_PIXELS = 256


# The weight gradient's im2col bands stay near this size (and under workspace_mb).
GRAD_BAND_BYTES = 16 * MIB


class Plan(NamedTuple):
    """How one call runs: band size, thread split and workspace."""

    direct: bool            # 1x1 stride-1 unpadded: GEMM on the input, no buffer
    band: int               # output pixels per band
    nbands: int             # bands per image
    mode: int               # SERIAL, TASKS or SHARED
    omp_threads: int        # OpenMP threads (1 in SERIAL mode)
    blas_threads: int       # BLAS threads per GEMM (1 unless SERIAL)
    workspace_bytes: int    # bytes of column buffer allocated
    bound_bytes: int        # the workspace bound in force
    own_kernel: bool = False  # GEMMs through the own kernel (no BLAS call)
    mparts: int = 1         # FLAT: row parts per (image, group)
    pparts: int = 1         # FLAT: pixel parts per (image, group)

    def describe(self) -> str:
        if self.mode == FLAT:
            return (f"fused own-kernel parts={self.mparts}x{self.pparts} "
                    f"omp={self.omp_threads} ws={self.workspace_bytes / MIB:.2f}MiB")
        return (f"{'direct ' if self.direct else ''}{MODE_NAMES[self.mode]} "
                f"{'own-kernel' if self.own_kernel else 'blas'} band={self.band}"
                f"x{self.nbands} omp={self.omp_threads} blas={self.blas_threads} "
                f"ws={self.workspace_bytes / MIB:.2f}MiB")


def _is_direct(spec) -> bool:
    return (spec.kh == 1 and spec.kw == 1 and spec.sh == 1 and spec.sw == 1
            and not spec.padded)


def choose_mode(spec, threads, band_cache):
    """The thread split for a call; never OpenMP and BLAS threads at once.

    * one thread, or under SMALL_FLOPS: SERIAL with one BLAS thread;
    * at least two (image, group, band) tasks per thread at the cache-sized band:
      TASKS, each OpenMP thread filling and multiplying its own bands, BLAS held to one;
    * otherwise (few, large tasks: small images, batch 1): SHARED, each task's fill and
      GEMM split over the OpenMP threads, BLAS held to one.
    """
    if threads == 1 or spec.flops < SMALL_FLOPS:
        return SERIAL, 1
    ohw = spec.oh * spec.ow
    if spec.n * spec.groups * -(-ohw // band_cache) >= 2 * threads:
        return TASKS, threads
    return SHARED, threads


def split_threads(spec, threads):
    """Kept for the benchmark's --split override: (mode, threads) or None for the rule."""
    return None


def _flat_plan(spec, threads, bound):
    """A FLAT plan when the call fits it and its scratch fits the bound, else None."""
    if not (use_flat and use_own_kernel and has_fused_mode() and spec.dtype == "float32"
            and spec.cog >= KERNEL_MIN_COG and not _is_direct(spec)
            and hasattr(_im2col, "flat_planes")):
        return None
    if threads == 1 or spec.flops < SMALL_FLOPS:
        threads = 1
    planes = _im2col.flat_planes(spec.n, spec.c_in, spec.h, spec.w, spec.oh, spec.ow,
                                 spec.kh, spec.kw, spec.sh, spec.sw, spec.dh, spec.dw,
                                 spec.pt, spec.pl, threads)
    if planes < 0:
        return None
    ohw = spec.oh * spec.ow
    items = spec.n * spec.groups
    mparts = pparts = 1
    if threads > 1 and items % threads:       # (image, group) items don't balance: split
        if spec.cog >= FLAT_MIN_ROWS * threads and ohw < FLAT_MIN_PIXELS * threads:
            mparts = threads
        else:
            pparts = threads
    work = _im2col.flat_work(spec.cig, spec.kh * spec.kw, ohw, threads, planes) * 4
    if work > bound:
        return None
    return Plan(False, ohw, 1, FLAT, threads, 1, work, bound, True,
                mparts, pparts)


def has_fused_mode() -> bool:
    """True when this build has the fused mode (the avx512 build's FLAT)."""
    return _im2col.HAVE_FLAT


def fuses(spec) -> bool:
    """True when the call fits the fused im2col + GEMM mode (workspace bound aside)."""
    return _flat_plan(spec, 1, float("inf")) is not None


def _tiled_band(spec, mode, threads, cache_px, bound_px, unit):
    """The band for the own kernel: whole tiles of ``unit`` pixels (the last band of an
    image takes the remainder), the nearest tile count to ``cache_px`` but never above
    ``bound_px`` (the workspace bound, >= unit), and in TASKS mode at least two tasks
    per thread (tasks are handed out dynamically)."""
    ohw = spec.oh * spec.ow
    tiles = -(-ohw // unit)
    bt = tiles if cache_px >= ohw else max(1, round(cache_px / unit))
    if bound_px < ohw:
        bt = min(bt, bound_px // unit)
    bt = max(1, min(bt, tiles))
    if mode == TASKS:
        per_band = spec.n * spec.groups
        while bt > 1 and per_band * -(-tiles // bt) < 2 * threads:
            bt -= 1
    return min(bt * unit, ohw)


class CythonIm2colBackend(Backend):
    """im2col + BLAS GEMM (scipy's ``cython_blas``) over a bounded workspace."""

    name = NAME
    description = ("Cython im2col into a bounded workspace, then GEMM (own AVX-512/AVX2 kernel or "
                   "BLAS); for dense layers")
    options = BUILTINS[NAME].options

    def __init__(self, workspace_mb=None):
        if workspace_mb is not None:
            workspace_mb = self.options["workspace_mb"].check(
                workspace_mb, "CythonIm2colBackend(workspace_mb=...)")
        self._workspace_mb = workspace_mb
        self._plans = {}

    def _call_plan(self, spec, threads, workspace_mb):
        """(plan, workspace elements) of a call, remembered per spec object, threads,
        bound and the module's tuning knobs: inside a network each layer's plan() ran
        7-36 us with the interpreter's data out of cache (2 us warm)."""
        key = (threads, workspace_mb, split_threads, use_flat, use_own_kernel, SMALL_FLOPS,
               CACHE_BYTES, CACHE_BYTES_BATCH, CACHE_BYTES_SMALL_SLICE, SMALL_SLICE_BYTES)
        got = self._plans.get(id(spec))
        if got is not None and got[0] is spec and got[1] == key:
            return got[2], got[3]
        # Small calls run on one thread whatever the setting.
        plan = self.plan(spec, 1 if spec.flops < SMALL_FLOPS else threads, workspace_mb)
        elems = plan.workspace_bytes // np.dtype(spec.dtype).itemsize
        if len(self._plans) >= _PLANS_MAX:
            self._plans.clear()
        self._plans[id(spec)] = (spec, key, plan, elems)    # holds spec: its id stays unique
        return plan, elems

    def release_workspace(self) -> None:
        """Drop the calling thread's kept workspace."""
        _gradops._drop_scratch(WORK_SCRATCH)

    def workspace_mb(self, ctx=None) -> float:
        """The workspace bound: the constructor argument, else the call's option."""
        if self._workspace_mb is not None:
            return self._workspace_mb
        if ctx is None:
            return self.options["workspace_mb"].default
        return ctx.options_for(NAME)["workspace_mb"]

    def supports(self, spec):
        if max(spec.oh * spec.ow, spec.reduction, spec.cog) > _INT_MAX:
            return no(f"a GEMM dimension exceeds BLAS's 32-bit limit {_INT_MAX} "
                      f"(oh*ow={spec.oh * spec.ow}, K={spec.reduction})")
        return YES

    def fuses(self, spec) -> bool:
        """True when the call fits the fused im2col + GEMM mode (workspace bound aside)."""
        return fuses(spec)

    def plan(self, spec, threads=1, workspace_mb=None) -> Plan:
        """Mode, band size and workspace for ``spec`` on ``threads`` threads within
        ``workspace_mb`` MiB (default: the constructor's bound, else the option default).

        The column buffers together stay within the workspace bound (a band holds at
        least one output pixel), and each thread's buffer near CACHE_BYTES.
        """
        t = threads
        if workspace_mb is None:
            workspace_mb = self.workspace_mb()
        bound = int(workspace_mb * MIB)
        itemsize = 4 if spec.dtype == "float32" else 8
        ohw = spec.oh * spec.ow
        direct = _is_direct(spec)
        per_pixel = spec.reduction * itemsize          # bytes of one column of the buffer
        own = bool(_im2col.HAVE_KERNEL) and spec.cog >= KERNEL_MIN_COG and use_own_kernel
        unit = _im2col.KERNEL_NR // itemsize           # pixels per tile of the own kernel
        cache = CACHE_BYTES_BATCH if spec.n * spec.groups >= 2 * t else CACHE_BYTES
        if (cache == CACHE_BYTES and own and not has_fused_mode()
                and spec.cog * 1024 <= SMALL_SLICE_BYTES):
            cache = CACHE_BYTES_SMALL_SLICE
        band_cache = min(ohw, max(cache // per_pixel, unit if own else MIN_BAND))
        forced = split_threads(spec, t)
        if forced is None:
            flat = _flat_plan(spec, t, bound)
            if flat is not None:
                return flat
        mode, omp = forced if forced is not None else choose_mode(spec, t, band_cache)
        buffers = omp if mode == TASKS else 1
        bound_px = bound // (buffers * per_pixel)      # pixels per band the bound allows
        cache_px = band_cache * (omp if mode == SHARED else 1)
        if direct:
            band = ohw
        else:
            band = max(1, min(cache_px, ohw, bound_px))
        if own and not direct and bound_px >= min(ohw, unit):
            band = _tiled_band(spec, mode, omp, cache * (omp if mode == SHARED else 1)
                               // per_pixel, bound_px, unit)
        elif mode == TASKS:
            # A multiple of the threads in tasks, so the static split balances.
            tasks_per_band = spec.n * spec.groups
            nb = -(-ohw // band)
            while (tasks_per_band * nb) % omp and nb < ohw:
                nb += 1
            band = -(-ohw // nb)
        elif band < ohw and band >= spec.ow:
            band -= band % spec.ow                     # whole output rows when they fit
        nbands = -(-ohw // band)
        buffers = omp if mode == TASKS else 1
        work = 0 if direct else buffers * spec.reduction * band * itemsize
        blas = t if mode == SERIAL and spec.flops >= SMALL_FLOPS and not own else 1
        return Plan(direct, band, nbands, mode, omp, blas, work, bound, own)

    # ------------------------------------------------------------------ the call
    def conv2d(self, spec, x, w, b, ctx):
        plan, elems = self._call_plan(spec, ctx.threads, self.workspace_mb(ctx))
        out = _alloc.empty(spec.output_shape, spec.dtype)
        work = _gradops._scratch(WORK_SCRATCH, (elems,), spec.dtype)
        if plan.mode == FLAT:
            _im2col.conv2d(x, w, b, out, work, spec.sh, spec.sw, spec.pt, spec.pl,
                           spec.dh, spec.dw, spec.groups, plan.band, plan.omp_threads,
                           plan.mode, True, plan.mparts, plan.pparts)
            return out
        if plan.own_kernel or (plan.omp_threads == 1 and plan.blas_threads == 1 and
                               spec.cog * spec.reduction * plan.band <= _BLAS_SERIAL_MNK):
            # No BLAS call, or one thread calling BLAS with GEMMs so small that OpenBLAS
            # runs them on the calling thread whatever its setting: no threadpoolctl
            # round trip (it costs microseconds, and changing OpenBLAS's thread count
            # wakes its pool to spin). Concurrent callers still need BLAS held to one:
            # OpenBLAS serialises them otherwise, even on small GEMMs.
            _im2col.conv2d(x, w, b, out, work, spec.sh, spec.sw, spec.pt, spec.pl,
                           spec.dh, spec.dw, spec.groups, plan.band, plan.omp_threads,
                           plan.mode, plan.own_kernel)
            return out
        with blas_threads(plan.blas_threads):
            _im2col.conv2d(x, w, b, out, work, spec.sh, spec.sw, spec.pt, spec.pl,
                           spec.dh, spec.dw, spec.groups, plan.band, plan.omp_threads,
                           plan.mode, plan.own_kernel)
        return out

    # ------------------------------------------------------------- gradients
    def conv2d_input(self, spec, grad_output, w, ctx):
        """Stride phases, each a stride-1 im2col convolution of grad_output with the
        flipped, channel-swapped sub-kernel (convreg.backends._gradops). (A GEMM
        w^T @ grad_output with a col2im scatter-add, once used for 14x14 and 7x7 images,
        measured 1.3-2x slower than this on 2026-12-02 once the flip copy was blocked.)"""
        return _gradops.input_grad_by_phases(
            spec, grad_output, w, lambda s, x, k: self.conv2d(s, x, k, None, ctx), ctx.threads)

    def conv2d_weight(self, spec, x, grad_output, ctx):
        """The first form that fits (rules and measurements in _gradops, docs/grad.md):

        * pointwise layers (1x1, stride 1, unpadded, >= 32 channels each way): one GEMM
          per image with the pixels as the reduction, split over output rows
          (``_gradops.weight_grad_pointwise``);
        * dense multi-tap layers with >= 64 input channels whose stride-phase planes waste
          little (``_gradops.taps_nhwc_preferred``): one GEMM per kernel tap, below;
        * few input channels per group or wide outputs (stem, MNIST, depthwise, grouped;
          up to 32 channels, 64 on outputs >= 14 wide, 256 on outputs >= 28 wide): the
          compiled row-vectorised reduction, no im2col copy (``_gradops.weight_grad_rows``,
          rule ``_gradops.rows_fits``);
        * (without the compiled helpers) few input channels, >= 16 taps: the forward
          convolution with images and channels swapped, through this backend's conv2d;
        * wide dense layers: one GEMM per kernel tap on channels-last stride-phase
          buffers (no im2col copy), each run as a 1x1 convolution by this backend (own
          GEMM kernel, OpenMP threads);
        * otherwise (small images; unpadded 1x1 stride-1 layers, whose "column buffer"
          is the input itself, no copy): BLAS GEMMs of grad_output with im2col bands of
          the input, the copies under the workspace bound."""
        def conv(s, a, k):
            return self.conv2d(s, a, k, None, ctx)

        if _gradops.pointwise_fits(spec):
            with blas_threads(1):       # the GEMM kernel's BLAS fallback, per OpenMP block
                return _gradops.weight_grad_pointwise(spec, x, grad_output, ctx.threads)
        if _gradops.taps_nhwc_preferred(spec):     # multi-tap: never _is_direct
            return _gradops.weight_grad_taps_nhwc(spec, x, grad_output, conv, ctx.threads)
        if _gradops.rows_fits(spec):
            return _gradops.weight_grad_rows(spec, x, grad_output, ctx.threads)
        if _gradops.swapped_fits(spec):
            return _gradops.weight_grad_swapped(spec, x, grad_output, conv)
        if (spec.groups == 1 and _gradops._gradutil is not None
                and _gradops.weight_grad_uses_taps(spec) and not _is_direct(spec)):
            return _gradops.weight_grad_taps_nhwc(spec, x, grad_output, conv, ctx.threads)
        bound = min(int(self.workspace_mb(ctx) * MIB), GRAD_BAND_BYTES)
        with blas_threads(1):           # threads cut the GEMMs (_gradops.matmul)
            return _gradops.weight_grad(spec, x, grad_output, bound, ctx.threads)

    def info(self) -> dict:
        bound = self.workspace_mb()
        from threadpoolctl import threadpool_info

        blas = [{k: d.get(k) for k in ("internal_api", "version", "num_threads",
                                         "architecture", "filepath")}
                for d in threadpool_info() if d.get("user_api") == "blas"]
        variant = _im2col.__name__.rpartition("_")[2]
        return {**super().info(), "workspace_mb": bound, "variant": variant,
                "float32_gemm": "own AVX-512/AVX2 kernel (>= 8 output channels per group)"
                if _im2col.HAVE_KERNEL else "BLAS",
                "openmp": _im2col.HAVE_OPENMP, "blas": blas}
