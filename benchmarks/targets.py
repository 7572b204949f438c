"""What every benchmark target shares: the one output line ``NAME value=X target=Y PASS|FAIL``,
and the fastest of a few timed calls."""

from harness.config import TimingConfig
from harness.speed import time_calls


def report(name: str, value: float, target: str, passed: bool) -> None:
    print(f"{name} value={value:.3f} target={target} {'PASS' if passed else 'FAIL'}", flush=True)


def fastest_s(fn, repeats: int, warmup: int = 0) -> float:
    """Seconds of the fastest of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones
    (:func:`harness.speed.time_calls`, the harness's own timing loop)."""
    config = TimingConfig(warmup=warmup, min_repeats=repeats, max_repeats=repeats, min_time_s=0.0)
    return min(time_calls(fn, config).samples)
