"""The per-call memos (front-end specs by call signature, selections by spec and settings,
cython-direct's plans by spec) never serve a stale answer: every setting, registration,
option, argument, layout and patched method that changes a call is seen by the next call,
invalid calls fail the same way every time, and the memos stay bounded."""

from __future__ import annotations

import numpy as np
import pytest

import convreg
from convreg import BackendError, ConvSpecError, ConvTypeError
from convreg._dispatch import registry, select
from convreg._frontend import grad as gfront
from convreg._frontend import spec as front
from convreg._frontend.spec import prepare
from convreg._settings.context import call_context
from convreg.backends.python import PythonBackend

RNG = np.random.default_rng(0)
X = RNG.standard_normal((1, 8, 10, 10)).astype(np.float32)
W = RNG.standard_normal((8, 8, 3, 3)).astype(np.float32)
B = RNG.standard_normal(8).astype(np.float32)


def _needs(name):
    if name not in convreg.available_backends():
        pytest.skip(f"{name} is not built")


def _winograd_shapes():
    """(input shape, weight shape) of a functional call the cython chooser gives to
    Winograd (from its own thresholds)."""
    _needs("cython-winograd")
    from convreg.backends import auto

    c, pixels = auto.winograd_tables()[0][0]
    side = int(np.ceil(np.sqrt(pixels)))
    return (1, c, side, side), (c, c, 3, 3)


def _ref(x, w, b=None, **kw):
    return convreg.conv2d(np.asarray(x, np.float64), np.asarray(w, np.float64),
                          None if b is None else np.asarray(b, np.float64), backend="python",
                          **kw)


def _spy(monkeypatch, be):
    """Record the calls of backend object ``be`` (its own conv2d still computes them)."""
    calls = []
    real = be.conv2d
    with_ctx = registry.takes_ctx(real)

    def conv2d(spec, x, w, b, ctx=None):
        calls.append(spec)
        return real(spec, x, w, b, ctx) if with_ctx else real(spec, x, w, b)

    monkeypatch.setattr(be, "conv2d", conv2d)
    return calls


# ------------------------------------------------------------------ the memos are used

def test_a_repeated_call_reuses_spec_and_selection():
    _needs("cython")
    s1 = prepare(X, W, B, 1, 1)[0]
    s2 = prepare(X.copy(), W.copy(), B.copy(), 1, 1)[0]
    assert s1 is s2                           # same signature: the same spec object
    c1 = select.select(s1, call_context("cython"))
    c2 = select.select(s1, call_context("cython"))
    assert c1 is c2                           # remembered
    assert c1.runs == "cython-direct"


def test_layer_calls_reuse_their_spec_and_selection():
    layer = convreg.Conv2d(8, 8, 3, padding=1, backend="python", seed=0)
    out1 = layer(X)
    out2 = layer(X.copy())
    np.testing.assert_array_equal(out1, out2)
    np.testing.assert_allclose(out1, _ref(X, layer.weight, layer.bias, padding=1), rtol=1e-4,
                               atol=1e-4)
    s1 = prepare(X, layer.weight, layer.bias, hyper=layer._hyper)[0]
    assert s1 is prepare(X, layer.weight, layer.bias, hyper=layer._hyper)[0]
    layer.stride = 2                            # reassigned: re-checked, a new spec
    assert layer(X).shape == (1, 8, 5, 5)
    layer.padding = "same"
    layer.stride = 1
    assert layer(X).shape == (1, 8, 10, 10)
    layer.bias = None
    np.testing.assert_allclose(layer(X), _ref(X, layer.weight, padding=1), rtol=1e-4,
                               atol=1e-4)


# ------------------------------------------------------------ settings and registrations

