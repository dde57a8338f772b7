"""``cython``: the name users type. Chooses ``cython-direct``, ``cython-im2col`` or
``cython-winograd`` per call.

The rules come from ``scripts/sweep_chooser.py`` (table and discussion in
``docs/chooser.md``); builds without im2col's fused mode (avx2, baseline) take their own
Winograd tables and send strided dense layers to im2col (``winograd_tables``). On this
project's reference machine (2-core AVX-512) the direct
kernel's register-blocked microkernels beat im2col + GEMM on most layers, dense 3x3
ones included; im2col wins where its GEMM needs no column buffer (1x1 kernels over many
channels) and where the image is so small that direct's width-vectorised rows waste
lanes while the channels are deep.
"""

from __future__ import annotations

from . import im2col as _im2col_backend   # ImportError when not built: "unavailable"
from ._gradops import pointwise_fits, rows_fits, taps_nhwc_preferred
from .base import Backend

# Grouped layers with at most this many input channels per group run direct (depthwise
# included): per-group GEMMs this thin are slower than direct by 2-13x in the sweep.
SMALL_GROUP = 8
# 1x1 kernels of at least GEMM_1X1_MIN_FLOPS: im2col runs them as one GEMM on the input
# (strided: after a gather).
# Re-measured (2026-12-02, 2-core AVX-512, 468 GFLOP/s FMA peak; time / torch, im2col
# against direct, same shuffled run) on ResNet-50/ResNet-18/MobileNetV2 1x1 layers at
# every image size: 128->512 28^2 0.73 / 1.07, 256->1024 14^2 0.86 / 1.21, 1024->256 14^2
# 0.78 / 1.02, 384->64 14^2 0.45 / 0.73, 960->320 7^2 0.58 / 0.76, stride-2 128->256 28^2
# 0.57 / 0.68 (batch 8: 0.80 / 1.41), 512->128 28^2 0.96 / 0.94; the old pixel threshold
# (2048) sent all but the first of these to direct. With fewer output channels the GEMM
# re-reads the input per 8-row tile and direct won twice of three (32->16 112^2 1.01 /
# 0.58, 144->24 56^2 0.91 / 0.63; 96->24 56^2 0.38 / 0.54), so 1x1 layers also needed
# >= 32 input and output channels. On the 2-core AVX-512 Xeon (Intel, 2 MiB L2, 479
# GFLOP/s FMA peak) that came with this project's later sessions, and with the GEMM
# packing its B panels when >= 8 row tiles share them, im2col / direct (time / torch,
# same shuffled run, 2026-12-02) won on those too: 32->16 112^2 0.37 / 0.75, 144->24
# 56^2 0.48 / 0.78, 96->24 56^2 0.40 / 0.69, 16->96 112^2 0.55 / 0.96, 24->144 56^2
# 0.10 / 0.17 (batch 8: 0.15 / 0.17), 16->64 56^2 0.39 / 0.63, 32->8 56^2 0.22 / 0.41,
# 16->16 56^2 0.33 / 0.43, 4->32 112^2 0.05 / 0.13; direct kept only the smallest: 8->32
# 28^2 (0.4 MFLOP) 0.52 / 0.60, 8->8 16^2 0.98 / 1.56. Other machines: tune = "measure".
GEMM_1X1_MIN_FLOPS = 1_000_000
# Outputs of at most this many pixels per image with at least SMALL_IMAGE_MIN_CIN input
# channels per group: im2col took 0.58-0.82x direct's time (8x8 and smaller images).
SMALL_IMAGE = 64
SMALL_IMAGE_MIN_CIN = 128


