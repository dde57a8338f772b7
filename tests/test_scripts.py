"""The scripts under scripts/: argument validation, --version, closed pipes, and a tiny
end-to-end run of compare_backends (JSON keys, declines, disagreements). No assertions
on timings."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import convreg
from convreg.backends.base import Backend, no

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"
ALL = ["compare_backends.py", "bench_direct.py", "bench_im2col.py", "sweep_chooser.py",
       "bench_overhead.py", "bench_network.py", "bench_grad.py", "bench_winograd.py",
       "bench_dask.py", "sweep_weight_grad.py", "diff_torch.py"]
# A tiny timing run: one small layer, little budget, grid-only harness.
TINY = ["--suite", "tiny", "--random", "0", "--budget", "0.005", "--quiet",
        "--ceiling-size", "128"]


def run(script, *args, timeout=60, **kw):
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, str(SCRIPTS / script), *args], capture_output=True,
                          text=True, timeout=timeout, env=env, **kw)


def load_script(name):
    """The script as a module (its main(argv) then runs in this process: no start-up cost)."""
    spec = importlib.util.spec_from_file_location(f"script_{name[:-3]}", SCRIPTS / name)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def load_compare():
    return load_script("compare_backends.py")


def usage_error(script, args, capsys):
    """Run the script's main in-process; return (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as info:
        load_script(script).main(list(args))
    out, err = capsys.readouterr()
    return info.value.code, out, err


def test_version_from_the_command_line():
    r = run("compare_backends.py", "--version")
    assert r.returncode == 0, r.stderr
    assert f"convreg {convreg.__version__}" in r.stdout


@pytest.mark.parametrize("script", ALL)
def test_version(script, capsys):
    code, out, _ = usage_error(script, ["--version"], capsys)
    assert code == 0
    assert f"convreg {convreg.__version__}" in out


@pytest.mark.parametrize("script, threads", [(s, "-1") for s in ALL] + [
    ("compare_backends.py", "0"), ("compare_backends.py", "two")])
def test_bad_threads_is_a_usage_error(script, threads, capsys):
    code, out, err = usage_error(script, ["--threads", threads], capsys)
    assert code == 2
    assert "--threads" in err and out == ""


def test_bad_threads_from_the_command_line():
    r = run("compare_backends.py", "--threads", "-1", timeout=30)
    assert r.returncode == 2
    assert "--threads" in r.stderr and "Traceback" not in r.stderr and r.stdout == ""


@pytest.mark.parametrize("args, text", [
    (["--backends", "cython,no-such-backend"], "no-such-backend"),
    (["--backends", "cython,"], "empty name"),
    (["--budget", "0"], "--budget"),
    (["--budget", "-1"], "--budget"),
    (["--budget", "nan"], "--budget"),
    (["--random", "-3"], "--random"),
    (["--anchors", "tensorflow"], "tensorflow"),
    (["--suite", "huge"], "--suite"),
])
def test_compare_usage_errors_before_any_work(args, text, capsys):
    code, out, err = usage_error("compare_backends.py", args, capsys)
    assert code == 2
    assert text in err
    assert out == ""             # nothing ran: no header, no harness


@pytest.mark.parametrize("script, args", [
    ("bench_im2col.py", ["--reps", "0"]), ("bench_overhead.py", ["--inner", "-5"]),
    ("bench_overhead.py", ["--rounds", "0"]), ("bench_direct.py", ["--reps", "-1"]),
    ("bench_im2col.py", ["--cache-kb", "-1"])])
def test_bench_usage_errors(script, args, capsys):
    code, out, err = usage_error(script, args, capsys)
    assert code == 2 and out == ""


def test_plot_without_matplotlib_fails_before_benchmarking(capsys):
    try:
        import matplotlib  # noqa: F401
        pytest.skip("matplotlib is installed")
    except ImportError:
        pass
    code, out, err = usage_error("compare_backends.py", ["--plot", "out.png"], capsys)
    assert code == 2 and "matplotlib" in err and out == ""


def test_closed_pipe_exits_quietly(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, str(SCRIPTS / "compare_backends.py"), *TINY,
                             "--no-check", "--anchors", "none"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, cwd=tmp_path)
    first = proc.stdout.readline()
    proc.stdout.close()                   # like `| head -1`
    _, err = proc.communicate(timeout=60)
    assert first.startswith(b"convreg")
    assert b"Traceback" not in err and b"BrokenPipe" not in err, err.decode()