def test_set_and_use_backend_are_seen_by_the_next_call(monkeypatch):
    _needs("cython")
    expected = _ref(X, W, B, padding=1)
    python = convreg.get_backend("python")
    calls = _spy(monkeypatch, python)
    for _ in range(2):
        convreg.conv2d(X, W, B, padding=1)
    assert calls == []
    convreg.set_backend("python")
    out = convreg.conv2d(X, W, B, padding=1)
    assert len(calls) == 1
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)
    with convreg.use_backend("cython-direct"):
        convreg.conv2d(X, W, B, padding=1)
        assert convreg.explain(X.shape, W.shape, padding=1).runs == "cython-direct"
    assert len(calls) == 1
    convreg.conv2d(X, W, B, padding=1)
    assert len(calls) == 2
    convreg.set_backend(None)
    convreg.conv2d(X, W, B, padding=1)
    assert len(calls) == 2
    assert convreg.explain(X.shape, W.shape, padding=1).runs == "cython-direct"


def test_environment_and_config_file_are_seen(isolated, monkeypatch):
    big_x, big_w = _winograd_shapes()
    python = convreg.get_backend("python")
    calls = _spy(monkeypatch, python)
    convreg.conv2d(X, W, padding=1)
    monkeypatch.setenv("CONVREG_BACKEND", "python")
    convreg.reload_config()
    convreg.conv2d(X, W, padding=1)
    assert len(calls) == 1
    monkeypatch.delenv("CONVREG_BACKEND")
    (isolated / "convreg.toml").write_text('backend = "cython"\n'
                                           '[backends.cython]\nwinograd = false\n')
    convreg.reload_config()
    convreg.conv2d(X, W, padding=1)
    assert len(calls) == 1
    assert convreg.explain(big_x, big_w, padding=1).runs != "cython-winograd"
    (isolated / "convreg.toml").write_text('backend = "cython"\n')
    convreg.reload_config()
    assert convreg.explain(big_x, big_w, padding=1).runs == "cython-winograd"


def test_options_are_seen():
    big_x, big_w = _winograd_shapes()

    def runs():
        return convreg.explain(big_x, big_w, padding=1, backend="cython").runs

    assert runs() == runs() == "cython-winograd"
    convreg.set_options("cython", winograd=False)
    try:
        assert runs() != "cython-winograd"
    finally:
        convreg.set_options("cython", winograd=None)
    assert runs() == "cython-winograd"
    with convreg.use_options("cython", winograd=False):
        assert runs() != "cython-winograd"
    assert runs() == "cython-winograd"
    with convreg.use_options("cython", tune="measure"):
        assert "not measured yet" in convreg.explain(big_x, big_w, padding=1,
                                                     backend="cython").reason


def test_register_replace_and_unregister_are_seen(monkeypatch):
    first, second = PythonBackend(), PythonBackend()    # built-in class: remembered
    first_calls = _spy(monkeypatch, first)
    second_calls = _spy(monkeypatch, second)
    convreg.register_backend("memo-test", first)
    try:
        for _ in range(2):
            convreg.conv2d(X, W, backend="memo-test")
        assert len(first_calls) == 2
        convreg.register_backend("memo-test", second, replace=True)
        out = convreg.conv2d(X, W, backend="memo-test")
        assert (len(first_calls), len(second_calls)) == (2, 1)
        np.testing.assert_allclose(out, _ref(X, W), rtol=1e-4, atol=1e-4)
    finally:
        convreg.unregister_backend("memo-test")
    with pytest.raises(BackendError, match="Unknown backend 'memo-test'"):
        convreg.conv2d(X, W, backend="memo-test")


def test_direct_edits_of_the_registry_change_its_generation():
    before = registry.generation
    registry._loaded["memo-gen"] = PythonBackend()
    assert registry.generation != before
    before = registry.generation
    registry._loaded.pop("memo-gen")
    assert registry.generation != before
    before = registry.generation
    registry._unavailable.setdefault("memo-gen", "why")
    del registry._unavailable["memo-gen"]
    assert registry.generation != before


def test_an_unavailable_backend_in_a_list_is_seen(monkeypatch):
    _needs("cython-im2col")
    names = ["cython-im2col", "python"]
    assert convreg.explain(X.shape, W.shape, backend=names).runs == "cython-im2col"
    monkeypatch.setitem(registry._unavailable, "cython-im2col", "not compiled here")
    monkeypatch.delitem(registry._loaded, "cython-im2col")
    e = convreg.explain(X.shape, W.shape, backend=names)
    assert e.runs == "python" and "not available here" in e.reason


