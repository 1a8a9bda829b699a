"""The printed table: every figure with its ratio to the bare work, the original system's figure, the target
and the verdict; and its summary as a markdown table (bench/results/latest.md).

Figures arrive as the result file's `figures` section (Spread dicts); this module only arranges
and formats them, so a result file from any earlier step can be re-rendered
(`python -m bench.report bench/results/<file>.json [--markdown]`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.stats import Spread, format_number, format_ratio, format_spread, ratio

Figures = dict[str, Any]

LANGUAGES = ("python", "javascript", "php", "ruby", "c", "cpp", "go", "java")
# How the client learns a run's result: workload name suffix -> what the table calls it.
PATHS = {"poll": "poll 2 ms", "wait": "POST ?wait=30", "stream": "SSE stream"}
# Issue 15: a never-seen hello world end to end, at most this many ms at p50 with the best client path.
E2E_TARGET_MS = {"python": 20, "javascript": 20, "php": 20, "ruby": 20, "c": 45, "cpp": 100, "go": 150, "java": 150}


@dataclass(frozen=True)
class Original:
    """The Node.js system's figure: issue 15's (i15, measured by its author on this machine) or issue 5's (i5)."""

    text: str
    value: float | None


ORIGINAL_PYTHON_E2E = Original("23.7 (i15)", 23.7)
ORIGINAL_GET_EXECUTION_MS = 1.6  # issue 5's GET /executions/{id} p50
# The original polled every 100 ms: its first poll, at 100 ms, sees the 23.7 ms run ended; then one GET.
ORIGINAL_POLL_100 = Original(f"{100 + ORIGINAL_GET_EXECUTION_MS:.1f} (model)", 100 + ORIGINAL_GET_EXECUTION_MS)

NOTE = (
    "original: the Node.js system, which cannot run here: figures measured by issue 15's author on this"
    " machine (i15) or issue 5's (i5). 100 ms client: the original (plain GET every 100 ms, a 23.7 ms run) is"
    f" modelled as its first poll at 100 ms seeing the result, 100 ms + one GET ({ORIGINAL_GET_EXECUTION_MS} ms,"
    " i5); LCE's 100 ms client makes one request, POST .../run?wait=30, answered as the run ends. bare: the"
    " same compile and run done directly on the host in the same invocation (for a rate: the cores' ceiling"
    " at that cost); ratio = LCE / bare. never-seen: the source ends with a unique comment every run. best:"
    " the fastest client path at p50."
)

ORIGIN = (
    "`make bench` writes this table to bench/results/latest.md (`python -m bench.report FILE --markdown` from"
    " any result file); bench/RESULTS.md is the one last copied there by hand. The whole table is printed."
)


@dataclass(frozen=True)
class Target:
    """A target for LCE: at most (latency) or at least (rates) `value`, of the figure itself, of its
    ratio to the bare work ("bare") or of its ratio to the original ("original")."""

    value: float
    at_least: bool
    of: str = "figure"

    def met(self, compared: float) -> bool:
        return compared >= self.value if self.at_least else compared <= self.value

    def __str__(self) -> str:
        sign = ">=" if self.at_least else "<="
        if self.of == "figure":
            return f"{sign} {format_number(self.value)}"
        return f"{self.of} {sign} {format_ratio(self.value)}"


@dataclass(frozen=True)
class Row:
    measure: str
    unit: str
    figure: Spread | None
    bare: Spread | None = None  # the same work done directly
    original: Original | None = None
    targets: tuple[Target, ...] = ()
    summary: bool = False  # one of the figures a reader needs: in the markdown table

    def compared(self, of: str) -> float | None:
        """The figure as a target of kind `of` judges it: itself, or its ratio to the bare work or the original."""
        value = self.figure.median if self.figure else None
        if of == "bare":
            return ratio(value, self.bare.median if self.bare else None)
        if of == "original":
            return ratio(value, self.original.value if self.original else None)
        return value

    def verdict(self) -> str:
        """PASS when every target is met, MISS when one is not, n/a when a figure a target needs is missing."""
        if not self.targets:
            return "-"
        compared = [self.compared(target.of) for target in self.targets]
        if any(value is None for value in compared):
            return "n/a"
        met = all(target.met(value) for target, value in zip(self.targets, compared, strict=True) if value is not None)
        return "PASS" if met else "MISS"

    def cells(self) -> list[str]:
        return [
            self.measure,
            self.unit,
            format_spread(self.figure),
            format_number(self.bare.median) if self.bare else "-",
            format_ratio(self.compared("bare")),
            self.original.text if self.original else "-",
            format_ratio(self.compared("original")),
            "; ".join(str(target) for target in self.targets) or "-",
            self.verdict(),
        ]


