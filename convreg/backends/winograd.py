"""The ``cython-winograd`` backend: Winograd minimal filtering for 3x3, stride-1 layers.

F(m x m, 3 x 3) (Lavin & Gray 2016) computes each m x m output tile from an
(m+2) x (m+2) input tile with (m+2)^2 multiplies per (input, output) channel pair
instead of 9 m^2, in three stages (NNPACK's structure; kernels in
``pyx/winograd/winograd_impl.pxi``, built per SIMD variant as ``convreg._winograd_<v>``):

1. input transform  V = B^T d B       per tile and input channel (vectors over tiles)
2. batched GEMM     M[p] = U[p] V[p]  for each of the (m+2)^2 tile positions p, over the
                    input channels (register-tiled, 8 output channels x 48 tiles, AVX-512)
3. output transform Y = A^T M A + b   per tile and output channel, cropped into NCHW

with U = G g G^T the transformed weights (:meth:`transform`, cacheable by layers).

Semantics: any zero padding (four-sided), any dilation (a dilated 3x3 is dh*dw
interleaved undilated 3x3 convolutions on the sub-grids x[.., a::dh, b::dw]; the tiles run
over those sub-grids), groups (per group), float32 / float64. Declined: kernels other than
3x3, strides other than 1, and depthwise layers (cig = cog = 1: there is no GEMM to speed
up, the transforms alone cost about what cython-direct's depthwise path costs in total).

Tile sizes and accuracy (option ``tile``: 0 = automatic = 2, or 2, or 4)
-----------------------------------------------------------------------
Every backend must meet, elementwise,

    |out - ref| <= 4*K*eps*(|x| conv |w| + |b|),   K = cig*9 + 1   (ref in float64).

Winograd's error is not proportional to each output's own |x| conv |w|: the transforms
carry an input through transformed positions that several outputs share, and the
result relies on cancellation in A^T M A. Two structural facts decide:

* F(2x2, 3x3) *isolates*: B^T and A^T of F(2,3) send input rows/columns 0 and 3 of a tile
  only to the output whose window contains them, and rows 1, 2 lie in both windows. An
  input never reaches an output whose window misses it, and all constants are 0, +-1,
  +-1/2. Its error is ~ eps * (inputs of the window) * (largest tap of the window).
* F(4x4, 3x3) does not: B^T row 5 = 4*d1 - 5*d3 + d5 reaches output 3 (window rows 3..5)
  with d1, so a large input leaks eps*|x| into neighbours whose window misses it, and
  the constants (1/24, 5, 8) add a factor ~10-100. An output whose window lies wholly in
  the zero padding gets ~1e-7 instead of the exact 0 the bound demands.

Measured worst |err|/bound (3 seeds, 13x13 inputs, padding 1, F(2) / F(4)):

    data (float32)                  cig=1        cig=4        cig=16       cig=64
    N(0,1)                          0.09 / 1.2   0.008 / 0.10 0.002 / 0.03 0.0004 / 0.003
    channels of scales 1e-4..1e4    0.06 / 0.58  0.035 / 0.31 0.007 / 0.08 0.001 / 0.02
    ~1e4..1e6 with cancellation     0.03 / 0.03  0.004 / 0.007 <0.001      <0.001
    every pixel its own 1e-4..1e4   1.7  / 502   0.16 / 14    0.009 / 0.31 0.0009 / 0.02
    one 1e6 input among N(0,1)      0.65 / 8e4   0.02 / 1e4   0.002 / 1.7e3 0.0007 / 386
    float64: N(0,1) 0.05 / 1.0 at cig=1; pixel scales 3.2 / 1.2e3 at cig=1, 0.05 / 0.7
    at cig=4; spike 8.2 / 5e4 at cig=1, 0.017 / 1e4 at cig=4.
    150 random float32 layers (cin 1..256, sizes 1..60, padding 0..3, dilation 1..3,
    groups 1/2/4, N(0,1)): F(2) worst 0.14, no failure; F(4) 22 of 150 fail, worst 65
    (outputs next to / inside the zero padding).

So F(4x4) cannot hold the elementwise bound (it fails from cig = 1 on plain N(0,1)
data and at every cig on a spike, and in padded corners): it is never chosen
automatically, only with ``tile = 4`` (normwise it is fine: errors stay below ~16x the
bound's largest value, see tests/test_winograd.py). F(2x2) is the default.

Few summed channels: a random sweep on 2026-12-02 (12000 forward and input-gradient
calls, N(0,1) data, padding 0..4, dilation 1..3, groups 1..4, sizes 1..20) broke the
bound with F(2x2) at 1 channel per group (worst 82x float32 / 34x float64: an output
whose window holds one tap and otherwise padding gets the rounding of the transforms'
other taps) and 2 (1.0x / 9.7x), came near it at 3 (0.9x), and stayed at or below 0.27x
at 4-5 and 0.03x at 8. The backend therefore declines calls that sum fewer than
``MIN_SUMMED_CHANNELS`` = 8 channels per output (input channels per group; for the
input gradient, output channels per group); the ``cython`` chooser only picks it from
16 (functional: 32) channels anyway.

Limit no tile size survives (``test_limit_zero_taps_huge_inputs``, policy open): a zero
or tiny weight tap facing a huge input. The direct sum multiplies them exactly (0 * huge
= 0), so the bound, built from |x| conv |w|, only allows eps * (the other terms); the
Winograd transforms combine that input with the *other* taps (U = G g G^T is dense) and
cancel it afterwards, leaving ~eps*|huge|*|w| absolute error. Reproducer: one input
channel, x ~ N(0,1) with x[0, 0, 4, 4] = 1e6 (float32) or 1e12 (float64), w ~ N(0,1) with
the centre tap w[:, :, 1, 1] = 0, no padding: the output (3, 3) is off by ~1e-1 (float32)
against a bound ~4e-5: worst |err|/bound ~9e2 (F(2)) / ~7e3 (F(4)) in float32, ~4e9 /
~1e10 in float64; still ~40 / ~30 at cig = 64 (float32). supports() cannot see the data.
"""