# Calls im2col runs in its fused mode (float32, AVX-512; stride 1 and same width, or
# strided on stride-phase planes: im2col.fuses) with at least this many input channels:
# im2col took 0.74-0.95x direct's time after that mode landed (re-sweep, 64-512
# channels), and 0.57-0.93x on ResNet's stride-2 3x3 layers once it took strided calls
# (2026-12-02, docs/chooser.md); at 32 channels direct was 17-29% faster (stride 2:
# 0.96x), and direct keeps the 3-channel stem (0.94x fused's time). Re-measured after the
# fused mode's 12-row tiles and direct's stores into the output (2026-12-03, layers,
# fused / direct, shuffled against torch): 40ch 56^2 0.85, 48ch 56^2 0.84, 48ch 112^2
# 0.91, batch-8 48ch 56^2 0.87, 48->96 stride 2 0.84, 48ch 28^2 0.81, 56ch 56^2 0.83; at
# 32 channels a draw (0.87-1.04 over eight layers), so 40.
FUSED_MIN_CIN = 40


# Winograd F(2x2,3x3) for dense 3x3 stride-1 undilated layers (it holds the harness bound
# from 8 summed channels on random, scaled and cancelling data, and declines fewer:
# convreg/backends/winograd.py).
# A functional call transforms its weights every time (2-3.3 ns per channel pair on 2
# threads since 2026-12-03, was 4-12) and pays the input and output transforms per
# channel and pixel, so Winograd needs both channels and pixels: at least
# WINOGRAD_FUNCTIONAL[k][1] output pixels over the batch when both channel counts are at
# least WINOGRAD_FUNCTIONAL[k][0]. Re-measured after the cheaper weight transform
# (2026-12-03, 2-core AVX-512 Xeon, functional calls, shuffled; Winograd / best of
# im2col and direct): 256ch 14^2 1.11, batch-2 256ch 14^2 0.85-0.89, batch-6 256ch 8^2
# 0.91, batch-8 256ch 7^2 0.92, 256ch 20^2 0.95, 384ch 13^2 1.23, batch-2 512ch 7^2
# 1.23, 512ch 14^2 0.95; 128ch 24^2 0.90-0.98, batch-3 128ch 14^2 0.93, batch-4 128ch
# 12^2 0.99, batch-2 128ch 14^2 1.04, 128ch 20^2 0.90; 96ch 28^2 0.79, 96ch 24^2 0.94,
# batch-4 96ch 12^2 1.06, 96ch 20^2 1.05; 64ch 36^2 0.88, 64ch 32^2 0.90, batch-2 64ch
# 24^2 1.08, 64ch 28^2 1.05, 64ch 40^2 0.78, batch-2 64ch 28^2 0.79; 32ch 56^2 0.88,
# 32ch 48^2 0.91, 32ch 40^2 1.60, 32ch 80^2 0.80. (Before: 128ch 28^2 0.82-0.87, 64ch
# 56^2 0.86-0.89, 128ch 14^2 1.81, 16ch 112^2 1.19-1.29, docs/chooser.md.) Dilated and
# small-group layers measured no faster. Re-measured after the GEMM's tail kernel and
# the shared 49-tile block, and im2col's dot-product remainder (2026-12-03, same
# machine and method): 256ch 14^2 0.97, 256ch 13^2 1.04, 256ch 12^2 1.17, 256ch 16^2
# 0.94, 512ch 14^2 0.87, 512ch 12^2 1.01, 384ch 14^2 0.91, 192ch 14^2 0.98, batch-2
# 256ch 14^2 0.85, batch-2 512ch 7^2 1.10; 128ch 16^2 0.83, 128ch 18^2 0.85, 128ch 20^2
# 0.82, 128ch 14^2 1.02, batch-2 128ch 14^2 0.93; 96ch 20^2 0.92, 96ch 24^2 0.80, 96ch
# 16^2 1.00, 96ch 14^2 1.23; 64ch 28^2 0.86, 64ch 32^2 0.71, batch-2 64ch 24^2 0.84,
# 64ch 24^2 0.98, 64ch 20^2 1.10, 64ch 16^2 1.27; 32ch 48^2 0.98, 32ch 40^2 1.08,
# 32ch 36^2 1.13. (The table was (256, 384), (128, 576), (96, 784), (64, 1200),
# (32, 2304).) Re-checked after the weight transform moved inside one-block calls and the
# tail tiles into the GEMM's microkernel: unchanged (256ch 14^2 0.86-0.90, 256ch 13^2
# 1.00, 128ch 14^2 0.94-1.03, 192ch 14^2 0.89-0.91, 192ch 13^2 0.99; docs/chooser.md).
# Re-measured after functional calls began transforming the weights inside the
# convolution's region and the backend went straight to the kernels (2026-12-03, same
# machine, functional calls, idle then primed, Winograd / the current choice): 32ch 28^2
# 0.77-0.79, 32ch 32^2 0.73, 32ch 36^2 0.77, 32ch 40^2 0.89, 32ch 24^2 0.99, 32ch 20^2
# 1.06; 48ch 28^2 0.92, 48ch 24^2 0.94, 40ch 28^2 0.97; 64ch 24^2 0.85, 64ch 22^2 0.89,
# 64ch 20^2 0.94-0.95, 64ch 18^2 1.01, 64ch 16^2 1.04, batch-2 64ch 16^2 0.86; 96ch 16^2
# 0.84-0.85, 96ch 14^2 1.10, 96ch 12^2 1.30; 128ch 14^2 0.87, 128ch 12^2 1.01, 128ch 10^2
# 1.34, batch-2 128ch 14^2 0.99; 192ch 13^2 0.90; 256ch 13^2 0.88-0.92, 256ch 12^2 1.00,
# 256ch 10^2 1.09; 512ch 10^2 1.07, batch-2 512ch 7^2 0.99. (Was (256, 196), (128, 256),
# (96, 400), (64, 784), (32, 2304).)
WINOGRAD_FUNCTIONAL = ((256, 169), (128, 196), (96, 256), (64, 484), (32, 784))
# A layer keeps its transformed weights (checked against its weights on every call),
# by the same kind of table. Small images
# still cost: every call streams the transformed weights (16/9 of the weights' size) once
# per block of tiles, and a tile row of a small image fills few of a vector's lanes in the
# input and output transforms. Measured through layers (2026-12-02, 2-core AVX-512 Xeon,
# 461 GFLOP/s FMA peak, after the in-register input rows and the U prefetch; time / torch
# F.conv2d, Winograd / best of im2col and direct, shuffled runs, docs/chooser.md):
# 256ch 14^2 0.86-0.88 / 0.94-0.95, batch-4 512ch 7^2 0.90 / 1.03, 128ch 20^2 0.82 /
# 0.97, 96ch 28^2 0.70 / 0.87, 64ch 40^2 0.76 / 0.90, batch-2 64ch 28^2 0.79 / 0.94, 32ch
# 56^2 0.75-0.76 / 0.80-0.81; but 384ch 13^2 0.87-0.89 / 0.81, 192ch 14^2 0.84 / 0.86,
# 128ch 14^2 0.97 / 0.88, batch-2 128ch 14^2 0.93-0.98 / 0.95-0.97, 64ch 28^2 0.79-0.81 /
# 0.76, 32ch 28^2 0.74 / 0.55, 512ch 7^2 1.09 / 0.60, 16ch 112^2 0.84 / 0.81.
# Wide layers on one small image need more in a network, where each call streams U and
# the weights' check (3.8x the weights) from the last-level cache: ResNet-18's 256ch 14^2
# layers in the network (after a torch pass, as bench_network.py runs) took 0.78-0.87 ms
# by Winograd against im2col's 0.71-0.78, so 256 channels need a batch of 2 (batch-8
# 512ch 7^2 in sequence: Winograd 4.85-5.09 ms, im2col 6.74-6.86).
# The byte check of the weights costs about what a functional call's transform costs
# (256ch 14^2 alone: layer 0.750 ms, functional 0.756, im2col 0.759; 2026-12-03), so a
# layer takes the functional table's rows, except that 256 channels need the 128
# channel row's 256 pixels: inside ResNet-18 the 256ch 14^2 layers were still a draw
# (1.07, 1.00, 0.99x im2col's time after the changes above). (Was (256, 384), (96,
# 400), (64, 1200), (32, 2304).)
# Re-measured with the functional table above (layers alone, idle then primed, Winograd /
# the current choice): 32ch 28^2 0.76, 32ch 40^2 0.82, 64ch 22^2 0.82, 96ch 16^2 0.77,
# 128ch 14^2 0.91; the 96 row at 256 pixels keeps 256 channels at 256 pixels as before
# (a 128 row at 196 would send ResNet-18's 256ch 14^2 layers to Winograd, a draw in the
# network). (Was (128, 256), (96, 400), (64, 784), (32, 2304).)
WINOGRAD_CACHED = ((96, 256), (64, 484), (32, 784))