@pytest.mark.parametrize("where", ["instance", "class"])
def test_a_patched_supports_is_seen(monkeypatch, where):
    _needs("cython")
    sub = convreg.get_backend("cython-direct")
    for _ in range(2):
        assert convreg.explain(X.shape, W.shape, padding=1, backend="cython").runs == \
            "cython-direct"
    target = sub if where == "instance" else type(sub)
    monkeypatch.setattr(target, "supports",
                        lambda *a: convreg.Support(False, "patched off"))
    e = convreg.explain(X.shape, W.shape, padding=1, backend="cython")
    assert e.runs != "cython-direct" and "patched off" in e.reason
    out = convreg.conv2d(X, W, padding=1, backend="cython")
    np.testing.assert_allclose(out, _ref(X, W, padding=1), rtol=1e-4, atol=1e-4)
    monkeypatch.undo()
    assert convreg.explain(X.shape, W.shape, padding=1, backend="cython").runs == \
        "cython-direct"


def test_a_patched_conv2d_is_called(monkeypatch):
    _needs("cython")
    sub = convreg.get_backend("cython-direct")
    convreg.conv2d(X, W, padding=1, backend="cython")
    calls = _spy(monkeypatch, sub)
    convreg.conv2d(X, W, padding=1, backend="cython")
    assert len(calls) == 1


def test_plugin_objects_are_asked_every_call(register_mock):
    answer = [convreg.Support(True)]
    mock = register_mock("memo-mock", supports_answer=lambda spec: answer[0])
    names = ["memo-mock", "python"]
    for _ in range(2):
        assert convreg.explain(X.shape, W.shape, backend=names).runs == "memo-mock"
    answer[0] = convreg.Support(False, "not today")
    e = convreg.explain(X.shape, W.shape, backend=names)
    assert e.runs == "python" and "not today" in e.reason
    assert len(mock.asked) == 3


def test_weight_cache_presence_is_part_of_the_key():
    _needs("cython-winograd")
    from convreg.backends import auto

    # A shape the layer table and the functional table decide differently.
    functional, layers = auto.winograd_tables()
    for c, pixels in functional + layers:
        side = int(np.ceil(np.sqrt(pixels)))
        spec = prepare(np.zeros((1, c, side, side), np.float32),
                       np.zeros((c, c, 3, 3), np.float32), None, 1, 1)[0]
        if auto.winograd_fits(spec) != auto.winograd_fits(spec, cached=True):
            break
    else:
        pytest.skip("the chooser's thresholds leave no such shape")
    functional = auto.winograd_fits(spec)
    plain = call_context("cython")
    layer = call_context("cython")
    layer.weight_cache = {}
    assert (select.select(spec, plain).runs == "cython-winograd") == functional
    assert (select.select(spec, layer).runs == "cython-winograd") != functional
    assert (select.select(spec, plain).runs == "cython-winograd") == functional


# ---------------------------------------------------------------- the arguments of calls

VARIANTS = [
    dict(),
    dict(padding=1),
    dict(padding=(1, 1)),
    dict(padding=(1, 0)),
    dict(padding="same"),
    dict(padding="valid"),
    dict(stride=2),
    dict(stride=(2, 1)),
    dict(stride=2, padding=1),
    dict(dilation=2),
    dict(dilation=(1, 2), padding=2),
    dict(groups=2),
    dict(groups=8),
    dict(padding=1, padding_mode="reflect"),
    dict(padding=1, padding_mode="circular"),
    dict(padding=1, padding_mode="replicate"),
]


