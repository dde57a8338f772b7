"""Selection and the call path: the chooser's sub-backends are asked like any other, a
pure-Python configuration loads no compiled code, settings are read at most once per
second, and memory follows the work, not the padding or stride."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import convreg
import convreg.harness
from convreg._settings import chain

X = np.random.default_rng(0).standard_normal((1, 64, 8, 8)).astype(np.float32)
W = np.random.default_rng(1).standard_normal((64, 64, 3, 3)).astype(np.float32)


def _needs(name):
    if name not in convreg.available_backends():
        pytest.skip(f"{name} is not built")


def _needs_tables(fused):
    """The chooser's Winograd tables depend on the build: skip the other build's cases."""
    _needs("cython-winograd")
    from convreg.backends import im2col
    if im2col.has_fused_mode() != fused:
        pytest.skip(f"this build takes the {'un' if fused else ''}fused-mode tables")


@pytest.mark.parametrize("refused", ["cython-im2col", "cython-direct"])
def test_chooser_never_runs_a_backend_that_declines(refused, monkeypatch):
    _needs("cython")
    sub = convreg.get_backend(refused)
    calls = []
    monkeypatch.setattr(sub, "supports", lambda spec: convreg.Support(False, "patched off"))
    real = type(sub).conv2d
    monkeypatch.setattr(type(sub), "conv2d",
                        lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    shapes = [((1, 64, 8, 8), (64, 64, 3, 3), 1),     # rules pick im2col (small, deep)
              ((1, 256, 56, 56), (64, 256, 1, 1), 0),  # 1x1 over many channels: im2col
              ((1, 8, 16, 16), (8, 8, 3, 3), 1)]       # rules pick direct
    for xs, ws, pad in shapes:
        x = np.ones(xs, np.float32)
        w = np.ones(ws, np.float32)
        out = convreg.conv2d(x, w, padding=pad, backend="cython")
        ref = convreg.conv2d(x, w, padding=pad, backend="python")
        np.testing.assert_allclose(out, ref, rtol=1e-5)
        assert convreg.explain(xs, ws, padding=pad, backend="cython").runs != refused
    assert calls == []


def test_explain_names_the_declining_sub_backend(monkeypatch):
    _needs("cython")
    sub = convreg.get_backend("cython-im2col")
    monkeypatch.setattr(sub, "supports", lambda spec: convreg.Support(False, "patched off"))
    # a small deep image: im2col first on every build (fused mode or not)
    e = convreg.explain((1, 128, 8, 8), (128, 128, 3, 3), padding=1, backend="cython")
    assert e.runs == "cython-direct"
    assert "'cython' -> 'cython-im2col': patched off" in e.reason


def test_python_only_config_imports_no_compiled_module_nor_torch(tmp_path):
    (tmp_path / "convreg.toml").write_text('backend = "python"\n')
    code = textwrap.dedent("""
        import sys, numpy as np, convreg
        y = convreg.conv2d(np.ones((1, 2, 5, 5)), np.ones((3, 2, 3, 3)), padding=1,
                           padding_mode="reflect")
        assert y.shape == (1, 3, 5, 5)
        assert convreg.current_backend().name == "python"
        loaded = sorted(m for m in sys.modules
                        if m == "torch" or m.startswith("torch.")
                        or (m.startswith("convreg.") and m.rpartition(".")[2].startswith("_")
                            and getattr(sys.modules[m], "__file__", "").endswith(".so")))
        print("LOADED", loaded)
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVREG_")}
    root = os.path.dirname(os.path.dirname(convreg.__file__))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "LOADED []" in out.stdout, out.stdout