# Builds without im2col's fused mode (avx2, baseline) lose the kernel that made layers and
# small images a close call for Winograd above: im2col there packs a column buffer and
# direct's AVX2 blocks are narrower. Measured (2026-12-03, 2-core AMD EPYC Zen 3, AVX2,
# ~200 GFLOP/s FMA peak, batch 1 unless said; Winograd / best of im2col and direct,
# alternating, idle then primed). Functional: 512ch 10^2 0.84, 512ch 14^2 0.72, 384ch
# 13^2 0.81, 256ch 12^2 0.91, 256ch 10^2 0.97, 256ch 8^2 0.96, 96ch 14^2 0.92, 64ch 20^2
# 0.86, 32ch 28^2 0.91; but 192ch 14^2 1.04, 128ch 12^2 1.22, 128ch 10^2 0.99, 96ch 12^2
# 1.28, 64ch 16^2 0.98, 64ch 14^2 0.99, 32ch 24^2 1.03, 32ch 20^2 1.20, batch-2 512ch 7^2
# 1.03, batch-4 0.98, 512ch 7^2 1.25. Layers: 512ch 10^2 0.71, 384ch 13^2 0.73, 256ch
# 12^2 0.92, 10^2 0.85, 8^2 0.92, 192ch 14^2 0.68, 128ch 12^2 0.88, 10^2 0.85, 96ch 14^2
# 0.79, 12^2 0.95, 64ch 20^2 0.80, 16^2 0.77, 14^2 0.84, 32ch 28^2 0.88, 24^2 0.96, 20^2
# 0.96, batch-2 512ch 7^2 0.88, batch-4 0.69; 16ch 56^2 1.00; 512ch 7^2 (49 pixels)
# 2.66 ms against im2col's 2.53.
WINOGRAD_FUNCTIONAL_UNFUSED = ((512, 100), (256, 144), (96, 196), (64, 400), (32, 784))
WINOGRAD_CACHED_UNFUSED = ((256, 64), (128, 100), (64, 196), (32, 400))
# Strided dense layers on those builds: im2col (column buffer + GEMM kernel) took 0.92-0.98x
# direct's time on ResNet's stride-2 3x3 layers (64->128 56^2, 128->256 28^2, batch 1
# and 8; same run as above).
UNFUSED_STRIDED_MIN_CIN = 64
# ... and take Winograd for 3x3 layers dilated up to this (winograd_fits).
UNFUSED_WINOGRAD_MAX_DILATION = 2