from __future__ import annotations

import numpy as np

from . import _alloc, _gradops
from ._simd import load_family
from .base import YES, Backend, no
from .catalog import BUILTINS

NAME = "cython-winograd"
WS_SCRATCH = "winograd_ws"      # the kernel's workspace (_gradops._scratch)

# Automatic tile choice: always F(2x2); F(4x4) breaks the elementwise bound (module
# docstring) and runs only when asked for with the ``tile`` option.
AUTO_TILE = 2
TILES = (2, 4)
# Channels summed per output (input channels per group; output channels per group for
# the input gradient) below which the backend declines (module docstring: a random
# sweep broke the bound up to 80x at 1-2 channels, 0.9x at 3, never above 0.03x at 8).
MIN_SUMMED_CHANNELS = 8
# Call sizes whose plan a backend remembers (``CythonWinogradBackend._plan``)
PLANS_MAX = 512


class TransformedWeights:
    """Weights transformed for one tile size (``CythonWinogradBackend.transform``).

    ``array`` is (groups, (tile+2)^2, ceil(cog/8), cig, 8) of the weights' dtype; the layout
    does not depend on the SIMD variant. ``shape`` is the original weight shape.
    """

    __slots__ = ("array", "tile", "groups", "shape", "dtype")

    def __init__(self, array, tile, groups, shape):
        self.array = array
        self.tile = tile
        self.groups = groups
        self.shape = tuple(shape)
        self.dtype = array.dtype

    def __repr__(self):
        return (f"<TransformedWeights F({self.tile}x{self.tile},3x3) of {self.shape} "
                f"{self.dtype}>")


def _threads(ctx):
    """The call's thread count (1 without a context: direct calls from tests)."""
    return max(1, int(ctx.threads)) if ctx is not None else 1


def _tile_option(ctx, name):
    """The call's ``tile`` option (checked by the settings against its OptionSpec)."""
    return ctx.options_for(name).get("tile", 0) if ctx is not None else 0


def cached_transform(cache, key, w, make, same_bytes, threads=1):
    """The transformed weights kept in a layer's ``cache`` under ``key``, remade when ``w``
    (C-contiguous) differs in any way from the weights they were made from: a copy of
    those is kept and compared byte for byte (so NaNs compare too) on every call by
    ``same_bytes(a, b, threads)``. That read costs a few times less than the transform,
    and no write to the weights, in place or through any view, can leave a stale transform
    in use."""
    entry = cache.get(key)
    if (entry is not None and entry[0].shape == w.shape and entry[0].dtype == w.dtype
            and same_bytes(_bytes(entry[0]), _bytes(w), threads)):
        return entry[1]
    wt = make()
    cache[key] = (w.copy(), wt)
    return wt


def _bytes(a):
    """A C-contiguous array's buffer as flat bytes (a view)."""
    return a.reshape(-1).view(np.uint8)


