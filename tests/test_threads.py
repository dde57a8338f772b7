"""The default thread count follows the ecosystem's conventions (issue 13): CPU affinity,
cgroup v2/v1 quotas, OMP_NUM_THREADS, threadpoolctl limits; explicit convreg settings win."""

from __future__ import annotations

import os

import numpy as np
import pytest

import convreg
from convreg._settings import threads as T


@pytest.fixture
def machine(monkeypatch):
    """Set the machine's affinity / cgroup quota / OpenMP runtime limit for one test."""
    state = {"affinity": 8, "quota": None, "runtime": None}
    monkeypatch.setattr(T, "machine_limits", lambda: (state["affinity"], state["quota"]))
    monkeypatch.setattr(T, "_runtime_limit", lambda: state["runtime"])
    return state


def _cgroup(tmp_path, proc_lines, files):
    root = tmp_path / "cg"
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    proc = tmp_path / "proc_cgroup"
    proc.write_text(proc_lines)
    return str(root), str(proc)


@pytest.mark.parametrize("text, expected", [
    ("max 100000\n", None), ("200000 100000\n", 2), ("150000 100000\n", 2),
    ("50000 100000\n", 1), ("garbage\n", None)], ids=["max", "two", "round-up", "half", "bad"])
def test_cgroup_v2_cpu_max(tmp_path, text, expected):
    root, proc = _cgroup(tmp_path, "0::/app.slice/job\n", {"app.slice/job/cpu.max": text})
    assert T.cgroup_cpu_limit(root, proc) == expected


def test_cgroup_v2_parent_quota_applies(tmp_path):
    root, proc = _cgroup(tmp_path, "0::/a/b\n", {"a/b/cpu.max": "max 100000\n",
                                                 "a/cpu.max": "300000 100000\n"})
    assert T.cgroup_cpu_limit(root, proc) == 3


@pytest.mark.parametrize("quota, period, expected", [("-1", "100000", None),
                                                     ("250000", "100000", 3),
                                                     ("100000", "100000", 1)])
def test_cgroup_v1_cfs_quota(tmp_path, quota, period, expected):
    root, proc = _cgroup(tmp_path, "4:cpu,cpuacct:/docker/abc\n",
                         {"cpu,cpuacct/docker/abc/cpu.cfs_quota_us": quota,
                          "cpu,cpuacct/docker/abc/cpu.cfs_period_us": period})
    assert T.cgroup_cpu_limit(root, proc) == expected


def test_no_cgroup_files_means_no_limit(tmp_path):
    root, proc = _cgroup(tmp_path, "0::/\n", {})
    assert T.cgroup_cpu_limit(root, proc) is None


@pytest.mark.parametrize("raw, expected", [("3", 3), ("4,2", 4), (" 2 ", 2), ("0", None),
                                           ("x", None), ("", None)])
def test_omp_num_threads_first_value(raw, expected):
    assert T.omp_num_threads(raw) == expected


def test_default_is_affinity_alone(machine):
    assert convreg.get_threads() == 8
    assert T.threads_and_source()[1] == "default (affinity: 8 CPUs)"


def test_each_limit_alone_and_together(machine, monkeypatch):
    machine["quota"] = 2
    assert T.threads_and_source() == (2, "default (cgroup CPU quota 2)")
    machine["quota"] = None
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert T.threads_and_source() == (3, "default (OMP_NUM_THREADS=3)")
    monkeypatch.delenv("OMP_NUM_THREADS")
    machine["runtime"] = 1
    assert T.threads_and_source() == (1, "default (OpenMP runtime limit 1 (threadpoolctl))")
    # together: the smallest wins
    machine.update(quota=4, runtime=5)
    monkeypatch.setenv("OMP_NUM_THREADS", "6,2")
    assert T.threads_and_source()[0] == 4
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert T.threads_and_source() == (1, "default (OMP_NUM_THREADS=1)")


def test_explicit_settings_win_over_the_limits(machine, monkeypatch, isolated):
    machine.update(quota=1, runtime=1)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    (isolated / "convreg.toml").write_text("threads = 3\n")
    assert T.threads_and_source()[0] == 3
    monkeypatch.setenv("CONVREG_THREADS", "4")
    assert T.threads_and_source() == (4, "CONVREG_THREADS")
    convreg.set_threads(5)
    assert T.threads_and_source() == (5, "set_threads")
    with convreg.use_threads(6):
        assert T.threads_and_source() == (6, "use_threads")


def test_config_command_says_where_threads_came_from(machine, monkeypatch, capsys):
    from convreg.__main__ import main

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert main(["config"]) == 0
    line = [l for l in capsys.readouterr().out.splitlines() if l.startswith("threads")][0]
    assert line.split()[1] == "1" and "OMP_NUM_THREADS=1" in line


def _has_openmp():
    try:
        from convreg import _pad
    except ImportError:
        return False
    return bool(_pad.HAVE_OPENMP) and hasattr(_pad, "omp_max_threads")


needs_openmp = pytest.mark.skipif(not _has_openmp(), reason="needs the OpenMP build")


@needs_openmp
def test_threadpoolctl_limit_reaches_convreg():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from convreg import _pad  # noqa: F401  (the runtime convreg's kernels use is loaded)

    before = convreg.get_threads()
    with threadpoolctl.threadpool_limits(limits=1):
        assert convreg.get_threads() == 1
        assert "threadpoolctl" in T.threads_and_source()[1] or before == 1
    with threadpoolctl.threadpool_limits(limits=1, user_api="openmp"):
        assert convreg.get_threads() == 1
    assert convreg.get_threads() == before
    libs = threadpoolctl.threadpool_info()
    assert any(lib["user_api"] == "openmp" for lib in libs)


@needs_openmp
@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs two CPUs")
def test_long_call_under_threadpool_limits_uses_one_core(monkeypatch):
    """The thread count a call hands the compiled kernel (the OpenMP team it starts) is 1
    under threadpoolctl's limit and the default otherwise, for a call large enough to be
    threaded."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    if "cython-direct" not in convreg.available_backends():
        pytest.skip("compiled backends not built")
    be = convreg.get_backend("cython-direct")
    teams = []

    class Recording:
        def __getattr__(self, name):
            return getattr(real, name)

        def conv2d_direct(self, *args):
            teams.append(args[-1])
            return real.conv2d_direct(*args)

    real = be._mod
    monkeypatch.setattr(be, "_mod", Recording())
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 64, 56, 56)).astype(np.float32)
    w = rng.standard_normal((64, 64, 3, 3)).astype(np.float32)
    default = convreg.get_threads()
    assert default >= 2
    convreg.conv2d(x, w, padding=1, backend="cython-direct")
    with threadpoolctl.threadpool_limits(limits=1):
        convreg.conv2d(x, w, padding=1, backend="cython-direct")
    convreg.conv2d(x, w, padding=1, backend="cython-direct")
    assert teams == [default, 1, default]