def winograd_tables() -> tuple:
    """(functional, cached) Winograd tables of this build: the fused-mode builds' rules
    (WINOGRAD_FUNCTIONAL, WINOGRAD_CACHED) or the others' (the _UNFUSED pair)."""
    if _im2col_backend.has_fused_mode():
        return WINOGRAD_FUNCTIONAL, WINOGRAD_CACHED
    return WINOGRAD_FUNCTIONAL_UNFUSED, WINOGRAD_CACHED_UNFUSED


def winograd_fits(spec, cached=False) -> bool:
    # dilation: the builds with the fused mode measured no dilated layer faster; without
    # it, dilation 2 through Winograd's sub-grids took 0.74-0.84x direct's time (64ch 56^2,
    # 128ch 28^2, 256ch 14^2; 2026-12-03, Zen 3), dilation 3 lost to im2col (128ch 28^2
    # 2.01 ms against 1.86)
    most = 1 if _im2col_backend.has_fused_mode() else UNFUSED_WINOGRAD_MAX_DILATION
    if not (spec.kh == spec.kw == 3 and spec.sh == spec.sw == 1 and spec.dh <= most
            and spec.dw <= most and spec.groups == 1):
        return False
    channels = min(spec.cig, spec.cog)
    pixels = spec.n * spec.oh * spec.ow
    functional, layers = winograd_tables()
    table = layers if cached else functional
    return any(channels >= c and pixels >= p for c, p in table)


