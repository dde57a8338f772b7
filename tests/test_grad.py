"""Gradients (convreg.grad) and conv_transpose2d: hand-computed values, every built-in
backend on the harness grid, finite differences, torch parity and error messages."""

from __future__ import annotations

import contextlib
import itertools

import numpy as np
import pytest

import convreg
from convreg import grad, harness
from convreg._dispatch.registry import available_backends

BUILTIN = [b for b in ("python", "cython-direct", "cython-im2col", "cython")
           if b in available_backends()]
FAST = [b for b in BUILTIN if b != "python"]


# ------------------------------------------------------------------ hand-computed
@pytest.mark.parametrize("backend", BUILTIN)
def test_input_grad_by_hand(backend):
    w = np.ones((1, 1, 2, 2))
    go = np.ones((1, 1, 2, 2))
    gx = grad.conv2d_input((1, 1, 3, 3), w, go, backend=backend)
    np.testing.assert_array_equal(gx[0, 0], [[1, 2, 1], [2, 4, 2], [1, 2, 1]])


@pytest.mark.parametrize("backend", BUILTIN)
def test_weight_grad_by_hand(backend):
    x = np.arange(9.0).reshape(1, 1, 3, 3)
    gw = grad.conv2d_weight(x, (1, 1, 2, 2), np.ones((1, 1, 2, 2)), backend=backend)
    np.testing.assert_array_equal(gw[0, 0], [[8, 12], [20, 24]])


@pytest.mark.parametrize("backend", BUILTIN)
def test_strided_input_grad_by_hand(backend):
    # stride 2, 1x1 kernel of 3: every other input element gets 3*go, the rest 0
    go = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    gx = grad.conv2d_input((1, 1, 4, 4), np.full((1, 1, 1, 1), 3.0), go, stride=2,
                           backend=backend)
    expected = np.zeros((4, 4))
    expected[::2, ::2] = 3 * go[0, 0]
    np.testing.assert_array_equal(gx[0, 0], expected)


def test_bias_grad():
    go = np.arange(24.0).reshape(2, 3, 2, 2)
    np.testing.assert_array_equal(grad.conv2d_bias(go), go.sum(axis=(0, 2, 3)))
    np.testing.assert_array_equal(grad.conv2d_bias(go[0]), go[0].sum(axis=(1, 2)))
    assert grad.conv2d_bias(go.astype(np.float32)).dtype == np.float32


@pytest.mark.parametrize("backend", BUILTIN)
def test_conv_transpose2d_by_hand(backend):
    x = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    out = convreg.conv_transpose2d(x, np.ones((1, 1, 2, 2)), stride=2, backend=backend)
    np.testing.assert_array_equal(out[0, 0], np.kron(x[0, 0], np.ones((2, 2))))
    out = convreg.conv_transpose2d(np.ones((1, 2, 2)), np.ones((1, 1, 2, 2)),
                                   bias=np.array([0.5]), backend=backend)
    assert out.shape == (1, 3, 3)      # unbatched in, unbatched out
    np.testing.assert_array_equal(out[0], np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]]) + 0.5)


@pytest.mark.parametrize("backend", BUILTIN)
def test_reflect_padding_folds_back(backend):
    # row [x0 x1 x2] reflect-padded by 1 on each side reads [x1 x0 x1 x2 x1]
    gx = grad.conv2d_input((1, 1, 1, 3), np.ones((1, 1, 1, 1)), np.ones((1, 1, 1, 5)),
                           padding=(0, 1), padding_mode="reflect", backend=backend)
    np.testing.assert_array_equal(gx[0, 0, 0], [1, 3, 1])
    gx = grad.conv2d_input((1, 1, 1, 3), np.ones((1, 1, 1, 1)), np.ones((1, 1, 1, 5)),
                           padding=(0, 1), padding_mode="circular", backend=backend)
    np.testing.assert_array_equal(gx[0, 0, 0], [2, 1, 2])


def test_empty_batch():
    assert grad.conv2d_input((0, 2, 4, 4), np.ones((3, 2, 3, 3)),
                             np.ones((0, 3, 2, 2))).shape == (0, 2, 4, 4)
    gw = grad.conv2d_weight(np.ones((0, 2, 4, 4)), (3, 2, 3, 3), np.ones((0, 3, 2, 2)))
    np.testing.assert_array_equal(gw, np.zeros((3, 2, 3, 3)))


