"""The cython-winograd backend: called directly (ctx stub), against the float64 python
reference through the harness error bound; grid of paddings / dilations / groups, thread
counts (bit-identical), declines, adversarial accuracy and its documented limit, the
weight transform, every SIMD variant built."""

import dataclasses
import importlib
import types

import numpy as np
import pytest

import convreg
from convreg._frontend.spec import prepare

pytest.importorskip("convreg._winograd_baseline", reason="cython-winograd is not built")

from convreg.backends.winograd import CythonWinogradBackend  # noqa: E402


def ctx(threads=2, **options):
    return types.SimpleNamespace(threads=threads, options_for=lambda name: dict(options))


BE = CythonWinogradBackend()


def make_spec(x, w, pads=(0, 0, 0, 0), dil=(1, 1), groups=1):
    """A spec with four-sided padding (pt, pb, pl, pr): prepare() with none, then the
    padding and output size patched in (the front end only takes symmetric pairs)."""
    spec, x, w, _ = prepare(x, w, dilation=dil, groups=groups, padding=(2 * dil[0], 2 * dil[1]))
    pt, pb, pl, pr = pads
    oh = spec.h + pt + pb - 2 * dil[0]
    ow = spec.w + pl + pr - 2 * dil[1]
    return dataclasses.replace(spec, pt=pt, pb=pb, pl=pl, pr=pr, oh=oh, ow=ow), x, w


def reference(x, w, b, pads, dil, groups):
    """(ref, bound): float64 python backend on the explicitly padded input, and the harness
    bound 4*K*eps*(|x| conv |w| + |b|), K = cig*9 + 1."""
    pt, pb, pl, pr = pads
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    w64 = w.astype(np.float64)
    b64 = np.zeros(w.shape[0]) if b is None else b.astype(np.float64)
    ref = convreg.conv2d(xp, w64, b64, dilation=dil, groups=groups, backend="python")
    mag = convreg.conv2d(np.abs(xp), np.abs(w64), np.abs(b64), dilation=dil, groups=groups,
                         backend="python")
    k = w.shape[1] * 9 + 1
    return ref, 4 * k * np.finfo(x.dtype).eps * mag


def run(x, w, b, pads=(0, 0, 0, 0), dil=(1, 1), groups=1, threads=2, tile=0, be=BE):
    """The kernel on any 3x3 stride-1 call, few channels included (supports() declines
    fewer than MIN_SUMMED_CHANNELS summed channels as policy: test_declines_few_channels)."""
    spec, x, w = make_spec(x, w, pads, dil, groups)
    assert be._shape(spec), be._shape(spec).reason
    opts = {"tile": tile} if tile else {}
    return be.conv2d(spec, x, w, b, ctx(threads, **opts))


def ratio(out, ref, bound):
    """max |out - ref| / bound (<= 1 passes); inf if anything is not finite."""
    if not np.isfinite(out).all():
        return np.inf
    err = np.abs(out - ref)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(err == 0, 0.0, err / bound)
    return float(r.max())


