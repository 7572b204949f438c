"""Typed errors. The CLI turns each into one line on stderr and an exit code."""

from __future__ import annotations


class RnnbenchError(Exception):
    """Base class for errors a user can act on; ``exit_code`` is what the CLI returns."""

    exit_code = 1


class UsageError(RnnbenchError):
    """Bad input from the user: a wrong name, size or file."""

    exit_code = 2


class StoreError(UsageError):
    """The results database cannot be used as asked: damaged, read-only, not an rnnbench
    database, from a newer rnnbench, or locked by another process for too long."""


class RunInUseError(StoreError):
    """``--resume`` of a run whose process is still alive (resuming would measure items twice)."""


class RunTakenOverError(StoreError):
    """Another process resumed this run, judging this one gone; this one must stop writing."""


class UnknownNameError(UsageError):
    """A cell, task or reporter name that no plugin registered."""

    def __init__(self, kind: str, name: str, available: list[str] | tuple[str, ...]):
        self.kind = kind
        self.name = name
        self.available = sorted(available)
        listed = ", ".join(self.available) if self.available else "(none registered)"
        super().__init__(f"unknown {kind} {name!r}; available {kind}s: {listed}")


class UnknownCellError(UnknownNameError):
    def __init__(self, name: str, available):
        super().__init__("cell", name, available)


class UnknownTaskError(UnknownNameError):
    def __init__(self, name: str, available):
        super().__init__("task", name, available)


class PluginError(RnnbenchError):
    """A plugin failed to import, used a misspelt hook, or registered a duplicate name."""

    exit_code = 2


class TaskContractError(RnnbenchError):
    """A task's batches, losses or baseline break the task contract (``rnnbench check TASK``)."""


class CellContractError(RnnbenchError):
    """A cell returned outputs or state that break the cell contract (shapes, structure)."""


class DivergedError(RnnbenchError):
    """Training produced a non-finite loss."""


class NotSupportedError(RnnbenchError):
    """A measurement cannot run in this combination (e.g. a NumPy cell on CUDA)."""
