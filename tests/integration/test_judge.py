"""Judge mode through the whole system: a test suite is compiled once and each case runs in a sandbox of
its own, in every language, over real HTTP against the real services."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from devstack import Stack
from tests.integration.conftest import new_session, wait_terminal

pytestmark = pytest.mark.integration

# Reads n; prints 2n; loops forever for a negative n.
DOUBLER = {
    "python": "n = int(input())\nwhile n < 0:\n    pass\nprint(2 * n)\n",
    "javascript": (
        "const n = parseInt(require('fs').readFileSync(0, 'utf8'));\nwhile (n < 0) {}\nconsole.log(2 * n);\n"
    ),
    "c": '#include <stdio.h>\nint main(void) { int n; scanf("%d", &n); while (n < 0) {} printf("%d\\n", 2 * n); }\n',
    # volatile: an empty loop without side effects may be compiled away in C++.
    "cpp": (
        "#include <iostream>\nint main() { volatile int n; std::cin >> (int&) n;"
        " while (n < 0) {} std::cout << 2 * n << std::endl; }\n"
    ),
    "go": ('package main\nimport "fmt"\nfunc main() { var n int; fmt.Scan(&n); for n < 0 {}; fmt.Println(2 * n) }\n'),
    "java": (
        "public class Main { public static void main(String[] a) {"
        " int n = new java.util.Scanner(System.in).nextInt(); while (n < 0) {} System.out.println(2 * n); } }\n"
    ),
    "php": '<?php\n$n = (int) trim(fgets(STDIN));\nwhile ($n < 0) {}\necho 2 * $n, "\\n";\n',
    "ruby": "n = gets.to_i\nloop {} if n < 0\nputs 2 * n\n",
}
COMPILED = {"c", "cpp", "go", "java"}


def suite(api: httpx.Client, session_id: str, **body: Any) -> dict[str, Any]:
    accepted = api.post(f"/code-sessions/{session_id}/run", json=body)
    assert accepted.status_code == 202, accepted.text
    return wait_terminal(api, accepted.json()["execution_id"], timeout_s=120)


@pytest.mark.parametrize("language", sorted(DOUBLER))
def test_passing_failing_and_timed_out_cases(api: httpx.Client, languages: dict[str, Any], language: str) -> None:
    session_id = new_session(api, languages[language]["id"], DOUBLER[language])
    cases = [
        {"name": "doubles", "stdin": "21\n", "expected_output": "42\n"},
        {"name": "wrong", "stdin": "4\n", "expected_output": "9\n"},
        {"name": "hangs", "stdin": "-1\n", "expected_output": "0\n"},
        {"stdin": "0\n", "expected_output": "0"},  # no name; trailing newline ignored by trim
    ]
    result = suite(api, session_id, tests=cases, time_limit_ms=3000)
    assert result["status"] == "COMPLETED", result
    verdicts = [(c["name"], c["status"], c["passed"]) for c in result["tests"]]
    assert verdicts == [
        ("doubles", "COMPLETED", True),
        ("wrong", "COMPLETED", False),
        ("hangs", "TIMEOUT", False),
        ("case 4", "COMPLETED", True),
    ]
    assert (result["tests_passed"], result["tests_total"]) == (2, 4)
    assert result["tests"][1]["stdout"] == "8\n"
    assert result["tests"][2]["reason"].startswith("time_limit_exceeded")
    compiles = [stage for stage in result["stages"] if stage["name"] == "compile"]
    # Compiled once, or not at all when an earlier run of the same source was cached.
    assert len(compiles) <= (1 if language in COMPILED else 0)


def test_exactly_one_compile_for_a_new_source(api: httpx.Client, languages: dict[str, Any]) -> None:
    source = DOUBLER["c"].replace("2 * n", "2 * n + 0 * 7919")  # never seen: the compile cache cannot answer
    session_id = new_session(api, languages["c"]["id"], source)
    result = suite(api, session_id, tests=[{"stdin": f"{n}\n", "expected_output": f"{2 * n}\n"} for n in range(10)])
    assert result["tests_passed"] == 10
    assert [stage["name"] for stage in result["stages"]] == ["compile"]


def test_stop_on_first_failure_skips_the_rest(api: httpx.Client, languages: dict[str, Any]) -> None:
    session_id = new_session(api, languages["python"]["id"], DOUBLER["python"])
    cases = [{"stdin": "1\n", "expected_output": "2\n"}, {"stdin": "2\n", "expected_output": "5\n"}]
    cases += [{"stdin": "3\n", "expected_output": "6\n"}] * 3
    result = suite(api, session_id, tests=cases, stop_on_first_failure=True)
    assert [c["status"] for c in result["tests"]] == ["COMPLETED", "COMPLETED", "SKIPPED", "SKIPPED", "SKIPPED"]
    assert [c["passed"] for c in result["tests"]] == [True, False, False, False, False]


@pytest.mark.parametrize(
    ("compare", "tolerance", "printed", "expected", "passed"),
    [
        ("trim", None, "a  \nb\n\n\n", "a\nb", True),
        ("trim", None, " a\n", "a\n", False),
        ("exact", None, "a\n", "a", False),
        ("exact", None, "a\n", "a\n", True),
        ("tokens", None, "1  2\n3\n", "1 2 3", True),
        ("tokens", None, "1.0\n", "1", False),
        ("tokens", 0.01, "3.1416\n", "3.14", True),
        ("tokens", 0.0001, "3.1416\n", "3.14", False),
    ],
)
def test_compare_modes(
    api: httpx.Client,
    languages: dict[str, Any],
    compare: str,
    tolerance: float | None,
    printed: str,
    expected: str,
    passed: bool,
) -> None:
    session_id = new_session(api, languages["python"]["id"], f"print({printed!r}, end='')\n")
    body: dict[str, Any] = {"tests": [{"expected_output": expected}], "compare": compare}
    if tolerance is not None:
        body["float_tolerance"] = tolerance
    assert suite(api, session_id, **body)["tests"][0]["passed"] is passed


def test_a_compile_error_runs_no_case(api: httpx.Client, languages: dict[str, Any]) -> None:
    session_id = new_session(api, languages["c"]["id"], "int main(void) { return nope; }\n")
    result = suite(api, session_id, tests=[{"expected_output": "x"}] * 3)
    assert (result["status"], result["reason"]) == ("FAILED", "compile_error")
    assert [c["status"] for c in result["tests"]] == ["SKIPPED"] * 3
    assert result["tests_passed"] == 0


def test_nothing_one_case_writes_is_seen_by_the_next(api: httpx.Client, languages: dict[str, Any]) -> None:
    source = "import os\nprint(os.path.exists('left'))\nopen('left', 'w').write('x')\n"
    session_id = new_session(api, languages["python"]["id"], source)
    result = suite(api, session_id, tests=[{"expected_output": "False\n"}] * 3)
    assert result["tests_passed"] == 3


def test_each_case_gets_its_args(api: httpx.Client, languages: dict[str, Any]) -> None:
    session_id = new_session(api, languages["python"]["id"], "import sys\nprint(' '.join(sys.argv[1:]))\n")
    result = suite(api, session_id, tests=[{"args": ["a b", "$HOME"], "expected_output": "a b $HOME"}, {}])
    assert [c["passed"] for c in result["tests"]] == [True, True]


def test_a_long_output_is_cut_per_case(api: httpx.Client, languages: dict[str, Any]) -> None:
    session_id = new_session(api, languages["python"]["id"], "print('x' * 100000)\n")
    result = suite(api, session_id, tests=[{"expected_output": "x" * 100000}] * 2)
    case = result["tests"][0]
    # Compared whole, stored cut.
    assert case["passed"] and case["stdout_truncated"] and len(case["stdout"]) <= 8192


def test_verdicts_stream_as_they_are_decided(api: httpx.Client, stack: Stack, languages: dict[str, Any]) -> None:
    session_id = new_session(api, languages["python"]["id"], DOUBLER["python"])
    cases = [{"name": f"c{n}", "stdin": f"{n}\n", "expected_output": f"{2 * n}\n"} for n in range(5)]
    execution_id = api.post(f"/code-sessions/{session_id}/run", json={"tests": cases}).json()["execution_id"]
    kinds = []
    url = f"{stack.config.gateway_url}/executions/{execution_id}/stream"
    with httpx.stream("GET", url, timeout=60) as events:
        kind = ""
        for line in events.iter_lines():
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: ") and kind in ("test", "result"):
                kinds.append((kind, json.loads(line.removeprefix("data: "))))
    tests = [data for kind, data in kinds if kind == "test"]
    assert [(t["index"], t["name"], t["status"], t["passed"]) for t in tests] == [
        (n, f"c{n}", "COMPLETED", True) for n in range(5)
    ]
    assert kinds[-1][0] == "result" and kinds[-1][1]["tests_passed"] == 5


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"tests": []}, 400),
        ({"tests": [{}] * 101}, 400),
        ({"tests": [{"stdin": 5}]}, 400),
        ({"tests": [{}], "stdin": "x"}, 400),
        ({"tests": [{}], "compare": "fuzzy"}, 400),
        ({"tests": [{}], "float_tolerance": 0.5}, 400),  # tolerance goes with tokens
        ({"tests": [{"stdin": "x" * (1024 * 1024 + 1)}]}, 413),
        ({"tests": [{"expected_output": "x" * 1024 * 1024}] * 5}, 413),
    ],
)
def test_bad_suites_are_refused(
    api: httpx.Client, languages: dict[str, Any], body: dict[str, Any], status: int
) -> None:
    session_id = new_session(api, languages["python"]["id"], "print(1)\n")
    refused = api.post(f"/code-sessions/{session_id}/run", json=body)
    assert refused.status_code == status, refused.text
    assert "error" in refused.json()
