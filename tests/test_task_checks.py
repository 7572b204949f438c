"""`rnnbench check TASK`: every built-in task passes, and each check fails a task broken its way."""

import math

import numpy as np
import pytest
import torch

from harness.task_checks import TASK_CHECK_NAMES, assert_task_conforms, iter_task_checks
from harness.tasks import IGNORE_INDEX, Batch, TokenTask, logits_of, one_hot
from harness.testing import FAIL, PASS
from harness.plugins import PluginInfo, TaskSpec
from tasks.parity import ParityTask


def test_every_registered_task_passes_every_check(registry, task_name):
    if task_name.startswith("digits"):
        pytest.importorskip("sklearn")
    results = assert_task_conforms(task_name, registry=registry)
    assert [r.name for r in results] == list(TASK_CHECK_NAMES)


def test_logits_of_writes_ln_p_and_minus_inf_for_zero():
    logits = logits_of([0.0, 0.25, 0.75], 3, 2)
    assert logits.shape == (3, 2, 3) and logits.dtype == torch.float64
    assert logits[2, 1, 0] == -math.inf and logits[0, 0, 2] == pytest.approx(math.log(0.75))


class Echo(TokenTask):
    """A well-formed task: recall the first of S symbols at the last step; baseline ln S."""

    name = "echo-first"
    reference = "tests"
    input_size = output_size = 4

    @property
    def length(self):
        return self.seq_len

    @property
    def baseline(self):
        return math.log(4)

    def sample(self, batch_size, rng):
        tokens = rng.integers(0, 4, size=(self.seq_len, batch_size))
        target = np.full((self.seq_len, batch_size), IGNORE_INDEX, dtype=np.int64)
        target[-1] = tokens[0]
        return Batch(one_hot(tokens, 4), target)

    def memoryless_logits(self, batch_size):
        return logits_of(np.full(4, 0.25), self.length, batch_size)

    def solved(self, loss, accuracy):
        return accuracy >= 0.99


class WrongBaseline(Echo):
    @property
    def baseline(self):
        return math.log(3)


class NoPredictor(Echo):
    memoryless_logits = TokenTask.memoryless_logits


class Unseeded(Echo):
    def sample(self, batch_size, rng):
        return super().sample(batch_size, np.random.default_rng())


class NoLastTarget(Echo):
    def sample(self, batch_size, rng):
        batch = super().sample(batch_size, rng)
        target = batch.target.copy()
        target[-1, 0] = IGNORE_INDEX
        return Batch(batch.x, target)


class WrongShape(Echo):
    def sample(self, batch_size, rng):
        batch = super().sample(batch_size, rng)
        return Batch(batch.x[:-1], batch.target)


class AlwaysSolved(Echo):
    def solved(self, loss, accuracy):
        return True


class NegativeLoss(Echo):
    """A loss shifted below 0: the reports clip a loss's interval at 0, so the contract asks for a loss of at
    least 0. (Its memoryless loss no longer matches the baseline, so 'baseline' fails too.)"""

    def loss(self, logits, target):
        return super().loss(logits, target) - 10.0


class NegativeLastStepLoss(Echo):
    """A last-step loss shifted below 0. No reported metric is its value (the gradient probe only
    differentiates it, and a shift has no gradient), so the contract lets it be."""

    def last_step_loss(self, logits_last, target):
        return super().last_step_loss(logits_last, target) - 10.0


class NanPredictor(Echo):
    """Its memoryless predictor's last step holds a NaN (as a 0/0 in a hand-written distribution would)."""

    def memoryless_logits(self, batch_size):
        logits = super().memoryless_logits(batch_size)
        logits[-1, 0, 0] = math.nan
        return logits


class FailsToBuild(Echo):
    def __init__(self, seq_len):
        raise RuntimeError("no data here")


def _spec(factory):
    return TaskSpec(factory.name, factory, "", PluginInfo("test", "file", "test", "local"))


def _statuses(factory) -> dict[str, tuple[str, str]]:
    return {r.name: (r.status, r.message) for r in iter_task_checks(_spec(factory))}


