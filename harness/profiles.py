"""Named sets of sizes and budgets. Every value can be overridden on the command line."""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.config import Recipe, TimingConfig


@dataclass(frozen=True)
class Profile:
    """Sizes and budgets of a run.

    ``task_seq_lens`` gives T per task name; a task not named runs at its own
    ``default_seq_len`` if it has one, else at ``default_seq_lens``. ``tasks`` is what
    runs when ``--tasks`` is not given.
    Speed is measured over ``speed_batch_sizes x speed_seq_lens x speed_hidden_sizes``
    at ``speed_input_size``; training uses ``hidden_sizes`` and ``recipe``. ``lrs``: the
    learning rates a profile sweeps (chosen per cell on validation); empty: ``recipe.lr`` alone.
    """

    name: str
    description: str
    task_seq_lens: dict[str, tuple[int, ...]]
    default_seq_lens: tuple[int, ...]
    hidden_sizes: tuple[int, ...]
    seeds: int
    recipe: Recipe
    speed_batch_sizes: tuple[int, ...]
    speed_seq_lens: tuple[int, ...]
    speed_hidden_sizes: tuple[int, ...]
    speed_input_size: int
    timing: TimingConfig = field(default_factory=TimingConfig)
    tasks: tuple[str, ...] = ("copy", "adding")  # what runs when --tasks is not given
    # Default --item-timeout: a wall-clock limit per item (seconds), far above what an item
    # of the profile takes on a slow machine, so that only a hung item reaches it.
    item_timeout_s: float | None = None
    lrs: tuple[float, ...] = ()
    # Per task name, factory keyword options (``--task-option`` adds to them and wins).
    task_options: dict[str, dict[str, object]] = field(default_factory=dict)
    # Lengths every trained model is also evaluated at (``--eval-lengths``; e.g. "2x", "200").
    eval_lengths: tuple[str, ...] = ()
    # Per task name: hidden sizes and step budgets where one setting cannot show every task's
    # outcome (--hidden-size and --steps override them for every task).
    task_hidden_sizes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    task_steps: dict[str, int] = field(default_factory=dict)

    def seq_lens_for(self, task: str) -> tuple[int, ...]:
        return self.task_seq_lens.get(task, self.default_seq_lens)


# The speed table's sizes on a CPU, shared by the CPU profiles (default, literature, tasks), so
# that their speed rows compare with one another.
CPU_SPEED_SIZES = dict(speed_batch_sizes=(32,), speed_seq_lens=(100,), speed_hidden_sizes=(128,), speed_input_size=8)

PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke",
        description="tiny sizes for tests: every code path in seconds, numbers meaningless",
        task_seq_lens={"copy": (5,), "adding": (10,)},
        default_seq_lens=(10,),
        hidden_sizes=(16,),
        seeds=1,
        recipe=Recipe(lr=1e-2, clip_norm=1.0, batch_size=16, steps=20, eval_every=10, eval_size=64),
        speed_batch_sizes=(8,),
        speed_seq_lens=(20,),
        speed_hidden_sizes=(16,),
        speed_input_size=8,
        timing=TimingConfig(warmup=1, min_repeats=3, max_repeats=10, min_time_s=0.0, rounds=5),
        item_timeout_s=600.0,
    ),
    "default": Profile(
        name="default",
        description="about 3 minutes for the 14 built-in cells on a 2-core CPU with 2 workers, one seed; separates gated cells from tanh RNNs on adding T=50",
        task_seq_lens={"copy": (10,), "adding": (50,)},
        default_seq_lens=(100,),
        hidden_sizes=(64,),
        seeds=1,
        recipe=Recipe(lr=1e-2, clip_norm=1.0, batch_size=64, steps=800, eval_every=100, eval_size=512),
        **CPU_SPEED_SIZES,
        timing=TimingConfig(warmup=2, min_repeats=5, max_repeats=100, min_time_s=0.5, rounds=5, spread=True),
        item_timeout_s=3600.0,
    ),
    "paper": Profile(
        name="paper",
        description="the literature's lengths (Arjovsky et al. 2016; Le et al. 2015), 3 seeds; meant for a GPU",
        task_seq_lens={"copy": (100, 200, 500, 1000), "adding": (100, 200, 400, 750)},
        default_seq_lens=(100, 200, 500, 1000),
        hidden_sizes=(128,),
        seeds=3,
        recipe=Recipe(lr=1e-3, clip_norm=1.0, batch_size=128, steps=20000, eval_every=200, eval_size=1000),
        speed_batch_sizes=(32, 128),
        speed_seq_lens=(100, 1000),
        speed_hidden_sizes=(128, 512),
        speed_input_size=64,
        timing=TimingConfig(warmup=3, min_repeats=10, max_repeats=500, min_time_s=1.0, rounds=10, spread=True),
        item_timeout_s=12 * 3600.0,
        # Papers tune the rate per model (Melis et al. 2018); Adam's usual window for RNNs.
        lrs=(3e-4, 1e-3, 3e-3),
    ),
    "literature": Profile(
        name="literature",
        description="published outcomes at CPU sizes (docs/reproduction.md): adding T=200 (Le et al. 2015; Arjovsky "
                    "et al. 2016) and copy T=100 (Arjovsky et al. 2016; Lezcano-Casado & Martinez-Rubio 2019), 3 seeds; "
                    "about 30 minutes for gru, lstm, torch-rnn and exprnn with --workers 2",
        # The papers' shortest lengths that a tanh orthogonal RNN (exprnn) and a GRU learn within a few thousand
        # Adam steps on a CPU; docs/reproduction.md gives the measurements behind each value.
        task_seq_lens={"copy": (100,), "adding": (200,)},
        default_seq_lens=(100,),
        hidden_sizes=(128,),  # Arjovsky et al.'s adding size
        seeds=3,
        # Batch 20: Arjovsky et al.'s smaller batch. One Adam rate for every cell and task (a Profile holds one
        # recipe; a sweep would triple the half hour): the rate at which exprnn learns copy T=100 in the budget.
        recipe=Recipe(lr=3e-3, clip_norm=1.0, batch_size=20, steps=4000, eval_every=100, eval_size=512),
        # exprnn solved copy T=100 at step 4,800 in one exploration seed (4,000 steps left two at 0.92-0.93).
        task_steps={"copy": 6000},
        **CPU_SPEED_SIZES,
        timing=TimingConfig(warmup=2, min_repeats=5, max_repeats=100, min_time_s=0.5, rounds=5, spread=True),
        item_timeout_s=3600.0,
    ),
    "tasks": Profile(
        name="tasks",
        description="every built-in task at sizes where its known outcome shows on a 2-core CPU, about 15 minutes "
                    "for lstm, gru and torch-rnn with --workers 2",
        tasks=("selective-copy", "associative-recall", "temporal-order", "parity", "digits", "text"),
        task_seq_lens={"selective-copy": (32,), "associative-recall": (16,), "temporal-order": (40,), "parity": (32,),
                       "digits": (64,), "text": (50,)},
        # K = 4 recalls (Gu & Dao use 16 at T = 4096); 2 pairs over 16 tokens: what a 2-core CPU can train.
        # Parity with a target at every prefix (Grazzi et al. 2025): one final target leaves every cell at
        # chance within a CPU budget (no gradient until all bits are used); prefix targets separate
        # nonlinear recurrences (LSTM, GRU, sLSTM: solved) from diagonal ones with positive gates (minGRU, minLSTM).
        task_options={"selective-copy": {"n_recall": 4}, "associative-recall": {"vocab_size": 16, "num_pairs": 2},
                      "parity": {"running": True}},
        default_seq_lens=(32,),
        hidden_sizes=(64,),
        # Associative recall at two state sizes: the recall a cell can hold grows with its state.
        task_hidden_sizes={"associative-recall": (16, 128), "temporal-order": (32,), "text": (128,)},
        task_steps={"selective-copy": 1000, "associative-recall": 2000, "temporal-order": 1000, "parity": 1500,
                    "digits": 1000, "text": 800},
        seeds=1,
        recipe=Recipe(lr=1e-2, clip_norm=1.0, batch_size=64, steps=800, eval_every=100, eval_size=512),
        eval_lengths=("2x", "4x"),
        **CPU_SPEED_SIZES,
        timing=TimingConfig(warmup=2, min_repeats=5, max_repeats=100, min_time_s=0.5),
        item_timeout_s=3600.0,
    ),
}


def get_profile(name: str) -> Profile:
    from harness.errors import UnknownNameError

    try:
        return PROFILES[name]
    except KeyError:
        raise UnknownNameError("profile", name, list(PROFILES)) from None