def test_environment_is_read_at_most_once_per_second(monkeypatch, mock):
    monkeypatch.setattr(chain, "REFRESH_SECONDS", 1.0)
    clock = [1000.0]
    monkeypatch.setattr(chain.time, "monotonic", lambda: clock[0])
    convreg.reload_config()
    assert convreg.current_backend().source == "default"
    monkeypatch.setenv("CONVREG_BACKEND", "mock")
    clock[0] += 0.5
    assert convreg.current_backend().source == "default"      # not re-read yet
    clock[0] += 0.6
    assert convreg.current_backend() == ("mock", "CONVREG_BACKEND")
    monkeypatch.delenv("CONVREG_BACKEND")
    assert convreg.current_backend() == ("mock", "CONVREG_BACKEND")
    convreg.reload_config()                                    # explicit: now
    assert convreg.current_backend().source == "default"


def test_config_file_is_not_touched_between_refreshes(monkeypatch, isolated):
    monkeypatch.setattr(chain, "REFRESH_SECONDS", 3600.0)
    (isolated / "convreg.toml").write_text('backend = "python"\n')
    convreg.reload_config()
    assert convreg.current_backend().name == "python"
    stats = []
    real_stat = os.stat
    monkeypatch.setattr(os, "stat", lambda *a, **k: stats.append(a) or real_stat(*a, **k))
    for _ in range(5):
        convreg.conv2d(np.ones((1, 1, 3, 3)), np.ones((1, 1, 2, 2)))
    assert not [s for s in stats if "convreg.toml" in str(s[0])]


def _peak_rss_mb(code):
    prog = textwrap.dedent("""
        import resource, numpy as np, convreg
        convreg.conv2d(np.ones((1, 3, 8, 8), np.float32), np.ones((4, 3, 3, 3), np.float32),
                       backend="python")
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    """) + textwrap.dedent(code) + textwrap.dedent("""
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print("GROWTH_MB", (after - before) / 1024)
    """)
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(convreg.__file__))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", prog], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return float(out.stdout.split("GROWTH_MB")[1])


@pytest.mark.parametrize("backend", ["cython-direct", "cython", "cython-im2col"])
def test_huge_padding_and_stride_use_memory_sized_by_the_work(backend):
    _needs(backend)
    code = f"""
        x = np.arange(3 * 64, dtype=np.float32).reshape(1, 3, 8, 8)
        w = np.ones((4, 3, 3, 3), np.float32)
        y = convreg.conv2d(x, w, stride=100000, padding=100000, backend={backend!r})
        ref = convreg.conv2d(x, w, stride=100000, padding=100000, backend="python")
        assert y.shape == (1, 4, 3, 3), y.shape
        assert np.allclose(y, ref), (y, ref)
    """
    assert _peak_rss_mb(code) < 16


def test_winograd_option_turns_it_off(isolated):
    _needs("cython-winograd")
    shape = ((8, 64, 28, 28), (64, 64, 3, 3))
    assert convreg.explain(*shape, padding=1, backend="cython").runs == "cython-winograd"
    with convreg.use_options("cython", winograd=False):
        e = convreg.explain(*shape, padding=1, backend="cython")
        assert e.runs != "cython-winograd" and "winograd" not in e.reason.split(":")[0]
    (isolated / "convreg.toml").write_text("[backends.cython]\nwinograd = false\n")
    convreg.reload_config()
    assert convreg.explain(*shape, padding=1, backend="cython").runs != "cython-winograd"
    x = np.random.default_rng(0).standard_normal(shape[0]).astype(np.float32)
    w = np.random.default_rng(1).standard_normal(shape[1]).astype(np.float32)
    ref, bound = convreg.harness.reference_and_bound(x[:1], w, None, padding=1)
    out = convreg.conv2d(x[:1], w, padding=1, backend="cython")
    assert np.all(np.abs(out - ref) <= bound)


def test_winograd_option_is_validated(isolated):
    (isolated / "convreg.toml").write_text('[backends.cython]\nwinograd = "no"\n')
    with pytest.raises(convreg.ConfigError, match=r"winograd: expected bool"):
        convreg.current_backend()


