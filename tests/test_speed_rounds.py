"""Speed timed in rounds, and compare's verdict from the rounds (harness.speed_verdict.rounds_verdict)."""

import math

import pytest
import torch

from harness.compare import compare_rows
from harness.config import TimingConfig
from harness.results import ResultRow
from harness.speed import measure_speed
from harness.speed_verdict import rounds_verdict


def test_a_round_gets_its_share_of_the_budget():
    """5 rounds of (min 5 repeats, max 100, 0.5 s): each at least max(3, ceil(5/5)) = 3 repeats, at most 20, 0.1 s."""
    per_round = TimingConfig(warmup=2, min_repeats=5, max_repeats=100, min_time_s=0.5, rounds=5).per_round()
    assert per_round == TimingConfig(warmup=0, min_repeats=3, max_repeats=20, min_time_s=0.1, rounds=1)
    single = TimingConfig(rounds=1)
    assert single.per_round() is single


def test_measure_speed_keeps_one_median_and_one_minimum_per_round():
    cell = torch.nn.GRU(3, 4)
    timing = TimingConfig(warmup=1, min_repeats=3, max_repeats=4, min_time_s=0.0, rounds=3)
    result = measure_speed(cell, 2, 5, 3, "cpu", timing)
    assert len(result.forward_round_medians) == len(result.forward_backward_round_medians) == 3
    assert len(result.forward_round_minima) == len(result.forward_backward_round_minima) == 3
    assert result.forward.n == 9  # 3 rounds x 3 repeats, pooled
    samples = result.forward.samples
    for index, (median, minimum) in enumerate(zip(result.forward_round_medians, result.forward_round_minima)):
        own = sorted(samples[3 * index:3 * index + 3])  # rounds are pooled in order
        assert (minimum, median) == (own[0], own[1])