def test_compare_end_to_end_json(tmp_path):
    out = tmp_path / "out.json"
    r = run("compare_backends.py", *TINY, "--backends", "cython,cython-direct",
            "--anchors", "none", "--json", str(out), cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "load at start" in r.stdout and "load at end" in r.stdout
    assert "matmul" in r.stdout
    doc = json.loads(out.read_text())
    for key in ("command", "versions", "threads", "dtype", "load_start", "load_end",
                "matmul_gflops", "harness", "layers", "engines", "anchors"):
        assert key in doc, key
    assert "compare_backends.py" in doc["command"] and "--json" in doc["command"]
    assert doc["dtype"] == "float32" and doc["threads"] >= 1
    assert doc["harness"]["ok"] is True
    (layer,) = doc["layers"]
    for key in ("layer", "gflop", "torch_direct_ms", "ms", "gflops", "ratio_vs_torch_direct",
                "status", "best", "rounds"):
        assert key in layer, key
    assert layer["ms"]["cython"] > 0 and layer["gflops"]["cython"] > 0
    assert layer["status"]["cython"] == "ok"


def test_compare_anchors(tmp_path):
    """torch called directly is the anchor; onnxruntime and OpenVINO when installed."""
    pytest.importorskip("torch")
    out = tmp_path / "out.json"
    r = run("compare_backends.py", *TINY, "--no-check", "--backends", "cython",
            "--anchors", "torch,onnxruntime,openvino", "--json", str(out), cwd=tmp_path,
            timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(out.read_text())
    (layer,) = doc["layers"]
    assert layer["torch_direct_ms"] > 0
    assert layer["status"]["F.conv2d"] == "ok"
    assert layer["ratio_vs_torch_direct"]["cython"] > 0
    for anchor, label in (("onnxruntime", "ort"), ("openvino", "openvino")):
        if anchor in doc["anchors"]:
            assert layer["status"][label] == "ok", layer["status"]
            assert layer["ratio_vs_torch_direct"][label] > 0
        else:
            assert anchor in doc["anchors_skipped"]


class Decliner(Backend):
    name = "test-decliner"

    def supports(self, spec):
        return no("refuses everything (test)")

    def conv2d(self, spec, x, w, b):   # pragma: no cover - never called
        raise AssertionError("called although it declined")


class Wrong(Backend):
    name = "test-wrong"

    def conv2d(self, spec, x, w, b):
        return np.zeros(spec.output_shape, dtype=spec.dtype)


@pytest.fixture
def plugins():
    convreg.register_backend("test-decliner", Decliner())
    convreg.register_backend("test-wrong", Wrong())
    yield
    convreg.unregister_backend("test-decliner")
    convreg.unregister_backend("test-wrong")


def test_declining_is_not_disagreeing(plugins, tmp_path, capsys):
    mod = load_compare()
    out = tmp_path / "d.json"
    code = mod.main([*TINY, "--anchors", "none", "--backends", "cython,test-decliner",
                     "--json", str(out)])
    text = capsys.readouterr().out
    assert code == 0, text
    doc = json.loads(out.read_text())
    summary = doc["harness"]["summary"]["test-decliner"]
    assert summary["declined"] == summary["cases"] and summary["disagree"] == 0
    assert "refuses everything" in text
    (layer,) = doc["layers"]
    assert layer["status"]["test-decliner"].startswith("declined")
    assert layer["ms"]["test-decliner"] is None
    assert "declined" in text


def test_disagreeing_backend_is_marked_and_never_best(plugins, tmp_path, capsys):
    mod = load_compare()
    out = tmp_path / "w.json"
    code = mod.main([*TINY, "--anchors", "none", "--backends", "cython,test-wrong",
                     "--json", str(out)])
    captured = capsys.readouterr()
    assert code == 1
    assert "DISAGREE" in captured.out
    assert "more disagreements" in captured.out          # the list is cut and says so
    doc = json.loads(out.read_text())
    (layer,) = doc["layers"]
    assert layer["best"] != "test-wrong"
    assert "test-wrong" in doc["disagreeing"]
    row = next(line for line in captured.out.splitlines() if line.startswith("tiny"))
    assert "!" in row


def test_diff_torch_usage_and_a_small_run(capsys):
    code, _, err = usage_error("diff_torch.py", ["--backends", "nope"], capsys)
    assert code == 2 and "not available here: nope" in err
    pytest.importorskip("torch")
    mod = load_script("diff_torch.py")
    assert mod.main(["--configs", "12", "--seed", "3", "--backends", "python,cython"]) == 0
    out = capsys.readouterr().out
    assert "12 configurations" in out and "0 outside the bound" in out


def test_diff_torch_reports_a_wrong_backend(monkeypatch, capsys):
    """A backend off by a little more than the bound is reported and fails the run."""
    pytest.importorskip("torch")

    class Off(Backend):
        name = "off-by-bound"

        def conv2d(self, spec, x, w, b, ctx=None):
            out = convreg.get_backend("python").conv2d(spec, x, w, b)
            return out + np.asarray(1e-2, out.dtype)

    convreg.register_backend("off-by-bound", Off(), replace=True)
    try:
        mod = load_script("diff_torch.py")
        assert mod.main(["--configs", "3", "--backends", "off-by-bound"]) == 1
    finally:
        convreg.unregister_backend("off-by-bound")
    out = capsys.readouterr().out
    assert "FAIL off-by-bound conv2d" in out and "3 outside the bound" in out