@pytest.mark.parametrize("shape,stride,runs", [
    (((1, 256, 14, 14), (1024, 256, 1, 1)), 1, "cython-im2col"),   # small image, wide GEMM
    (((8, 128, 28, 28), (256, 128, 1, 1)), 2, "cython-im2col"),    # strided: after a gather
    (((1, 32, 112, 112), (16, 32, 1, 1)), 1, "cython-im2col"),     # 16 output channels
    (((1, 16, 112, 112), (96, 16, 1, 1)), 1, "cython-im2col"),     # 16 input channels
    (((1, 8, 28, 28), (32, 8, 1, 1)), 1, "cython-direct"),         # 0.4 MFLOP: too small
    (((1, 8, 16, 16), (8, 8, 1, 1)), 1, "cython-direct"),          # the tiny layer's size
])
def test_pointwise_rule(isolated, shape, stride, runs):
    _needs("cython")
    assert convreg.explain(*shape, stride=stride, backend="cython").runs == runs


@pytest.mark.parametrize("shape,winograd", [
    (((1, 128, 28, 28), (128, 128, 3, 3)), True),     # >= 128 channels, >= 196 pixels
    (((1, 128, 14, 14), (128, 128, 3, 3)), True),
    (((1, 128, 12, 12), (128, 128, 3, 3)), False),    # 144 pixels: transforms dominate
    (((1, 256, 13, 13), (256, 256, 3, 3)), True),     # >= 256 channels, >= 169 pixels
    (((1, 256, 12, 12), (256, 256, 3, 3)), False),
    (((1, 96, 16, 16), (96, 96, 3, 3)), True),        # >= 96 channels, >= 256 pixels
    (((1, 96, 14, 14), (96, 96, 3, 3)), False),
    (((1, 64, 22, 22), (64, 64, 3, 3)), True),        # >= 64 channels, >= 484 pixels
    (((1, 64, 20, 20), (64, 64, 3, 3)), False),
    (((1, 64, 20, 20), (128, 64, 3, 3)), False),      # the smaller channel count decides
    (((1, 32, 28, 28), (32, 32, 3, 3)), True),        # >= 32 channels, >= 784 pixels
    (((1, 32, 24, 24), (32, 32, 3, 3)), False),
    (((8, 16, 112, 112), (16, 16, 3, 3)), False),     # 16 channels: never for a function
])
def test_functional_winograd_rule(isolated, shape, winograd):
    _needs_tables(fused=True)
    e = convreg.explain(*shape, padding=1, backend="cython")
    assert (e.runs == "cython-winograd") == winograd, e


@pytest.mark.parametrize("shape,winograd", [
    (((1, 512, 10, 10), (512, 512, 3, 3)), True),     # >= 512 channels, >= 100 pixels
    (((1, 512, 7, 7), (512, 512, 3, 3)), False),
    (((1, 256, 12, 12), (256, 256, 3, 3)), True),     # >= 256 channels, >= 144 pixels
    (((1, 256, 10, 10), (256, 256, 3, 3)), False),
    (((1, 128, 14, 14), (128, 128, 3, 3)), True),     # >= 96 channels, >= 196 pixels
    (((1, 128, 12, 12), (128, 128, 3, 3)), False),
    (((1, 96, 13, 13), (96, 96, 3, 3)), False),
    (((1, 64, 20, 20), (64, 64, 3, 3)), True),        # >= 64 channels, >= 400 pixels
    (((1, 64, 18, 18), (64, 64, 3, 3)), False),
    (((1, 64, 20, 20), (32, 64, 3, 3)), False),       # the smaller channel count decides
    (((1, 32, 28, 28), (32, 32, 3, 3)), True),        # >= 32 channels, >= 784 pixels
    (((1, 32, 24, 24), (32, 32, 3, 3)), False),
    (((8, 16, 112, 112), (16, 16, 3, 3)), False),     # 16 channels: never for a function
])
def test_functional_winograd_rule_without_fused_mode(isolated, shape, winograd):
    _needs_tables(fused=False)
    e = convreg.explain(*shape, padding=1, backend="cython")
    assert (e.runs == "cython-winograd") == winograd, e


