"""The `tasks` profile: every built-in task with its own sizes, options and step budget, and
command-line sizes overriding them for every task."""

from harness.runner import TrainItem, plan
from harness.settings import build_config


def _config(registry, **typed):
    return build_config(registry, cells=("lstm", "gru"), tasks=None, devices=("cpu",), measures=("accuracy",),
                        profile_name="tasks", **typed)


def test_the_tasks_profile_sets_sizes_options_and_budgets_per_task(registry):
    config = _config(registry)
    assert config.tasks == ("selective-copy", "associative-recall", "temporal-order", "parity", "digits", "text")
    assert config.hidden_sizes_for("associative-recall") == (16, 128)
    assert config.hidden_sizes_for("parity") == (64,)
    assert config.recipe_for("text").steps == 800 and config.recipe_for("associative-recall").steps == 2000
    assert config.recipe_for("text").batch_size == config.recipe.batch_size
    assert config.options_for("associative-recall") == {"vocab_size": 16, "num_pairs": 2}
    assert config.eval_lengths == ("2x", "4x")
    items = [i for i in plan(config, registry) if isinstance(i, TrainItem)]
    recall = sorted((i.cell.name, i.hidden_size) for i in items if i.task.name == "associative-recall")
    assert recall == [("gru", 16), ("gru", 128), ("lstm", 16), ("lstm", 128)]
    assert len(items) == 2 * 7


def test_typed_sizes_and_options_hold_for_every_task(registry):
    config = _config(registry, hidden_size=(32,), steps=50,
                     task_options={"associative-recall": {"num_pairs": 3}})
    assert config.hidden_sizes_for("associative-recall") == (32,)
    assert config.recipe_for("text").steps == 50
    assert config.options_for("associative-recall") == {"vocab_size": 16, "num_pairs": 3}
