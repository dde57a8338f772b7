"""``python -m convreg {config,backends,check}``."""

from __future__ import annotations

import os
import subprocess
import re
import sys

import pytest

import convreg
from convreg.__main__ import main


def run(*args, env=None, cwd=None):
    full = {k: v for k, v in os.environ.items() if not k.startswith("CONVREG_")}
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "convreg", *args], capture_output=True,
                          text=True, timeout=300, env=full, cwd=cwd)


def rows(text):
    return {line.split()[0]: line for line in text.splitlines() if line.strip()}


def test_config_subprocess_default(tmp_path):
    out = run("config", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    r = rows(out.stdout)
    assert r["config"].split()[:3] == ["config", "file", "none"]
    assert r["backend"].split()[1] in ("python", "cython") and "<- default" in r["backend"]
    assert "threads" in r


def test_config_subprocess_env_and_file(tmp_path):
    (tmp_path / "convreg.toml").write_text('backend = "python"\nthreads = 1\n')
    out = run("config", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    r = rows(out.stdout)
    path = str(tmp_path / "convreg.toml")
    assert path in r["config"] and "convreg.toml" in r["config"]
    assert r["backend"].split()[1] == "python" and f"<- config {path}" in r["backend"]
    assert r["threads"].split()[1] == "1" and f"<- config {path}" in r["threads"]

    out = run("config", cwd=tmp_path, env={"CONVREG_BACKEND": "python", "CONVREG_THREADS": "2"})
    r = rows(out.stdout)
    assert r["backend"].split()[1] == "python" and "<- CONVREG_BACKEND" in r["backend"]
    assert r["threads"].split()[1] == "2" and "<- CONVREG_THREADS" in r["threads"]


def test_config_in_process(capsys, mock):
    convreg.set_backend("mock")
    assert main(["config"]) == 0
    r = rows(capsys.readouterr().out)
    assert r["backend"].split()[1] == "mock" and "<- set_backend" in r["backend"]


def test_config_shows_backend_settings(capsys, register_mock, isolated):
    from convreg import OptionSpec

    m = register_mock("mock-opt")
    m.options = {"workspace_mb": OptionSpec(int, 256, minimum=0)}
    assert main(["config"]) == 0
    assert re.search(r"backends\.mock-opt\.workspace_mb +256 +<- default",
                     capsys.readouterr().out)
    (isolated / "convreg.toml").write_text("[backends.mock-opt]\nworkspace_mb = 8\n")
    assert main(["config"]) == 0
    line = rows(capsys.readouterr().out)["backends.mock-opt.workspace_mb"]
    assert line.split()[1] == "8" and "<- config" in line


def test_config_error_exit_status_2(capsys, isolated):
    (isolated / "convreg.toml").write_text("backend = [\n")
    assert main(["config"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("convreg: ") and "malformed TOML" in err


def test_backends_subprocess(tmp_path):
    out = run("backends", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert any(line.startswith("python: pure-Python reference") for line in lines)
    i = next(i for i, line in enumerate(lines) if line.startswith("python:"))
    assert lines[i + 1].strip() == "padding modes: circular, reflect, replicate, zeros native"


def test_backends_marks_plugins(capsys, mock):
    assert main(["backends"]) == 0
    out = capsys.readouterr().out
    assert "mock (plugin):" in out and "python:" in out


def test_check_subprocess(tmp_path):
    out = run("check", "--backends", "python", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["backend", "cases", "agree", "declined", "worst", "err/bound", "verdict"]
    assert lines[2].split()[0] == "python" and lines[2].split()[-1] == "ok"
    assert "all backends agree" in out.stderr


def test_check_unknown_backend_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["check", "--backends", "nope", "--random", "0"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "unknown or unavailable backend 'nope'" in err and "python" in err


@pytest.mark.parametrize("argv", [[], ["frobnicate"], ["check", "--random", "x"]],
                         ids=["no-command", "unknown-command", "bad-int"])
def test_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2


def test_check_from_an_unbuilt_source_tree_warns_and_fails(tmp_path):
    """A clone whose extensions are not built: import warns with the fix, and check exits
    1 naming the missing built-in backends instead of passing over python alone."""
    import shutil

    src = os.path.dirname(convreg.__file__)
    shutil.copytree(src, tmp_path / "convreg",
                    ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__"))
    (tmp_path / "setup.py").write_text("")
    (tmp_path / "pyx").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVREG_")}
    env["PYTHONPATH"] = str(tmp_path)
    # An editable install's import hook would find the built modules elsewhere: drop it,
    # as a clone run after a non-editable install would not have it.
    code = ("import sys, runpy\n"
            "sys.meta_path[:] = [f for f in sys.meta_path\n"
            "                    if 'editable' not in repr(f).lower()]\n"
            "sys.argv = ['convreg', 'check', '--random', '0']\n"
            "runpy.run_module('convreg', run_name='__main__', alter_sys=True)\n")
    out = subprocess.run([sys.executable, "-c", code],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 1
    assert "compiled extensions are not built" in out.stderr and "pip install -e ." in out.stderr
    assert "MISSING built-in backend 'cython-direct'" in out.stderr
    assert "all backends agree" not in out.stderr