# ------------------------------------------------------------------ harness grid
_REFS = {}


def _ref(case):
    if case not in _REFS:
        _REFS[case] = harness.reference(case)
    return _REFS[case]


GRID = harness.grad_cases() + harness.random_grad_cases(30, seed=11)


@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize("op", ["conv2d_input", "conv2d_weight", "conv_transpose2d"])
def test_backend_on_grid(backend, op):
    bad = []
    # the chooser runs the same kernels: its choices are checked on float32 only
    dtypes = ("float32",) if backend == "cython" else ("float32", "float64")
    for case in (c for c in GRID if c.op == op and c.dtype in dtypes):
        expected = _ref(case)
        # one thread for the float64 pass: hundreds of tiny calls, where waking a second
        # thread costs more than the call on a busy machine (float32 runs threaded)
        with (convreg.use_threads(1) if case.dtype == "float64" else contextlib.nullcontext()):
            r = harness.check_case(backend, case, expected)
        if not r.ok:
            bad.append(f"{case.label()}: {r.error}")
    assert not bad, "\n".join(bad[:10])


def test_python_reference_within_its_bound_of_itself():
    cases = [c for c in GRID if c.dtype == "float32"][::7]
    report = harness.run_checks(["python"], cases)
    assert report.ok, report.table()


def test_check_table_has_rows_per_op():
    cases = [c for c in GRID if c.dtype == "float64"][::40]
    table = harness.run_checks(["python"], cases).table()
    assert "python [conv2d_input]" in table and "python [conv_transpose2d]" in table


# ------------------------------------------------------------------ finite differences
def _numeric(f, a, index, eps=1e-6):
    a1, a2 = a.copy(), a.copy()
    a1[index] += eps
    a2[index] -= eps
    return (f(a1) - f(a2)) / (2 * eps)


FD_CASES = [
    dict(x=(2, 2, 5, 6), w=(3, 2, 3, 3), kw=dict(stride=2, padding=1)),
    dict(x=(1, 4, 6, 5), w=(4, 2, 2, 3), kw=dict(groups=2, dilation=(2, 1), padding=(1, 2))),
    dict(x=(1, 2, 5, 5), w=(2, 2, 3, 3), kw=dict(padding=2, padding_mode="reflect")),
    dict(x=(1, 2, 4, 5), w=(2, 2, 3, 2), kw=dict(padding=(1, 2), padding_mode="replicate",
                                               stride=(1, 2))),
    dict(x=(2, 1, 4, 4), w=(2, 1, 3, 3), kw=dict(padding=3, padding_mode="circular")),
    dict(x=(1, 2, 6, 6), w=(2, 2, 4, 2), kw=dict(padding="same")),
]


@pytest.mark.parametrize("backend", ["python", "cython"])
@pytest.mark.parametrize("case", FD_CASES, ids=lambda c: str(c["kw"]))
def test_finite_differences(case, backend):
    if backend not in BUILTIN:
        pytest.skip("not built")
    rng = np.random.default_rng(0)
    x = rng.standard_normal(case["x"])
    w = rng.standard_normal(case["w"])
    kw = case["kw"]
    go = rng.standard_normal(convreg.conv2d(x, w, **kw).shape)

    def loss_x(xx):
        return float((convreg.conv2d(xx, w, **kw, backend="python") * go).sum())

    def loss_w(ww):
        return float((convreg.conv2d(x, ww, **kw, backend="python") * go).sum())

    gx = grad.conv2d_input(x.shape, w, go, **kw, backend=backend)
    gw = grad.conv2d_weight(x, w.shape, go, **kw, backend=backend)
    for idx in itertools.islice(np.ndindex(x.shape), 0, None, 7):
        assert gx[idx] == pytest.approx(_numeric(loss_x, x, idx), abs=1e-6)
    for idx in itertools.islice(np.ndindex(w.shape), 0, None, 5):
        assert gw[idx] == pytest.approx(_numeric(loss_w, w, idx), abs=1e-6)