HEADER = ["measure", "unit", "LCE median [range]", "bare", "ratio", "original", "LCE/orig", "target", "PASS/MISS"]


def _spread(figures: Figures, *path: str) -> Spread | None:
    node: Any = figures
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return Spread(**node) if isinstance(node, dict) and "median" in node else None


def rows(figures: Figures, nproc: int) -> list[Row]:
    def get(*path: str) -> Spread | None:
        return _spread(figures, *path)

    return [
        *_bare_rows(get),
        *_never_seen_rows(get),
        *_python_client_rows(get),
        *_seen_rows(get),
        *_throughput_rows(get, nproc),
        *_burst_cpu_rows(figures),
        *judge_rows(figures),
        *_endpoint_rows(get),
    ]


def _bare_rows(get: Callable[..., Spread | None]) -> list[Row]:
    """Each program twice: run directly (the unit of every ratio), then through the sandbox launcher."""
    table = []
    for language in LANGUAGES:
        plain = get("bare", language, "total", "bare")
        table.append(Row(f"bare {language} compile+run", "ms", plain))
        table.append(
            Row(f"sandboxed bare {language} compile+run", "ms", get("bare", language, "total", "sandboxed"), plain)
        )
    return table


def best_path(get: Callable[..., Spread | None], language: str) -> tuple[str, Spread] | None:
    """The client path with the lowest never-seen p50 of `language`, and that figure."""
    measured = [(path, figure) for path in PATHS if (figure := get("end_to_end", f"{language}_{path}", "p50"))]
    return min(measured, key=lambda item: item[1].median) if measured else None


def _never_seen_rows(get: Callable[..., Spread | None]) -> list[Row]:
    table = []
    for language in LANGUAGES:
        bare = get("bare", language, "total", "bare")
        for path, name in PATHS.items():
            table.append(
                Row(f"{language} never-seen p50, {name}", "ms", get("end_to_end", f"{language}_{path}", "p50"), bare)
            )
        best = best_path(get, language)
        targets = (Target(E2E_TARGET_MS[language], False), Target(1.0, False, "bare"))
        is_python = language == "python"
        table.append(
            Row(
                f"{language} never-seen p50, best ({PATHS[best[0]] if best else '-'})",
                "ms",
                best[1] if best else None,
                bare,
                ORIGINAL_PYTHON_E2E if is_python else None,
                (*targets, Target(0.8, False, "original")) if is_python else targets,
                summary=True,
            )
        )
    return table


def _python_client_rows(get: Callable[..., Spread | None]) -> list[Row]:
    """A realistic client, at most one request per 100 ms: LCE's long poll, and plain polling for comparison."""
    bare = get("bare", "python", "total", "bare")
    return [
        Row(
            "python never-seen p50, 100 ms client (one POST ?wait=30)",
            "ms",
            get("end_to_end", "python_wait", "p50"),
            bare,
            ORIGINAL_POLL_100,
            (Target(0.5, False, "original"),),
            summary=True,
        ),
        Row(
            "python never-seen p50, plain GET every 100 ms",
            "ms",
            get("end_to_end", "python_poll100", "p50"),
            bare,
            ORIGINAL_POLL_100,
            summary=True,
        ),
    ]


def _seen_rows(get: Callable[..., Spread | None]) -> list[Row]:
    """Earlier rounds' rows: a source the compile cache has seen, polled every 2 ms."""
    return [
        Row(
            "c seen p50, poll 2 ms",
            "ms",
            get("end_to_end", "c_seen", "p50"),
            get("bare", "c", "total", "bare"),
            Original("54 (i5)", 54.0),
            (Target(15, False),),
            summary=True,
        ),
        Row(
            "java seen p50, poll 2 ms",
            "ms",
            get("end_to_end", "java_seen", "p50"),
            get("bare", "java", "total", "bare"),
        ),
    ]


