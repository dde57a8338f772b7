"""The thread count of the compiled backends.

Explicit settings (``use_threads`` > ``set_threads`` > ``CONVREG_THREADS`` > config
``threads``) win. Without one, the count follows the ecosystem's conventions, as
scikit-learn's ``_openmp_effective_n_threads`` does: the smallest of

* the CPUs this process may run on (affinity),
* the cgroup v2 / v1 CPU quota of its container (``cpu.max``,
  ``cpu.cfs_quota_us / cpu.cfs_period_us``, rounded up),
* ``OMP_NUM_THREADS`` (its first value, as OpenMP reads a list),
* the OpenMP runtime's current limit (``omp_get_max_threads()`` of the runtime convreg's
  kernels use), which is what ``threadpoolctl.threadpool_limits(n)`` (or
  ``user_api="openmp"``) lowers; it is asked only once a compiled module is loaded.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys

from .._errors import ConfigError
from .chain import Setting
from .values import MAX_THREADS, parse_threads

CGROUP_ROOT = "/sys/fs/cgroup"       # tests point the reader elsewhere
PROC_CGROUP = "/proc/self/cgroup"


def affinity_cores() -> int:
    """CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _read(path):
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError:
        return None


def _quota_v2(text):
    parts = (text or "").split()
    if len(parts) == 2 and parts[0] != "max":
        try:
            quota, period = int(parts[0]), int(parts[1])
        except ValueError:
            return None
        if quota > 0 and period > 0:
            return max(1, math.ceil(quota / period))
    return None


def _quota_v1(quota_text, period_text):
    try:
        quota, period = int(quota_text), int(period_text)
    except (TypeError, ValueError):
        return None
    if quota > 0 and period > 0:
        return max(1, math.ceil(quota / period))
    return None


def cgroup_cpu_limit(root=None, proc_cgroup=None):
    """The CPU quota of this process's cgroup (and its parents), rounded up; None if none.

    Reads cgroup v2 ``cpu.max`` along the process's cgroup path up to the root, and
    cgroup v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` of its cpu controller."""
    root = root or CGROUP_ROOT
    lines = (_read(proc_cgroup or PROC_CGROUP) or "").splitlines()
    limits = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        rel = path.strip("/")
        if controllers == "":                       # v2 unified hierarchy
            dirs = [rel]
            while rel:
                rel = os.path.dirname(rel)
                dirs.append(rel)
            for d in dirs:
                q = _quota_v2(_read(os.path.join(root, d, "cpu.max")))
                if q:
                    limits.append(q)
        elif "cpu" in controllers.split(","):       # v1 cpu controller
            for mount in (controllers, "cpu", "cpu,cpuacct"):
                base = os.path.join(root, mount, rel)
                q = _quota_v1(_read(os.path.join(base, "cpu.cfs_quota_us")),
                              _read(os.path.join(base, "cpu.cfs_period_us")))
                if q:
                    limits.append(q)
                    break
    if not lines:   # no /proc/self/cgroup: look at the root only
        q = _quota_v2(_read(os.path.join(root, "cpu.max"))) or _quota_v1(
            _read(os.path.join(root, "cpu", "cpu.cfs_quota_us")),
            _read(os.path.join(root, "cpu", "cpu.cfs_period_us")))
        if q:
            limits.append(q)
    return min(limits) if limits else None


def machine_limits() -> tuple:
    """(affinity, cgroup quota or None), as read now."""
    return affinity_cores(), cgroup_cpu_limit()


def omp_num_threads(raw):
    """The first value of an OMP_NUM_THREADS list, or None when unset or not a count."""
    if not raw:
        return None
    try:
        value = int(raw.split(",")[0].strip())
    except ValueError:
        return None
    return value if value >= 1 else None


def _runtime_limit():
    """omp_get_max_threads() of convreg's OpenMP runtime, when a compiled module is loaded
    (never imports one: a pure-Python call must not load compiled code)."""
    pad = sys.modules.get("convreg._pad")
    query = getattr(pad, "omp_max_threads", None)
    if query is None or not getattr(pad, "HAVE_OPENMP", False):
        return None
    return query()


def default_threads(snap):
    """(count, source) when no explicit setting is made."""
    runtime = _runtime_limit()
    memo = snap._memo.get("default threads")
    if memo is not None and memo[0] == runtime:
        return memo[1]
    found = _default_threads(snap, runtime)
    snap._memo["default threads"] = (runtime, found)
    return found


def _default_threads(snap, runtime):
    limits = snap._memo.get("machine limits")
    if limits is None:      # read with the environment: at most once per second
        limits = snap._memo["machine limits"] = machine_limits()
    affinity, quota = limits
    found = [(affinity, f"affinity: {affinity} CPUs")]
    if quota is not None:
        found.append((quota, f"cgroup CPU quota {quota}"))
    omp = omp_num_threads(snap.environ.get("OMP_NUM_THREADS"))
    if omp is not None:
        found.append((omp, f"OMP_NUM_THREADS={omp}"))
    if runtime is not None and runtime < affinity:
        found.append((runtime, f"OpenMP runtime limit {runtime} (threadpoolctl)"))
    value, why = min(found, key=lambda item: item[0])
    return min(value, MAX_THREADS), f"default ({why})"


def _env_threads(raw, label):
    try:
        return parse_threads(int(raw.strip()), label, ConfigError)
    except (ValueError, ConfigError):
        raise ConfigError(f"{label} must be a whole number between 1 and {MAX_THREADS}, but "
                          f"got {label}={raw!r}") from None


THREADS = Setting("threads", env="CONVREG_THREADS", parse_env=_env_threads,
                  file_value=lambda cfg: cfg.threads, default=default_threads)


def set_threads(n) -> None:
    """Set the process-wide thread count of the compiled backends (None: back to default)."""
    THREADS.set_process(None if n is None else parse_threads(n, "threads"))


@contextlib.contextmanager
def use_threads(n):
    """Within the block (this thread / async task only), compiled backends use ``n`` threads."""
    with THREADS.use(parse_threads(n, "threads")):
        yield


def threads_and_source(snap=None):
    """(thread count, the rule that chose it) for a call made now."""
    return THREADS.resolve(snap=snap)


def get_threads() -> int:
    """The thread count a compiled backend uses for a call made now."""
    return THREADS.resolve()[0]
