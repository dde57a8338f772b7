"""The tuning cache: which concrete backend measured fastest for a call's shape, here.

One JSON file, ``$XDG_CACHE_HOME/convreg/tuning.json`` (default ``~/.cache/convreg/``)::

    {"format": 1, "entries": {"<key>": {"machine": {...}, "shape": {...}, "op": "conv2d",
                                       "winner": "cython-im2col", "times": {name: seconds},
                                       "runs": 3, "when": "2026-12-02T10:31:07Z"}}}

An entry's key names everything its answer depends on: the CPU model and the SIMD variant
convreg runs, the thread count, convreg's version, the candidate backends and the call's
shape (spec fields and operation). The file is read once per process on first use and
then only written: a new measurement is merged into what is on disk at that moment, under
an exclusive lock file where the platform has ``fcntl``, and written to a temporary file in
the same directory that ``os.replace`` puts in place, so no reader ever sees a partial file
and processes tuning at once lose nothing. A file that is not valid JSON, has another
format or the wrong structure is warned about (RuntimeWarning naming the file), ignored,
and replaced by the next write. Failing to write (read-only home, full disk) is warned
about once; the process keeps its measurements in memory.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import tempfile
import threading
import warnings

FORMAT = 1
FILE_NAME = "tuning.json"

_lock = threading.Lock()
_state = {"path": None, "entries": None, "write_warned": False}
_machine = None


def cache_dir() -> str:
    """``$XDG_CACHE_HOME/convreg`` (default ``~/.cache/convreg``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "convreg")


def cache_path() -> str:
    return os.path.join(cache_dir(), FILE_NAME)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine() -> dict:
    """The parts of the key that do not change within a process."""
    global _machine
    if _machine is None:
        from .. import __version__
        from ..backends._simd import chosen_variant

        _machine = {"cpu": cpu_model(), "simd": chosen_variant(), "convreg": __version__}
    return _machine


def shape_fields(spec) -> dict:
    """The spec fields an answer depends on (``unbatched`` is a view of the same call and
    the bias costs one add per output: neither tells the candidates apart)."""
    return {k: v for k, v in vars(spec).items() if k not in ("unbatched", "has_bias")}


def make_key(spec, op: str, threads: int, candidates) -> str:
    m = machine()
    shape = ",".join(f"{k}={v}" for k, v in shape_fields(spec).items())
    return (f"cpu={m['cpu']}|simd={m['simd']}|convreg={m['convreg']}|threads={threads}"
            f"|backends={','.join(sorted(candidates))}|op={op}|{shape}")


# -- reading ---------------------------------------------------------------------------
def _valid_entry(entry) -> bool:
    return (isinstance(entry, dict) and isinstance(entry.get("winner"), str)
            and isinstance(entry.get("times"), dict)
            and all(isinstance(t, (int, float)) for t in entry["times"].values())
            and entry["winner"] in entry["times"])


def _read(path, warn: bool) -> dict:
    """The entries of the file at ``path``; {} (with a warning if ``warn``) when it is
    missing, unreadable, corrupt, of another format or of the wrong structure."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        problem = f"cannot be read ({exc})"
    else:
        try:
            data = json.loads(text)
        except ValueError as exc:
            problem = f"is not valid JSON ({exc})"
        else:
            if not isinstance(data, dict) or data.get("format") != FORMAT:
                got = data.get("format") if isinstance(data, dict) else type(data).__name__
                problem = f"has format {got!r}, expected {FORMAT} (another convreg wrote it?)"
            elif not isinstance(data.get("entries"), dict):
                problem = "has no 'entries' table"
            else:
                entries = data["entries"]
                good = {k: e for k, e in entries.items() if _valid_entry(e)}
                if len(good) == len(entries):
                    return good
                problem = f"has {len(entries) - len(good)} malformed entries"
                if warn:
                    warnings.warn(f"convreg: the tuning cache {path} {problem}; they are "
                                  "ignored", RuntimeWarning, stacklevel=4)
                return good
    if warn:
        warnings.warn(f"convreg: the tuning cache {path} {problem}; it is ignored and will be "
                      "rewritten by the next measurement", RuntimeWarning, stacklevel=4)
    return {}


def entries() -> dict:
    """Every entry known to this process (the file is read on the first call only)."""
    got = _state["entries"]
    if got is None:
        with _lock:
            got = _state["entries"]
            if got is None:
                path = cache_path()
                got = _read(path, warn=True)
                _state["path"], _state["entries"] = path, got
    return got


def lookup(key: str):
    """The entry for ``key``, or None."""
    return entries().get(key)


# -- writing ---------------------------------------------------------------------------
@contextlib.contextmanager
def _exclusive(directory):
    try:
        import fcntl
    except ImportError:          # no advisory locks: os.replace alone keeps files whole
        yield
        return
    with open(os.path.join(directory, FILE_NAME + ".lock"), "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _write_merged(path, new: dict) -> dict:
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    with _exclusive(directory):
        merged = _read(path, warn=False)
        merged.update(new)
        fd, tmp = tempfile.mkstemp(prefix=".tuning-", suffix=".json", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump({"format": FORMAT, "entries": merged}, fh, indent=1, sort_keys=True)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    return merged


def store(key: str, entry: dict) -> None:
    """Remember ``entry`` in this process and merge it into the file."""
    known = entries()
    with _lock:
        known[key] = entry
        path = _state["path"]
        try:
            merged = _write_merged(path, {key: entry})
        except OSError as exc:
            if not _state["write_warned"]:
                _state["write_warned"] = True
                warnings.warn(f"convreg: cannot write the tuning cache {path} ({exc}); "
                              "measurements are kept for this process only", RuntimeWarning,
                              stacklevel=3)
            return
        for k, e in merged.items():      # what other processes measured meanwhile
            known.setdefault(k, e)


def clear() -> str:
    """Delete the cache file (and forget this process's entries); returns its path. The
    lock file stays: a writer in another process may hold it."""
    path = cache_path()
    with _lock:
        directory = os.path.dirname(path)
        if os.path.isdir(directory):
            with _exclusive(directory):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
        _state["entries"] = None
    return path


def reset() -> None:
    """Forget what this process read (the next lookup reads the file again, at the path
    the environment names then)."""
    with _lock:
        _state.update(path=None, entries=None, write_warned=False)
