"""Command-line value types: comma-separated lists of names or sizes, one size, a percentage.

Every list goes through :func:`harness.names.split_list`; each type fails with one line that
says what was wrong and what is allowed.
"""

from __future__ import annotations

import click

from harness.names import split_list


class PositiveIntList(click.ParamType):
    """A comma-separated list of positive integers, e.g. ``100,1000``."""

    name = "N[,N...]"

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
