"""Command-line value types: comma-separated lists of names or sizes, one size, a percentage.

Every list goes through :func:`harness.names.split_list`; each type fails with one line that
says what was wrong and what is allowed.
"""

from __future__ import annotations

import math

import click

from harness.names import split_list
from harness.preflight import MAX_SEEDS, MAX_THREADS, SQLITE_INT_MAX


class PositiveIntList(click.ParamType):
    """A comma-separated list of positive integers, e.g. ``100,1000``, each at most ``max_value``
    (by default the largest integer SQLite stores; ``max_why`` says why in the error)."""

    name = "N[,N...]"

    def __init__(self, max_value: int = SQLITE_INT_MAX, max_why: str = "the largest integer SQLite stores"):
        self.max_value = max_value
        self.max_why = max_why

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        out = []
        for part in split_list(str(value)):
            try:
                number = int(part)
            except ValueError:
                self.fail(f"{part!r} is not a positive integer (sizes are whole numbers > 0, e.g. 64 or 100,1000)", param, ctx)
            if number <= 0:
                self.fail(f"{part!r} is not a positive integer (sizes must be > 0)", param, ctx)
            if number > self.max_value:
                self.fail(f"{part} is too large: at most {self.max_value} ({self.max_why})", param, ctx)
            out.append(number)
        if not out:
            self.fail("expected at least one positive integer, e.g. 64 or 100,1000", param, ctx)
        return tuple(dict.fromkeys(out))


class PositiveInt(PositiveIntList):
    """One positive integer (options that a sweep makes no sense for)."""

    name = "N"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        values = super().convert(value, param, ctx)
        if len(values) != 1:
            self.fail(f"{value!r}: give one number here, not a list", param, ctx)
        return values[0]


class PositiveFloat(click.ParamType):
    """A finite number > 0, e.g. ``1e-3`` (a learning rate); NaN and infinity are refused."""

    name = "X"

    def convert(self, value, param, ctx):
        if isinstance(value, float):
            return value
        try:
            number = float(str(value).strip())
        except ValueError:
            self.fail(f"{value!r} is not a number; give a finite number > 0, e.g. 0.001", param, ctx)
        if not math.isfinite(number) or number <= 0:
            self.fail(f"{value!r} is not allowed: give a finite number > 0, e.g. 0.001", param, ctx)
        return number


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


SIZES = PositiveIntList()
NUMBER = PositiveInt()
SEED_COUNT = PositiveInt(MAX_SEEDS, "seeds per run")
THREAD_COUNT = PositiveInt(MAX_THREADS, "threads; more than the cores is slower anyway")
POSITIVE_FLOAT = PositiveFloat()
