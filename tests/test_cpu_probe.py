"""The FMA-peak probe the benchmark scripts quote speeds against (convreg._cpu)."""

import pytest

cpu = pytest.importorskip("convreg._cpu", reason="convreg._cpu is not built")


class _Clock:
    """A stand-in for time.perf_counter that advances ``step`` seconds per reading, so the
    probe's arithmetic is checked without depending on how fast this machine is."""

    def __init__(self, step):
        self.now, self.step = 0.0, step

    def __call__(self):
        self.now += self.step
        return self.now


def _rate(monkeypatch, threads, step):
    monkeypatch.setattr("time.perf_counter", _Clock(step))
    return cpu.fma_peak_gflops(threads, 0.02)


def test_fma_peak_counts_every_thread_and_divides_by_the_time(monkeypatch):
    one = _rate(monkeypatch, 1, 1.0)       # one timed round: elapsed 1 s >= seconds / 4
    assert one > 0
    # each thread runs the same loops: twice the threads, twice the work in the same time
    assert _rate(monkeypatch, 2, 1.0) == pytest.approx(2 * one)
    # the same work in half the time is twice the rate
    assert _rate(monkeypatch, 1, 0.5) == pytest.approx(2 * one)
    # a round shorter than seconds / 4 (5 ms here) is repeated with twice the
    # iterations; the rate is the work of the last, timed round over its time: rounds of
    # 1 ms and 2 ms, then one of 10 ms with 4 x the first round's iterations
    readings = iter([0.0, 0.001, 0.0, 0.002, 0.0, 0.010])
    monkeypatch.setattr("time.perf_counter", lambda: next(readings))
    assert cpu.fma_peak_gflops(1, 0.02) == pytest.approx(4 * one / 0.010)


@pytest.mark.parametrize("args,match", [((0,), "threads must be between 1 and 4096, got 0"),
                                        ((5000,), "threads must be between 1 and 4096"),
                                        ((1, 0.0), r"seconds must be in \(0, 60\], got 0"),
                                        ((1, float("nan")), "seconds must be in"),
                                        ((1, 61.0), "seconds must be in")])
def test_fma_peak_rejects_bad_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        cpu.fma_peak_gflops(*args)
