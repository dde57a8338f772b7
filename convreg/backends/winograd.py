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

Tile sizes and accuracy (option ``tile``: 0 = automatic, 2 or 4)
---------------------------------------------------------------
The error bound every backend must meet is

    |out - ref| <= 4*K*eps*(|x| conv |w| + |b|),   K = cig*9 + 1.

Winograd's error is not proportional to (|x| conv |w|): the transforms mix the whole
input tile through every weight tap (U = G g G^T is dense even where g has zeros) and the
products then cancel in A^T M A. Its error scales like eps * |x|_tile * |g|_max * c(m),
with c(2) ~ 2 and c(4) ~ 20-100 (the F(4,3) matrices hold 1/24, 5, 8; the transforms of
F(2,3) only 0, +-1, +-1/2). Measured (tests/test_winograd.py and
scripts/bench_winograd.py --accuracy): with random N(0,1) data both tile sizes stay far
inside the bound (worst |err|/bound ~ 0.02 for F(2), ~ 0.3 for F(4) at cig = 1..4, falling
with cig as K grows); the adversarial cases below decide.

* F(2x2, 3x3) holds the bound on the harness grid, random configurations and inputs with
  channels of scales 1e-4..1e4 and large-magnitude (1e4..1e6) cancelling inputs.
* F(4x4, 3x3) holds it on random data but NOT on adversarial scales: with channels of very
  different magnitudes and few channels (small K) the worst ratio exceeds 1. It is used
  automatically only where it held in every test: float32/float64 with cig >= AUTO_F4_MIN_CIG
  input channels per group; below that the automatic choice is F(2x2, 3x3).
  ``tile = 4`` forces it anyway.

