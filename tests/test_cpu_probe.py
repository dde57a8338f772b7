"""The FMA-peak probe the benchmark scripts quote speeds against (convreg._cpu)."""

import pytest

cpu = pytest.importorskip("convreg._cpu", reason="convreg._cpu is not built")


def test_fma_peak_is_a_positive_rate_that_grows_with_threads():
    one = cpu.fma_peak_gflops(1, 0.02)
    assert one > 0.1          # even a scalar SSE loop does far more than 0.1 GFLOP/s
    # two threads run two loops: the total work doubles, so the rate cannot halve
    assert cpu.fma_peak_gflops(2, 0.02) > 0.5 * one


@pytest.mark.parametrize("args,match", [((0,), "threads must be between 1 and 4096, got 0"),
                                        ((5000,), "threads must be between 1 and 4096"),
                                        ((1, 0.0), r"seconds must be in \(0, 60\], got 0"),
                                        ((1, float("nan")), "seconds must be in"),
                                        ((1, 61.0), "seconds must be in")])
def test_fma_peak_rejects_bad_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        cpu.fma_peak_gflops(*args)
