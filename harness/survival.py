"""Steps to solve as censored data: the Kaplan-Meier estimate of "fraction of seeds solved by step s".

A seed that solves its task at step s is an *event* at s. A seed that stops unsolved — it hit
the step budget, or stopped early for another reason — is *right-censored* at the step where
it stopped: all we know is that it would have needed more than that. Averaging only the seeds
that solved (the old "600 ± 0") ignores the censored ones and flatters the cell.

Kaplan & Meier (1958, JASA 53:457) estimate the survival function, here the fraction of seeds
still unsolved after step s, as

    S(s) = Π_{event steps t_i ≤ s} (1 - d_i / r_i)

where d_i seeds solve at step t_i and r_i seeds are still running (unsolved and not yet
censored) just before t_i. A seed censored at the same step as an event counts as still at
risk at that step (the usual convention: censoring comes after the events). The curve a report
plots is the fraction solved, 1 - S(s), a step function that rises at each event step.

The median steps to solve is the smallest step s with S(s) ≤ 1/2 — the first step by which at
least half the seeds are estimated to have solved (Collett 2015, *Modelling Survival Data in
Medical Research*, §2.4). It is "not reached" when the curve never gets there, e.g. when fewer
than half the seeds solve before the budget. (R's ``survival`` package takes the midpoint to
the next event step when S equals 1/2 exactly on a flat stretch; we keep the first step, which
reads directly as "by step s, half had solved".)
"""

from __future__ import annotations

import math
import numbers
from collections import Counter
from dataclasses import dataclass


@dataclass(frozen=True)
class SolveCurve:
    """Kaplan-Meier estimate over seeds of when a task is solved.

    ``event_steps``: the distinct steps at which at least one seed solved, ascending;
    ``at_risk[i]`` / ``solved_at[i]``: seeds still running just before / solving at
    ``event_steps[i]``; ``survival[i]``: fraction still unsolved after ``event_steps[i]``;
    ``censored_steps``: the step each unsolved seed stopped at, ascending; ``n``: seeds.
    """

    event_steps: tuple[int, ...]
    at_risk: tuple[int, ...]
    solved_at: tuple[int, ...]
    survival: tuple[float, ...]
    censored_steps: tuple[int, ...]
    n: int

    @property
    def n_solved(self) -> int:
        return sum(self.solved_at)

    def fraction_solved_at(self, step: float) -> float:
        """1 - S(step): the estimated fraction of seeds solved by ``step`` (inclusive)."""
        unsolved = 1.0
        for event_step, remaining in zip(self.event_steps, self.survival):
            if event_step > step:
                break
            unsolved = remaining
        return 1.0 - unsolved

    @property
    def median_steps(self) -> int | None:
        """Smallest step with S ≤ 1/2, or None when fewer than half are estimated to solve."""
        for event_step, remaining in zip(self.event_steps, self.survival):
            # a tolerance so that 1 - 1/2 computed as a product still counts as one half
            if remaining <= 0.5 + 1e-12:
                return event_step
        return None

    def curve_points(self, last_step: int | None = None) -> tuple[tuple[int, ...], tuple[float, ...]]:
        """(steps, fraction solved) of the step function, from (0, 0) to ``last_step``.

        Plot with ``drawstyle="steps-post"``. ``last_step`` defaults to the largest step seen
        (event or censoring), so the curve runs to the budget.
        """
        seen = self.event_steps + self.censored_steps
        end = last_step if last_step is not None else (max(seen) if seen else 0)
        steps, fractions = [0], [0.0]
        for event_step, remaining in zip(self.event_steps, self.survival):
            if event_step > end:
                break
            steps.append(event_step)
            fractions.append(1.0 - remaining)
        if steps[-1] < end:
            steps.append(end)
            fractions.append(fractions[-1])
        return tuple(steps), tuple(fractions)

    def censoring_text(self) -> str:
        """``"2/3 solved; 1 censored at 1500"`` (several budgets: ``"2 censored at 1000, 1500"``)."""
        text = f"{self.n_solved}/{self.n} solved"
        if self.censored_steps:
            where = ", ".join(str(step) for step in sorted(set(self.censored_steps)))
            text += f"; {len(self.censored_steps)} censored at {where}"
        return text

    def text(self) -> str:
        """What a table shows: ``"1100 (2/3 solved; 1 censored at 1500)"`` or ``"not reached (...)"``."""
        median = self.median_steps
        return f"{median if median is not None else 'not reached'} ({self.censoring_text()})"


def _whole_step(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value != int(value) or value < 0:
        raise ValueError(f"{what} must be a whole number of steps ≥ 0, got {value!r}")
    return int(value)


def kaplan_meier(steps, solved) -> SolveCurve:
    """Kaplan-Meier curve from one (step, solved) observation per seed.

    ``steps[i]`` is the step at which seed i solved when ``solved[i]`` is true, otherwise the
    step at which it stopped unsolved (its censoring step, normally the budget).
    """
    steps, solved = list(steps), list(solved)
    if len(steps) != len(solved):
        raise ValueError(f"steps and solved must have one entry per seed, got {len(steps)} and {len(solved)}")
    if not steps:
        raise ValueError("Kaplan-Meier needs at least one seed, got none")
    steps = [_whole_step(step, "a seed's step") for step in steps]
    events = Counter(step for step, done in zip(steps, solved) if done)
    censored = sorted(step for step, done in zip(steps, solved) if not done)
    event_steps = tuple(sorted(events))
    at_risk, remaining, survival = [], 1.0, []
    for step in event_steps:
        # seeds whose observation (event or censoring) is at or after this step are still at risk
        running = sum(1 for other in steps if other >= step)
        at_risk.append(running)
        remaining *= 1.0 - events[step] / running
        survival.append(remaining)
    return SolveCurve(
        event_steps=event_steps,
        at_risk=tuple(at_risk),
        solved_at=tuple(events[step] for step in event_steps),
        survival=tuple(survival),
        censored_steps=tuple(censored),
        n=len(steps),
    )


def solve_curve(solve_steps, budget_steps) -> SolveCurve:
    """Kaplan-Meier curve from each seed's step to solve, None (or NaN) for an unsolved seed.

    An unsolved seed is censored at its budget: ``budget_steps`` is one budget for every seed
    or a sequence with one per seed. A solve step beyond its budget is refused as impossible.
    """
    solve_steps = list(solve_steps)
    budgets = list(budget_steps) if isinstance(budget_steps, (list, tuple)) else [budget_steps] * len(solve_steps)
    if len(budgets) != len(solve_steps):
        raise ValueError(f"give one budget, or one per seed: got {len(budgets)} budgets for {len(solve_steps)} seeds")
    steps, solved = [], []
    for solve_step, budget in zip(solve_steps, budgets):
        budget = _whole_step(budget, "a step budget")
        unsolved = solve_step is None or (isinstance(solve_step, numbers.Real) and math.isnan(solve_step))
        if not unsolved and _whole_step(solve_step, "a solve step") > budget:
            raise ValueError(f"a seed cannot solve at step {solve_step} beyond its budget of {budget} steps")
        steps.append(budget if unsolved else int(solve_step))
        solved.append(not unsolved)
    return kaplan_meier(steps, solved)
