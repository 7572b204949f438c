"""Length generalisation: a model trained at T, evaluated on the same task at longer T.

``--eval-lengths 2x,4x,8x`` (multiples of the trained T) or ``--eval-lengths 200,400``
(absolute T), or both. After training, each trained model is evaluated on a held-out set of
the task built at each of those T by its factory, with the same options (e.g. parity trained
at T = 8 and read at T = 16, 32, 64: Delétang et al. 2023; Beck et al. 2024, sec. 4.1). The
held-out set is drawn from the test stream of the item's seed (``split="test"``), so every
cell is scored on the same sequences. A length the task cannot be built at (digits: T is
fixed at 64) gives a skipped row that says why; lengths equal to the trained T are left out
(the accuracy rows already hold them).

Rows (measurement ``"length"``): ``seq_len`` is the evaluated T and ``length`` the steps the
cell saw there; ``stats`` holds ``trained_seq_len`` and the length as typed. Metrics:
``length_loss``, ``length_accuracy`` and ``length_baseline`` (the task's baseline at that T).
"""

from __future__ import annotations

import math
import re

import torch

from harness.errors import UsageError
from harness.names import LENGTH, SQLITE_INT_MAX
from harness.results import ResultRow
from harness.task_options import build_task
from harness.training import TEST_STREAM, evaluate, rng_for

_SPEC = re.compile(r"^(?:(\d+(?:\.\d+)?)x|(\d+))$")
MAX_EVAL_SIZE = 256  # sequences per held-out set at a longer length: memory grows with T


def parse_eval_lengths(specs) -> tuple[str, ...]:
    """``"2x,4x,200"`` or ``("2x", "4x")`` -> ``("2x", "4x", "200")``, checked; one line on error."""
    parts = [specs] if isinstance(specs, str) else list(specs or ())
    items = [item.strip() for part in parts for item in str(part).split(",") if item.strip()]
    for item in items:
        match = _SPEC.match(item.lower())
        if not match or (match.group(1) and not 0 < float(match.group(1)) < math.inf) or (
                match.group(2) and not 1 <= int(match.group(2)) <= SQLITE_INT_MAX):
            raise UsageError(f"--eval-lengths {item!r}: give multiples of the trained T (2x, 4x) or lengths (200), "
                             f"comma-separated; a length is at most {SQLITE_INT_MAX}")
    return tuple(dict.fromkeys(item.lower() for item in items))


def resolve_length(spec: str, trained_seq_len: int) -> int:
    """The T that ``spec`` means for a model trained at ``trained_seq_len``: ``"2x"`` -> 2T, ``"200"`` -> 200."""
    if spec.endswith("x"):
        return max(1, round(float(spec[:-1]) * trained_seq_len))
    return int(spec)


def task_at_length(task_spec, seq_len: int, options: dict):
    """``(task, None)``: the task of ``task_spec`` built at ``seq_len`` with ``options``; or ``(None, why)``
    when its factory refuses that length (``ValueError`` or ``UsageError``: digits is fixed at T = 64).

    The run's evaluation (:func:`length_rows`) and the memory estimate before it
    (``harness.settings``) both ask here, so a length one of them leaves out the other does too.
    Any other exception is the factory's own failure and propagates."""
    try:
        return build_task(task_spec, seq_len, options), None
    except (ValueError, UsageError) as exc:
        return None, f"{task_spec.name} cannot be built at T={seq_len}: {exc}"


def length_rows(model, task_spec, options: dict, trained_seq_len: int, specs: tuple[str, ...], base: dict, *,
                seed: int, eval_size: int, device, dtype=torch.float32) -> list[ResultRow]:
    """Evaluate ``model`` at every length of ``specs``; ``base``: the fields the item's rows share."""
    rows: list[ResultRow] = []
    done: set[int] = set()
    for spec in specs:
        seq_len = resolve_length(spec, trained_seq_len)
        if seq_len == trained_seq_len or seq_len in done:
            continue
        done.add(seq_len)
        fields = {**base, "measurement": LENGTH, "seq_len": seq_len, "length": None, "phase": LENGTH,
                  "stats": {"trained_seq_len": trained_seq_len, "eval_length": spec}}
        task, why_not = task_at_length(task_spec, seq_len, options)
        if task is None:
            rows.append(ResultRow(**{**fields, "metric": "length_accuracy"}, status="skipped", error=why_not))
            continue
        fields["length"] = task.length
        batch = task.sample_split(min(eval_size, MAX_EVAL_SIZE), rng_for(seed, TEST_STREAM), "test")
        x, target = batch.to(torch.device(device), dtype)
        loss, accuracy = evaluate(model, task, x, target)
        rows += [
            ResultRow(**fields, metric="length_loss", value=loss, unit="loss"),
            ResultRow(**fields, metric="length_accuracy", value=accuracy, unit="fraction"),
            ResultRow(**fields, metric="length_baseline", value=float(task.baseline), unit="loss"),
        ]
    return rows