Limit that no tile size survives (see ``test_limit_zero_taps_huge_inputs``): a weight
tap that is zero (or tiny) facing an input far larger than the rest of the tile. The
direct sum multiplies the huge input by the zero tap exactly; Winograd spreads the huge
value over all transformed positions and relies on cancellation, leaving an absolute
error ~ eps * |huge| * |w_other|, which the bound (built from |x| conv |w|, where the
huge input only meets the zero tap) does not allow. Reproducer: x = 1 everywhere except
x[.., 4, 4] = 1e8 (float32: 1e4 is enough to fail F(4)), w = 1 except w[.., 1, 1] = 0,
cig = 1: the output at (3, 3), whose window holds the huge input at the zero centre tap,
is off by ~1e8*eps*c(m) while the bound is ~40*eps*9. Policy is the caller's: supports()
does not (cannot) look at the data.
"""

from __future__ import annotations

import threading

import numpy as np

from .._backend import YES, Backend, no
from .._config import OptionSpec
from .._simd import load_family

NAME = "cython-winograd"

# Automatic tile choice: always F(2x2); F(4x4) breaks the elementwise bound (module
# docstring) and runs only when asked for with the ``tile`` option.
AUTO_TILE = 2
TILES = (2, 4)


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


def _tile_option(ctx, name):
    tile = ctx.options_for(name).get("tile", 0) if ctx is not None else 0
    if tile not in (0,) + TILES:
        from .._errors import ConfigError

        raise ConfigError(f"[backends.{name}] tile must be 0 (automatic), 2 or 4, "
                          f"but got {tile!r}")
    return tile


class CythonWinogradBackend(Backend):
    name = NAME
    description = ("Cython Winograd F(2x2,3x3) / F(4x4,3x3) for 3x3 stride-1 layers: "
                   "transforms vectorised over tiles, batched GEMM over the tile "
                   "positions; OpenMP, GIL released")
    padding_modes = frozenset({"zeros"})
    options = {
        "tile": OptionSpec(int, 0, minimum=-1,
                           doc="output tile: 0 = automatic (F(2x2)), 2, or 4 (faster, "
                               "accurate only normwise: see the backend's docstring)"),
    }

    def __init__(self, variant: str = None):
        self._mod = load_family("_winograd", variant)
        # One workspace per calling thread and dtype, grown on demand and reused: a fresh
        # buffer per call costs page faults comparable to a small layer. Its size is set by
        # the work (channels x tile block x threads), never by the image or the padding.
        self._tls = threading.local()

    @property
    def variant(self) -> str:
        """The SIMD variant of the loaded kernels: baseline, avx2 or avx512."""
        return self._mod.__name__.rsplit("_", 1)[-1]

    def supports(self, spec):
        if (spec.kh, spec.kw) != (3, 3):
            return no(f"needs a 3x3 kernel, got {spec.kh}x{spec.kw}")
        if (spec.sh, spec.sw) != (1, 1):
            return no(f"needs stride 1, got stride ({spec.sh}, {spec.sw})")
        if spec.padding_mode != "zeros":
            return no(f"padding mode {spec.padding_mode!r} is written out by the dispatcher")
        if spec.cig == 1 and spec.cog == 1 and spec.groups > 1:
            return no("depthwise (one input and one output channel per group): no channel "
                      "GEMM for Winograd to shrink; cython-direct's depthwise path is faster")
        return YES

    @staticmethod
    def choose_tile(spec, tile=0) -> int:
        """The tile size a call uses: ``tile`` if given (2 or 4), else the automatic rule."""
        return tile or AUTO_TILE

    def transform(self, w, spec, tile=0) -> TransformedWeights:
        """G w G^T for the tile size ``spec`` would use (or ``tile``), packed for the GEMM:
        pass the result to :meth:`conv2d_pretransformed` for every call with these weights."""
        tile = self.choose_tile(spec, tile)
        arr = self._mod.transform_weights(np.ascontiguousarray(w, dtype=spec.dtype), tile,
                                          spec.groups)
        return TransformedWeights(arr, tile, spec.groups, spec.weight_shape)

    def conv2d(self, spec, x, w, b, ctx):
        tile = self.choose_tile(spec, _tile_option(ctx, self.name))
        wt = self._mod.transform_weights(w, tile, spec.groups)
        return self._run(spec, x, wt, b, ctx, tile)

    def conv2d_pretransformed(self, spec, x, wt: TransformedWeights, b, ctx):
        """conv2d with weights already through :meth:`transform` (same spec shapes)."""
        if wt.shape != spec.weight_shape or wt.groups != spec.groups \
                or wt.dtype != np.dtype(spec.dtype):
            raise ValueError(f"transformed weights {wt!r} do not match the call "
                             f"{spec.weight_shape} {spec.dtype} groups={spec.groups}")
        return self._run(spec, x, wt.array, b, ctx, wt.tile)

    def _run(self, spec, x, wt, b, ctx, tile):
        out = np.empty(spec.output_shape, dtype=spec.dtype)
        if b is None:
            b = np.zeros(spec.c_out, dtype=spec.dtype)
        threads = max(1, int(ctx.threads)) if ctx is not None else 1
        need = self._mod.workspace_elems(spec.n, spec.groups, spec.cig, spec.cog, spec.oh,
                                         spec.ow, spec.dh, spec.dw, tile,
                                         np.dtype(spec.dtype).itemsize, threads)
        cache = self._tls.__dict__.setdefault("ws", {})
        ws = cache.get(spec.dtype)
        if ws is None or ws.size < need:
            ws = cache[spec.dtype] = np.empty(need, dtype=spec.dtype)
        self._mod.winograd_conv2d(x, wt, b, out, spec.pt, spec.pl, spec.dh, spec.dw,
                                  spec.groups, tile, threads, ws)
        return out

    def release_workspace(self) -> None:
        """Drop the calling thread's cached workspace."""
        self._tls.__dict__.pop("ws", None)

    def info(self) -> dict:
        out = super().info()
        out.update({"simd": self.variant, "vector_bytes": self._mod.VECTOR_BYTES,
                    "openmp": self._mod.HAVE_OPENMP})
        return out
