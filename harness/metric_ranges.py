"""The values each stored metric can take, so that an interval over seeds can be clipped to them.

A Student t interval of a few seeds is symmetric about the mean and can reach past what the
quantity can be (``accuracy 0.523 [-0.767, 1.81]`` from two seeds). Intersected with the
quantity's range it keeps its coverage (:func:`harness.intervals.clipped`), so the tables show
that intersection. Each range here follows from how the metric is defined, never from the data:

- fractions (``accuracy``, ``val_accuracy``, ``length_accuracy``): the share of scored targets
  a model got right, in [0, 1];
- losses (``loss``, ``val_loss``, ``length_loss``) are at least 0: the task contract asks for a
  loss that is a mean of per-step losses that are never negative (cross-entropy, squared error,
  bits; :meth:`harness.tasks.Task.loss`), and ``rnnbench check`` tests random outputs' loss;
  ``loss_ratio`` divides one by the baseline, a positive loss, so it is at least 0 too;
- times (``train_time_s``, ``time_to_solve_s``) and step counts (``steps_to_solve``,
  ``steps_run``) are at least 0; so is the gradient ``horizon``, a distance in steps.

A metric not listed here (``decay_rate``, a slope of ln-norm, may take any sign) is not clipped.
Nor is a row with a seed's value outside its metric's range (a third-party task whose loss, e.g. a
Gaussian negative log-likelihood, goes below 0): the range does not hold there, and a clipped interval
could exclude an observed value, so that row keeps its plain t interval.
"""

from __future__ import annotations

import math

FRACTION = (0.0, 1.0)
NON_NEGATIVE = (0.0, math.inf)

METRIC_RANGES: dict[str, tuple[float, float]] = {
    "accuracy": FRACTION,
    "val_accuracy": FRACTION,
    "length_accuracy": FRACTION,
    "loss": NON_NEGATIVE,
    "val_loss": NON_NEGATIVE,
    "length_loss": NON_NEGATIVE,
    "loss_ratio": NON_NEGATIVE,
    "train_time_s": NON_NEGATIVE,
    "time_to_solve_s": NON_NEGATIVE,
    "steps_to_solve": NON_NEGATIVE,
    "steps_run": NON_NEGATIVE,
    "horizon": NON_NEGATIVE,
}

# Said under every table whose intervals are clipped, in every report format alike.
CLIPPED_NOTE = ("Intervals are clipped to the values a column can take (accuracy in [0, 1]; loss, loss/baseline, "
                "times and horizons at least 0) where every seed's value lies in that range: a t interval of few "
                "seeds can reach past it, and its intersection with the range keeps the 95% coverage. A bound shown "
                "at 0 or 1 may be such a clip.")


def metric_range(metric: str | None) -> tuple[float, float]:
    """(lower, upper) for ``metric``; (-inf, inf) for a metric that may take any value, or None."""
    return METRIC_RANGES.get(metric, (-math.inf, math.inf)) if metric else (-math.inf, math.inf)