def speed_rows(run_minima_s: list[float], medians_s: list[float] | None = None) -> list[ResultRow]:
    base = dict(item="speed|gru|fused|cpu|B2|T5|I3|H4", measurement="speed", cell="gru", device="cpu", impl="fused",
                batch_size=2, seq_len=5, input_size=3, hidden_size=4, plugin="rnnbench", plugin_version="1.0")
    medians_s = medians_s or [1.5 * v for v in run_minima_s]
    stats = {"samples": medians_s, "median": sorted(medians_s)[len(medians_s) // 2],
             "round_medians": medians_s, "round_minima": run_minima_s}
    return [ResultRow(**base, metric=metric, value=stats["median"], unit="s", stats=stats)
            for metric in ("forward_s", "forward_backward_s")]


def test_compare_judges_by_the_round_minima():
    """A: round minima 1.00, 1.02, 0.98, 1.01, 0.99 ms; B: 10% slower each. Every difference of logs is ln 1.1 plus
    the spread of A's rounds, so the Hodges-Lehmann estimate is 1.100 and the 99% interval (smallest to largest
    difference, with 5 rounds a side) excludes 1: "1.10x slower". B's medians equal A's: minima decide."""
    a = [1.00e-3, 1.02e-3, 0.98e-3, 1.01e-3, 0.99e-3]
    b = [1.1 * v for v in a]
    comparison = compare_rows(speed_rows(a, medians_s=[2e-3] * 5), speed_rows(b, medians_s=[2e-3] * 5))
    forward = comparison.speed[0]
    assert forward.method == "rounds" and (forward.rounds_a, forward.rounds_b) == (5, 5)
    assert forward.ratio == pytest.approx(1.1)
    assert forward.verdict == "1.10x slower" and forward.slower
    expected = rounds_verdict(a, b)
    assert (forward.low, forward.high) == (pytest.approx(expected.low), pytest.approx(expected.high))


def test_round_to_round_noise_is_not_called_a_change():
    """The same spread of rounds in both runs, medians 3% apart: under the 5% floor, "not significant"."""
    a = [1.00e-3, 1.05e-3, 0.95e-3, 1.02e-3, 0.98e-3]
    b = [1.03 * v for v in reversed(a)]
    forward = compare_rows(speed_rows(a), speed_rows(b)).speed[0]
    assert forward.ratio == pytest.approx(1.03) and forward.verdict == "not significant"


def test_runs_with_round_medians_only_are_judged_by_them():
    """A run of speed method 3 kept medians only: compared with it, both sides are judged by medians."""
    a, b = [1.00e-3, 1.02e-3, 0.98e-3, 1.01e-3, 0.99e-3], [2.00e-3, 2.02e-3, 1.98e-3, 2.01e-3, 1.99e-3]
    rows_a, rows_b = speed_rows([0.5e-3] * 5, medians_s=a), speed_rows([0.5e-3] * 5, medians_s=b)
    for row in rows_a:
        row.stats.pop("round_minima", None)
    forward = compare_rows(rows_a, rows_b).speed[0]
    assert forward.ratio == pytest.approx(2.0) and forward.verdict == "2.00x slower"


def test_three_rounds_a_side_give_no_rank_verdict():
    forward = compare_rows(speed_rows([1e-3] * 3), speed_rows([2e-3] * 3)).speed[0]
    assert forward.method == "rounds" and forward.verdict == "too few rounds for a 99% interval: 3 and 3 (5 a side suffice)"
    assert not forward.significant


def test_rows_without_rounds_fall_back_to_the_repeats():
    rows_a, rows_b = speed_rows([1e-3] * 8), speed_rows([2e-3] * 8)
    for row in rows_a + rows_b:
        row.stats.pop("round_medians", None)
        row.stats.pop("round_minima", None)
    forward = compare_rows(rows_a, rows_b).speed[0]
    assert forward.method == "repeats" and forward.p_value is not None and not math.isnan(forward.ratio)


# ---- several runs a side, pooled one value per run ------------------------------------------
def _store_runs(db, run_config, per_run_minima: list[list[float]], timing_rounds: int | None = None):
    """Runs 1..n, each with one gru speed row whose round minima are given."""
    from dataclasses import replace

    from harness.config import TimingConfig
    from harness.store import ResultStore

    with ResultStore(db) as store:
        for minima in per_run_minima:
            config = run_config(cells=("gru",))
            if timing_rounds is not None and len(minima) != 5:
                config = replace(config, timing=TimingConfig(rounds=timing_rounds))
            run_id = store.start_run(["rnnbench", "run"], config, {"hostname": "test"})
            store.add_rows(run_id, speed_rows(minima))
            store.finish_run(run_id, "complete")


def test_pooled_runs_give_one_value_per_run(tmp_path, run_config, rnnbench):
    """Runs 1, 3, 5, 7, 9 (A) and 2, 4, 6, 8, 10 (B), alternating; each run's rounds are tight, but run 9 of A fell
    in a slow spell (+30%). Per run the value is the median of its round minima: A 1.00, 1.01, 0.99, 1.02, 1.30 ms;
    B 1.10, 1.11, 1.09, 1.12, 1.10 ms. Of the 25 ratios b/a sorted, the five against the spell come first (0.84-0.86),
    then 1.0686, 1.0784, 1.0784, 1.0792, 1.0882, 1.0891, 1.0891 and, 13th, 1.09/1.00: B/A = 1.090. With 5 values a
    side the interval is [smallest, largest] ratio = [1.09/1.30, 1.12/0.99], which holds 1: not significant.
    Judged by run 1 against run 2 alone, their tight rounds would call 1.10x slower."""
    from harness.compare import compare_runs
    from harness.store import ResultStore

    a_values, b_values = [1.00, 1.01, 0.99, 1.02, 1.30], [1.10, 1.11, 1.09, 1.12, 1.10]
    runs = []
    for a, b in zip(a_values, b_values):
        runs += [[a * 1e-3 * f for f in (1.0, 1.001, 0.999, 1.002, 0.998)],
                 [b * 1e-3 * f for f in (1.0, 1.001, 0.999, 1.002, 0.998)]]
    db = tmp_path / "results.sqlite"
    _store_runs(db, run_config, runs)
    with ResultStore(db) as store:
        pooled = compare_runs(store, "1,3,5,7,9", [2, 4, 6, 8, 10])
        single = compare_runs(store, 1, 2)
    forward = pooled.speed[0]
    assert (forward.rounds_a, forward.rounds_b, forward.round_unit) == (5, 5, "runs")
    assert forward.ratio == pytest.approx(1.09)
    assert forward.low == pytest.approx(1.09 / 1.30) and forward.high == pytest.approx(1.12 / 0.99)
    assert forward.verdict == "not significant"
    assert forward.n_a == forward.n_b == 25  # every run's repeats pooled (5 runs x 5 stored samples)
    assert single.speed[0].verdict == "1.10x slower"
    assert any(note.startswith("one run a side") for note in single.notes)
    assert not any(note.startswith("one run a side") for note in pooled.notes)
    assert pooled.run_a == (1, 3, 5, 7, 9) and any("one value per run" in note for note in pooled.notes)
    result = rnnbench("compare", "1,3,5,7,9", "2,4,6,8,10", "--db", db)
    assert result.code == 0
    assert "Comparing runs 1, 3, 5, 7, 9 (A) with runs 2, 4, 6, 8, 10 (B)" in result.out
    assert "5/5 runs [0.838, 1.131]" in result.out


def test_pooled_runs_of_different_configurations_are_refused(tmp_path, run_config, rnnbench):
    db = tmp_path / "results.sqlite"
    _store_runs(db, run_config, [[1e-3] * 5, [1e-3] * 5, [1e-3] * 3], timing_rounds=3)
    result = rnnbench("compare", "1,3", "2", "--db", db)
    assert result.code == 2 and "Traceback" not in result.err
    assert "runs 1 and 3 of side A were measured differently (timing" in result.err
    result = rnnbench("compare", "1,", "2", "--db", db)
    assert result.code == 2 and "run A must be a run id, 'latest', or ids separated by commas" in result.err


def test_a_run_on_both_sides_or_pooled_with_other_code_is_refused(tmp_path, run_config, rnnbench):
    from harness.store import ResultStore

    db = tmp_path / "results.sqlite"
    _store_runs(db, run_config, [[1e-3] * 5] * 3)
    result = rnnbench("compare", "1,2", "2", "--db", db)
    assert result.code == 2 and "run 2 is on both sides; each run belongs to A or to B" in result.err
    for side_a, side_b in (("1,3", "3,2"), ("1,latest", "3")):  # pooled on both sides; named by 'latest'
        result = rnnbench("compare", side_a, side_b, "--db", db)
        assert result.code == 2 and result.err.strip() == ("rnnbench: error: run 3 is on both sides; each run "
                                                           "belongs to A or to B")
    with ResultStore(db) as store:  # run 3's cell came from an edited plugin file
        store.conn.execute("UPDATE results SET plugin_version = 'sha256:edited' WHERE run_id = 3")
        store.conn.commit()
    result = rnnbench("compare", "1,3", "2", "--db", db)
    assert result.code == 2 and "Traceback" not in result.err
    assert "runs 1 and 3 of side A ran different code of cell gru" in result.err


# ---- the table's empirical null ----------------------------------------------------------
A_ROUNDS = [1.00e-3, 1.01e-3, 0.99e-3, 1.02e-3, 0.98e-3]  # ln spread ±0.02


def _table(log_ratios: list[float]) -> tuple[list[ResultRow], list[ResultRow]]:
    """One cell per log ratio (c1, c2, ... at H = 1, 2, ...), A's rounds tight, B's the same times e^L."""
    rows_a, rows_b = [], []
    for hidden, log_ratio in enumerate(log_ratios, start=1):
        for rows, factor in ((rows_a, 1.0), (rows_b, math.exp(log_ratio))):
            for row in speed_rows([hidden * factor * v for v in A_ROUNDS]):
                rows.append(ResultRow(**{**row.__dict__, "hidden_size": hidden, "cell": f"c{hidden}",
                                         "item": f"speed|c{hidden}|fused|cpu|B2|T5|I3|H{hidden}"}))
    return rows_a, rows_b


def test_a_whole_table_shift_is_not_a_change_of_each_cell():
    """Every timing of B 30% slower (a machine slower for the whole run), and one 1.30 x 1.20 = 1.56x: the null's
    centre is 1.30 and its spread 0, so only the 1.56x timing, 20% beyond the centre, is called."""
    rows_a, rows_b = _table([math.log(1.3)] * 10 + [math.log(1.56)])
    comparison = compare_rows(rows_a, rows_b)
    called = {s.hidden_size: s.verdict for s in comparison.speed if s.significant}
    assert called == {11: "1.56x slower"}
    assert {s.verdict for s in comparison.speed if s.hidden_size != 11} == {
        "not significant (within the other cells' drift, 1.30x)"}
    assert any("moved by 1.30x at their median" in note for note in comparison.notes)
    assert comparison.table_shifts == (("cpu", pytest.approx(1.3), 22),)


def test_a_timing_is_called_only_beyond_three_robust_sd_of_the_table():
    """ln B/A of ten cells (two timings each): -0.10 -0.06 -0.02 0 0 0 0.02 0.06 0.10 0.40. Over the whole table:
    median 0; absolute deviations sorted 0 0 0 .02 .02 .06 .06 .10 .10 .40, median 0.04, robust sd 1.4826 x 0.04.
    Each cell is judged against the other nine: for the cell at 0.10 they are -0.10 -0.06 -0.02 0 0 0 0.02 0.06 0.40,
    median 0, absolute deviations 0 0 0 .02 .02 .06 .06 .10 .40, median 0.02, threshold 3 x 1.4826 x 0.02 = 0.089
    < 0.10: called; likewise -0.10. For 0.06 (others' median 0, deviations 0 0 0 .02 .02 .06 .10 .10 .40, median .02,
    threshold 0.089): not called; likewise -0.06. 0.40 stands out from any eight of the rest: called."""
    from harness.compare import empirical_null

    logs = [-0.10, -0.06, -0.02, 0.0, 0.0, 0.0, 0.02, 0.06, 0.10, 0.40]
    comparison = compare_rows(*_table(logs))
    null = empirical_null(list(comparison.speed), 0.05)
    assert null.centre == pytest.approx(1.0) and null.spread == pytest.approx(1.4826 * 0.04)
    assert null.threshold == pytest.approx(3 * 1.4826 * 0.04)
    called = sorted({s.hidden_size for s in comparison.speed if s.significant})
    assert called == [1, 9, 10] and comparison.speed[-1].verdict == "1.49x slower"
    drift = sorted({s.hidden_size for s in comparison.speed if "other cells' drift" in s.verdict})
    assert drift == [2, 8]


def test_small_tables_keep_their_round_verdicts():
    """Fewer than 8 timings of other cells (four cells of two timings: 6 others) give no null: a shift is called
    row by row, and so is one cell of a sweep (one cell, many sizes: no other cells at all)."""
    comparison = compare_rows(*_table([math.log(1.3)] * 4))
    assert all(s.verdict == "1.30x slower" for s in comparison.speed)
    from dataclasses import replace

    rows_a, rows_b = ([replace(row, cell="gru") for row in rows] for rows in _table([math.log(1.3)] * 10))
    assert all(s.verdict == "1.30x slower" for s in compare_rows(rows_a, rows_b).speed)


def test_pooled_runs_get_no_null():
    comparison = compare_rows(*_table([math.log(1.3)] * 10), single_runs=False)
    assert all(s.verdict == "1.30x slower" for s in comparison.speed) and comparison.table_shifts == ()


def test_a_gate_fails_on_a_whole_table_shift():
    from reports.compare_text import regression_lines

    comparison = compare_rows(*_table([math.log(1.3)] * 10))
    lines = regression_lines(comparison, 0.10)
    assert lines == ["regression: every timing on cpu together: 1.30x slower at the median of 20 timings (a slower "
                     "machine during run B, or slower software)", "1 device table(s) slower as a whole by more than 10.0%"]


def test_a_whole_table_shift_under_another_model_names_the_model():
    """Run B stacked its cells 2 layers deep (a ``model`` difference): every verdict is withheld, and the 1.30x shift
    of the whole table is put down to the other model, in the note and in the gate's line, not to the machine."""
    from harness.run_diff import Difference
    from reports.compare_text import nothing_to_gate, regression_lines

    layers = Difference("layers", "1", "2", "model")
    comparison = compare_rows(*_table([math.log(1.3)] * 10), differences=(layers,))
    assert {s.verdict for s in comparison.speed} == {"withheld: the model differs (layers)"}
    (note,) = [note for note in comparison.notes if "moved by 1.30x" in note]
    assert note.endswith("the whole table moving is expected here: the model differs (layers), so B timed another "
                         "model (any drift of the machine is mixed in)")
    assert "the machine ran faster or slower" not in note
    # Without --force the gate judges none of the withheld timings, the table's shift included, and says so.
    assert regression_lines(comparison, 0.10) == []
    assert nothing_to_gate(comparison) == ("nothing to gate: every timing withheld (the model differs (layers)); "
                                           "pass --force to gate on them anyway")
    forced = compare_rows(*_table([math.log(1.3)] * 10), differences=(layers,), force=True)
    assert nothing_to_gate(forced) is None
    assert regression_lines(forced, 0.10)[-2:] == ["regression: every timing on cpu together: 1.30x slower at the "
                                                   "median of 20 timings (the model differs (layers): B timed another "
                                                   "model)", "1 device table(s) slower as a whole by more than 10.0%"]
    plain = compare_rows(*_table([math.log(1.3)] * 10))
    assert any(note.endswith("the machine ran faster or slower during one of the runs, or the software differs")
               for note in plain.notes)


def test_a_gate_whose_timings_are_all_withheld_judges_nothing(tmp_path, run_config, rnnbench):
    """Run B stacked its cell 2 layers deep and timed it 1.3x slower: the verdict is withheld, so ``--fail-above``
    exits 2 with one line (it neither passes a check it did not make nor calls a regression); ``--force`` gates."""
    from harness.store import ResultStore

    db = tmp_path / "results.sqlite"
    with ResultStore(db) as store:
        for layers, minima in ((1, [1e-3] * 5), (2, [1.3e-3] * 5)):
            run_id = store.start_run(["rnnbench", "run"], run_config(cells=("gru",), layers=layers), {"hostname": "t"})
            store.add_rows(run_id, speed_rows(minima))
            store.finish_run(run_id, "complete")
    result = rnnbench("compare", "1", "2", "--fail-above", "5", "--db", db)
    assert "withheld" in result.out
    assert result.code == 2 and result.err.strip() == ("rnnbench: error: nothing to gate: every timing withheld (the "
                                                       "model differs (layers)); pass --force to gate on them anyway")
    forced = rnnbench("compare", "1", "2", "--fail-above", "5", "--force", "--db", db)
    assert forced.code == 1 and "regression: gru" in forced.err