@pytest.mark.parametrize("factory", [Echo, NegativeLastStepLoss])
def test_a_well_formed_task_passes(factory):
    assert {name: status for name, (status, _) in _statuses(factory).items()} == dict.fromkeys(TASK_CHECK_NAMES, PASS)


class RunningParity(ParityTask):
    """parity built with running=True, as the tasks profile builds it."""

    def __init__(self, seq_len):
        super().__init__(seq_len, running=True)


def test_parity_with_running_targets_passes_every_check():
    """Every check, the baseline (memoryless_logits scored on held-out prefix targets) included."""
    statuses = _statuses(RunningParity)
    assert {name: status for name, (status, _) in statuses.items()} == dict.fromkeys(TASK_CHECK_NAMES, PASS)
    assert "= baseline 0.693147" in statuses["baseline"][1]


@pytest.mark.parametrize("factory,check,words", [
    (WrongBaseline, "baseline", ["1.38629", "task.baseline is 1.09861"]),
    (NoPredictor, "baseline", ["define memoryless_logits(batch_size)"]),
    (NanPredictor, "baseline", ["loss is nan on 16 of 16 held-out batches of 512", "memoryless_logits or loss gives NaN"]),
    (AlwaysSolved, "baseline", ["counts as solved"]),
    (Unseeded, "seeded", ["seeded alike differ", "rng argument"]),
    (NoLastTarget, "last-step", ["no target at the last step"]),
    (WrongShape, "shapes", ["(L, B, input_size) = (16, 5, 4)", "(15, 5, 4)"]),
    (FailsToBuild, "build", ["RuntimeError: no data here"]),
])
def test_a_broken_task_fails_the_right_check(factory, check, words):
    statuses = _statuses(factory)
    status, message = statuses[check]
    assert status == FAIL
    for word in words:
        assert word in message
    failed = [name for name, (s, _) in statuses.items() if s == FAIL]
    assert failed == [check]


def test_a_negative_loss_fails_the_losses_check():
    status, message = _statuses(NegativeLoss)["losses"]
    assert status == FAIL
    assert message.startswith("loss of random outputs is -") and "a loss must be at least 0" in message


def test_cli_checks_tasks_and_cells_by_name(rnnbench):
    result = rnnbench("check", "parity,gru")
    assert result.code == 0, result.out
    lines = result.out.splitlines()
    assert "gru (torch backend, sequence form)" in lines[0]
    assert "parity (task) from parity" in result.out
    assert "parity: 6 passed, 0 failed, 0 skipped" in result.out
    assert any(line.strip().startswith("PASS  baseline") and "= baseline 0.693147" in line for line in lines)


def test_cli_check_of_a_broken_task_plugin_exits_1(rnnbench, write_plugin):
    plugin = write_plugin("badbaseline", '''
        import math
        import numpy as np
        from harness import hookimpl
        from harness.tasks import IGNORE_INDEX, Batch, TokenTask, logits_of, one_hot

        class Bad(TokenTask):
            name, reference, input_size, output_size = "bad", "tests", 2, 2
            length = property(lambda self: self.seq_len)
            baseline = property(lambda self: 0.5)  # the truth is ln 2
            def sample(self, batch_size, rng):
                bits = rng.integers(0, 2, size=(self.seq_len, batch_size))
                target = np.full((self.seq_len, batch_size), IGNORE_INDEX, dtype=np.int64)
                target[-1] = bits[0]
                return Batch(one_hot(bits, 2), target)
            def memoryless_logits(self, batch_size):
                return logits_of([0.5, 0.5], self.length, batch_size)
            def solved(self, loss, accuracy):
                return accuracy >= 0.99

        @hookimpl
        def register_tasks(register):
            register("bad", Bad, summary="a wrong baseline")
    ''')
    result = rnnbench("check", "bad", "--plugin", plugin)
    assert result.code == 1
    assert "FAIL  baseline" in result.out and "task.baseline is 0.5" in result.out
    assert "bad: 5 passed, 1 failed, 0 skipped" in result.out
