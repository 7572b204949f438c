"""Command-line value types: comma-separated lists of names or sizes, one size, a percentage.

Every list goes through :func:`harness.names.split_list`; each type fails with one line that
says what was wrong and what is allowed.
"""

from __future__ import annotations

import click

from harness.names import SQLITE_INT_MAX, split_list, whole_number
from harness.preflight import MAX_SEEDS, MAX_THREADS


class PositiveIntList(click.ParamType):
    """A comma-separated list of positive integers, e.g. ``100,1000``, each at most ``max_value``
    (by default the largest integer SQLite stores; ``max_why`` says why in the error)."""

    name = "N[,N...]"
    example = "64 or 100,1000"
    numbers = "whole numbers"

    def __init__(self, max_value: int = SQLITE_INT_MAX, max_why: str = "the largest integer SQLite stores"):
        self.max_value = max_value
        self.max_why = max_why
        limit = ">= 1" if max_value == SQLITE_INT_MAX else f"from 1 to {max_value}"
        self.allowed = f"{self.numbers} {limit}"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        out = []
        for part in split_list(str(value)):
            try:
                number = int(part)
            except ValueError:
                self.fail(f"{part!r} is not a positive integer: give {self.allowed} (e.g. {self.example})", param, ctx)
            if number <= 0:
                self.fail(f"{part!r} is not a positive integer: give {self.allowed}", param, ctx)
            if number > self.max_value:
                self.fail(f"{part} is too large: at most {self.max_value} ({self.max_why})", param, ctx)
            out.append(number)
        if not out:
            self.fail(f"expected at least one positive integer, e.g. {self.example}", param, ctx)
        return tuple(dict.fromkeys(out))


class PositiveInt(PositiveIntList):
    """One positive integer (options that a sweep makes no sense for)."""

    name = "N"
    example = "2"
    numbers = "a whole number"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        values = super().convert(value, param, ctx)
        if len(values) != 1:
            self.fail(f"{value!r}: give one number here, not a list", param, ctx)
        return values[0]


class NameList(click.ParamType):
    """A comma-separated list of names, optionally limited to ``choices``."""

    name = "NAME[,NAME...]"

    def __init__(self, choices: tuple[str, ...] | None = None):
        self.choices = choices

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        names = split_list(str(value))
        if not names:
            self.fail("expected at least one name", param, ctx)
        for name in names if self.choices else ():
            if name not in self.choices:
                self.fail(f"{name!r} is not one of {', '.join(self.choices)}", param, ctx)
        return names


class Percent(click.ParamType):
    """A percentage such as ``5%`` or ``5`` (both mean 0.05)."""

    name = "PCT"

    def convert(self, value, param, ctx):
        if isinstance(value, float):
            return value
        text = str(value).strip()
        try:
            number = float(text[:-1] if text.endswith("%") else text)
        except ValueError:
            self.fail(f"{value!r} is not a percentage (e.g. 5% or 2.5)", param, ctx)
        if not number >= 0:
            self.fail(f"{value!r} must be a percentage >= 0", param, ctx)
        return number / 100


class Seeds(click.ParamType):
    """Seeds: a count ``3`` (seeds 0, 1, 2), a range ``5..9`` (5 to 9 inclusive), or a list ``0,4,7``
    (items may themselves be ranges: ``0..2,10``)."""

    name = "N|A..B|A,B,..."
    allowed = f"give a count from 1 to {MAX_SEEDS} (3: seeds 0..2), a range (5..9) or a list (0,4,7) of seeds >= 0"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        text = str(value).strip()
        count = whole_number(text)
        if count == 0:
            self.fail("'0': give a count of at least 1 (3: seeds 0..2); seed 0 alone is 0..0", param, ctx)
        if count is not None:
            if count > MAX_SEEDS:  # before range() is built: a count past C's ssize_t overflows len()
                self.fail(f"{text} seeds: at most {MAX_SEEDS} per run", param, ctx)
            return self._checked(range(count), param, ctx)
        seeds: list[int] = []
        for part in split_list(text) if "," in text or ".." in text else ():
            low, dots, high = part.partition("..")
            first, last = (whole_number(low.strip()), whole_number(high.strip())) if dots else (whole_number(part),) * 2
            if first is None or last is None:
                self.fail(f"{part!r} is not a seed or a range of seeds; {self.allowed}", param, ctx)
            if last < first:
                self.fail(f"{part!r}: a range A..B needs 0 <= A <= B; {self.allowed}", param, ctx)
            if last - first >= MAX_SEEDS or len(seeds) >= MAX_SEEDS:
                self.fail(f"{value!r}: more than {MAX_SEEDS} seeds; at most {MAX_SEEDS} per run", param, ctx)
            seeds += range(first, last + 1)
        if not seeds:
            self.fail(f"{value!r}: {self.allowed}", param, ctx)
        return self._checked(dict.fromkeys(seeds), param, ctx)

    def _checked(self, seeds, param, ctx) -> tuple[int, ...]:
        """At most :data:`MAX_SEEDS` seeds, each an integer SQLite can store."""
        if len(seeds) > MAX_SEEDS:
            self.fail(f"{len(seeds)} seeds: at most {MAX_SEEDS} per run", param, ctx)
        if seeds and max(seeds) > SQLITE_INT_MAX:
            self.fail(f"seed {max(seeds)} is too large: at most {SQLITE_INT_MAX} (the largest integer SQLite stores)",
                      param, ctx)
        return tuple(seeds)


class PositiveFloatList(click.ParamType):
    """A comma-separated list of positive numbers, e.g. learning rates ``1e-3,3e-3,1e-2``."""

    name = "X[,X...]"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        out = []
        for part in split_list(str(value)):
            try:
                number = float(part)
            except ValueError:
                self.fail(f"{part!r} is not a number (e.g. 1e-3 or 1e-3,3e-3,1e-2)", param, ctx)
            if not (number > 0 and number != float("inf")):
                self.fail(f"{part!r} must be a positive finite number", param, ctx)
            out.append(number)
        if not out:
            self.fail("expected at least one number, e.g. 1e-3 or 1e-3,3e-3,1e-2", param, ctx)
        return tuple(sorted(dict.fromkeys(out)))


SIZES = PositiveIntList()
SEEDS = Seeds()
RATES = PositiveFloatList()
NUMBER = PositiveInt()
THREAD_COUNT = PositiveInt(MAX_THREADS, "threads; more than the cores is slower anyway")