def test_layers_need_more_pixels_at_256_channels(isolated):
    """A layer checks its cached transformed weights against its weights on every call,
    which in a network streams 3.8x the weights from the last-level cache: a 256-channel
    14^2 layer stays on im2col, where a functional call of that shape takes Winograd."""
    _needs_tables(fused=True)
    from convreg.backends.auto import winograd_fits
    spec = convreg.spec_for_shapes((1, 256, 14, 14), (256, 256, 3, 3), padding=1)
    assert winograd_fits(spec, cached=False) and not winograd_fits(spec, cached=True)
    spec = convreg.spec_for_shapes((1, 96, 20, 20), (96, 96, 3, 3), padding=1, dilation=2)
    assert not winograd_fits(spec, cached=True)


@pytest.mark.parametrize("shape,winograd", [
    (((2, 256, 14, 14), (256, 256, 3, 3)), True),     # >= 96 channels, >= 256 pixels
    (((8, 512, 7, 7), (512, 512, 3, 3)), True),
    (((1, 256, 14, 14), (256, 256, 3, 3)), False),    # 196 pixels
    (((4, 512, 7, 7), (512, 512, 3, 3)), False),
    (((1, 384, 13, 13), (384, 384, 3, 3)), False),
    (((1, 512, 7, 7), (512, 512, 3, 3)), False),
    (((2, 128, 14, 14), (128, 128, 3, 3)), True),     # 392 pixels
    (((1, 128, 16, 16), (128, 128, 3, 3)), True),
    (((1, 96, 16, 16), (96, 96, 3, 3)), True),
    (((1, 192, 14, 14), (192, 192, 3, 3)), False),
    (((1, 96, 14, 14), (96, 96, 3, 3)), False),
    (((1, 64, 22, 22), (64, 64, 3, 3)), True),        # >= 64 channels, >= 484 pixels
    (((1, 64, 20, 20), (64, 64, 3, 3)), False),
    (((1, 64, 20, 20), (256, 64, 3, 3)), False),      # the smaller channel count decides
    (((1, 32, 28, 28), (32, 32, 3, 3)), True),        # >= 32 channels, >= 784 pixels
    (((1, 32, 24, 24), (32, 32, 3, 3)), False),
    (((1, 16, 112, 112), (16, 16, 3, 3)), False),     # 16 channels: never
])
def test_layer_winograd_rule(isolated, shape, winograd):
    _needs_tables(fused=True)
    _check_layer_rule(shape, winograd)


@pytest.mark.parametrize("dilation,winograd", [(2, True), ((1, 2), True), (3, False)])
def test_dilated_winograd_without_fused_mode(isolated, dilation, winograd):
    """Builds without the fused mode take Winograd for 3x3 layers dilated up to 2."""
    _needs_tables(fused=False)
    e = convreg.explain((1, 128, 28, 28), (128, 128, 3, 3), padding=2, dilation=dilation,
                        backend="cython")
    assert (e.runs == "cython-winograd") == winograd, e
    layer = convreg.Conv2d(128, 128, 3, padding=2, dilation=dilation, backend="cython", seed=0)
    x = np.random.default_rng(0).standard_normal((1, 128, 28, 28)).astype(np.float32)
    out = layer(x)
    assert any(key[0] == "cython-winograd" for key in layer._weight_cache) == winograd
    ref = convreg.conv2d(x, layer.weight, layer.bias, padding=2, dilation=dilation,
                         backend="cython-im2col")
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("shape,winograd", [
    (((1, 256, 14, 14), (256, 256, 3, 3)), True),     # >= 256 channels, >= 64 pixels
    (((1, 256, 8, 8), (256, 256, 3, 3)), True),
    (((2, 512, 7, 7), (512, 512, 3, 3)), True),
    (((1, 512, 7, 7), (512, 512, 3, 3)), False),      # 49 pixels: im2col
    (((1, 128, 10, 10), (128, 128, 3, 3)), True),     # >= 128 channels, >= 100 pixels
    (((1, 128, 9, 9), (128, 128, 3, 3)), False),
    (((1, 96, 14, 14), (96, 96, 3, 3)), True),        # >= 64 channels, >= 196 pixels
    (((1, 96, 12, 12), (96, 96, 3, 3)), False),
    (((1, 64, 14, 14), (64, 64, 3, 3)), True),
    (((1, 32, 20, 20), (32, 32, 3, 3)), True),        # >= 32 channels, >= 400 pixels
    (((1, 32, 18, 18), (32, 32, 3, 3)), False),
    (((1, 16, 112, 112), (16, 16, 3, 3)), False),     # 16 channels: never
])
def test_layer_winograd_rule_without_fused_mode(isolated, shape, winograd):
    _needs_tables(fused=False)
    _check_layer_rule(shape, winograd)


