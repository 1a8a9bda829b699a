"""The printed table: every figure with its ratio to the bare work, the original system's figure and the target.

Figures arrive as the result file's `figures` section (Spread dicts); this module only arranges
and formats them, so a result file from any earlier step can be re-rendered
(`python -m bench.report bench/results/<file>.json`).
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


@dataclass(frozen=True)
class Original:
    """The Node.js system's figure from issue 5 (2-worker value where it gave two)."""

    text: str
    value: float | None


@dataclass(frozen=True)
class Target:
    """Issue 5's target for LCE: at most (latency) or at least (rates) `value`."""

    value: float
    at_least: bool

    def met(self, figure: float) -> bool:
        return figure >= self.value if self.at_least else figure <= self.value

    def __str__(self) -> str:
        return f"{'>=' if self.at_least else '<='} {format_number(self.value)}"


@dataclass(frozen=True)
class Row:
    measure: str
    unit: str
    figure: Spread | None
    bare: Spread | None = None  # the same work done directly
    sandboxed: Spread | None = None  # the same work through the sandbox launcher alone
    original: Original | None = None
    target: Target | None = None

    def cells(self) -> list[str]:
        value = self.figure.median if self.figure else None
        vs_sandboxed = format_ratio(ratio(value, self.sandboxed.median if self.sandboxed else None))
        if value is not None and self.sandboxed is not None and self.unit == "ms":
            vs_sandboxed += f" ({value - self.sandboxed.median:+.1f} ms)"
        original = self.original
        target = "-"
        if self.target is not None and value is not None:
            target = f"{self.target} {'ok' if self.target.met(value) else 'MISS'}"
        return [
            self.measure,
            self.unit,
            format_spread(self.figure),
            format_ratio(ratio(value, self.bare.median if self.bare else None)),
            vs_sandboxed,
            original.text if original else "-",
            format_ratio(ratio(value, original.value if original else None)),
            target,
        ]


HEADER = ["measure", "unit", "LCE median [range]", "vs bare", "vs sandboxed bare", "original", "LCE/orig", "target"]


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

    table = _bare_rows(get)
    bare_of = {
        "python": ("python", "run"),
        "python_wait": ("python", "run"),
        "python_stream": ("python", "run"),
        "c_seen": ("c", "total"),
        "c_unseen": ("c", "total"),
        "java": ("java", "total"),
    }
    originals = {
        ("python", "p50"): Original("24.0 (27.6 1w)", 24.0),
        ("c_seen", "p50"): Original("54 (64 1w)", 54.0),
    }
    targets = {
        ("python", "p50"): Target(20, False),
        ("c_seen", "p50"): Target(15, False),
        ("c_unseen", "p50"): Target(45, False),
    }
    for workload, (language, part) in bare_of.items():
        for pct in ("p50", "p90", "p99"):
            table.append(
                Row(
                    f"end to end {workload.replace('_', ' ')} {pct}",
                    "ms",
                    get("end_to_end", workload, pct),
                    bare=get("bare", language, part, "bare"),
                    sandboxed=get("bare", language, part, "sandboxed"),
                    original=originals.get((workload, pct)),
                    target=targets.get((workload, pct)),
                )
            )
    table += _throughput_rows(get, nproc)
    table += judge_rows(figures)
    table += _endpoint_rows(get)
    return table


def _bare_rows(get: Callable[..., Spread | None]) -> list[Row]:
    """Each program twice: run directly (the unit of every ratio), then through the sandbox launcher."""
    originals = {("python", "run"): Original("9-11", 10.0), ("c", "total"): Original("31-37", 34.0)}
    programs = {"python": ("run",), "c": ("total", "compile", "run"), "java": ("total", "compile", "run")}
    table = []
    for language, parts in programs.items():
        for part in parts:
            what = f"{language} {'compile+run' if part == 'total' else part}"
            plain = get("bare", language, part, "bare")
            original = originals.get((language, part))
            sandboxed = get("bare", language, part, "sandboxed")
            table.append(Row(f"bare {what}", "ms", plain, original=original))
            table.append(Row(f"sandboxed bare {what}", "ms", sandboxed, bare=plain, original=original))
    return table


def _throughput_rows(get: Callable[..., Spread | None], nproc: int) -> list[Row]:
    """Rates compare with the ceiling the bare work allows: nproc cores each doing nothing but that run."""

    def ceiling(kind: str) -> Spread | None:
        per_run = get("bare", "python", "run", kind)
        if per_run is None:
            return None
        return Spread(nproc * 1000 / per_run.median, nproc * 1000 / per_run.high, nproc * 1000 / per_run.low, per_run.n)

    return [
        Row(
            f"throughput {name}",
            "runs/s",
            get("throughput", key),
            bare=ceiling("bare"),
            sandboxed=ceiling("sandboxed"),
            original=Original("75 (62 1w)", 75.0),
            target=Target(90, True),
        )
        for name, key in (
            ("200 python (client)", "completions_per_s"),
            ("200 python (server)", "server_completions_per_s"),
        )
    ]


def judge_rows(figures: Figures) -> list[Row]:
    """Issue 11's comparison (bench/judge.py); none in the results of steps before it."""
    if "judge" not in figures:
        return []
    cases = figures["judge"]["cases"]
    return [
        Row(f"judge {cases} C cases as one suite", "ms", _spread(figures, "judge", "suite_ms")),
        Row(f"judge {cases} C cases as {cases} runs", "ms", _spread(figures, "judge", "runs_ms")),
        Row("judge speedup (runs / suite)", "x", _spread(figures, "judge", "speedup"), target=Target(5, True)),
    ]


def _endpoint_rows(get: Callable[..., Spread | None]) -> list[Row]:
    endpoints = {
        "get_execution": ("GET /executions/{id}", 4400.0, Original("1.6", 1.6)),
        "create_session": ("POST /code-sessions", 1800.0, None),
        "update_source": ("PATCH /code-sessions/{id}", 2000.0, None),
        "get_session": ("GET /code-sessions/{id}", 3000.0, None),
    }
    table = []
    for key, (name, original_rps, original_p50) in endpoints.items():
        is_execution = key == "get_execution"
        table += [
            Row(f"{name} c8 p50", "ms", get("endpoints", key, "p50_ms"), original=original_p50),
            Row(
                f"{name} c8 p99",
                "ms",
                get("endpoints", key, "p99_ms"),
                target=Target(10, False) if is_execution else None,
            ),
            Row(
                f"{name} c8",
                "req/s",
                get("endpoints", key, "rps"),
                original=Original(f"~{original_rps:,.0f}", original_rps),
                target=Target(original_rps, True),
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


def main(path: str) -> None:
    result = json.loads(Path(path).read_text())
    print(render(rows(result["figures"], result["machine"]["nproc"])))


if __name__ == "__main__":
    main(sys.argv[1])
