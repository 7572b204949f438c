"""`rnnbench compare`: the Mann-Whitney verdict on hand-computed samples, matching, unmatched rows, CI gates."""

import math
import textwrap

import pytest

from harness.compare import ALPHA, compare_rows, compare_runs
from harness.speed_verdict import ratio_words as ratio_text
from harness.store import ResultRow, ResultStore

# --- how a ratio reads -----------------------------------------------------------------------


@pytest.mark.parametrize("ratio, text", [(1.42, "1.42x slower"), (1 / 1.1, "1.10x faster"), (0.5, "2.00x faster"),
                                         (1.0, "1.00x"), (1.001, "1.00x")])
def test_ratio_text(ratio, text):
    assert ratio_text(ratio) == text


# --- synthetic runs with known samples -------------------------------------------------------

BASE_MS = [1.00, 1.01, 1.02, 1.03, 1.04, 1.05, 1.06, 1.07, 1.08, 1.09]  # 10 repeats, IQR 4.5% of the median


def speed_rows(cell: str, samples_ms: list[float], *, impl="fused", seq_len=20, status="ok", error=None) -> list[ResultRow]:
    base = dict(item=f"speed|{cell}|{impl}|cpu|T{seq_len}", measurement="speed", cell=cell, device="cpu", impl=impl,
                batch_size=8, seq_len=seq_len, input_size=8, hidden_size=16, threads=1)
    if status != "ok":
        return [ResultRow(**base, status=status, error=error)]
    samples = [s / 1000 for s in samples_ms]
    median = sorted(samples)[len(samples) // 2 - 1: len(samples) // 2 + 1]
    stats = {"samples": samples, "median": sum(median) / 2, "n": len(samples)}
    return [ResultRow(**base, metric=metric, value=stats["median"], unit="s", stats=stats)
            for metric in ("forward_s", "forward_backward_s")]


def train_rows(cell: str, loss_ratios: list[float], solved: list[bool], decay: list[float]) -> list[ResultRow]:
    rows = []
    for seed, (ratio, ok, rate) in enumerate(zip(loss_ratios, solved, decay)):
        base = dict(item=f"train|{cell}|copy|seed{seed}", cell=cell, device="cpu", task="copy", seq_len=10,
                    hidden_size=16, seed=seed, batch_size=16, input_size=10)
        rows += [ResultRow(**base, measurement="accuracy", metric="loss_ratio", value=ratio, unit="ratio"),
                 ResultRow(**base, measurement="accuracy", metric="accuracy", value=1 - ratio, unit="fraction"),
                 ResultRow(**base, measurement="accuracy", metric="solved", value=float(ok), unit="bool")]
        rows += [ResultRow(**base, measurement="gradients", phase=phase, metric="decay_rate", value=rate + shift,
                           unit="ln(norm)/step") for phase, shift in (("init", -0.1), ("trained", 0.0))]
    return rows


RUN_A = {
    "steady": BASE_MS,
    "speedup": BASE_MS,
    "same": BASE_MS,
    "tiny": BASE_MS,
    "only-a": BASE_MS,
    "breaks": BASE_MS,
}
RUN_B = {
    "steady": [s * 1.5 for s in BASE_MS],      # every sample 50% slower: U = 100, p ≈ 0.0002
    "speedup": [s * 0.8 for s in BASE_MS],     # 1.25x faster
    "same": list(reversed(BASE_MS)),           # the same samples: ratio 1, p = 1
    "tiny": [round(s + 0.04, 2) for s in BASE_MS],  # +0.04 ms: U = 82, p = 0.017, but 1.085/1.045 is only 3.8% slower
    "only-b": BASE_MS,
}


@pytest.fixture
def two_runs(tmp_path, run_config):
    """A database with run 1 (A) and run 2 (B) built from RUN_A / RUN_B, plus accuracy and gradient rows."""
    db = tmp_path / "results.sqlite"
    with ResultStore(db) as store:
        for runs, extra in ((RUN_A, train_rows("lstm", [0.5, 0.7], [True, False], [-0.2, -0.4])),
                            (RUN_B, train_rows("lstm", [0.2, 0.4], [True, True], [-0.1, -0.1]))):
            run_id = store.start_run(["rnnbench", "run"], run_config(cells=tuple(runs)), {"hostname": "test"})
            for cell, samples in runs.items():
                store.add_rows(run_id, speed_rows(cell, samples))
            if runs is RUN_B:
                store.add_rows(run_id, speed_rows("breaks", [], status="failed", error="RuntimeError: boom"))
            store.add_rows(run_id, extra)
            store.finish_run(run_id, "complete")
    return db


def by_cell(comparison, timing="forward+backward"):
    return {s.cell: s for s in comparison.speed if s.timing in (timing, "—")}


def test_verdicts_on_known_samples(two_runs):
    """50% slower -> "1.50x slower"; 20% less time -> "1.25x faster"; same samples and a 4.8% shift -> not significant."""
    with ResultStore(two_runs) as store:
        comparison = compare_runs(store, 1, 2)
    rows = by_cell(comparison)
    assert rows["steady"].verdict == "1.50x slower" and rows["steady"].slower
    assert rows["steady"].ratio == pytest.approx(1.5)
    assert rows["steady"].p_value < 0.001
    assert rows["speedup"].verdict == "1.25x faster" and rows["speedup"].faster
    assert rows["same"].verdict == "not significant" and rows["same"].p_value == 1.0
    # the samples do differ (p < 0.05), but by less than the 5% floor for run-to-run drift:
    # U = 4.5+5.5+6.5+7.5+8.5+9.5+4·10 = 82, six tied pairs, variance 100/12·(21 - 36/380) = 174.2
    assert rows["tiny"].p_value == pytest.approx(math.erfc((82 - 50 - 0.5) / math.sqrt(100 / 12 * (21 - 36 / 380)) / math.sqrt(2)))
    assert rows["tiny"].p_value < ALPHA
    assert rows["tiny"].ratio == pytest.approx(1.085 / 1.045)
    assert rows["tiny"].verdict == "not significant"
    assert rows["breaks"].verdict == "failed in B: RuntimeError: boom"
    assert rows["breaks"].ratio is None


def test_overlapping_iqrs_are_not_significant():
    """B's repeats rank higher (U = 77, p = 0.045) and its median is 5.7% higher, but its IQR
    (1.0525 .. 1.1375) overlaps A's (1.0225 .. 1.0675): within one run's noise, so not significant."""
    spread = [1.01, 1.03, 1.05, 1.06, 1.10, 1.11, 1.12, 1.13, 1.14, 1.15]
    comparison = compare_rows([r.__dict__ for r in speed_rows("x", BASE_MS)], [r.__dict__ for r in speed_rows("x", spread)])
    row = comparison.speed[0]
    assert row.p_value == pytest.approx(math.erfc((77 - 50 - 0.5) / math.sqrt(100 / 12 * (21 - 24 / 380)) / math.sqrt(2)))
    assert row.p_value < ALPHA
    assert row.ratio == pytest.approx(1.105 / 1.045)
    assert not row.separated
    assert row.verdict == "not significant"


def test_geometric_mean_and_summary(two_runs):
    """The geometric mean of B/A covers every compared timing (two per condition); failed ones are left out."""
    with ResultStore(two_runs) as store:
        comparison = compare_runs(store, 1, 2)
    tiny = 1.085 / 1.045  # medians: (1.08 + 1.09)/2 over (1.04 + 1.05)/2
    expected = (1.5 * 0.8 * 1.0 * tiny) ** (2 / 8)
    assert comparison.geometric_mean() == pytest.approx(expected)
    assert comparison.geometric_mean("forward") == pytest.approx(expected)
    assert comparison.summary() == (
        f"geometric mean of B/A over 8 timings: {ratio_text(expected)} — forward {ratio_text(expected)}, "
        f"forward+backward {ratio_text(expected)}; 2 slower, 2 faster, 4 not significant")


def test_unmatched_rows_are_listed(two_runs):
    with ResultStore(two_runs) as store:
        comparison = compare_runs(store, 1, 2)
    assert [(u.run, u.description) for u in comparison.unmatched] == [
        ("A", "speed only-a fused cpu B=8 T=20 I=8 H=16"),
        ("B", "speed only-b fused cpu B=8 T=20 I=8 H=16"),
    ]


def test_accuracy_and_gradients_side_by_side(two_runs):
    """Means over seeds and B - A: loss/baseline 0.6 -> 0.3, solved 1 -> 2 of 2, decay -0.3 -> -0.1."""
    with ResultStore(two_runs) as store:
        comparison = compare_runs(store, 1, 2)
    metrics = {m.metric: m for m in comparison.metrics}
    assert metrics["loss/baseline"].a == pytest.approx(0.6)
    assert metrics["loss/baseline"].b == pytest.approx(0.3)
    assert metrics["loss/baseline"].difference == pytest.approx(-0.3)
    assert (metrics["seeds solved"].a, metrics["seeds solved"].b, metrics["seeds solved"].seeds_b) == (1, 2, 2)
    assert metrics["decay/step trained"].difference == pytest.approx(0.2)
    assert metrics["decay/step at init"].a == pytest.approx(-0.4)


def test_speed_rows_match_on_sizes_not_on_name_alone():
    """The same cell at another T is a different condition: unmatched on both sides, not compared."""
    rows_a = [r.__dict__ for r in speed_rows("lstm", BASE_MS, seq_len=20)]
    rows_b = [r.__dict__ for r in speed_rows("lstm", BASE_MS, seq_len=40)]
    comparison = compare_rows(rows_a, rows_b)
    assert comparison.speed == ()
    assert [u.run for u in comparison.unmatched] == ["A", "B"]


def test_regressions_threshold(two_runs):
    with ResultStore(two_runs) as store:
        comparison = compare_runs(store, 1, 2)
    assert {s.cell for s in comparison.regressions(0.05)} == {"steady"}
    assert comparison.regressions(0.6) == []


# --- the command line -------------------------------------------------------------------------


def test_compare_cli_prints_the_tables(rnnbench, two_runs):
    result = rnnbench("compare", "1", "2", "--db", two_runs)
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    steady = [line for line in lines if line.startswith("steady ")]
    assert len(steady) == 2 and all(line.endswith("1.50x slower") for line in steady)
    assert any(line.startswith("speedup ") and line.endswith("1.25x faster") for line in lines)
    assert any(line.startswith("same ") and line.endswith("not significant") for line in lines)
    assert any(line.startswith("geometric mean of B/A over 8 timings") for line in lines)
    assert "Only in run 1 (A), not compared:" in lines and "  speed only-a fused cpu B=8 T=20 I=8 H=16" in lines
    assert "Only in run 2 (B), not compared:" in lines
    assert "failed in B: RuntimeError: boom" in result.out
    assert any(line.startswith("Accuracy") for line in lines) and any(line.startswith("Gradient decay") for line in lines)
    assert "Traceback" not in result.err


def test_fail_above_exits_1_on_a_significant_regression(rnnbench, two_runs):
    failing = rnnbench("compare", "1", "2", "--db", two_runs, "--fail-above", "5%")
    assert failing.code == 1
    assert "steady" in failing.err and "1.50x slower" in failing.err
    assert "2 timing(s) significantly slower by more than 5.0%" in failing.err
    # 50% slower is within a 60% allowance
    assert rnnbench("compare", "1", "2", "--db", two_runs, "--fail-above", "60").code == 0
    # the other way round "steady" got faster, which never fails, and "speedup" got 1.25x slower
    assert rnnbench("compare", "2", "1", "--db", two_runs, "--fail-above", "30%").code == 0
    reverse = rnnbench("compare", "2", "1", "--db", two_runs, "--fail-above", "20%")
    assert reverse.code == 1 and "speedup" in reverse.err and "steady" not in reverse.err


@pytest.mark.parametrize("argv, message", [
    (["compare", "1", "9"], "no run 9"),
    (["compare", "1", "one"], "run must be a run id"),
    (["compare", "1", "2", "--fail-above", "lots"], "is not a percentage"),
    (["compare", "1", "2", "--fail-above", "-5%"], "must be a percentage >= 0"),
    (["compare", "1"], "Missing argument 'RUN_B'"),
])
def test_compare_bad_input_is_one_line_and_exit_2(rnnbench, two_runs, argv, message):
    result = rnnbench(*argv, "--db", two_runs)
    assert result.code == 2
    assert message in result.err
    assert len(result.err.strip().splitlines()) == 1
    assert "Traceback" not in result.err


def test_compare_missing_database(rnnbench, tmp_path):
    result = rnnbench("compare", "1", "2", "--db", tmp_path / "nope.sqlite")
    assert result.code == 2
    assert "results database not found" in result.err
    assert not (tmp_path / "nope.sqlite").exists()


# --- a deliberately slowed cell, measured for real --------------------------------------------

PROBE_PLUGIN = """
    import time

    from torch import nn

    from harness import hookimpl

    SLEEP_S = {sleep_s}


    class Probe(nn.Module):
        def __init__(self, input_size, hidden_size):
            super().__init__()
            self.rnn = nn.RNN(input_size, hidden_size)

        def forward(self, x, state=None):
            if SLEEP_S:
                time.sleep(SLEEP_S)
            return self.rnn(x, state)


    @hookimpl
    def register_cells(register):
        register("probe", Probe, summary="torch.nn.RNN, optionally slowed down by a sleep")
"""


def test_a_slowed_cell_is_flagged_slower(rnnbench, write_plugin, tmp_path):
    """The same cell timed twice, the second time with a 3 ms sleep in forward: "slower", and --fail-above fails.
    The two plugin files differ (their content hashes do), so the verdict is withheld unless --force.

    The default profile's timing (>= 5 repeats, up to 100, 0.5 s) gives enough repeats for the test;
    tiny sizes keep each run near a second.
    """
    db = tmp_path / "results.sqlite"
    sizes = ["--profile", "default", "--measure", "speed", "--cells", "probe", "--device", "cpu", "--seq-len", "4",
             "--batch-size", "2", "--hidden-size", "4", "--input-size", "2", "--db", db, "--out", tmp_path / "out"]
    fast = write_plugin("probe_fast", textwrap.dedent(PROBE_PLUGIN).format(sleep_s=0))
    slow = write_plugin("probe_slow", textwrap.dedent(PROBE_PLUGIN).format(sleep_s=0.003))
    assert rnnbench("run", *sizes, "--plugin", fast).code == 0
    assert rnnbench("run", *sizes, "--plugin", slow).code == 0
    withheld = rnnbench("compare", "1", "latest", "--db", db, "--fail-above", "5%")
    assert "cell probe code: file:probe_fast.py sha256:" in withheld.out
    probe = [line for line in withheld.out.splitlines() if line.startswith("probe ")]
    assert len(probe) == 2 and all("withheld: the cell's code differs" in line for line in probe), withheld.out
    # the gate judged nothing: neither a pass (exit 0) nor a regression (exit 1)
    assert withheld.code == 2 and withheld.err.strip() == ("rnnbench: error: nothing to gate: every timing withheld "
                                                         "(the cell's code differs); pass --force to gate on them "
                                                         "anyway")
    result = rnnbench("compare", "1", "latest", "--db", db, "--fail-above", "5%", "--force")
    probe = [line for line in result.out.splitlines() if line.startswith("probe ")]
    assert len(probe) == 2, result.out
    assert all("x slower" in line for line in probe), result.out
    assert result.code == 1


def test_runs_measured_with_different_speed_methods_are_not_given_speed_verdicts(rnnbench, tmp_path, run_config):
    """A run stored before the harness changed how it times (no speed_method: method 1) and one
    after it: the difference is listed and the speed verdicts are withheld unless --force."""
    db = tmp_path / "results.sqlite"
    with ResultStore(db) as store:
        for environment in ({"hostname": "test"}, {"hostname": "test", "speed_method": 2}, {"speed_method": 2}):
            run_id = store.start_run(["rnnbench", "run"], run_config(), environment)
            store.add_rows(run_id, speed_rows("lstm", BASE_MS))
            store.finish_run(run_id, "complete")
    differing = rnnbench("compare", "1", "2", "--db", db)
    assert differing.code == 0, differing.err
    assert "speed method (harness.speed.SPEED_METHOD): 1 (A) vs 2 (B)  [speed]" in differing.out
    assert "withheld: timing method differs (speed method" in differing.out
    forced = rnnbench("compare", "1", "2", "--db", db, "--force")
    assert "withheld" not in forced.out and "--force: verdicts are given" in forced.out
    same = rnnbench("compare", "2", "3", "--db", db)
    assert same.code == 0 and "speed method" not in same.out