def _weight_for(kw):
    g = kw.get("groups", 1)
    return W[:, : 8 // g]


@pytest.mark.parametrize("backend", ["cython", "python"])
def test_same_shapes_different_arguments_give_different_specs(backend):
    """Every remembered spec equals the one full validation makes for that call, and
    calls that differ in any argument (same array shapes) get specs that differ."""
    if backend != "python":
        _needs(backend)
    seen = {}
    for kw in VARIANTS:
        w = _weight_for(kw)
        for bias in (None, B):
            for dtype in (np.float32, np.float64):
                x, wd = X.astype(dtype), w.astype(dtype)
                bd = None if bias is None else bias.astype(dtype)
                for _ in range(2):
                    out = convreg.conv2d(x, wd, bd, backend=backend, **kw)
                    assert out.dtype == dtype
                    np.testing.assert_allclose(out, _ref(x, wd, bd, **kw), rtol=1e-4,
                                               atol=1e-4)
                spec = prepare(x, wd, bd, **kw)[0]
                assert spec is prepare(x.copy(), wd.copy(), bd, **kw)[0]
                full = front._prepare(x, wd, bd, kw.get("stride", 1), kw.get("padding", 0),
                                      kw.get("dilation", 1), kw.get("groups", 1),
                                      kw.get("padding_mode", "zeros"), None)[0]
                assert spec == full
                seen.setdefault(spec, []).append((kw, bias is None, dtype))
    # Only spellings of the same call share a spec: padding 1, (1, 1) and "same" (3x3),
    # 0 and "valid".
    shared = [v for v in seen.values() if len(v) > 1]
    for group in shared:
        assert len({(nb, dt) for _, nb, dt in group}) == 1
        assert {tuple(sorted(kw.items())) for kw, _, _ in group} in (
            {(("padding", 1),), (("padding", (1, 1)),), (("padding", "same"),)},
            {(), (("padding", "valid"),)})
    assert len(shared) == 2 * 2 * 2


@pytest.mark.parametrize("bad, error, match", [
    (dict(stride=True), ConvTypeError, "stride must be an int or a pair of ints"),
    (dict(stride=1.0), ConvTypeError, "stride must be an int"),
    (dict(stride=(1, True)), ConvTypeError, "stride must be an int"),
    (dict(padding=np.float64(1.0)), ConvTypeError, "padding must be an int"),
    (dict(groups=True), ConvTypeError, "groups must be an int"),
    (dict(dilation=0), ConvSpecError, "dilation must be >= 1"),
    (dict(padding_mode="Zeros"), ConvSpecError, "padding_mode must be one of"),
    (dict(padding="same", stride=2), ConvSpecError, "not supported for strided"),
    (dict(groups=3), ConvSpecError, "groups=3 must divide"),
])
def test_values_equal_to_valid_ones_are_still_refused(bad, error, match):
    """True == 1 and 1.0 == 1 (and hash alike): a memo keyed by value must not let them
    through after the valid call was remembered."""
    good = {k: (1 if k != "padding_mode" else "zeros") for k in bad}
    if "padding" in bad and bad["padding"] == "same":
        good = dict(padding="same")
    convreg.conv2d(X, W, **good)
    convreg.conv2d(X, W, **good)
    for _ in range(2):
        with pytest.raises(error, match=match):
            convreg.conv2d(X, W, **bad)


def test_numpy_integers_are_accepted_like_ints():
    a = convreg.conv2d(X, W, stride=np.int64(2), padding=np.int32(1))
    b = convreg.conv2d(X, W, stride=2, padding=1)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("args, error, match", [
    ((X, W[:, :4]), ConvSpecError, "expects input with 4 channels"),
    ((X, W, B[:4]), ConvSpecError, "bias must be 1-D with 8 elements"),
    ((X, W.astype(np.float64)), ConvTypeError, "must share one dtype"),
    ((X, W, B.astype(np.float64)), ConvTypeError, "must share one dtype"),
    ((X[:, :, :2, :2], W), ConvSpecError, "output size would be"),
    ((X[0, 0], W), ConvSpecError, "input must be 3-D"),
])
def test_errors_are_raised_identically_every_time(args, error, match):
    convreg.conv2d(X, W, B)
    messages = []
    for _ in range(3):
        with pytest.raises(error, match=match) as info:
            convreg.conv2d(*args)
        messages.append(str(info.value))
    assert len(set(messages)) == 1


def test_reflect_padding_too_large_fails_every_time():
    x = np.ones((1, 1, 3, 3), np.float32)
    w = np.ones((1, 1, 3, 3), np.float32)
    convreg.conv2d(x, w, padding=2, padding_mode="reflect")
    for _ in range(2):
        with pytest.raises(ConvSpecError, match="padding_mode='reflect' needs padding"):
            convreg.conv2d(x, w, padding=3, padding_mode="reflect")


# ------------------------------------------------------------------- layouts and values

def _layouts():
    """Arrays of X's and W's shapes and values in other layouts."""
    xf = np.asfortranarray(X)
    xr = X.copy()
    xr.flags.writeable = False
    xs = np.zeros((1, 8, 10, 20), np.float32)[..., ::2]
    xs[...] = X
    big = np.empty((1, 8, 10, 10), np.float32)
    big[...] = X
    neg = np.ascontiguousarray(X[..., ::-1])[..., ::-1]       # negative strides
    wf = np.asfortranarray(W)
    wr = W.copy()
    wr.flags.writeable = False
    return [(xf, W), (xr, wr), (xs, wf), (big, W), (neg, W[::-1][::-1])]


@pytest.mark.parametrize("backend", ["cython", "cython-direct", "python"])
def test_other_layouts_after_a_remembered_contiguous_call(backend):
    if backend != "python":
        _needs(backend)
    expected = _ref(X, W, B, padding=1)
    np.testing.assert_allclose(convreg.conv2d(X, W, B, padding=1, backend=backend), expected,
                               rtol=1e-4, atol=1e-4)
    for x, w in _layouts():
        before = (x.copy(), w.copy())
        out = convreg.conv2d(x, w, B, padding=1, backend=backend)
        np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)
        np.testing.assert_array_equal(x, before[0])
        np.testing.assert_array_equal(w, before[1])
    bs = np.zeros(16, np.float32)[::2]
    bs[...] = B
    np.testing.assert_allclose(convreg.conv2d(X, W, bs, padding=1, backend=backend), expected,
                               rtol=1e-4, atol=1e-4)


