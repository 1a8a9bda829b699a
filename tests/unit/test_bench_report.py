"""The bench's table (bench/report.py): ratios, targets and verdicts, the best client path, the markdown
summary; and the pure parts that feed it: CPU per run by process, never-seen sources, round summaries."""

from __future__ import annotations

from typing import Any

import pytest

from bench import cpu, report, runs
from bench.__main__ import BARE_REPEATS, WORKLOADS, summarise
from bench.report import Original, Row, Target, markdown, render
from bench.stats import spread


def _figure(value: float) -> dict[str, float]:
    return spread([value]).as_dict()


def _rows_by_measure(figures: dict[str, Any]) -> dict[str, Row]:
    return {row.measure: row for row in report.rows(figures, nproc=2)}


def test_row_cells_give_bare_ratio_original_ratio_targets_and_verdict() -> None:
    row = Row(
        "python never-seen p50, best (poll 2 ms)",
        "ms",
        spread([30.0, 28.0, 35.0]),
        bare=spread([10.0]),
        original=Original("23.7 (i15)", 23.7),
        targets=(Target(20, at_least=False), Target(1.0, at_least=False, of="bare")),
    )
    assert row.cells() == [
        "python never-seen p50, best (poll 2 ms)",
        "ms",
        "30.0 [28.0-35.0]",
        "10.0",
        "x3.00",
        "23.7 (i15)",
        "x1.27",
        "<= 20.0; bare <= x1.00",
        "MISS",
    ]


@pytest.mark.parametrize(
    ("targets", "verdict"),
    [
        ((), "-"),
        ((Target(20, False),), "PASS"),
        ((Target(20, False), Target(1.0, False, "bare")), "PASS"),
        ((Target(20, False), Target(0.5, False, "bare")), "MISS"),  # the ratio 0.9 misses
        ((Target(100, True),), "MISS"),
        ((Target(0.8, False, "original"),), "n/a"),  # no original to compare with
    ],
)
def test_the_verdict_needs_every_target_met(targets: tuple[Target, ...], verdict: str) -> None:
    assert Row("m", "ms", spread([18.0]), bare=spread([20.0]), targets=targets).verdict() == verdict


def test_targets_say_what_they_compare() -> None:
    assert str(Target(150, at_least=False)) == "<= 150"
    assert str(Target(1.0, at_least=False, of="bare")) == "bare <= x1.00"
    assert str(Target(0.8, at_least=True, of="original")) == "original >= x0.80"
    assert Target(0.8, at_least=True, of="original").met(0.8)


def test_a_language_is_judged_by_its_best_client_path_against_its_bare_compile_and_run() -> None:
    figures = {
        "bare": {"go": {"total": {"bare": _figure(200.0)}}},
        "end_to_end": {
            "go_poll": {"p50": _figure(180.0)},
            "go_wait": {"p50": _figure(140.0)},
            "go_stream": {"p50": _figure(150.0)},
        },
    }
    best = _rows_by_measure(figures)["go never-seen p50, best (POST ?wait=30)"]
    assert best.figure == spread([140.0])
    assert best.compared("bare") == pytest.approx(0.7)
    assert [str(t) for t in best.targets] == ["<= 150", "bare <= x1.00"]
    assert best.verdict() == "PASS"
    assert best.summary


def test_python_is_also_judged_against_the_original_and_its_100_ms_client_against_the_model() -> None:
    figures = {
        "bare": {"python": {"total": {"bare": _figure(12.0)}}},
        "end_to_end": {
            "python_poll": {"p50": _figure(22.0)},
            "python_wait": {"p50": _figure(18.0)},
            "python_poll100": {"p50": _figure(104.0)},
        },
    }
    table = _rows_by_measure(figures)
    best = table["python never-seen p50, best (POST ?wait=30)"]
    assert best.compared("original") == pytest.approx(18.0 / 23.7)
    assert best.verdict() == "MISS"  # 18 ms <= 20 and x0.76 of the original, but x1.5 the bare run
    client = table["python never-seen p50, 100 ms client (one POST ?wait=30)"]
    assert client.original == Original("101.6 (model)", 101.6)
    assert client.compared("original") == pytest.approx(18.0 / 101.6)
    assert client.verdict() == "PASS"
    assert table["python never-seen p50, plain GET every 100 ms"].verdict() == "-"


def test_rates_are_judged_against_the_original() -> None:
    figures = {
        "throughput": {"completions_per_s": _figure(70.0)},
        "endpoints": {"get_session": {"rps": _figure(2300.0)}},
    }
    table = _rows_by_measure(figures)
    assert table["burst of 200 python, client (aim x1.2 orig)"].verdict() == "PASS"  # 70 >= 0.8 x 76.9
    assert table["GET /code-sessions/{id} c8"].original == Original("2,271 (i15)", 2271.0)
    assert table["GET /code-sessions/{id} c8"].verdict() == "PASS"


