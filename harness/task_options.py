"""Task options from the command line: ``--task-option TASK.NAME=VALUE`` and ``--text FILE``.

A task's options are the keyword arguments of its factory, ``factory(seq_len, **options)``
(docs/writing-tasks.md, section 3). An option typed on the command line is checked against
the factory's signature before anything runs, and its value is converted to the type of the
option's default (``int``, ``float``, ``bool``, ``str``; a default of ``None`` takes the
text as given). The factory itself then judges the value (``TaskSizeError``). What an option
means is read from ``:param NAME:`` lines of the factory's docstring (``rnnbench tasks``).
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from pathlib import Path

from harness.errors import UsageError

BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
TEXT_TASK, TEXT_OPTION = "text", "text_path"


def factory_options(factory) -> dict[str, object]:
    """The keyword options of a task factory and their defaults (``inspect.Parameter.empty`` when none)."""
    try:
        parameters = list(inspect.signature(factory).parameters.values())
    except (TypeError, ValueError):  # a builtin or an odd callable: no options known
        return {}
    return {p.name: p.default for p in parameters[1:]  # the first is seq_len
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


@dataclass(frozen=True)
class TaskOption:
    """One keyword option of a task factory, as ``rnnbench tasks`` lists it: its ``default``
    (``inspect.Parameter.empty`` when it has none) and its ``meaning``, from the factory's
    docstring (``""`` when the plugin gives none)."""

    name: str
    default: object
    meaning: str

    @property
    def shown_default(self) -> str:
        """The default as ``--task-option`` would be typed: ``8``, ``false``; ``(none)`` and ``(required)``."""
        if self.default is inspect.Parameter.empty:
            return "(required)"
        if self.default is None:
            return "(none)"
        return str(self.default).lower() if isinstance(self.default, bool) else str(self.default)


_PARAM_LINE = re.compile(r"^:param\s+(\w+)\s*:\s*(.*)$")


def option_meanings(factory) -> dict[str, str]:
    """``{option: meaning}`` from ``:param NAME: meaning`` lines of the factory's docstring (a class:
    its own docstring or its ``__init__``'s), as pytest's hookspecs and Sphinx write them; the
    lines below a ``:param`` line continue it, up to a blank line or the next field."""
    docs = [getattr(factory, "__doc__", None)]
    if inspect.isclass(factory):
        docs.append(getattr(vars(factory).get("__init__"), "__doc__", None))  # its own, not a base class's
    meanings: dict[str, str] = {}
    for doc in filter(None, docs):
        current = None
        for line in inspect.cleandoc(doc).splitlines():
            match = _PARAM_LINE.match(line)
            if match:
                current = match.group(1)
                meanings[current] = match.group(2).strip()
            elif current and line.strip() and not line.lstrip().startswith(":"):
                meanings[current] += " " + line.strip()
            else:
                current = None
    return meanings


def declared_options(factory) -> list[TaskOption]:
    """The factory's keyword options in signature order, each with its default and meaning."""
    meanings = option_meanings(factory)
    return [TaskOption(name, default, meanings.get(name, "")) for name, default in factory_options(factory).items()]


def _convert(task: str, name: str, text: str, default: object) -> object:
    """``text`` as the type of ``default``."""
    kind = type(default)
    try:
        if kind is bool:
            return BOOLEANS[text.lower()]
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
    except (KeyError, ValueError):
        allowed = "true or false" if kind is bool else f"a number ({kind.__name__})"
        raise UsageError(f"--task-option {task}.{name}={text}: the value must be {allowed}") from None
    return text


def parse_task_options(pairs: tuple[str, ...], registry) -> dict[str, dict[str, object]]:
    """``("associative-recall.num_pairs=4", ...)`` -> ``{"associative-recall": {"num_pairs": 4}}``.

    Raises :class:`UsageError` (one line) for a malformed pair, an unknown task, or an option
    its factory does not take (naming the ones it does).
    """
    options: dict[str, dict[str, object]] = {}
    for pair in pairs:
        where, equals, text = pair.partition("=")
        task, dot, name = where.rpartition(".")
        if not (equals and dot and task and name):
            raise UsageError(f"--task-option {pair!r}: write TASK.OPTION=VALUE, e.g. associative-recall.num_pairs=4")
        spec = registry.task(task)  # UnknownTaskError lists the tasks
        known = factory_options(spec.factory)
        if name not in known:
            offered = ", ".join(known) or "none"
            raise UsageError(f"--task-option {pair}: task {task!r} has no option {name!r}; its options: {offered}")
        default = known[name]
        options.setdefault(task, {})[name] = text if default in (None, inspect.Parameter.empty) else _convert(
            task, name, text, default)
    return options


def with_text_file(options: dict[str, dict[str, object]], text_file: str | None) -> dict[str, dict[str, object]]:
    """``--text FILE``: the text task's corpus, as an absolute path (workers may start elsewhere)."""
    if text_file is None:
        return options
    path = Path(text_file)
    if not path.is_file():
        raise UsageError(f"--text {text_file}: no such file; give a UTF-8 text file")
    return {**options, TEXT_TASK: {**options.get(TEXT_TASK, {}), TEXT_OPTION: str(path.resolve())}}


def option_flags(typed: dict[str, dict[str, object]], text_file: str | None) -> dict[str, str]:
    """Per task, the flag that set its options where it was not ``--task-option``: ``--text FILE``."""
    return {TEXT_TASK: f"--text {text_file}"} if text_file is not None and TEXT_TASK not in typed else {}


def build_task(spec, seq_len: int, options: dict[str, object] | None = None):
    """The task of ``spec`` at ``seq_len`` with ``options`` (its factory's keyword arguments)."""
    return spec.factory(seq_len, **(options or {}))


def task_records(config, registry) -> dict[str, dict[str, object]]:
    """What each task of a run was built with, for the run's record: the options as given and the
    task's own ``options`` (the text task's corpus name, size in characters and SHA-256)."""
    records = {}
    for name in config.tasks:
        lengths = config.task_seq_lens.get(name) or ()
        if not lengths or name not in registry.tasks:
            continue
        try:
            task = build_task(registry.task(name), lengths[0], config.options_for(name))
            described = dict(task.options)
        except Exception as exc:  # noqa: BLE001 -- the items say why; the record says it could not be built
            described = {"error": f"{type(exc).__name__}: {exc}"}
        records[name] = {"given": config.options_for(name), "task": described}
    return records