def test_unbatched_after_batched_and_back():
    batched = convreg.conv2d(X, W, B, padding=1)
    single = convreg.conv2d(X[0], W, B, padding=1)
    assert single.shape == (8, 10, 10)
    np.testing.assert_array_equal(single, batched[0])
    np.testing.assert_array_equal(convreg.conv2d(X, W, B, padding=1), batched)


def test_a_strided_view_is_size_checked_on_a_remembered_signature(monkeypatch):
    """The memory check of the copy a strided view needs runs on every call."""
    from convreg._frontend import arrays

    x = np.ones((1, 1, 64, 64), np.float32)          # 16 KiB
    w = np.ones((1, 1, 1, 1), np.float32)
    convreg.conv2d(x, w, stride=64)                   # remembered; output 1x1
    monkeypatch.setattr(arrays, "physical_memory", lambda: 8192)
    view = np.ones((1, 1, 64, 128), np.float32)[..., ::2]
    for _ in range(2):
        with pytest.raises(ConvSpecError, match="the input of shape .* would need"):
            convreg.conv2d(view, w, stride=64)
    assert convreg.conv2d(x, w, stride=64).shape == (1, 1, 1, 1)


def test_direct_reuses_a_read_only_zero_bias_and_never_writes_inputs():
    _needs("cython-direct")
    be = convreg.get_backend("cython-direct")
    spec, x, w, _ = prepare(X, W, None, 1, 1)
    ctx = call_context("cython-direct")
    a = be.conv2d(spec, x, w, None, ctx)
    b = be.conv2d(spec, x, w, None, ctx)
    assert a is not b
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a, _ref(X, W, padding=1), rtol=1e-4, atol=1e-4)
    plan = be._plans[id(spec)]
    assert plan[0] is spec and not plan[3].flags.writeable and not plan[3].any()