def choose(spec, fuses=None, winograd=False, cached=False) -> tuple:
    """(concrete backend name, reason) for a validated spec; ``fuses(spec)`` says whether
    cython-im2col would run the call in its fused mode; ``winograd``: whether
    cython-winograd may be chosen."""
    if winograd and winograd_fits(spec, cached):
        return "cython-winograd", (
            f"dense 3x3 stride-1 layer, {spec.cig} -> {spec.cog} channels over "
            f"{spec.n}x{spec.oh}x{spec.ow} outputs: Winograd F(2x2,3x3) (2.25x fewer "
            "multiplies; within the error bound; [backends.cython] winograd = false "
            "turns it off)")
    if spec.groups > 1 and spec.cig <= SMALL_GROUP:
        kind = "depthwise" if spec.cig == 1 else f"grouped ({spec.cig} input channels per group)"
        return "cython-direct", f"{kind}: per-group GEMMs would be too thin"
    if fuses is not None and fuses(spec) and spec.cig >= FUSED_MIN_CIN:
        return "cython-im2col", (f"{'strided' if spec.sh * spec.sw > 1 else 'same-width'} "
                                 f"call over {spec.cig} input channels: im2col's fused mode "
                                 "packs panels straight from the input")
    if (spec.groups == 1 and spec.sh * spec.sw > 1 and spec.kh * spec.kw > 1
            and spec.cig >= UNFUSED_STRIDED_MIN_CIN and not _im2col_backend.has_fused_mode()):
        return "cython-im2col", (f"strided {spec.kh}x{spec.kw} layer over {spec.cig} input "
                                 "channels: column buffer and GEMM kernel")
    if spec.kh == spec.kw == 1 and spec.flops >= GEMM_1X1_MIN_FLOPS:
        return "cython-im2col", (f"1x1 kernel, {spec.cig} -> {spec.cog} channels: one GEMM "
                                 "on the input")
    if spec.oh * spec.ow <= SMALL_IMAGE and spec.cig >= SMALL_IMAGE_MIN_CIN:
        return "cython-im2col", (f"small {spec.oh}x{spec.ow} output over {spec.cig} input "
                                 "channels: the GEMM keeps all lanes busy")
    return "cython-direct", (f"{spec.cig * spec.kh * spec.kw}-term reduction over a "
                             f"{spec.oh}x{spec.ow} output: register-blocked direct kernel")


def choose_input_grad(spec, winograd=False) -> tuple:
    """(backend, reason) for the input gradient: it runs as stride-phase forward
    convolutions of grad_output, and the forward rule applied to those decides (Winograd
    included: a 3x3 stride-1 layer's input gradient is one 3x3 stride-1 convolution)."""
    forward = _input_grad_forward(spec)
    first, why = choose(forward, _im2col_backend.fuses,
                        winograd and spec.sh == spec.sw == 1 and spec.kh == spec.kw == 3)
    return first, f"input gradient as stride-phase convolutions; {why}"


def choose_weight_grad(spec) -> tuple:
    """(backend, reason) for the weight gradient: cython-im2col, whose conv2d_weight takes
    the first form that fits (``_gradops``: the compiled row-vectorised reduction, else
    per-tap GEMMs through its own GEMM kernel, else GEMMs over im2col bands)."""
    if pointwise_fits(spec):
        return "cython-im2col", (f"weight gradient of a pointwise layer, {spec.c_in} -> "
                                 f"{spec.c_out} channels: one GEMM per image over its "
                                 "pixels")
    if taps_nhwc_preferred(spec):
        return "cython-im2col", (f"weight gradient of a dense {spec.kh}x{spec.kw} layer over "
                                 f"{spec.cig} input channels: one GEMM per kernel tap on "
                                 "channels-last stride phases")
    if rows_fits(spec):
        return "cython-im2col", (f"weight gradient over {spec.cig} input channels per "
                                 f"group, {spec.ow}-wide output rows: the compiled "
                                 "row-vectorised reduction (no im2col copy)")
    return "cython-im2col", (f"weight gradient over {spec.cig} input channels per group: "
                             f"GEMMs over the reduction of n*oh*ow = "
                             f"{spec.n * spec.oh * spec.ow} terms")


