"""Speed rounds spread over passes (TimingConfig.spread): the plan, the merged rows, and a real run."""

from dataclasses import replace

import pytest

from harness.config import TimingConfig
from harness.results import merge_speed_passes, pass_suffix
from harness.stats import Summary

BASE = "speed|gru|fused|cpu|B2|T5|I3|H4"


def _pass_rows(index: int, samples_fwd, samples_fb, *, memory: float | None = None, status: str = "ok") -> list[dict]:
    common = dict(item=BASE + pass_suffix(index, 3), measurement="speed", cell="gru", impl="fused", device="cpu",
                  batch_size=2, seq_len=5, input_size=3, hidden_size=4, status=status, id=10 * index)
    if status != "ok":
        return [{**common, "metric": None, "value": None, "error": "RuntimeError: boom", "stats": None}]
    rows = [{**common, "metric": metric, "value": float(sorted(s)[len(s) // 2]), "unit": "s",
             "stats": {**Summary(tuple(s)).as_dict(), "round_medians": [float(sorted(s)[len(s) // 2])],
                       "round_minima": [float(min(s))]}}
            for metric, s in (("forward_s", samples_fwd), ("forward_backward_s", samples_fb))]
    rows.append({**common, "metric": "steps_per_s", "value": 10 / rows[1]["value"], "unit": "(B*T)/s",
                 "stats": {"basis": "forward_backward median"}})
    if memory is not None:
        rows.append({**common, "metric": "peak_memory_bytes", "value": memory, "unit": "bytes", "stats": {"method": "x"}})
    return rows


def test_passes_merge_into_one_item_in_round_order():
    """Three passes stored pass-major around an unrelated row. Forward repeats pooled: 1, 2, 3 | 4, 5, 6 | 7, 8, 9
    (stored 3rd, 1st, 2nd), median 5; forward+backward 10, 20, 30, 40, 50, 60 ... median of 9 values = 50;
    throughput B*T / 50 = 0.2; peak memory from the first pass only."""
    other = {"item": "train|x", "measurement": "accuracy", "metric": "loss", "value": 1.0}
    rows = (_pass_rows(1, (4, 5, 6), (40, 50, 60)) + [other] + _pass_rows(2, (7, 8, 9), (70, 80, 90))
            + _pass_rows(0, (1, 2, 3), (10, 20, 30), memory=1e6))
    merged = merge_speed_passes(rows)
    assert merged[0]["item"] == BASE and merged[4] is other
    by_metric = {r["metric"]: r for r in merged if r["item"] == BASE}
    assert set(by_metric) == {"forward_s", "forward_backward_s", "steps_per_s", "peak_memory_bytes"}
    forward = by_metric["forward_s"]
    assert forward["value"] == 5.0 and forward["stats"]["n"] == 9
    assert forward["stats"]["round_minima"] == [1.0, 4.0, 7.0] and forward["stats"]["round_medians"] == [2.0, 5.0, 8.0]
    assert by_metric["forward_backward_s"]["value"] == 50.0
    assert by_metric["steps_per_s"]["value"] == pytest.approx(2 * 5 / 50.0)
    assert by_metric["peak_memory_bytes"]["value"] == 1e6


def test_a_failed_pass_fails_the_condition():
    rows = _pass_rows(0, (1, 2, 3), (10, 20, 30), memory=1.0) + _pass_rows(1, (), (), status="failed")
    merged = merge_speed_passes(rows)
    assert [(r["item"], r["status"], r["error"]) for r in merged] == [(BASE, "failed", "round 2: RuntimeError: boom")]


def test_passes_of_other_code_fail_the_condition_and_stats_are_kept():
    first = _pass_rows(0, (1, 2, 3), (10, 20, 30), memory=1.0)
    for row in first:
        row["plugin_version"] = "sha256:a"
        if row["stats"]:
            row["stats"]["isolation"] = "alone"
    second = [{**row, "plugin_version": "sha256:b"} for row in _pass_rows(1, (4, 5, 6), (40, 50, 60))]
    [failed] = merge_speed_passes(first + second)
    assert failed["status"] == "failed" and "different plugin_version (sha256:a, sha256:b)" in failed["error"]
    merged = merge_speed_passes(first + [{**row, "plugin_version": "sha256:a"} for row in second])
    forward = next(r for r in merged if r["metric"] == "forward_s")
    # within-round stability: each pass's IQR over its median (1/2, 1/5), the median of the two taken upper
    assert forward["stats"]["isolation"] == "alone" and forward["stats"]["rounds_planned"] == 3
    assert forward["stats"]["round_iqr_ratio"] == pytest.approx(0.5)


def test_rows_without_passes_are_untouched():
    rows = [{"item": BASE, "measurement": "speed", "metric": "forward_s", "value": 1.0},
            {"item": "train|speed|round1of2", "measurement": "accuracy", "metric": "loss", "value": 2.0}]
    assert merge_speed_passes(rows) == rows


def test_the_plan_times_round_r_of_every_condition_before_round_r_plus_1(registry, run_config):
    from harness.runner import SpeedItem, plan

    config = run_config(cells=("gru", "lstm"), timing=TimingConfig(rounds=3, spread=True))
    items = [i for i in plan(config, registry) if isinstance(i, SpeedItem)]
    conditions = len({(i.cell.name, i.impl) for i in items})
    assert len(items) == 3 * conditions
    assert [i.round_index for i in items] == [r for r in range(3) for _ in range(conditions)]
    assert items[0].key.endswith("|round1of3") and items[-1].label().endswith("round 3/3")
    unspread = [i for i in plan(replace(config, timing=TimingConfig(rounds=3)), registry) if isinstance(i, SpeedItem)]
    assert len(unspread) == conditions and "|round" not in unspread[0].key


def test_a_spread_run_stores_passes_and_reads_back_one_item(rnnbench, tmp_path):
    """The default profile spreads its 5 timing rounds over passes: 5 stored items for indrnn's one condition,
    read back as one item with 5 rounds."""
    from harness.store import ResultStore

    db = tmp_path / "r.sqlite"
    result = rnnbench("run", "--cells", "indrnn", "--measure", "speed", "--workers", "1", "--db", db,
                      "--out", tmp_path / "out")
    assert result.code == 0, result.err
    assert "round 5/5" in result.err and "5 ok" in result.err
    with ResultStore(db) as store:
        stored = store.stored_items(1)
        rows = store.rows(1)
    assert len(stored) == 5 and all("|round" in key for key in stored)
    forward = [r for r in rows if r["metric"] == "forward_s"]
    assert len(forward) == 1 and "|round" not in forward[0]["item"]
    assert len(forward[0]["stats"]["round_minima"]) == 5
    assert [r["metric"] for r in rows].count("peak_memory_bytes") == 1
    assert "indrnn" in result.out  # the speed table is printed from the merged rows


def test_steady_allocator_reuses_freed_memory_without_page_faults():
    """After steady_allocator(), an 8 MiB array freed and allocated again comes from the heap: touching it the
    second time costs (almost) no page faults. With glibc's default policy a fresh process faults about 500 times
    on the first and the second fill alike (a same-sized request is mmapped again)."""
    import resource
    import sys

    import numpy as np

    from harness.speed import steady_allocator

    if not sys.platform.startswith("linux") or not steady_allocator():
        pytest.skip("needs glibc's mallopt")

    def faults_to_fill() -> int:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        array = np.empty(2 * 2**20, dtype=np.float32)  # 8 MiB
        array.fill(1.0)
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
        del array
        return faults

    faults_to_fill()
    assert faults_to_fill() < 200


def test_peak_memory_counts_what_a_call_holds_not_heap_kept_for_reuse():
    """A call holding 8 MiB (a) and 8 MiB (b), then freeing a and allocating 16 MiB (c) while b lives, holds at most
    24 MiB. On a heap that keeps freed memory (the timing policy), a's 8 MiB stays resident beside c and the RSS
    peaks near 32 MiB; peak_memory measures with every such block mapped on its own, so it reports 24 MiB. In a
    fresh process: a heap that already holds free chunks of these sizes serves them again, mapped or not."""
    import subprocess
    import sys

    if not sys.platform.startswith("linux"):
        pytest.skip("needs glibc's mallopt and /proc")
    script = (
        "import numpy as np\n"
        "from harness.speed import peak_memory, steady_allocator\n"
        "assert steady_allocator()\n"
        "mib = 2 ** 20\n"
        "def call():\n"
        "    a = np.ones(2 * mib, dtype=np.float32)\n"
        "    b = np.ones(2 * mib, dtype=np.float32)\n"
        "    del a\n"
        "    c = np.ones(4 * mib, dtype=np.float32)\n"
        "    return b.sum() + c.sum()\n"
        "peak, method = peak_memory(call, 'cpu')\n"
        "print(peak / mib, method)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    peak_mib, method = done.stdout.split(" ", 1)
    assert float(peak_mib) == pytest.approx(24, rel=0.05)
    assert "mapped one by one" in method