def arrays(rng, n, cin, cout, h, w, groups=1, dtype=np.float32, bias=True):
    x = rng.standard_normal((n, cin, h, w)).astype(dtype)
    wt = rng.standard_normal((cout, cin // groups, 3, 3)).astype(dtype)
    b = rng.standard_normal(cout).astype(dtype) if bias else None
    return x, wt, b


# ----------------------------------------------------------------------------- values

@pytest.mark.parametrize("tile", [2, 4])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_hand_computed(tile, dtype):
    """x = 0..24 on a 5x5 plane, w = ones, bias 0.5: out[i, j] = 0.5 + sum of the 3x3 window."""
    x = np.arange(25, dtype=dtype).reshape(1, 1, 5, 5)
    w = np.ones((1, 1, 3, 3), dtype)
    b = np.array([0.5], dtype)
    out = run(x, w, b, tile=tile)
    want = np.array([[0.5 + x[0, 0, i:i + 3, j:j + 3].sum() for j in range(3)]
                     for i in range(3)])
    np.testing.assert_allclose(out[0, 0], want, rtol=1e-6)
    # with padding 1: the corner sees x[0:2, 0:2] only
    out = run(x, w, b, pads=(1, 1, 1, 1), tile=tile)
    assert out.shape == (1, 1, 5, 5)
    assert out[0, 0, 0, 0] == pytest.approx(0.5 + 0 + 1 + 5 + 6)


GRID = [
    # n, cin, cout, h, w, pads (t, b, l, r), dilation, groups
    (1, 1, 1, 3, 3, (0, 0, 0, 0), (1, 1), 1),
    (1, 1, 1, 1, 1, (1, 1, 1, 1), (1, 1), 1),
    (2, 3, 4, 6, 7, (1, 1, 1, 1), (1, 1), 1),
    (1, 2, 3, 5, 6, (2, 0, 1, 3), (1, 1), 1),
    (1, 2, 3, 9, 8, (0, 3, 2, 0), (1, 1), 1),
    (2, 5, 9, 13, 11, (2, 0, 1, 3), (2, 3), 1),
    (1, 3, 5, 9, 9, (2, 2, 2, 2), (2, 2), 1),
    (1, 2, 2, 10, 17, (0, 0, 4, 1), (3, 1), 1),
    (1, 4, 6, 9, 9, (1, 1, 1, 1), (1, 1), 2),
    (2, 6, 9, 11, 7, (1, 0, 0, 1), (1, 2), 3),
    (1, 8, 4, 6, 6, (1, 1, 1, 1), (1, 1), 4),
    (2, 17, 11, 9, 18, (1, 1, 1, 1), (1, 1), 1),      # tails: 17 in, 11 out channels
    (1, 16, 5, 19, 37, (1, 1, 1, 1), (1, 1), 1),      # odd sizes, vector tails
    (1, 9, 10, 4, 50, (0, 0, 1, 1), (1, 1), 1),       # wide and flat
    (1, 7, 3, 50, 2, (5, 5, 1, 0), (1, 1), 1),        # tall and narrow, big padding
    (1, 32, 12, 14, 13, (3, 1, 0, 2), (2, 1), 2),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("tile", [2, 4])
@pytest.mark.parametrize("cfg", GRID, ids=[f"g{i}" for i in range(len(GRID))])
def test_grid(cfg, tile, dtype):
    n, cin, cout, h, w, pads, dil, groups = cfg
    rng = np.random.default_rng(hash(cfg) % 2**32)
    x, wt, b = arrays(rng, n, cin, cout, h, w, groups, dtype, bias=cin != 2)
    ref, bound = reference(x, wt, b, pads, dil, groups)
    out1 = run(x, wt, b, pads, dil, groups, threads=1, tile=tile)
    out2 = run(x, wt, b, pads, dil, groups, threads=2, tile=tile)
    assert out1.dtype == dtype and out1.shape == ref.shape
    np.testing.assert_array_equal(out1, out2)        # bit-identical across thread counts
    if tile == 2:
        assert ratio(out1, ref, bound) <= 1.0
    else:
        # F(4x4) is only accurate normwise: an output whose own |x| conv |w| is small next
        # to its tile's neighbours (e.g. a window wholly in the padding: exact 0 directly)
        # gets eps * the neighbours' magnitude (see test_adversarial_f4_breaks_the_bound).
        k = cin // groups * 9 + 1
        assert np.max(np.abs(out1 - ref)) <= 16 * 4 * k * np.finfo(dtype).eps * bound.max() \
            / (4 * k * np.finfo(dtype).eps)


def test_random_configs():
    """Random layers: cin 1..256, sizes 1..60, paddings, dilations, groups; automatic tile."""
    rng = np.random.default_rng(2024)
    for i in range(14):
        groups = int(rng.choice([1, 1, 1, 2, 4]))
        cig = int(rng.choice([1, 2, 3, 8, 16, 31, 64, 256 // groups]))
        cog = int(rng.integers(1, 6))
        h, w = int(rng.integers(1, 61)), int(rng.integers(1, 61))
        # the pure-Python reference costs ~ cig*h*w*cog*groups*9 steps: keep it < ~1e5
        while cig * h * w * cog * groups > 12000 and max(h, w) > 4:
            h, w = max(1, h * 2 // 3), max(1, w * 2 // 3)
        dil = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        pads = tuple(int(p) for p in rng.integers(0, 4, 4))
        if h + pads[0] + pads[1] - 2 * dil[0] < 1 or w + pads[2] + pads[3] - 2 * dil[1] < 1:
            pads = (dil[0], dil[0], dil[1], dil[1])
        if cig == 1 and cog == 1 and groups > 1:
            cog = 2
        dtype = (np.float32, np.float64)[i % 2]
        x, wt, b = arrays(rng, int(rng.integers(1, 3)), cig * groups, cog * groups, h, w,
                          groups, dtype)
        ref, bound = reference(x, wt, b, pads, dil, groups)
        out = run(x, wt, b, pads, dil, groups, threads=2)
        assert ratio(out, ref, bound) <= 1.0, (i, groups, cig, cog, h, w, dil, pads)


# ----------------------------------------------------------------------------- declines

@pytest.mark.parametrize("kwargs, reason", [
    (dict(w_shape=(2, 3, 5, 5)), "needs a 3x3 kernel, got 5x5"),
    (dict(w_shape=(2, 3, 1, 3)), "needs a 3x3 kernel, got 1x3"),
    (dict(stride=2), "needs stride 1"),
    (dict(stride=(1, 2)), "needs stride 1"),
    (dict(groups=3, w_shape=(3, 1, 3, 3)), "depthwise"),
])
def test_declines(kwargs, reason):
    x = np.zeros((1, 3, 9, 9), np.float32)
    w = np.zeros(kwargs.pop("w_shape", (2, 3, 3, 3)), np.float32)
    spec = prepare(x, w, **kwargs)[0]
    s = BE.supports(spec)
    assert not s and reason in s.reason


def test_supports_grouped_and_dilated():
    x = np.zeros((1, 16, 9, 9), np.float32)
    assert BE.supports(prepare(x, np.zeros((4, 8, 3, 3), np.float32), groups=2,
                               dilation=(2, 3), padding=2)[0])
    # depthwise with a channel multiplier sums one channel per output: declined
    s = BE.supports(prepare(x, np.zeros((32, 1, 3, 3), np.float32), groups=16)[0])
    assert not s and "at least 8 input channels per group, got 1" in s.reason


def test_declines_few_channels():
    """Fewer than MIN_SUMMED_CHANNELS summed channels per output: declined with the reason,
    for the forward (input channels per group) and the input gradient (output channels
    per group); the cython chooser then runs another backend, within the bound."""
    from convreg import grad
    from convreg.backends.winograd import MIN_SUMMED_CHANNELS as m
    spec = convreg.spec_for_shapes((1, m - 1, 9, 9), (16, m - 1, 3, 3), padding=1)
    s = BE.supports(spec)
    assert not s and f"at least {m} input channels per group, got {m - 1}" in s.reason
    assert BE.supports_op(spec, "conv2d_input")           # 16 output channels: fine
    spec = convreg.spec_for_shapes((1, 16, 9, 9), (2 * (m - 1), 8, 3, 3), padding=4,
                                   groups=2)
    assert BE.supports(spec)
    s = BE.supports_op(spec, "conv2d_input")
    assert not s and f"at least {m} output channels per group" in s.reason
    assert f"got {m - 1}" in s.reason
    assert not BE.supports_op(spec, "conv2d_weight")
    # the case of the differential run that found it: an input gradient summing one
    # output channel per group, padding 0, broke the bound ~20x through Winograd
    rng = np.random.default_rng(5)
    w = rng.standard_normal((4, 19, 3, 3)).astype(np.float32)
    go = rng.standard_normal((2, 4, 12, 11)).astype(np.float32)
    with pytest.raises(convreg.BackendError, match="output channels per group"):
        grad.conv2d_input((2, 76, 14, 13), w, go, groups=4, backend="cython-winograd")
    got = grad.conv2d_input((2, 76, 14, 13), w, go, groups=4, backend="cython")
    ref = grad.conv2d_input((2, 76, 14, 13), w.astype(np.float64), go.astype(np.float64),
                            groups=4, backend="python")
    bound = 4 * 9 * np.finfo(np.float32).eps * grad.conv2d_input(
        (2, 76, 14, 13), np.abs(w).astype(np.float64), np.abs(go).astype(np.float64),
        groups=4, backend="python")
    assert np.all(np.abs(got - ref) <= bound)


def test_bad_tile_option(isolated):
    # The settings check the option (backends trust what they are handed).
    with pytest.raises(convreg.ConfigError, match=r"tile: expected one of \[0, 2, 4\]"):
        convreg.set_options("cython-winograd", tile=3)
    (isolated / "convreg.toml").write_text("[backends.cython-winograd]\ntile = 3\n")
    with pytest.raises(convreg.ConfigError, match=r"tile: expected one of \[0, 2, 4\]"):
        convreg.conv2d(np.ones((1, 8, 5, 5), np.float32), np.ones((2, 8, 3, 3), np.float32),
                       backend="cython-winograd")


# ----------------------------------------------------------------------------- accuracy

def adversarial(rng, kind, cig, dtype, h=12):
    if kind == "channel-scales":        # channels of scales 1e-4 .. 1e4, in x and in w
        x = rng.standard_normal((1, cig, h, h)) * 10.0 ** rng.uniform(-4, 4, (1, cig, 1, 1))
        w = rng.standard_normal((3, cig, 3, 3)) * 10.0 ** rng.uniform(-4, 4, (3, cig, 1, 1))
    elif kind == "large-cancel":        # ~1e4..1e6 inputs, zero-sum weights: cancellation
        x = 10.0 ** rng.uniform(4, 6) * (1 + 1e-3 * rng.standard_normal((1, cig, h, h)))
        w = rng.standard_normal((3, cig, 3, 3))
        w -= w.mean(axis=(1, 2, 3), keepdims=True)
    elif kind == "large-offset":        # 1e5 offsets per channel
        x = rng.standard_normal((1, cig, h, h)) + 1e5 * rng.standard_normal((1, cig, 1, 1))
        w = rng.standard_normal((3, cig, 3, 3))
    elif kind == "pixel-scales":        # every pixel its own scale 1e-4 .. 1e4
        x = rng.standard_normal((1, cig, h, h)) * 10.0 ** rng.uniform(-4, 4, (1, cig, h, h))
        w = rng.standard_normal((3, cig, 3, 3))
    elif kind == "spike":               # one 1e6 input among N(0, 1)
        x = rng.standard_normal((1, cig, h, h))
        x[0, :, 5, 6] = 1e6
        w = rng.standard_normal((3, cig, 3, 3))
    b = rng.standard_normal(3)
    return x.astype(dtype), w.astype(dtype), b.astype(dtype)


KINDS = ["channel-scales", "large-cancel", "large-offset", "pixel-scales", "spike"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("kind", KINDS)
def test_adversarial_f2_and_auto(kind, dtype):
    """The F(2x2) kernel (the automatic choice) holds the bound on every adversarial kind
    of this grid from 2 input channels per group (the backend itself declines fewer than
    8: random padded layers broke it at 1-2, test_declines_few_channels). At cig = 1
    pixel-scales and spike inputs break it (the zero / tiny tap limit, test_limit_*)."""
    rng = np.random.default_rng(7)
    for cig in (2, 4, 16, 64):
        x, w, b = adversarial(rng, kind, cig, dtype)
        ref, bound = reference(x, w, b, (1, 1, 1, 1), (1, 1), 1)
        for tile in (2, 0):
            out = run(x, w, b, (1, 1, 1, 1), tile=tile)
            assert ratio(out, ref, bound) <= 1.0, (cig, tile)


def test_adversarial_f4_breaks_the_bound():
    """Why F(4x4) is not the default: its transforms do not keep an input away from outputs
    whose window misses it (A^T and B^T mix all six rows), so one large input leaves
    errors ~ eps*|spike|*c(4) on neighbours whose own magnitude is small."""
    rng = np.random.default_rng(7)
    x, w, b = adversarial(rng, "spike", 64, np.float32)
    ref, bound = reference(x, w, b, (1, 1, 1, 1), (1, 1), 1)
    r4 = ratio(run(x, w, b, (1, 1, 1, 1), tile=4), ref, bound)
    r2 = ratio(run(x, w, b, (1, 1, 1, 1), tile=2), ref, bound)
    assert r2 <= 1.0
    assert r4 > 10.0       # measured ~ 2e2 .. 4e2 at cig = 64


@pytest.mark.parametrize("dtype, spike, at_least", [(np.float32, 1e6, 100.0),
                                                    (np.float64, 1e12, 1e6)])
def test_limit_zero_taps_huge_inputs(dtype, spike, at_least):
    """LIMIT (no tile size survives; policy open): a zero weight tap facing a huge input.

    x ~ N(0, 1) with x[.., 4, 4] = spike, w ~ N(0, 1) with the centre tap w[.., 1, 1] = 0,
    one input channel, no padding. The output (3, 3) sees the spike only through the zero
    tap, so the direct sum is exact there and the bound (|x| conv |w| ~ 9) is tiny; the
    Winograd transforms carry the spike through every transformed position and cancel it
    in A^T M A, leaving ~eps*spike*|w| absolute error. Measured worst |err|/bound: F(2)
    ~9e2 (float32) / ~4e9 (float64), F(4) ~7e3 / ~1e10. This test asserts the failure is
    real and of that size (it does not skip), so a fix shows up as a failing test."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 1, 8, 8))
    x[0, 0, 4, 4] = spike
    w = rng.standard_normal((2, 1, 3, 3))
    w[:, :, 1, 1] = 0
    b = rng.standard_normal(2)
    x, w, b = x.astype(dtype), w.astype(dtype), b.astype(dtype)
    ref, bound = reference(x, w, b, (0, 0, 0, 0), (1, 1), 1)
    for tile in (2, 4):
        out = run(x, w, b, tile=tile)
        r = ratio(out, ref, bound)
        assert r > at_least, (tile, r)
        # ... and the error is what the rounding of the spike predicts: ~eps*spike*|w|
        err = np.max(np.abs(out - ref))
        assert err < 1e3 * np.finfo(dtype).eps * spike * np.abs(w).max()


def test_limit_f4_single_channel_random():
    """F(4x4) at one input channel exceeds the bound even on N(0, 1) data (worst ratio
    ~1.2 measured over seeds); F(2x2) stays below 0.1. (The automatic rule uses F(2x2).)"""
    rng = np.random.default_rng(1)
    worst2 = worst4 = 0.0
    for _ in range(6):
        x, w, b = arrays(rng, 1, 1, 4, 13, 13)
        ref, bound = reference(x, w, b, (1, 1, 1, 1), (1, 1), 1)
        worst2 = max(worst2, ratio(run(x, w, b, (1, 1, 1, 1), tile=2), ref, bound))
        worst4 = max(worst4, ratio(run(x, w, b, (1, 1, 1, 1), tile=4), ref, bound))
    assert worst2 < 0.2
    assert 0.2 < worst4 < 5.0


# ----------------------------------------------------------------------------- API

@pytest.mark.parametrize("tile", [2, 4])
@pytest.mark.parametrize("cig", [5, 13, 24])     # input channels in blocks of 8: part, 1+part, 3
def test_weight_transform_round_trip(tile, cig):
    rng = np.random.default_rng(3)
    w = rng.standard_normal((11, cig, 3, 3))
    mod = BE._mod
    U = mod.transform_weights(w, tile, 1)
    al = tile + 2
    assert U.shape == (1, al * al, 2, cig, 8)
    # unpack (g, p, ob, c, r) -> (o, c, i, j) and invert U = G w G^T with G's pseudo-inverse
    full = U.transpose(0, 2, 4, 3, 1).reshape(16, cig, al, al)[:11]
    G = mod._G[tile]
    Gp = np.linalg.pinv(G)
    back = np.einsum("pi,ocij,qj->ocpq", Gp, full, Gp)
    np.testing.assert_allclose(back, w, atol=1e-12)
    assert not U[0, :, 1, :, 3:].any()       # padded output channels 11..15 are zero
    # grouped: groups are independent blocks
    Ug = mod.transform_weights(w[:10], tile, 2)
    assert Ug.shape == (2, al * al, 1, cig, 8)
    np.testing.assert_array_equal(Ug[1], mod.transform_weights(w[5:10], tile, 1)[0])


@pytest.mark.parametrize("tile", [2, 4])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_weight_transform_threads_and_out(tile, dtype):
    """The threaded transform (panels shared among threads, large enough to run in
    parallel) and the reused ``out`` buffer give exactly the one-thread result."""
    rng = np.random.default_rng(5)
    mod = BE._mod
    w = rng.standard_normal((300, 40, 3, 3)).astype(dtype)    # 108000 elements: threaded
    one = mod.transform_weights(w, tile, 3, 1)
    np.testing.assert_array_equal(mod.transform_weights(w, tile, 3, 2), one)
    out = np.full(one.shape, np.nan, dtype=dtype)
    assert mod.transform_weights(w, tile, 3, 2, out) is out
    np.testing.assert_array_equal(out, one)
    for bad in (np.empty(one.shape, dtype=np.float16), np.empty(one.shape[:-1] + (9,), dtype),
                np.empty(one.shape, dtype)[..., ::-1], "buffer"):
        with pytest.raises(ValueError, match="out must be"):
            mod.transform_weights(w, tile, 3, 1, bad)
    frozen = np.empty(one.shape, dtype)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="out must be"):
        mod.transform_weights(w, tile, 3, 1, frozen)


@pytest.mark.parametrize("groups,cout,cig", [(1, 20, 13), (2, 10, 7), (3, 9, 4), (1, 1, 17)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_swapped_transform_is_the_flipped_kernels(groups, cout, cig, dtype):
    """transform_weights(swapped=True) reads w rotated and channel-swapped in place: the
    same bits as transforming the flipped copy the other backends make."""
    from convreg.backends import _gradops
    rng = np.random.default_rng(8)
    mod = BE._mod
    w = rng.standard_normal((cout, cig, 3, 3)).astype(dtype)
    spec = convreg.spec_for_shapes((1, cig * groups, 8, 8), w.shape, groups=groups, dtype=dtype)
    flipped = _gradops.phase_weight(spec, w, (0, 1, 2), (0, 1, 2)).copy()
    for tile in (2, 4):
        want = mod.transform_weights(flipped, tile, groups, 1)
        got = mod.transform_weights(w, tile, groups, 2, None, True)
        assert got.shape == want.shape == (groups, (tile + 2) ** 2, -(-cig // 8),
                                           cout // groups, 8)
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("n,c,hw", [(1, 128, 28), (1, 64, 56), (8, 24, 13), (3, 16, 9)])
def test_balanced_blocks_cover_every_tile(n, c, hw):
    """Blocks of whole vectors with sizes within one vector of each other: every tile is
    computed exactly once whatever the thread count (results equal across counts)."""
    rng = np.random.default_rng(6)
    x, w, b = arrays(rng, n, c, c, hw, hw, dtype=np.float32)
    spec, x, w = make_spec(x, w, (1, 1, 1, 1))
    outs = [BE.conv2d(spec, x, w, b, ctx(threads=t)) for t in (1, 2, 3, 5)]
    for t, o in zip((2, 3, 5), outs[1:]):
        np.testing.assert_array_equal(o, outs[0], err_msg=f"threads={t}")
    for t in (1, 2, 3, 5):
        p = BE._mod.plan_info(n, 1, c, c, hw, hw, 1, 1, 2, 4, t)
        sizes = [min(p["ttot"], (b * p["nvec"] // p["nblocks"]) * p["vl"])
                 for b in range(p["nblocks"] + 1)]
        assert sizes[0] == 0 and sizes[-1] == p["ttot"]
        steps = [hi - lo for lo, hi in zip(sizes, sizes[1:])]
        assert min(steps) > 0 and max(steps) <= p["T"]


@pytest.mark.parametrize("n,c,hw,itemsize", [(1, 64, 56, 4), (1, 128, 28, 4),
                                              (8, 128, 28, 8), (1, 16, 9, 4)])
def test_position_strides_spread_over_cache_sets(n, c, hw, itemsize):
    """The transforms touch all 16 positions of V and M at once: their strides are an
    odd number of 64-byte lines (a multiple of 4 KiB put them in one L1 set), and the
    buffers hold all positions at that stride."""
    p = BE._mod.plan_info(n, 1, c, c, hw, hw, 1, 1, 2, itemsize, 2)
    line = 64 // itemsize
    for stride, rows in (("vps", c * p["Tp"]), ("mps", p["ocb"] * 8 * p["Tp"])):
        assert p[stride] % line == 0 and (p[stride] // line) % 2 == 1, (stride, p)
        assert rows <= p[stride] < rows + 2 * line
    assert p["vn"] >= p["npos"] * p["vps"] and p["mn"] >= p["npos"] * p["mps"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pretransformed_matches(dtype):
    rng = np.random.default_rng(4)
    x, w, b = arrays(rng, 2, 20, 12, 14, 15, dtype=dtype)
    spec, x, w = make_spec(x, w, (1, 1, 1, 1))
    wt = BE.transform(w, spec)
    assert wt.tile == BE.choose_tile(spec) == 2
    np.testing.assert_array_equal(BE.conv2d_pretransformed(spec, x, wt, b, ctx()),
                                  BE.conv2d(spec, x, w, b, ctx()))
    wt4 = BE.transform(w, spec, tile=4)
    np.testing.assert_array_equal(BE.conv2d_pretransformed(spec, x, wt4, b, ctx()),
                                  BE.conv2d(spec, x, w, b, ctx(tile=4)))
    other = make_spec(x[:, :10], w[:, :10], (1, 1, 1, 1))[0]
    with pytest.raises(ValueError):
        BE.conv2d_pretransformed(other, x[:, :10].copy(), wt, b, ctx())


def test_workspace_argument():
    rng = np.random.default_rng(6)
    x, w, b = arrays(rng, 1, 8, 8, 16, 16)
    mod = BE._mod
    out1 = np.empty((1, 8, 16, 16), np.float32)
    mod.winograd_conv2d(x, w, b, out1, 1, 1, 1, 1, 1, 2, 2)
    need = mod.workspace_elems(1, 1, 8, 8, 16, 16, 1, 1, 2, 4, 2)
    out2 = np.empty_like(out1)
    mod.winograd_conv2d(x, w, b, out2, 1, 1, 1, 1, 1, 2, 2, np.empty(need, np.float32))
    np.testing.assert_array_equal(out1, out2)
    with pytest.raises(ValueError, match="workspace"):
        mod.winograd_conv2d(x, w, b, out2, 1, 1, 1, 1, 1, 2, 2, np.empty(need // 4, np.float32))
    with pytest.raises(TypeError):
        mod.winograd_conv2d(x.astype(np.float64), w, b, out2, 1, 1, 1, 1, 1, 2, 2)



def test_kernel_entry_checks_sizes_whoever_calls():
    """The backend calls the kernels' ``_run`` directly (the spec checked the arrays): the
    sizes the kernels index by are still checked there, so a weight array of the wrong
    length, a short bias or inconsistent groups raise instead of reading past a buffer."""
    rng = np.random.default_rng(8)
    x, w, b = arrays(rng, 2, 16, 24, 10, 12)
    mod = BE._mod
    U = mod.transform_weights(w, 2, 1).reshape(-1)
    need = mod.workspace_elems(2, 1, 16, 24, 10, 12, 1, 1, 2, 4, 2)
    ws = np.empty(need, np.float32)
    ref = np.empty((2, 24, 10, 12), np.float32)
    mod.winograd_conv2d(x, w, b, ref, 1, 1, 1, 1, 1, 2, 2)
    out = np.empty_like(ref)
    mod._run(x, U, b, out, 1, 1, 1, 1, 1, 2, 2, ws, False)
    np.testing.assert_array_equal(out, ref)
    bad = [dict(U=U[:-8]), dict(U=w.reshape(-1)), dict(b=b[:-1]), dict(groups=5),
           dict(groups=0), dict(tile=3), dict(threads=0), dict(dh=0),
           dict(x=np.empty((2, 0, 10, 12), np.float32))]
    for change in bad:
        args = dict(x=x, U=U, b=b, groups=1, tile=2, threads=2, dh=1)
        args.update(change)
        with pytest.raises(ValueError):
            mod._run(args["x"], args["U"], args["b"], out, 1, 1, args["dh"], 1,
                     args["groups"], args["tile"], args["threads"], ws, False)
    with pytest.raises(ValueError, match="weights"):     # raw weights given as U
        mod._run(x, w.reshape(-1), b, out, 1, 1, 1, 1, 1, 2, 2, ws, False)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_whole_transform_inside_the_convolution(dtype):
    """Raw weights with room for U (``Ut``): the team transforms them whole inside the
    convolution's region before its work items, the same bits as transform_weights then
    the convolution, at any thread count; U lands in Ut; a Ut of the wrong size raises."""
    rng = np.random.default_rng(9)
    mod = BE._mod
    for n, g, cig, cog, hh, ww in [(4, 1, 24, 40, 40, 40), (2, 2, 16, 12, 64, 64),
                                   (3, 1, 64, 64, 28, 28)]:
        x, w, b = arrays(rng, n, g * cig, g * cog, hh, ww, dtype=dtype, groups=g)
        U = mod.transform_weights(w, 2, g)
        ref = np.empty((n, g * cog, hh, ww), dtype)
        mod.winograd_conv2d(x, U, b, ref, 1, 1, 1, 1, g, 2, 2)
        for threads in (1, 2, 3):
            assert not mod.raw_plan(n, g, cig, cog, hh, ww, 1, 1, 2, x.itemsize, threads)[0]
            need = mod.workspace_elems(n, g, cig, cog, hh, ww, 1, 1, 2, x.itemsize, threads,
                                       True)
            out = np.full_like(ref, np.nan)
            Ut = np.full(U.size, np.nan, dtype)
            mod._run(x, w.reshape(-1), b, out, 1, 1, 1, 1, g, 2, threads,
                     np.empty(need, dtype), True, Ut)
            np.testing.assert_array_equal(out, ref)
            np.testing.assert_array_equal(Ut, U.reshape(-1))
        with pytest.raises(ValueError, match="Ut"):
            mod._run(x, w.reshape(-1), b, out, 1, 1, 1, 1, g, 2, 2, np.empty(need, dtype),
                     True, Ut[:-1])
        with pytest.raises(ValueError, match="fuse"):      # raw, not fused, no room for U
            mod._run(x, w.reshape(-1), b, out, 1, 1, 1, 1, g, 2, 2, np.empty(need, dtype),
                     True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_shared_block_split_by_positions(dtype):
    """A block shared by a team of two, with transformed weights, is split by tile
    positions (each thread its 8 positions' input transform, U and GEMM, then half the
    output channels from the team's M): the same bits as one thread (no sharing) and three
    (split by output channels), within the bound of the float64 reference."""
    rng = np.random.default_rng(10)
    mod = BE._mod
    # Whether a block is shared depends on the vector width and the dtype's V size: of
    # these, the ones this build shares (AVX-512's first, AVX2's after), at least two.
    cases = ([(1, 64, 128, 8, 9, (1, 1, 1, 1)), (1, 256, 256, 14, 14, (1, 1, 1, 1)),
              (1, 512, 64, 7, 7, (1, 1, 1, 1)), (1, 96, 200, 13, 15, (2, 0, 1, 1)),
              (1, 128, 128, 10, 10, (1, 1, 1, 1))]
             + [(1, 64, 128, 4, 4, (1, 1, 1, 1)), (1, 256, 256, 7, 7, (1, 1, 1, 1)),
                (1, 512, 64, 4, 4, (1, 1, 1, 1)), (1, 256, 256, 6, 6, (1, 1, 1, 1))])
    size = np.dtype(dtype).itemsize

    def shared(n, cin, cout, hh, ww, pad):
        oh, ow = hh + pad[0] + pad[1] - 2, ww + pad[2] + pad[3] - 2
        return mod.plan_info(n, 1, cin, cout, oh, ow, 1, 1, 2, size, 2)["shared"]

    cases = [c for c in cases if shared(*c)][:3]
    assert len(cases) >= 2
    for k, (n, cin, cout, hh, ww, pad) in enumerate(cases):
        x, w, b = arrays(rng, n, cin, cout, hh, ww, dtype=dtype)
        oh, ow = hh + pad[0] + pad[1] - 2, ww + pad[2] + pad[3] - 2
        U = mod.transform_weights(w, 2)
        outs = []
        for threads in (1, 2, 3):
            out = np.full((n, cout, oh, ow), np.nan, dtype)
            mod.winograd_conv2d(x, U, b, out, pad[0], pad[2], 1, 1, 1, 2, threads)
            outs.append(out)
        np.testing.assert_array_equal(outs[1], outs[0])
        np.testing.assert_array_equal(outs[2], outs[0])
        if k == 0:      # (the float64 reference of the wide ones takes seconds)
            ref, bound = reference(x, w, b, pad, (1, 1), 1)
            assert np.all(np.abs(outs[1] - ref) <= bound)


def test_tile_tables_are_remembered_read_only():
    mod = BE._mod
    starts, ends = mod._tile_tables(11, 2, 2)
    np.testing.assert_array_equal(starts, [0, 4, 8, 1, 5, 9])
    np.testing.assert_array_equal(ends, [3, 3, 3, 6, 6, 6])
    assert mod._tile_tables(11, 2, 2)[0] is starts
    assert not starts.flags.writeable and not ends.flags.writeable

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_reused_workspace_contents_never_reach_the_output(dtype):
    """A workspace full of NaN from earlier use gives the same outputs as a fresh one: the
    GEMM's whole vectors past a block's last tile are set, not taken from the buffer."""
    rng = np.random.default_rng(7)
    mod = BE._mod
    for n, c, hw in [(1, 16, 11), (3, 24, 13), (1, 128, 28)]:
        x, w, b = arrays(rng, n, c, c, hw, hw, dtype=dtype)
        need = mod.workspace_elems(n, 1, c, c, hw, hw, 1, 1, 2, x.itemsize, 2)
        outs = []
        for fill in (0.0, np.nan):
            out = np.empty((n, c, hw, hw), dtype)
            mod.winograd_conv2d(x, w, b, out, 1, 1, 1, 1, 1, 2, 2,
                                np.full(need, fill, dtype))
            outs.append(out)
        assert np.isfinite(outs[1]).all()
        np.testing.assert_array_equal(outs[0], outs[1])


def test_workspace_is_bounded_by_the_work():
    """Per-thread memory depends on the channels and the tile block, not on the image size
    or the padding: a 2000x2000 image needs no more than a 200x200 one."""
    mod = BE._mod
    small = mod.workspace_elems(1, 1, 64, 64, 200, 200, 1, 1, 4, 4, 2)
    big = mod.workspace_elems(1, 1, 64, 64, 2000, 2000, 1, 1, 4, 4, 2)
    assert big == small
    assert big * 4 < 8 * 2**20


@pytest.mark.parametrize("variant", ["baseline", "avx2", "avx512"])
def test_simd_variants(variant):
    from convreg.backends._simd import cpu_variants

    if variant not in cpu_variants():
        pytest.skip(f"this CPU does not run {variant}")
    mod = importlib.import_module(f"convreg._winograd_{variant}")
    assert mod.ISA == variant
    be = CythonWinogradBackend(variant)
    assert be.variant == variant
    rng = np.random.default_rng(8)
    for dtype in (np.float32, np.float64):
        for tile in (2, 4):
            x, w, b = arrays(rng, 2, 6, 19, 23, 21, dtype=dtype)
            pads, dil = (1, 2, 0, 1), (2, 1)
            ref, bound = reference(x, w, b, pads, dil, 1)
            out1 = run(x, w, b, pads, dil, threads=1, tile=tile, be=be)
            out2 = run(x, w, b, pads, dil, threads=2, tile=tile, be=be)
            np.testing.assert_array_equal(out1, out2)
            assert ratio(out1, ref, bound) <= 1.0


def test_nonfinite_propagates():
    x = np.ones((1, 2, 6, 6), np.float32)
    x[0, 1, 2, 2] = np.nan
    w = np.ones((1, 2, 3, 3), np.float32)
    out = run(x, w, None, (1, 1, 1, 1), tile=2)
    assert np.isnan(out[0, 0, 1:4, 1:4]).all()


@pytest.mark.parametrize("groups,cin,cout,hw,teams", [
    (1, 64, 48, 5, (2, 3, 5)), (1, 40, 64, 3, (2, 3, 5)), (1, 37, 40, 9, (3, 5)),
    (2, 34, 36, 7, (3, 5))])
def test_shared_blocks_split_channels_among_the_team(groups, cin, cout, hw, teams):
    """Fewer tile blocks than threads: the threads share each block (input channels split
    for the transform, output channels for the GEMM, a barrier between); any team size
    gives the one-thread result, within the bound of the float64 reference."""
    rng = np.random.default_rng(8)
    x, w, b = arrays(rng, 1, cin, cout, hw, hw, groups=groups)
    ref, bound = reference(x, w, b, (1, 1, 1, 1), (1, 1), groups)
    cig, cog = cin // groups, cout // groups
    # (which teams share depends on the vector width: AVX-512 all of these, AVX2 some)
    assert any(BE._mod.plan_info(1, groups, cig, cog, hw, hw, 1, 1, 2, 4, t)["shared"]
               for t in teams)
    assert not BE._mod.plan_info(1, groups, cig, cog, hw, hw, 1, 1, 2, 4, 1)["shared"]
    outs = [run(x, w, b, (1, 1, 1, 1), groups=groups, threads=t) for t in (1,) + teams]
    for t, o in zip(teams, outs[1:]):
        np.testing.assert_array_equal(o, outs[0], err_msg=f"threads={t}")
    assert ratio(outs[0], ref, bound) < 1


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n,c,h,w", [(1, 24, 14, 14), (1, 16, 8, 26), (2, 16, 6, 6),
                                     (1, 16, 28, 28), (1, 16, 10, 10)])
def test_tail_tiles(n, c, h, w, dtype):
    """Up to CRW_TAIL tiles past a block's last whole vector go to the GEMM's tail kernel
    (vectors over output channels): the same multiply-adds in the same order as the
    vector kernel, so every thread count (other blocks, other tails) gives the same bits,
    within the bound of the float64 reference. Tiles here: 49 (3 vectors of 16 + 1), 52
    (+ 4), 18 (+ 2), 196 (+ 4), 25 (+ 9: a vector again)."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    wt = rng.standard_normal((40, c, 3, 3)).astype(dtype)
    b = rng.standard_normal(40).astype(dtype)
    ref, bound = reference(x, wt, b, (1, 1, 1, 1), (1, 1), 1)
    outs = [run(x, wt, b, (1, 1, 1, 1), threads=t) for t in (1, 2, 3, 5)]
    for t, o in zip((2, 3, 5), outs[1:]):
        np.testing.assert_array_equal(o, outs[0], err_msg=f"threads={t}")
    assert ratio(outs[0], ref, bound) < 1


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n,c,h,w,pads,dil", [
    (3, 16, 14, 14, (1, 1, 1, 1), (1, 1)),      # 7-tile rows, blocks across images
    (2, 8, 5, 9, (0, 3, 2, 1), (1, 1)),         # rows partly or wholly in the padding
    (2, 12, 17, 11, (2, 0, 0, 2), (3, 1)),      # row dilation: rows dh apart per tile
    (1, 8, 9, 58, (1, 1, 1, 1), (1, 1)),        # 29-tile rows: two vectors per row
    (1, 8, 9, 70, (1, 1, 1, 1), (1, 1)),        # 35-tile rows: per segment (BLOCK_TC)
    (600, 8, 2, 2, (1, 1, 1, 1), (1, 1)),       # one-tile segments, up to 608 a block:
                                                # past BLOCK_SEGS at 1-2 threads, not 3
])
def test_block_input_transform(n, c, h, w, pads, dil, dtype):
    """F(2x2) without column dilation transforms a tile block's input per channel across
    all its segments (crw_input2b) where rows have few tiles, else (long rows, or more
    segments than it lists) segment by segment; the outputs of a block are stored from
    the same kind of list (crw_outstoreb), or per segment past BLOCK_SEGS. Each image's
    output is the same bits batched or alone (other blocks, other segment lists), at
    every thread count, and within the bound of the float64 reference."""
    if n == 600:        # the case is meant to list more segments than crw_input2b takes
        oh, ow = h + pads[0] + pads[1] - 2, w + pads[2] + pads[3] - 2
        assert BE._mod.plan_info(n, 1, c, 24, oh, ow, 1, 1, 2, np.dtype(dtype).itemsize,
                                 1)["T"] > 256
    rng = np.random.default_rng(5)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    wt = rng.standard_normal((24, c, 3, 3)).astype(dtype)
    b = rng.standard_normal(24).astype(dtype)
    ref, bound = reference(x, wt, b, pads, dil, 1)
    outs = [run(x, wt, b, pads, dil, threads=t) for t in (1, 2, 3)]
    for t, o in zip((2, 3), outs[1:]):
        np.testing.assert_array_equal(o, outs[0], err_msg=f"threads={t}")
    for i in sorted({0, n - 1}):
        np.testing.assert_array_equal(run(x[i:i + 1], wt, b, pads, dil, threads=1)[0],
                                      outs[0][i], err_msg=f"image {i} alone")
    assert ratio(outs[0], ref, bound) < 1


def test_one_shared_block_when_a_tail_saves_a_vector():
    """49 tiles (a 14^2 image) on two threads: one shared block of 3 vectors + a tail
    tile, rather than blocks of 32 and 17 tiles, where the output channels are many
    (256); with 64 the per-thread blocks stay, and 100 tiles at 128 channels too."""
    if BE._mod.ISA != "avx512":
        pytest.skip("3 vectors + a tail of 49 tiles is the 16-lane (avx512) plan")
    plan = BE._mod.plan_info
    p = plan(1, 1, 256, 256, 14, 14, 1, 1, 2, 4, 2)
    assert p["shared"] and p["nblocks"] == 1 and p["T"] == 64
    assert not plan(1, 1, 64, 64, 14, 14, 1, 1, 2, 4, 2)["shared"]
    assert not plan(1, 1, 128, 128, 20, 20, 1, 1, 2, 4, 2)["shared"]
    rng = np.random.default_rng(12)
    x, w, b = arrays(rng, 1, 16, 256, 14, 14, dtype=np.float32)
    assert plan(1, 1, 16, 256, 14, 14, 1, 1, 2, 4, 2)["shared"]
    ref, bound = reference(x, w, b, (1, 1, 1, 1), (1, 1), 1)
    out1 = run(x, w, b, (1, 1, 1, 1), threads=1)
    np.testing.assert_array_equal(run(x, w, b, (1, 1, 1, 1), threads=2), out1)
    assert ratio(out1, ref, bound) < 1


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("tile", [2, 4])
@pytest.mark.parametrize("groups,cig,cog,hw", [(1, 128, 72, 6), (2, 96, 20, 5), (3, 40, 9, 7),
                                               (1, 160, 40, 4)])
def test_fused_weight_transform(groups, cig, cog, hw, tile, dtype):
    """Untransformed weights and one tile block: the kernel transforms each chunk of
    output-channel panels just before its GEMM (``raw_plan``). Several chunks (the
    chunk holds at most 256 KiB of U), a part-filled last panel, groups: the same bits as
    the weights transformed whole first, on every team size, each with a workspace full of
    NaN sized by ``workspace_elems(..., raw=True)``."""
    mod = BE._mod
    rng = np.random.default_rng(13)
    x, w, b = arrays(rng, 1, groups * cig, groups * cog, hw, hw, groups=groups, dtype=dtype)
    U = mod.transform_weights(w, tile, groups)
    size = x.itemsize
    for threads in (1, 2, 3):
        sizes = (1, groups, cig, cog, hw, hw, 1, 1, tile)
        p = mod.plan_info(*sizes, size, threads, True)
        fuses, need = mod.raw_plan(*sizes, size, threads)
        assert p["fused"] == fuses
        # (several threads may cut a few tiles in 2 blocks: 3 with 16 lanes, 2 with 8)
        assert p["fused"] or threads > 1
        assert need == mod.workspace_elems(*sizes, size, threads, True)
        if p["fused"]:
            assert p["nblocks"] == 1 and p["un"] >= p["npos"] * p["ocb"] * cig * 8
            assert p["npos"] * p["ocb"] * cig * 8 * size <= 256 * 1024 or p["ocb"] == 1
            assert need >= p["per_thread"] > p["un"]
        fused = np.empty((1, groups * cog, hw, hw), dtype)
        mod.winograd_conv2d(x, w, b, fused, 1, 1, 1, 1, groups, tile, threads,
                            np.full(need, np.nan, dtype))
        whole = np.empty_like(fused)
        mod.winograd_conv2d(x, U, b, whole, 1, 1, 1, 1, groups, tile, threads)
        assert np.isfinite(fused).all()
        np.testing.assert_array_equal(fused, whole, err_msg=f"threads={threads}")
    # several chunks of panels (9 panels, at most 3 per chunk of 256 KiB)
    if (cig, tile) == (128, 2):
        assert mod.plan_info(1, groups, cig, cog, hw, hw, 1, 1, tile, size, 1, True)["ocb"] <= 3
    ref, bound = reference(x, w, b, (1, 1, 1, 1), (1, 1), groups)
    if tile == 2:
        assert ratio(fused, ref, bound) < 1


def test_fused_weight_transform_only_where_each_panel_is_read_once():
    """Several tile blocks would each transform U again, and a block whose V leaves L2
    would be read again per chunk: those calls transform the weights whole first, and
    their workspace does not grow. The backend's functional call and a layer's cached
    transform give the same bits either way."""
    mod = BE._mod
    sizes = (1, 1, 64, 64, 56, 56, 1, 1, 2, 4, 2)       # 8 tile blocks
    assert mod.raw_plan(*sizes) == (False, mod.workspace_elems(*sizes))
    assert not mod.plan_info(*sizes, True)["fused"]
    assert mod.workspace_elems(*sizes, True) == mod.workspace_elems(*sizes)
    assert not mod.raw_plan(1, 1, 512, 512, 14, 14, 1, 1, 2, 4, 2)[0]    # V 7.3 MB
    # one block of a 14^2 (avx512: 16 lanes) or 7^2 (8 lanes: 14^2 takes two) image
    side = 14 if mod.ISA == "avx512" else 7
    assert mod.raw_plan(1, 1, 256, 256, side, side, 1, 1, 2, 4, 2)[0]
    # a caller's fuse that contradicts the plan is refused, not run on the wrong buffer
    rng0 = np.random.default_rng(15)
    x0, w0, b0 = arrays(rng0, 1, 64, 64, 56, 56)
    with pytest.raises(ValueError, match="fuse=True does not match"):
        mod.winograd_conv2d(x0, w0, b0, np.empty((1, 64, 56, 56), np.float32), 1, 1, 1, 1,
                            1, 2, 2, None, True)
    rng = np.random.default_rng(14)
    x, w, b = arrays(rng, 1, 256, 24, 14, 14)
    spec, x, w = make_spec(x, w, (1, 1, 1, 1))
    np.testing.assert_array_equal(BE.conv2d(spec, x, w, b, ctx()),
                                  BE.conv2d_pretransformed(spec, x, BE.transform(w, spec), b,
                                                           ctx()))
