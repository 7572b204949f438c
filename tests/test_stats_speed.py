"""Summary statistics of repeated measurements, and the timing loop behind every speed figure."""

import math
import statistics
import time
from pathlib import Path

import pytest
import torch

from harness.speed import TimingConfig, time_calls
from harness.stats import Summary


def test_summary_statistics_match_hand_computed_values():
    """Samples 4, 1, 3, 2, 10: median 3, q1 2, q3 4, IQR 2, mean 4, stdev sqrt(12.5)."""
    summary = Summary((4.0, 1.0, 3.0, 2.0, 10.0))
    assert summary.n == 5
    assert summary.median == 3.0
    assert summary.q1 == 2.0
    assert summary.q3 == 4.0
    assert summary.iqr == 2.0
    assert summary.mean == 4.0
    assert summary.stdev == pytest.approx(math.sqrt(12.5))
    assert (summary.min, summary.max) == (1.0, 10.0)


def test_summary_quartiles_interpolate_like_statistics_inclusive():
    """Quartiles of an even-sized sample interpolate as statistics.quantiles(method="inclusive")."""
    samples = (0.5, 0.1, 0.9, 0.3, 0.7, 0.2)
    q1, median, q3 = statistics.quantiles(samples, n=4, method="inclusive")
    summary = Summary(samples)
    assert (summary.q1, summary.median, summary.q3) == pytest.approx((q1, median, q3))
    assert summary.q1 == pytest.approx(0.225)  # 0.2 + 0.25 * (0.3 - 0.2)


def test_single_sample_has_zero_spread():
    """One sample: median = mean = the sample, stdev 0, IQR 0, stable."""
    summary = Summary((0.25,))
    assert (summary.median, summary.mean, summary.stdev, summary.iqr) == (0.25, 0.25, 0.0, 0.0)
    assert not summary.unstable


def test_unstable_flag_follows_iqr_over_median():
    """IQR/median above 10% is unstable; 1.5% is not."""
    assert Summary((4.0, 1.0, 3.0, 2.0, 10.0)).unstable  # 2 / 3
    assert not Summary((1.00, 1.01, 1.02, 1.03)).unstable  # 0.015 / 1.015


@pytest.mark.parametrize("samples", [(), (1.0, float("nan")), (float("inf"),), (1.0, -float("inf"))])
def test_summary_rejects_empty_or_non_finite_samples(samples):
    """An empty sample or a NaN/inf measurement is refused, not averaged."""
    with pytest.raises(ValueError):
        Summary(samples)


def test_summary_as_dict_keeps_the_raw_samples():
    """as_dict carries every statistic and the samples that a report stores."""
    data = Summary((2, 1, 3)).as_dict()
    assert data["samples"] == [2.0, 1.0, 3.0]
    assert data["median"] == 2.0 and data["n"] == 3 and data["iqr"] == 1.0


def test_time_calls_measures_a_sleep_in_seconds():
    """A 10 ms sleep is reported as about 0.01 s per call, after the warm-ups, over exactly min_repeats calls."""
    calls = []

    def workload():
        calls.append(time.perf_counter())
        time.sleep(0.01)

    summary = time_calls(workload, TimingConfig(warmup=2, min_repeats=4, max_repeats=50, min_time_s=0.0))
    assert summary.n == 4
    assert len(calls) == 2 + 4
    assert 0.009 <= summary.median < 0.05
    assert all(s >= 0.009 for s in summary.samples)


def test_time_calls_repeats_until_min_time_within_max_repeats():
    """With min_time_s set, calls repeat until that much time is spent, never beyond max_repeats."""
    summary = time_calls(lambda: time.sleep(0.005), TimingConfig(warmup=0, min_repeats=2, max_repeats=100, min_time_s=0.05))
    assert sum(summary.samples) >= 0.05
    assert 2 <= summary.n <= 11
    capped = time_calls(lambda: time.sleep(0.005), TimingConfig(warmup=0, min_repeats=2, max_repeats=3, min_time_s=10.0))
    assert capped.n == 3


def test_last_step_output_gradient_is_the_gradient_of_the_last_step_sum():
    """The output gradient the speed measurement hands to autograd is d(y[-1].sum())/dy, and
    with it every parameter gets the gradient of that loss."""
    from harness.speed import last_step_output_gradient

    torch.manual_seed(0)
    lstm = torch.nn.LSTM(3, 5)
    x = torch.randn(7, 2, 3)
    y, _ = lstm(x)
    grad_y = last_step_output_gradient(y)
    assert grad_y.shape == (7, 2, 5)
    assert float(grad_y[-1].sum()) == 10.0 and float(grad_y[:-1].abs().sum()) == 0.0
    params = list(lstm.parameters())
    expected = torch.autograd.grad(y[-1].sum(), params, retain_graph=True)
    got = torch.autograd.grad(y, params, grad_outputs=grad_y)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_a_cell_that_writes_into_its_output_gradient_is_refused():
    """Timed calls share one output gradient, so a backward that changes it in place would
    make later calls time other work: the measurement says so instead of storing a time."""
    from harness.cells import NumpyCell
    from harness.errors import CellContractError
    from harness.speed import measure_speed
    from plugins.numpy_rnn import NumpyTanhRNN

    class Scribbler(NumpyTanhRNN):
        def backward(self, cache, dy, dstate):
            dy *= 2.0
            return super().backward(cache, dy, dstate)

    torch.manual_seed(0)
    config = TimingConfig(warmup=1, min_repeats=2, max_repeats=2, min_time_s=0.0)
    with pytest.raises(CellContractError, match="modified the gradient of its output in place"):
        measure_speed(NumpyCell(Scribbler(3, 4)), 2, 5, 3, "cpu", config)
    result = measure_speed(NumpyCell(NumpyTanhRNN(3, 4)), 2, 5, 3, "cpu", config)
    assert result.forward_backward.median > 0


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="CPU peak memory needs /proc/self/clear_refs")
def test_cpu_peak_memory_counts_the_hidden_states_a_numpy_cell_keeps_between_calls(registry):
    """numpy-rnn keeps its (T + 1, B, H) hidden-state buffer between calls for speed; the
    peak-memory figure still counts it (8.2 MB here), as it counts torch cells' activations."""
    from harness.cells import build_cell
    from harness.speed import measure_speed

    torch.manual_seed(0)
    cell = build_cell(registry.cell("numpy-rnn"), 8, 128)
    config = TimingConfig(warmup=1, min_repeats=3, max_repeats=3, min_time_s=0.0)
    result = measure_speed(cell, 32, 500, 8, "cpu", config)
    hidden_states = 501 * 32 * 128 * 4
    assert hidden_states <= result.peak_memory_bytes < 4 * hidden_states


def test_kept_buffers_are_released_just_before_the_call_whose_memory_is_measured():
    """measure_speed calls release_buffers() after the timed calls and before exactly one more
    forward+backward, the one peak memory is measured on."""
    from harness.speed import measure_speed

    class Spy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = torch.nn.RNN(3, 4)
            self.calls, self.released_after = 0, None

        def forward(self, x, state=None):
            self.calls += 1
            return self.rnn(x, state)

        def release_buffers(self):
            self.released_after = self.calls

    spy = Spy()
    config = TimingConfig(warmup=1, min_repeats=2, max_repeats=2, min_time_s=0.0)
    measure_speed(spy, 2, 5, 3, "cpu", config)
    assert spy.released_after is not None and spy.calls == spy.released_after + 1