def test_the_burst_cpu_rows_follow_the_processes_measured() -> None:
    figures = {"burst_cpu_ms": {"gateway": _figure(5.0), "sandboxes": _figure(12.0)}}
    table = _rows_by_measure(figures)
    assert table["burst CPU per run: sandboxes"].figure == spread([12.0])
    assert "burst CPU per run: gateway" in table


def test_render_aligns_columns_under_the_header() -> None:
    lines = render([Row("a", "ms", spread([1.0])), Row("longer measure", "req/s", None)]).splitlines()
    assert lines[0].startswith("measure")
    assert set(lines[1]) <= {"-", " "}
    assert lines[2].index("ms") == lines[3].index("req/s") == lines[0].index("unit")


def test_markdown_holds_the_summary_rows_only_with_the_note() -> None:
    table = [Row("kept | piped", "ms", spread([1.0]), summary=True), Row("left out", "ms", spread([2.0]))]
    text = markdown(table, "make bench, then")
    lines = text.splitlines()
    assert lines[0] == "# make bench, then"
    assert lines[4] == "| " + " | ".join(report.HEADER) + " |"
    assert lines[6].startswith("| kept \\| piped | ms | 1.00 |")
    assert "left out" not in text
    assert report.NOTE in text


def test_the_heading_says_when_and_under_what_load() -> None:
    result = {
        "started_at": "2026-12-05T10:21:29+00:00",
        "settings": {"rounds": 3},
        "machine": {"loadavg_start": [4.12, 1, 1], "loadavg_end": [10.92, 1, 1], "git_commit": "6779c29", "nproc": 2},
    }
    assert report.heading(result) == (
        "make bench, 2026-12-05T10:21:29+00:00, 3 round(s), commit 6779c29, load average 4.12 -> 10.92 on 2 cores"
    )


def _reading(executor: tuple[float, float], gateway: float, backends: dict[int, float]) -> cpu.Reading:
    processes = {"executor-1": cpu.ProcessCpu(*executor), "gateway": cpu.ProcessCpu(gateway, 0.0)}
    return cpu.Reading(processes, backends)


def test_cpu_per_run_splits_executors_from_their_sandboxes_and_counts_new_backends() -> None:
    earlier = _reading((1.0, 2.0), 3.0, {10: 1.0, 11: 5.0})
    later = _reading((1.5, 4.0), 3.4, {10: 1.2, 12: 0.3})  # backend 11 is gone, 12 came
    spent = cpu.spent_ms_per_run(earlier, later, runs=10)
    assert spent == pytest.approx(
        {"executor-1": 50.0, "sandboxes": 200.0, "gateway": 40.0, "postgres": 50.0, "total": 340.0}
    )


@pytest.mark.parametrize("language", report.LANGUAGES)
def test_a_never_seen_source_ends_with_a_unique_comment_in_every_language(language: str) -> None:
    first, second = runs.unseen(language, "hello\n"), runs.unseen(language, "hello\n")
    assert first != second
    assert first.startswith(f"hello\n{runs.LINE_COMMENTS[language]} bench ")
    assert first.endswith("\n")


def _round(value: float) -> dict[str, Any]:
    """One round's raw figures, every one of them `value`."""
    latency = {"p50": value, "p90": value, "p99": value, "incorrect": 0}
    timing = {"compile": [0.0], "run": [value], "total": [value]}
    return {
        "bare": {language: {"bare": timing, "sandboxed": None} for language in BARE_REPEATS},
        "end_to_end": dict.fromkeys(WORKLOADS, latency),
        "endpoints": {"get_session": {"p50_ms": value, "p99_ms": value, "rps": value, "errors": 0}},
        "throughput": {
            "completions_per_s": value,
            "server_completions_per_s": value,
            "incorrect": 0,
            "cpu_ms_per_run": {"gateway": value, "sandboxes": 2 * value},
        },
        "judge": {"suite_ms": value, "runs_ms": value, "speedup": 1.0, "incorrect": 0},
    }


def test_summarise_takes_the_median_and_range_over_rounds_for_every_figure() -> None:
    figures = summarise([_round(10.0), _round(30.0), _round(20.0)])
    assert figures["end_to_end"]["java_wait"]["p50"] == spread([10.0, 30.0, 20.0]).as_dict()
    assert figures["bare"]["go"]["total"]["bare"]["median"] == 20.0
    assert "sandboxed" not in figures["bare"]["go"]["total"]
    assert figures["burst_cpu_ms"]["sandboxes"] == spread([20.0, 60.0, 40.0]).as_dict()