def test_transpose_is_the_adjoint_of_conv2d():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 4, 7, 6))
    w = rng.standard_normal((6, 2, 3, 2))
    kw = dict(stride=(2, 1), padding=(1, 0), groups=2, dilation=(1, 2))
    y = convreg.conv2d(x, w, **kw)
    z = rng.standard_normal(y.shape)
    op = ((7 + 2 - 2 - 1) % 2, 0)
    tz = convreg.conv_transpose2d(z, w, None, kw["stride"], kw["padding"], op, 2,
                                  kw["dilation"])
    assert tz.shape == x.shape
    assert float((y * z).sum()) == pytest.approx(float((x * tz).sum()), rel=1e-10)


# ------------------------------------------------------------------ dispatch
def test_backend_without_gradient_is_declined(register_mock):
    register_mock("mock-fwd")       # conv2d only
    w, go = np.ones((1, 1, 2, 2)), np.ones((1, 1, 2, 2))
    with pytest.raises(convreg.BackendError, match="has no conv2d_input"):
        grad.conv2d_input((1, 1, 3, 3), w, go, backend="mock-fwd")
    with pytest.raises(convreg.BackendError, match="has no conv2d_weight"):
        grad.conv2d_weight(np.ones((1, 1, 3, 3)), (1, 1, 2, 2), go, backend="mock-fwd")
    out = grad.conv2d_input((1, 1, 3, 3), w, go, backend=["mock-fwd", "python"])
    assert out[0, 0, 1, 1] == 4
    out = convreg.conv_transpose2d(go, w, backend=["mock-fwd", "python"])
    assert out[0, 0, 1, 1] == 4


def test_cython_chooser_names_backends_per_op():
    be = convreg.get_backend("cython") if "cython" in BUILTIN else pytest.skip("not built")
    spec = convreg.spec_for_shapes((1, 8, 10, 10), (8, 8, 3, 3), padding=1)
    # winograd runs the input gradient (one 3x3 stride-1 convolution), not the weight's
    names = [n for n, _ in be.choose(spec, None, "conv2d_weight")]
    assert sorted(names) == ["cython-direct", "cython-im2col"]
    for op in ("conv2d", "conv2d_input"):
        names = [n for n, _ in be.choose(spec, None, op)]
        assert sorted(names) == ["cython-direct", "cython-im2col", "cython-winograd"]


def test_input_gradient_takes_winograd_where_the_forward_would():
    """A 3x3 stride-1 input gradient is a 3x3 stride-1 convolution: the chooser sends it
    to cython-winograd on the forward rule's shapes, never at stride 2 (its phases are
    1x1 / 2x2 kernels), and [backends.cython] winograd = false turns it off."""
    if "cython-winograd" not in convreg.available_backends():
        pytest.skip("cython-winograd not built")
    shape = ((1, 128, 28, 28), (128, 128, 3, 3))
    e = convreg.explain(*shape, padding=1, backend="cython", op="conv2d_input")
    assert e.runs == "cython-winograd", e
    e = convreg.explain(*shape, padding=1, stride=2, backend="cython", op="conv2d_input")
    assert e.runs != "cython-winograd", e
    with convreg.use_options("cython", winograd=False):
        e = convreg.explain(*shape, padding=1, backend="cython", op="conv2d_input")
        assert e.runs != "cython-winograd", e
    rng = np.random.default_rng(7)
    w = rng.standard_normal(shape[1]).astype(np.float32)
    go = rng.standard_normal((1, 128, 28, 28)).astype(np.float32)
    # float64 through a non-Winograd kernel: its error is far below the float32 bound
    ref = grad.conv2d_input(shape[0], w.astype(np.float64), go.astype(np.float64), 1, 1,
                            backend="cython-im2col")
    bound = 4 * (128 * 9 + 1) * np.finfo(np.float32).eps * grad.conv2d_input(
        shape[0], np.abs(w).astype(np.float64), np.abs(go).astype(np.float64), 1, 1,
        backend="cython-im2col")
    for fn in (lambda: grad.conv2d_input(shape[0], w, go, 1, 1, backend="cython"),
               lambda: convreg.conv_transpose2d(go, w, None, 1, 1, backend="cython")):
        assert np.all(np.abs(fn() - ref) <= bound)