class CythonWinogradBackend(Backend):
    name = NAME
    description = ("Cython Winograd F(2x2,3x3) / F(4x4,3x3) for 3x3 stride-1 layers: "
                   "transforms vectorised over tiles, batched GEMM over the tile "
                   "positions; OpenMP, GIL released")
    padding_modes = frozenset({"zeros"})
    options = BUILTINS[NAME].options

    def __init__(self, variant: str = None):
        self._mod = load_family("_winograd", variant)
        self._plans = {}

    @property
    def variant(self) -> str:
        """The SIMD variant of the loaded kernels: baseline, avx2 or avx512."""
        return self._mod.__name__.rsplit("_", 1)[-1]

    @staticmethod
    def _shape(spec):
        if (spec.kh, spec.kw) != (3, 3):
            return no(f"needs a 3x3 kernel, got {spec.kh}x{spec.kw}")
        if (spec.sh, spec.sw) != (1, 1):
            return no(f"needs stride 1, got stride ({spec.sh}, {spec.sw})")
        if spec.cig == 1 and spec.cog == 1 and spec.groups > 1:
            return no("depthwise (one input and one output channel per group): no channel "
                      "GEMM for Winograd to shrink; cython-direct's depthwise path is faster")
        return YES

    def supports(self, spec):
        return self._summing(spec, spec.cig, "input channels per group")

    def supports_op(self, spec, op):
        """The input gradient sums over the layer's *output* channels per group."""
        if op != "conv2d_input":
            return no(f"{op} is not implemented by Winograd")
        return self._summing(spec, spec.cog, "output channels per group (the input "
                                             "gradient sums over them)")

    def _summing(self, spec, channels, what):
        shape = self._shape(spec)
        if not shape:
            return shape
        if channels < MIN_SUMMED_CHANNELS:
            return no(f"needs at least {MIN_SUMMED_CHANNELS} {what}, got {channels}: with "
                      "fewer, F(2x2,3x3)'s rounding can exceed the elementwise error bound "
                      "(outputs whose window is mostly padding)")
        return YES

    @staticmethod
    def choose_tile(spec, tile=0) -> int:
        """The tile size a call uses: ``tile`` if given (2 or 4), else the automatic rule."""
        return tile or AUTO_TILE

    def transform(self, w, spec, tile=0, threads=1) -> TransformedWeights:
        """G w G^T for the tile size ``spec`` would use (or ``tile``), packed for the GEMM:
        pass the result to :meth:`conv2d_pretransformed` for every call with these weights."""
        tile = self.choose_tile(spec, tile)
        arr = self._mod.transform_weights(np.ascontiguousarray(w, dtype=spec.dtype), tile,
                                          spec.groups, max(1, int(threads)))
        return TransformedWeights(arr, tile, spec.groups, spec.weight_shape)

    def conv2d(self, spec, x, w, b, ctx):
        tile = self.choose_tile(spec, _tile_option(ctx, self.name))
        cache = getattr(ctx, "weight_cache", None)
        threads = _threads(ctx)
        if cache is None:       # a functional call: transform per call, into a reused buffer
            return self._functional(spec, x, w, b, ctx, tile, threads)
        wt = cached_transform(
            cache, (self.name, tile, spec.groups), w,
            lambda: self._mod.transform_weights(w, tile, spec.groups, threads),
            self._mod.same_bytes, threads)
        return self._run(spec, x, wt, b, ctx, tile)

    def _plan(self, spec, tile, threads):
        """(fuses, workspace elements with raw weights, with transformed weights) of a
        call (``raw_plan``, ``workspace_elems``), remembered per sizes: worked out per
        call, they cost a few percent of a small layer's Python side."""
        key = (spec.n, spec.groups, spec.cig, spec.cog, spec.oh, spec.ow, spec.dh, spec.dw,
               tile, spec.dtype, threads)
        got = self._plans.get(key)
        if got is None:
            itemsize = np.dtype(spec.dtype).itemsize
            fuses, raw = self._mod.raw_plan(*self._sizes(spec), tile, itemsize, threads)
            got = (fuses, raw, self._mod.workspace_elems(*self._sizes(spec), tile, itemsize,
                                                         threads))
            if len(self._plans) >= PLANS_MAX:
                self._plans.clear()
            self._plans[key] = got
        return got

    def _functional(self, spec, x, w, b, ctx, tile, threads):
        fuses, need, _ = self._plan(spec, tile, threads)
        if fuses:
            # one tile block: the kernel transforms each chunk of output channels just
            # before its GEMM, from the weights themselves (no whole U through memory)
            return self._run(spec, x, w, b, ctx, tile, need, True)
        # transformed whole by the convolution's own team, before its work items
        return self._run(spec, x, w, b, ctx, tile, need, True, self._scratch_u(spec, tile))

    def conv2d_input(self, spec, grad_output, w, ctx):
        """The input gradient of a 3x3 stride-1 layer (``supports``) is one 3x3 stride-1
        convolution of grad_output with the flipped, channel-swapped weights, padded by
        2*dilation - padding (``_gradops.input_grad_by_phases``: a single phase at stride
        1), run here by Winograd. The weight transform reads w flipped and swapped in
        place (``transform_weights(..., swapped=True)``), per call, never through a
        layer's cache (which holds the forward weights' transform)."""
        tile = self.choose_tile(spec, _tile_option(ctx, self.name))
        threads = _threads(ctx)

        def conv_swapped(pspec, part):
            wt = self._mod.transform_weights(w, tile, spec.groups, threads,
                                             self._scratch_u(pspec, tile), True)
            return self._run(pspec, part, wt, None, ctx, tile)

        return _gradops.input_grad_by_phases(
            spec, grad_output, w,
            lambda s, x, k: self._functional(s, x, k, None, ctx, tile, threads), threads,
            conv_swapped)

    @staticmethod
    def _scratch_u(spec, tile):
        """The calling thread's reused buffer for a functional call's transformed weights
        (``_gradops._scratch``: per thread, bounded, dropped when too large to keep)."""
        al = tile + 2
        return _gradops._scratch("winograd_u", (spec.groups, al * al, -(-spec.cog // 8),
                                                spec.cig, 8), spec.dtype)

    def conv2d_pretransformed(self, spec, x, wt: TransformedWeights, b, ctx):
        """conv2d with weights already through :meth:`transform` (same spec shapes)."""
        if wt.shape != spec.weight_shape or wt.groups != spec.groups \
                or wt.dtype != np.dtype(spec.dtype):
            raise ValueError(f"transformed weights {wt!r} do not match the call "
                             f"{spec.weight_shape} {spec.dtype} groups={spec.groups}")
        return self._run(spec, x, wt.array, b, ctx, wt.tile)

    @staticmethod
    def _sizes(spec):
        """The sizes the kernels' plan depends on, in their argument order."""
        return (spec.n, spec.groups, spec.cig, spec.cog, spec.oh, spec.ow, spec.dh, spec.dw)

    def _run(self, spec, x, wt, b, ctx, tile, need=None, fuse=None, ut=None):
        """``need``: the workspace elements when the caller has them (``raw_plan``);
        ``fuse``: wt is the weights themselves, for a plan that transforms them inside
        (chunk by chunk, or whole into ``ut`` first)."""
        out = _alloc.empty(spec.output_shape, spec.dtype)
        if b is None:
            b = np.zeros(spec.c_out, dtype=spec.dtype)
        threads = _threads(ctx)
        if need is None:
            need = self._plan(spec, tile, threads)[2]
        # The calling thread's scratch, kept for its next call: a fresh buffer per call
        # costs page faults comparable to a small layer. Its size is set by the work
        # (channels x tile block x threads), never by the image or the padding.
        ws = _gradops._scratch(WS_SCRATCH, (need,), spec.dtype)
        if spec.c_in and spec.h and spec.w:
            # the spec checked the arrays: straight to the kernels' own size checks
            # (winograd_conv2d's checks of the array kinds cost ~2 % of a small layer)
            self._mod._run(x, wt.reshape(-1), b, out, spec.pt, spec.pl, spec.dh, spec.dw,
                           spec.groups, tile, threads, ws, bool(fuse),
                           None if ut is None else ut.reshape(-1))
        else:
            if ut is not None:
                wt, fuse = self._mod.transform_weights(wt, tile, spec.groups, threads, ut), None
            self._mod.winograd_conv2d(x, wt, b, out, spec.pt, spec.pl, spec.dh, spec.dw,
                                      spec.groups, tile, threads, ws, fuse)
        return out

    def release_workspace(self) -> None:
        """Drop the calling thread's kept workspace."""
        _gradops._drop_scratch(WS_SCRATCH)

    def info(self) -> dict:
        out = super().info()
        out.update({"simd": self.variant, "vector_bytes": self._mod.VECTOR_BYTES,
                    "openmp": self._mod.HAVE_OPENMP})
        return out