def _input_grad_forward(spec):
    """The forward convolution the input gradient's (largest) stride phase runs."""
    from dataclasses import replace
    kh = -(-spec.kh // spec.sh) if spec.dh == 1 else spec.kh
    kw = -(-spec.kw // spec.sw) if spec.dw == 1 else spec.kw
    return replace(spec, c_in=spec.c_out, c_out=spec.c_in, h=spec.oh, w=spec.ow,
                   kh=kh, kw=kw, sh=1, sw=1, oh=-(-spec.h // spec.sh),
                   ow=-(-spec.w // spec.sw))


CANDIDATES = ("cython-direct", "cython-im2col", "cython-winograd")
GRAD_CANDIDATES = ("cython-direct", "cython-im2col")


class CythonAutoBackend(Backend):
    """The name users type. Selection asks :meth:`choose` for the concrete backends in
    order of preference for a call, then asks each one's ``supports()`` as for any
    backend: a concrete backend that declines is never run through ``cython`` either."""

    name = "cython"
    description = ("chooses cython-direct, cython-im2col or cython-winograd per call by "
                   "shape")
    padding_modes = frozenset({"zeros", "reflect", "replicate", "circular"})

    _MEMO_SIZE = 512

    def __init__(self):
        from . import direct  # noqa: F401  (ImportError when not built: "unavailable")
        self._memo = {}

    def choose(self, spec, ctx=None, op="conv2d") -> list:
        """[(concrete backend name, reason), ...], preferred first. The rules depend on
        the call's shape only, so a layer called again reuses its answer."""
        winograd = op != "conv2d_weight" and (
            ctx is None or ctx.options_for(self.name)["winograd"])
        cached = getattr(ctx, "weight_cache", None) is not None
        key = (spec, op, winograd, cached)
        got = self._memo.get(key)
        if got is None:
            if op == "conv2d_input":
                first, why = choose_input_grad(spec, winograd)
            elif op == "conv2d_weight":
                first, why = choose_weight_grad(spec)
            else:
                first, why = choose(spec, _im2col_backend.fuses, winograd, cached)
            allowed = CANDIDATES if winograd else GRAD_CANDIDATES
            rest = [n for n in allowed if n != first]
            got = [(first, why)] + [(n, f"{first} declined the call") for n in rest]
            if len(self._memo) >= self._MEMO_SIZE:
                self._memo.clear()
            self._memo[key] = got
        return got

    def conv2d(self, spec, x, w, b, ctx=None):  # pragma: no cover - selection never calls it
        raise RuntimeError("the cython chooser is resolved by selection, never called")

    def info(self) -> dict:
        functional, layers = winograd_tables()
        return {**super().info(), "chooses_between": list(CANDIDATES),
                "rules": {"small_group": SMALL_GROUP,
                          "gemm_1x1_min_flops": GEMM_1X1_MIN_FLOPS,
                          "small_image": SMALL_IMAGE,
                          "small_image_min_cin": SMALL_IMAGE_MIN_CIN,
                          "fused_min_cin": FUSED_MIN_CIN,
                          "im2col_fused_mode": _im2col_backend.has_fused_mode(),
                          "unfused_strided_min_cin": UNFUSED_STRIDED_MIN_CIN,
                          "unfused_winograd_max_dilation": UNFUSED_WINOGRAD_MAX_DILATION,
                          "winograd_functional_min_channels_pixels":
                              [list(t) for t in functional],
                          "winograd_cached_min_channels_pixels":
                              [list(t) for t in layers]}}