# ------------------------------------------------------------------ errors
def test_errors_name_the_argument():
    w = np.ones((4, 3, 3, 3), np.float32)
    go = np.ones((2, 4, 4, 4), np.float32)
    with pytest.raises(convreg.ConvSpecError, match=r"grad_output must have shape \(2, 4, 3, 3\)"):
        grad.conv2d_input((2, 3, 5, 5), w, go)
    with pytest.raises(convreg.ConvSpecError, match="input_size must have 3 or 4 entries"):
        grad.conv2d_input((5, 5), w, go)
    with pytest.raises(convreg.ConvTypeError, match="input_size must be a sequence of ints"):
        grad.conv2d_input("abc", w, go)
    with pytest.raises(convreg.ConvSpecError, match="input_size=.*expects input with 3"):
        grad.conv2d_input((2, 5, 6, 6), w, go)
    with pytest.raises(convreg.ConvTypeError, match="weight and grad_output must share one dtype"):
        grad.conv2d_input((2, 3, 6, 6), w, go.astype(np.float64))
    with pytest.raises(convreg.ConvSpecError, match="weight_size must have 4 entries"):
        grad.conv2d_weight(np.ones((2, 3, 6, 6), np.float32), (4, 3, 3), go)
    with pytest.raises(convreg.ConvSpecError, match=r"grad_output must have shape \(2, 4, 4, 4\)"):
        grad.conv2d_weight(np.ones((2, 3, 6, 6), np.float32), (4, 3, 3, 3), go[:, :, :3])
    with pytest.raises(convreg.ConvSpecError, match="stride must be >= 1"):
        grad.conv2d_input((2, 3, 6, 6), w, go, stride=0)


def test_transpose_errors():
    x, w = np.ones((1, 2, 4, 4)), np.ones((2, 3, 3, 3))
    with pytest.raises(convreg.ConvSpecError,
                       match="output_padding must be smaller than either stride or dilation"):
        convreg.conv_transpose2d(x, w, stride=2, output_padding=2)
    with pytest.raises(convreg.ConvTypeError, match="no 'same' or 'valid'"):
        convreg.conv_transpose2d(x, w, padding="same")
    with pytest.raises(convreg.ConvSpecError, match="expects input with 2 channels"):
        convreg.conv_transpose2d(np.ones((1, 3, 4, 4)), w)
    with pytest.raises(convreg.ConvSpecError, match="bias must be 1-D with 3 elements"):
        convreg.conv_transpose2d(x, w, bias=np.ones(2))
    with pytest.raises(convreg.ConvSpecError, match="output size would be"):
        convreg.conv_transpose2d(x, w, padding=4)
    # output_padding >= stride is fine while below the dilation (torch's rule)
    out = convreg.conv_transpose2d(x, w, stride=1, dilation=3, output_padding=2)
    assert out.shape == (1, 3, 4 - 1 + 6 + 2 + 1, 4 - 1 + 6 + 2 + 1)


# ------------------------------------------------------------------ torch parity
TORCH_CASES = [
    ((2, 4, 9, 8), (6, 2, 3, 3), dict(stride=2, padding=1, groups=2)),
    ((1, 3, 10, 11), (4, 3, 5, 3), dict(stride=(3, 2), padding=(2, 0), dilation=(1, 2))),
    ((3, 5, 7, 7), (5, 1, 3, 3), dict(padding=1, groups=5)),
    ((1, 2, 6, 6), (3, 2, 2, 2), dict(padding=3)),          # padding > dilation*(k-1)
    ((2, 3, 12, 12), (4, 3, 7, 7), dict(stride=2, padding=3)),
    # many channels on small images: cython-im2col's GEMM + col2im input gradient
    ((1, 128, 6, 5), (128, 64, 3, 3), dict(stride=2, padding=1, groups=2)),
    ((2, 64, 7, 7), (64, 64, 3, 2), dict(padding=(2, 1), dilation=(2, 1))),
]