def _check_layer_rule(shape, winograd):
    layer = convreg.Conv2d(shape[1][1], shape[1][0], 3, padding=1, backend="cython", seed=0)
    x = np.zeros(shape[0], np.float32)
    layer(x)
    from convreg.backends.auto import winograd_fits
    spec = convreg.spec_for_shapes(shape[0], shape[1], padding=1)
    assert winograd_fits(spec, cached=True) == winograd
    assert any(key[0] == "cython-winograd" for key in layer._weight_cache) == winograd


@pytest.mark.parametrize("shape,kw,fused", [
    (((1, 40, 56, 56), (40, 40, 3, 3)), dict(padding=1), True),     # from 40 channels
    (((1, 48, 56, 56), (96, 48, 3, 3)), dict(stride=2, padding=1), True),
    (((1, 32, 56, 56), (32, 32, 3, 3)), dict(padding=1), False),    # 32: direct
    (((1, 3, 224, 224), (64, 3, 7, 7)), dict(stride=2, padding=3), False),  # the stem
])
def test_fused_im2col_rule(shape, kw, fused):
    """Calls im2col's fused mode takes go to it from FUSED_MIN_CIN (40) input channels."""
    _needs("cython-im2col")
    from convreg.backends import auto, im2col
    spec = convreg.spec_for_shapes(*shape, **kw)
    if not im2col.fuses(spec):
        pytest.skip("no fused mode in this build")
    name, _ = auto.choose(spec, fuses=im2col.fuses)
    assert name == ("cython-im2col" if fused else "cython-direct")
    assert (spec.cig >= auto.FUSED_MIN_CIN) == fused


@pytest.mark.parametrize("shape,kw,runs", [
    (((1, 64, 56, 56), (128, 64, 3, 3)), dict(stride=2, padding=1), "cython-im2col"),
    (((8, 128, 28, 28), (256, 128, 3, 3)), dict(stride=2, padding=1), "cython-im2col"),
    (((1, 32, 56, 56), (64, 32, 3, 3)), dict(stride=2, padding=1), "cython-direct"),  # < 64
    (((1, 3, 224, 224), (64, 3, 7, 7)), dict(stride=2, padding=3), "cython-direct"),  # stem
    (((1, 128, 28, 28), (128, 1, 3, 3)), dict(stride=2, padding=1, groups=128),
     "cython-direct"),                                                  # depthwise
])
def test_strided_rule_without_fused_mode(isolated, shape, kw, runs):
    """Builds without the fused mode send strided dense layers of >= 64 input channels
    to im2col's column buffer and GEMM kernel."""
    _needs("cython")
    from convreg.backends import im2col
    if im2col.has_fused_mode():
        pytest.skip("this build has the fused mode")
    assert convreg.explain(*shape, **kw, backend="cython").runs == runs
