"""Every language through the whole system: hello world, the template as-is, a compile (or syntax)
error and a runtime error, each ending in the right terminal state with the right output."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.integration.conftest import new_session, run

pytestmark = pytest.mark.integration

HELLO = {
    "python": 'print("hello from python")\n',
    "javascript": 'console.log("hello from javascript");\n',
    "c": '#include <stdio.h>\nint main(void) { puts("hello from c"); return 0; }\n',
    "cpp": '#include <iostream>\nint main() { std::cout << "hello from cpp\\n"; }\n',
    "go": 'package main\n\nimport "fmt"\n\nfunc main() { fmt.Println("hello from go") }\n',
    "java": 'public class Main { public static void main(String[] a) { System.out.println("hello from java"); } }\n',
    "php": '<?php\necho "hello from php\\n";\n',
    "ruby": 'puts "hello from ruby"\n',
}

# Compiled languages fail in the compile stage (reason compile_error); interpreted ones at start-up.
BROKEN = {
    "python": ("print(\n", "runtime_error", "SyntaxError"),
    "javascript": ("console.log(\n", "runtime_error", "SyntaxError"),
    "c": ("int main(void) { return undefined_name; }\n", "compile_error", "undefined_name"),
    "cpp": ("int main() { undefined_function(); }\n", "compile_error", "undefined_function"),
    "go": ("package main\n\nfunc main() { x := 1 }\n", "compile_error", "declared"),
    "java": (
        'public class Main { public static void main(String[] a) { int x = "s"; } }\n',
        "compile_error",
        "incompatible types",
    ),
    "php": ("<?php\necho ;\n", "runtime_error", "syntax error"),
    "ruby": ("puts(\n", "runtime_error", "syntax error"),
}

CRASHING = {
    "python": ('raise ValueError("boom")\n', 1, "ValueError"),
    "javascript": ('throw new Error("boom");\n', 1, "boom"),
    "c": ("int main(void) { return 3; }\n", 3, ""),
    "cpp": ("#include <cstdlib>\nint main() { std::exit(4); }\n", 4, ""),
    "go": ("package main\n\nfunc main() {\n\tvar a []int\n\t_ = a[3]\n}\n", 2, "index out of range"),
    "java": (
        'public class Main { public static void main(String[] a) { throw new RuntimeException("boom"); } }\n',
        1,
        "RuntimeException",
    ),
    "php": ('<?php\nthrow new Exception("boom");\n', 255, "boom"),
    "ruby": ('raise "boom"\n', 1, "boom"),
}


def output(result: dict[str, Any]) -> str:
    return result["stdout"] + result["stderr"]


@pytest.mark.parametrize("name", sorted(HELLO))
def test_hello_world(api: httpx.Client, languages: dict[str, dict[str, Any]], name: str) -> None:
    result = run(api, new_session(api, languages[name]["id"], HELLO[name]))
    assert result["status"] == "COMPLETED", result
    assert result["stdout"] == f"hello from {name}\n"
    assert result["exit_code"] == 0
    assert result["execution_time_ms"] >= 0


@pytest.mark.parametrize("name", sorted(HELLO))
def test_template_runs_as_is(api: httpx.Client, languages: dict[str, dict[str, Any]], name: str) -> None:
    language = languages[name]
    session_id = new_session(api, language["id"])
    assert api.get(f"/code-sessions/{session_id}").json()["source_code"] == language["template_code"]
    result = run(api, session_id)
    assert result["status"] == "COMPLETED", result
    assert result["stdout"] == "Hello World\n"


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_compile_or_syntax_error(api: httpx.Client, languages: dict[str, dict[str, Any]], name: str) -> None:
    source, reason, message = BROKEN[name]
    result = run(api, new_session(api, languages[name]["id"], source))
    assert result["status"] == "FAILED", result
    assert result["reason"] == reason
    assert message.lower() in output(result).lower()


@pytest.mark.parametrize("name", sorted(CRASHING))
def test_runtime_error(api: httpx.Client, languages: dict[str, dict[str, Any]], name: str) -> None:
    source, exit_code, message = CRASHING[name]
    result = run(api, new_session(api, languages[name]["id"], source))
    assert result["status"] == "FAILED", result
    assert result["reason"] == "runtime_error"
    assert result["exit_code"] == exit_code
    assert message in output(result)


def test_c_segfault_is_reported_as_signal(api: httpx.Client, languages: dict[str, dict[str, Any]]) -> None:
    source = "int main(void) { volatile int *p = 0; *p = 1; return 0; }\n"
    result = run(api, new_session(api, languages["c"]["id"], source))
    assert result["status"] == "FAILED", result
    assert result["reason"] == "signal:SIGSEGV"


def test_time_limit_ends_in_timeout(api: httpx.Client, languages: dict[str, dict[str, Any]]) -> None:
    session_id = new_session(api, languages["python"]["id"], "while True:\n    pass\n")
    result = run(api, session_id, time_limit_ms=500)
    assert result["status"] == "TIMEOUT", result
    assert result["reason"].startswith("time_limit_exceeded")
    assert result["execution_time_ms"] < 5000


# Each reads two lines from stdin and prints their sum, then its arguments, one per line.
SUM_AND_ARGS = {
    "python": "import sys\na, b = sys.stdin.read().split()\nprint(int(a) + int(b))\nfor x in sys.argv[1:]: print(x)\n",
    "javascript": (
        'const [a, b] = require("fs").readFileSync(0, "utf8").trim().split(/\\s+/);\n'
        "console.log(Number(a) + Number(b));\nfor (const x of process.argv.slice(2)) console.log(x);\n"
    ),
    "c": (
        "#include <stdio.h>\nint main(int argc, char **argv) { long a, b;\n"
        ' if (scanf("%ld %ld", &a, &b) != 2) return 9;\n'
        ' printf("%ld\\n", a + b); for (int i = 1; i < argc; i++) puts(argv[i]); return 0; }\n'
    ),
    "cpp": (
        "#include <iostream>\nint main(int argc, char **argv) { long a, b; std::cin >> a >> b;\n"
        ' std::cout << a + b << "\\n"; for (int i = 1; i < argc; i++) std::cout << argv[i] << "\\n"; }\n'
    ),
    "go": (
        'package main\n\nimport (\n\t"fmt"\n\t"os"\n)\n\nfunc main() {\n\tvar a, b int\n\tfmt.Scan(&a, &b)\n'
        "\tfmt.Println(a + b)\n\tfor _, x := range os.Args[1:] {\n\t\tfmt.Println(x)\n\t}\n}\n"
    ),
    "java": (
        "import java.util.Scanner;\npublic class Main { public static void main(String[] args) {\n"
        " Scanner in = new Scanner(System.in); long a = in.nextLong(), b = in.nextLong();\n"
        " System.out.println(a + b); for (String x : args) System.out.println(x); } }\n"
    ),
    "php": '<?php\n[$a, $b] = preg_split("/\\s+/", trim(stream_get_contents(STDIN)));\necho $a + $b, "\\n";\n'
    'foreach (array_slice($argv, 1) as $x) echo $x, "\\n";\n',
    "ruby": "a, b = STDIN.read.split.map(&:to_i)\nputs a + b\nARGV.each { |x| puts x }\n",
}
# What a shell would have expanded, split or run, had the arguments gone through one.
SHELLISH_ARGS = ["a b", "$(id)", "`id`", "*", "; exit 3", "'\"", "$HOME"]


@pytest.mark.parametrize("name", sorted(SUM_AND_ARGS))
def test_stdin_and_args(api: httpx.Client, languages: dict[str, dict[str, Any]], name: str) -> None:
    session_id = new_session(api, languages[name]["id"], SUM_AND_ARGS[name])
    result = run(api, session_id, stdin="40\n2\n", args=SHELLISH_ARGS)
    assert result["status"] == "COMPLETED", result
    assert result["stdout"].split("\n") == ["42", *SHELLISH_ARGS, ""]


def test_stdin_over_1_mib_is_413(api: httpx.Client, languages: dict[str, dict[str, Any]]) -> None:
    session_id = new_session(api, languages["python"]["id"], "print(1)\n")
    refused = api.post(f"/code-sessions/{session_id}/run", json={"stdin": "x" * (1024 * 1024 + 1)})
    assert refused.status_code == 413, refused.text
    assert "stdin" in refused.json()["error"]