@pytest.mark.parametrize("backend", BUILTIN)
@pytest.mark.parametrize("xs,ws,kw", TORCH_CASES)
def test_torch_nn_grad_parity(xs, ws, kw, backend):
    torch = pytest.importorskip("torch")
    if backend == "python" and xs[1] >= 64:
        pytest.skip("too large for the pure-Python loops; the harness covers python")
    rng = np.random.default_rng(3)
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal(ws).astype(np.float32)
    go = rng.standard_normal(convreg.conv2d(x, w, **kw).shape).astype(np.float32)
    args = [kw.get(k, d) for k, d in (("stride", 1), ("padding", 0), ("dilation", 1),
                                      ("groups", 1))]
    tgx = torch.nn.grad.conv2d_input(xs, torch.from_numpy(w), torch.from_numpy(go), *args)
    tgw = torch.nn.grad.conv2d_weight(torch.from_numpy(x), ws, torch.from_numpy(go), *args)
    gx = grad.conv2d_input(xs, w, go, *args, backend=backend)
    gw = grad.conv2d_weight(x, ws, go, *args, backend=backend)
    assert gx.dtype == gw.dtype == np.float32
    np.testing.assert_allclose(gx, tgx.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(gw, tgw.numpy(), rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("backend", ["python", "cython"])
def test_padding_modes_match_torch_autograd(mode, backend):
    torch = pytest.importorskip("torch")
    if backend not in BUILTIN:
        pytest.skip("not built")
    rng = np.random.default_rng(4)
    layer = torch.nn.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=(2, 1), groups=2,
                            padding_mode=mode).double()
    x = torch.tensor(rng.standard_normal((2, 4, 7, 6)), requires_grad=True)
    out = layer(x)
    go = rng.standard_normal(tuple(out.shape))
    out.backward(torch.from_numpy(go))
    w = layer.weight.detach().numpy()
    kw = dict(stride=(2, 1), padding=(2, 1), groups=2, padding_mode=mode, backend=backend)
    gx = grad.conv2d_input(tuple(x.shape), w, go, **kw)
    gw = grad.conv2d_weight(x.detach().numpy(), w.shape, go, **kw)
    np.testing.assert_allclose(gx, x.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(gw, layer.weight.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(grad.conv2d_bias(go), layer.bias.grad.numpy(), rtol=1e-12)


TRANSPOSE_CASES = [
    ((2, 4, 5, 6), (4, 3, 3, 3), dict(stride=2, padding=1, output_padding=1)),
    ((1, 6, 4, 4), (6, 2, 3, 2), dict(stride=(2, 3), padding=(0, 1), output_padding=(1, 2),
                                      groups=3)),
    ((2, 3, 5, 5), (3, 2, 3, 3), dict(stride=1, dilation=3, output_padding=2)),
    ((4, 6, 7), (4, 5, 4, 4), dict(stride=2, padding=1)),                   # unbatched
    ((1, 4, 6, 6), (4, 1, 3, 3), dict(stride=2, padding=1, groups=4, dilation=2)),
    ((1, 2, 3, 3), (2, 2, 2, 2), dict(stride=3, padding=2)),                # crop
]


@pytest.mark.parametrize("backend", BUILTIN)
@pytest.mark.parametrize("xs,ws,kw", TRANSPOSE_CASES)
def test_conv_transpose2d_matches_torch(xs, ws, kw, backend):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(5)
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal(ws).astype(np.float32)
    b = rng.standard_normal(ws[1] * kw.get("groups", 1)).astype(np.float32)
    ref = F.conv_transpose2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b),
                             **kw).numpy()
    out = convreg.conv_transpose2d(x, w, b, **kw, backend=backend)
    assert out.shape == ref.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)
    # positional order as torch: stride, padding, output_padding, groups, dilation
    pos = [kw.get(k, d) for k, d in (("stride", 1), ("padding", 0), ("output_padding", 0),
                                     ("groups", 1), ("dilation", 1))]
    np.testing.assert_array_equal(convreg.conv_transpose2d(x, w, b, *pos, backend=backend),
                                  out)


