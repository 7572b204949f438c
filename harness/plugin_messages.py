"""The lines that say what is wrong with a plugin: which plugin (its file, or its distribution),
what it did, and what is allowed instead.

Kept apart from :mod:`harness.plugins`, which loads plugins, so that these lines can name what
a plugin wrote without quoting rnnbench's internals (``_registrar.<locals>.register_cell()``,
``<module 'rnnbench_plugin_x' from ...>``, pluggy's multi-line validation text).
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any, Callable

FILE_PREFIX = "file:"


def who(info) -> str:
    """``plugin 'badarg' (/path/badarg.py)``, ``plugin 'typo' (rnnbench-typo 1.2.3)`` or ``built-in plugin 'lstm'``."""
    if info.source == "builtin":
        return f"built-in plugin {info.name!r}"
    if info.distribution.startswith(FILE_PREFIX):
        return f"plugin {info.name!r} ({info.distribution[len(FILE_PREFIX):]})"
    return f"plugin {info.name!r} ({info.distribution} {info.version})"


def _closest(word: str, allowed) -> str:
    match = difflib.get_close_matches(word, list(allowed), n=1)
    return f" (did you mean {match[0]}?)" if match else ""


def call_shape(signature: inspect.Signature) -> str:
    """``register(name, factory, *, backend, form, ...)``: what a register callback takes, by name."""
    positional = [p.name for p in signature.parameters.values() if p.kind == p.POSITIONAL_OR_KEYWORD]
    keywords = [p.name + ("" if p.default is not p.empty else " (required)")
                for p in signature.parameters.values() if p.kind == p.KEYWORD_ONLY]
    return f"register({', '.join(positional + (['*'] + keywords if keywords else []))})"


def bad_register_call(info, hook_name: str, signature: inspect.Signature, args: tuple, kwargs: dict,
                      error: TypeError) -> str:
    """A ``register(...)`` call whose arguments do not fit: what was wrong, the closest keyword to a
    misspelt one, and every argument the callback takes."""
    named = f"register({args[0]!r}, ...)" if args else "register(...)"
    unknown = [k for k in kwargs if k not in signature.parameters]
    hint = _closest(unknown[0], signature.parameters) if unknown else ""
    skipped = f"; {args[0]!r} is not registered" if args else ""
    return f"{who(info)}: {named} in {hook_name}: {error}{hint}; it takes {call_shape(signature)}{skipped}"


def checked_register(info, hook_name: str, register: Callable[..., None], errors: list[str]) -> Callable[..., None]:
    """``register`` with its arguments checked first: a call that does not fit is one line in
    ``errors`` (the object is skipped and the plugin's other registrations go on), never a
    TypeError naming rnnbench's own function."""
    signature = inspect.signature(register)

    def checked(*args, **kwargs):
        try:
            signature.bind(*args, **kwargs)
        except TypeError as error:
            errors.append(bad_register_call(info, hook_name, signature, args, kwargs, error))
            return None
        return register(*args, **kwargs)

    return checked


def unknown_hooks(module: Any, info, pm, hook_names: tuple[str, ...]) -> str:
    """A module with ``@hookimpl`` functions rnnbench has no hook for (``register_cell``): one line
    naming them, the closest known hook, and the known hooks."""
    found = [name for name in dir(module)
             if name not in hook_names and callable(getattr(module, name, None))
             and pm.parse_hookimpl_opts(module, name) is not None]
    listed = ", ".join(f"{name!r}{_closest(name, hook_names)}" for name in found) or "(unnamed)"
    return f"{who(info)}: unknown hook {listed}; known hooks: {', '.join(hook_names)}"


def bad_hook_arguments(module: Any, info, hook_names: tuple[str, ...], error: Exception) -> str:
    """A hook function whose arguments the hook does not give (``register_cells(reg)``): one line."""
    for name in hook_names:
        function = getattr(module, name, None)
        if not callable(function):
            continue
        try:
            extra = [p for p in inspect.signature(function).parameters if p != "register"]
        except (TypeError, ValueError):
            continue
        if extra:
            return (f"{who(info)}: {name} takes {', '.join(map(repr, extra))}, which rnnbench does not give; "
                    f"write {name}(register)")
    return f"{who(info)}: {str(error).splitlines()[-1]}"