def _throughput_rows(get: Callable[..., Spread | None], nproc: int) -> list[Row]:
    """Rates compare with the ceiling the bare work allows: nproc cores each doing nothing but that run."""
    per_run = get("bare", "python", "total", "bare")
    ceiling = None
    if per_run is not None:
        ceiling = Spread(
            nproc * 1000 / per_run.median, nproc * 1000 / per_run.high, nproc * 1000 / per_run.low, per_run.n
        )
    return [
        Row(
            f"burst of 200 python, {name} (aim x1.2 orig)",
            "runs/s",
            get("throughput", key),
            ceiling,
            Original("76.9 (i15)", 76.9),
            (Target(0.8, True, "original"),),
            summary=True,
        )
        for name, key in (("client", "completions_per_s"), ("server", "server_completions_per_s"))
    ]


def _burst_cpu_rows(figures: Figures) -> list[Row]:
    """CPU per run of the burst by process (own stack only); the sandboxes are the executors' descendants."""
    names = sorted(figures.get("burst_cpu_ms", {}), key=lambda name: (name == "total", name))
    return [
        Row(f"burst CPU per run: {name}", "CPU ms", _spread(figures, "burst_cpu_ms", name), summary=True)
        for name in names
    ]


def judge_rows(figures: Figures) -> list[Row]:
    """Issue 11's comparison (bench/judge.py); none in the results of steps before it."""
    if "judge" not in figures:
        return []
    cases = figures["judge"]["cases"]
    return [
        Row(f"judge {cases} C cases as one suite", "ms", _spread(figures, "judge", "suite_ms")),
        Row(f"judge {cases} C cases as {cases} runs", "ms", _spread(figures, "judge", "runs_ms")),
        Row(
            "judge speedup (runs / suite)",
            "x",
            _spread(figures, "judge", "speedup"),
            targets=(Target(5, True),),
            summary=True,
        ),
    ]


def _endpoint_rows(get: Callable[..., Spread | None]) -> list[Row]:
    endpoints = {
        "get_execution": ("GET /executions/{id}", Original("4,400 (i5)", 4400.0)),
        "create_session": ("POST /code-sessions", Original("1,800 (i5)", 1800.0)),
        "update_source": ("PATCH /code-sessions/{id}", Original("2,000 (i5)", 2000.0)),
        "get_session": ("GET /code-sessions/{id}", Original("2,271 (i15)", 2271.0)),
    }
    table = []
    for key, (name, original_rps) in endpoints.items():
        is_execution = key == "get_execution"
        table += [
            Row(
                f"{name} c8 p50",
                "ms",
                get("endpoints", key, "p50_ms"),
                original=Original(f"{ORIGINAL_GET_EXECUTION_MS} (i5)", ORIGINAL_GET_EXECUTION_MS)
                if is_execution
                else None,
            ),
            Row(
                f"{name} c8 p99",
                "ms",
                get("endpoints", key, "p99_ms"),
                targets=(Target(10, False),) if is_execution else (),
            ),
            Row(
                f"{name} c8",
                "req/s",
                get("endpoints", key, "rps"),
                original=original_rps,
                targets=(Target(1.0, True, "original"),),
                summary=True,
            ),
        ]
    return table


def render(table: list[Row]) -> str:
    lines = [HEADER, *(row.cells() for row in table)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(HEADER))]
    out = []
    for index, line in enumerate(lines):
        out.append("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
        if index == 0:
            out.append("  ".join("-" * width for width in widths))
    return "\n".join(out)


def markdown(table: list[Row], heading: str) -> str:
    """The summary rows as one markdown table, under a heading saying when and where, and the note."""
    lines = [f"# {heading}", "", ORIGIN, "", "| " + " | ".join(HEADER) + " |", "|" + " --- |" * len(HEADER)]
    lines += [
        "| " + " | ".join(cell.replace("|", "\\|") for cell in row.cells()) + " |" for row in table if row.summary
    ]
    return "\n".join([*lines, "", NOTE, ""])


def heading(result: dict[str, Any]) -> str:
    """When and on what a result was measured: figures from a loaded machine are not those of an idle one."""
    described = result["machine"]
    load = f"{described['loadavg_start'][0]} -> {described['loadavg_end'][0]}"
    return (
        f"make bench, {result['started_at']}, {result['settings']['rounds']} round(s), commit"
        f" {described['git_commit']}, load average {load} on {described['nproc']} cores"
    )


def main(argv: list[str]) -> None:
    """`python -m bench.report FILE` prints the whole table; with --markdown, the summary for bench/RESULTS.md."""
    result = json.loads(Path(argv[0]).read_text())
    table = rows(result["figures"], result["machine"]["nproc"])
    print(markdown(table, heading(result)) if "--markdown" in argv[1:] else render(table))


if __name__ == "__main__":
    main(sys.argv[1:])