@pytest.mark.parametrize("backend", FAST)
def test_depthwise_weight_grad_taps_beyond_a_narrow_input(backend):
    # regression: a tap whose columns all fall right of a 1-wide input (C division of a
    # negative number rounded the last column up to 0 and read past the row)
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 3, 4, 1))
    kw = dict(stride=(2, 3), padding=(0, 3), dilation=(1, 2), groups=3)
    go = rng.standard_normal(convreg.conv2d(x, np.ones((3, 1, 4, 4)), **kw).shape)
    ref = grad.conv2d_weight(x, (3, 1, 4, 4), go, **kw, backend="python")
    np.testing.assert_allclose(grad.conv2d_weight(x, (3, 1, 4, 4), go, **kw, backend=backend),
                               ref, rtol=1e-12, atol=1e-12)


def test_torch_backend_gradients_on_the_grid():
    pytest.importorskip("torch")
    from convreg.backends.torch import make_backend
    convreg.register_backend("torch-grad-test", make_backend(), replace=True)
    try:
        bad = []
        for case in (c for c in GRID if c.op != "conv2d" and c.dtype == "float64"):
            r = harness.check_case("torch-grad-test", case, _ref(case))
            if not r.ok:
                bad.append(f"{case.label()}: {r.error}")
        assert not bad, "\n".join(bad[:10])
    finally:
        convreg.unregister_backend("torch-grad-test")


def test_gradient_gemms_never_start_blas_threads(monkeypatch):
    """The BLAS forms of the gradients (small images over many channels) cut their GEMMs
    over convreg's own threads with BLAS held to one: BLAS's workers keep spinning after
    a call and stall the next OpenMP region on the same cores."""
    from convreg.backends import _blas, direct, im2col
    if "cython-im2col" not in BUILTIN:
        pytest.skip("cython-im2col not built")
    asked = []
    real = _blas.blas_threads

    def spy(n):
        asked.append(n)
        return real(n)
    monkeypatch.setattr(im2col, "blas_threads", spy)
    monkeypatch.setattr(direct, "blas_threads", spy)
    rng = np.random.default_rng(9)
    x = rng.standard_normal((1, 64, 7, 7)).astype(np.float32)
    w = rng.standard_normal((64, 64, 3, 3)).astype(np.float32)
    go = rng.standard_normal((1, 64, 7, 7)).astype(np.float32)
    with convreg.use_threads(2):
        for be in ("cython-im2col", "cython-direct"):
            gw = grad.conv2d_weight(x, w.shape, go, 1, 1, backend=be)
            ref = grad.conv2d_weight(x.astype(np.float64), w.shape, go.astype(np.float64),
                                     1, 1, backend="python")
            np.testing.assert_allclose(gw, ref, rtol=1e-4, atol=1e-3)
        gx = grad.conv2d_input(x.shape, w, go, 1, 1, backend="cython-im2col")
        ref = grad.conv2d_input(x.shape, w.astype(np.float64), go.astype(np.float64), 1, 1,
                                backend="python")
        np.testing.assert_allclose(gx, ref, rtol=1e-4, atol=1e-3)
    assert asked and set(asked) == {1}, asked


@pytest.mark.parametrize("c_out,cig,groups,k,ptaps,qtaps", [
    (40, 37, 1, 3, (0, 1, 2), (0, 1, 2)),      # 37 channels: blocks of 16, 16 and 5
    (20, 17, 2, 5, (1, 3), (0, 2, 4)),
    (9, 4, 3, 3, (0, 2), (1,)),
    (33, 17, 1, 7, (0, 1, 2, 3, 4, 5, 6), (2, 5)),
])
def test_phase_weight_compiled_matches_numpy(monkeypatch, c_out, cig, groups, k, ptaps, qtaps):
    """The compiled flip_swap (blocks of input channels) builds exactly the sub-kernel the
    NumPy formulation does."""
    from convreg.backends import _gradops
    if _gradops._gradutil is None:
        pytest.skip("compiled gradient helpers not built")
    w = np.random.default_rng(10).standard_normal((c_out, cig, k, k)).astype(np.float32)
    spec = convreg.spec_for_shapes((1, cig * groups, 12, 12), w.shape, groups=groups)
    got = _gradops.phase_weight(spec, w, ptaps, qtaps, 2).copy()
    monkeypatch.setattr(_gradops, "_gradutil", None)
    np.testing.assert_array_equal(got, _gradops.phase_weight(spec, w, ptaps, qtaps, 2))
