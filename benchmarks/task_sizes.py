"""Quick training runs of the issue-13 tasks at small sizes, to choose the `tasks` profile's.

Trains with the harness's own loop and recipe shape (Adam, clip 1, batch 64, held-out
512 every 100 steps, stop once solved), evaluating on the task's *test* split, and prints
one line per run. Usage::

    OMP_NUM_THREADS=1 python benchmarks/task_sizes.py [NAME_SUBSTRING ...]
"""

from __future__ import annotations

import sys
import time

import torch

from harness.cells import SequenceModel, build_cell
from harness.plugins import load_plugins
from harness.training import Recipe, train

# (task, T, options, cell, hidden size, step budget, lr)
RUNS = [
    ("selective-copy", 32, {"n_recall": 4}, "lstm", 64, 1500, 1e-2),
    ("selective-copy", 32, {"n_recall": 4}, "gru", 64, 1500, 1e-2),
    ("selective-copy", 32, {"n_recall": 4}, "torch-rnn", 64, 1500, 1e-2),
    ("associative-recall", 32, {"vocab_size": 32, "num_pairs": 4}, "lstm", 16, 1500, 1e-2),
    ("associative-recall", 32, {"vocab_size": 32, "num_pairs": 4}, "lstm", 64, 1500, 1e-2),
    ("associative-recall", 32, {"vocab_size": 32, "num_pairs": 4}, "gru", 16, 1500, 1e-2),
    ("associative-recall", 32, {"vocab_size": 32, "num_pairs": 4}, "gru", 64, 1500, 1e-2),
    ("associative-recall", 16, {"vocab_size": 16, "num_pairs": 2}, "lstm", 16, 3000, 1e-2),
    ("associative-recall", 16, {"vocab_size": 16, "num_pairs": 2}, "lstm", 128, 3000, 1e-2),
    ("temporal-order", 40, {}, "lstm", 32, 1500, 1e-2),
    ("temporal-order", 40, {}, "gru", 32, 1500, 1e-2),
    ("temporal-order", 40, {}, "torch-rnn", 32, 1500, 1e-2),
    ("parity", 12, {}, "lstm", 32, 2000, 1e-2),
    ("parity", 12, {}, "gru", 32, 2000, 1e-2),
    ("digits", 64, {}, "lstm", 64, 1000, 1e-2),
    ("digits", 64, {}, "gru", 64, 1000, 1e-2),
    ("digits-permuted", 64, {}, "lstm", 64, 1000, 1e-2),
    ("digits-permuted", 64, {}, "gru", 64, 1000, 1e-2),
    ("text", 50, {}, "lstm", 128, 800, 1e-2),
    ("text", 50, {}, "gru", 128, 800, 1e-2),
]


def run(registry, task_name, seq_len, options, cell_name, hidden, steps, lr, seed=0):
    task = registry.task(task_name).factory(seq_len, **options)
    recipe = Recipe(lr=lr, batch_size=64, steps=steps, eval_every=100, eval_size=512)
    torch.manual_seed(seed)
    model = SequenceModel(build_cell(registry.cell(cell_name), task.input_size, hidden), hidden, task.output_size)
    started = time.perf_counter()
    result = train(model, task, recipe, seed, "cpu")  # validation and test sets from their own streams
    wall_s = time.perf_counter() - started
    best = max(result.curve, key=lambda p: p.accuracy)
    line = (f"{task_name:18} T={seq_len:<3} {str(options or ''):38} {cell_name:9} H={hidden:<3} lr={lr:g} "
            f"loss={result.loss:.3f} base={result.baseline:.3f} ratio={result.loss_ratio:.3f} acc={result.accuracy:.3f} "
            f"best_acc={best.accuracy:.3f}@{best.step} solved_at={result.steps_to_solve} steps={result.steps_run} "
            f"train_s={result.train_time_s:.1f} wall_s={wall_s:.1f}")
    if task_name == "text":
        line += f"\n    sample: {task.generate(model, 'hello world, how are you?', 120, seed=0, temperature=0.8)!r}"
    print(line, flush=True)


def main(filters: list[str]) -> None:
    torch.set_num_threads(1)
    registry = load_plugins(autoload=False)
    for spec in RUNS:
        if not filters or any(f in " ".join(map(str, spec)) for f in filters):
            run(registry, *spec)


if __name__ == "__main__":
    main(sys.argv[1:])