@pytest.mark.parametrize("kw", [dict(), dict(stride=2, padding=1),
                                dict(stride=2, padding=1, output_padding=1),
                                dict(dilation=2, stride=2, output_padding=1),
                                dict(groups=2)])
def test_conv_transpose2d_repeated_and_varied(kw):
    g = kw.get("groups", 1)
    w = W[:, : 8 // g]
    for b in (None, B[: 8 // g * g]):
        outs = [convreg.conv_transpose2d(x, w, b, **kw) for x in (X, X.copy(), X[0])]
        np.testing.assert_array_equal(outs[0], outs[1])
        np.testing.assert_array_equal(outs[2], outs[0][0])
        ref = convreg.conv_transpose2d(X.astype(np.float64), w.astype(np.float64),
                                       None if b is None else b.astype(np.float64),
                                       backend="python", **kw)
        np.testing.assert_allclose(outs[0], ref, rtol=1e-4, atol=1e-4)
    s1 = gfront.prepare_transpose(X, w, None, **kw)[0]
    assert s1 is gfront.prepare_transpose(X.copy(), w, None, **kw)[0]
    assert s1 is not gfront.prepare_transpose(X[0], w, None, **kw)[0]


def test_conv_transpose2d_errors_every_time():
    convreg.conv_transpose2d(X, W, stride=2, output_padding=1)
    for _ in range(2):
        with pytest.raises(ConvSpecError, match="output_padding must be smaller"):
            convreg.conv_transpose2d(X, W, stride=2, output_padding=2)
        with pytest.raises(ConvTypeError, match="no 'same' or 'valid'"):
            convreg.conv_transpose2d(X, W, padding="same")


def test_gradients_repeated_unbatched_and_checked():
    go = RNG.standard_normal((1, 8, 10, 10)).astype(np.float32)
    for _ in range(2):
        gx = convreg.grad.conv2d_input(X.shape, W, go, padding=1)
        gx1 = convreg.grad.conv2d_input(X.shape[1:], W, go[0], padding=1)
        np.testing.assert_array_equal(gx1, gx[0])
        gw = convreg.grad.conv2d_weight(X, W.shape, go, padding=1)
        gw1 = convreg.grad.conv2d_weight(X[0], W.shape, go[0], padding=1)
        np.testing.assert_allclose(gw1, gw, rtol=1e-5, atol=1e-5)
        gxs = convreg.grad.conv2d_input(X.shape, np.asfortranarray(W), go[..., ::-1][..., ::-1],
                                        padding=1)
        np.testing.assert_array_equal(gxs, gx)
    ref = convreg.grad.conv2d_input(X.shape, W.astype(np.float64), go.astype(np.float64),
                                    padding=1, backend="python")
    np.testing.assert_allclose(gx, ref, rtol=1e-4, atol=1e-4)
    for _ in range(2):
        with pytest.raises(ConvSpecError, match="grad_output must have shape"):
            convreg.grad.conv2d_input(X.shape, W, go[:, :, :9], padding=1)
        with pytest.raises(ConvTypeError, match="stride must be an int"):
            convreg.grad.conv2d_weight(X, W.shape, go, stride=True, padding=1)
        with pytest.raises(ConvSpecError, match="input_size=.*3 entries"):
            convreg.grad.conv2d_input(X.shape[1:], W, go, padding=1)


# ----------------------------------------------------------------------------- bounds

def test_memos_stay_bounded():
    _needs("cython-direct")
    be = convreg.get_backend("cython-direct")
    for k in range(front._SPECS_MAX + 5):
        x = np.zeros((1, 1, 3, 3 + k), np.float32)
        w = np.zeros((1, 1, 1, 1), np.float32)
        convreg.conv2d(x, w, backend="cython")
        convreg.conv_transpose2d(x, w)
        assert len(front._SPECS) <= front._SPECS_MAX
        assert len(gfront._TSPECS) <= front._SPECS_MAX
        assert len(select._memo) <= select._MEMO_SIZE
        assert len(be._plans) <= be._PLANS_MAX
