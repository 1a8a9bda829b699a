"""Loop advice, one table per kind of source: flagged loops, loops that exit (never flagged), and sources
the analysis must survive."""

from __future__ import annotations

import pytest

from executor.loop_advice import MAX_WARNINGS, advise

# (language, source, lines flagged)
FLAGGED: list[tuple[str, str, list[int]]] = [
    ("python", "while True:\n    pass\n", [1]),
    ("python", "while 1:\n    print('x')\n", [1]),
    ("python", "x = 0\nwhile True:\n    x += 1\n", [2]),
    # A break of an inner loop leaves only the inner loop.
    ("python", "while True:\n    for i in range(3):\n        break\n", [1]),
    ("python", "while True:\n    while True:\n        break\n", [1]),
    # Defining a function that returns or exits does not leave the loop.
    ("python", "while True:\n    def f():\n        return 1\n    g = lambda: exit()\n", [1]),
    ("python", "while True:\n    class C:\n        def m(self):\n            raise ValueError\n", [1]),
    ("python", "while True:\n    pass\nwhile True:\n    pass\n", [1, 3]),
    ("python", "while True:\n    obj.exit()\n", [1]),
    ("javascript", "while (true) {\n  console.log(1);\n}\n", [1]),
    ("javascript", "let i = 0;\nfor (;;) { i++; }\n", [2]),
    ("c", "int main(void) {\n  while(1) {}\n}\n", [2]),
    ("c", "int main(void) { while (1); }\n", [1]),
    ("cpp", "int main() {\n  for ( ; ; ) {\n    int x = 1;\n  }\n}\n", [2]),
    ("java", "class Main { public static void main(String[] a) { while (true) { a.hashCode(); } } }", [1]),
    ("go", "package main\nfunc main() {\n\tfor {\n\t}\n}\n", [3]),
    ("php", "<?php\nwhile (TRUE) { echo 1; }\n", [2]),
    ("php", "<?php\nwhile(true){ $x = 1; }\n", [2]),
    ("ruby", "loop do\n  puts 1\nend\n", [1]),
    ("ruby", "loop { puts 1 }\n", [1]),
    ("ruby", "while true\n  puts 1\nend\n", [1]),
]

# Loops that exit, and loops that are not endless: never flagged.
QUIET: list[tuple[str, str]] = [
    ("python", "while True:\n    if input():\n        break\n"),
    ("python", "def f():\n    while True:\n        return 1\n"),
    ("python", "while True:\n    raise SystemExit\n"),
    ("python", "import sys\nwhile True:\n    sys.exit(0)\n"),
    ("python", "import os\nwhile 1:\n    os._exit(0)\n"),
    ("python", "while True:\n    exit()\n"),
    ("python", "while True:\n    quit()\n"),
    ("python", "while True:\n    try:\n        pass\n    except Exception:\n        break\n"),
    ("python", "while True:\n    for i in range(3):\n        pass\n    else:\n        break\n"),
    ("python", "def gen():\n    while True:\n        yield 1\n"),
    ("python", "async def f():\n    while True:\n        await g()\n"),
    ("python", "i = 0\nwhile i < 3:\n    i += 1\n"),
    ("python", "while False:\n    pass\n"),
    ("python", "while x:\n    pass\n"),
    ("python", "for i in range(10):\n    pass\n"),
    ("python", "# while True:\ns = 'while True: pass'\n"),
    ("javascript", "while (true) {\n  if (done()) break;\n}\n"),
    ("javascript", "for (;;) { return; }\n"),
    ("javascript", "while (true) { process.exit(0); }\n"),
    ("javascript", "// while (true) {}\nconsole.log('while(true){}');\n"),
    ("javascript", "for (let i = 0; i < 3; i++) {}\n"),
    ("c", "int main(void) {\n  do { if (f()) break; } while (1);\n}\n"),
    ("c", "int main(void) { while (1) { if (f()) { exit(0); } } }\n"),
    ("c", "/* while(1) {} */ int main(void) { return 0; }\n"),
    ("cpp", "int main() { for (;;) { throw 1; } }\n"),
    ("java", "class Main { public static void main(String[] a) { while (true) { System.exit(0); } } }"),
    ("go", "package main\nfunc main() {\n\tfor {\n\t\tbreak\n\t}\n}\n"),
    ("go", 'package main\nimport "os"\nfunc main() {\n\tfor {\n\t\tos.Exit(0)\n\t}\n}\n'),
    ("go", "package main\nfunc main() {\n\tfor i := 0; i < 3; i++ {\n\t}\n}\n"),
    ("php", "<?php\nwhile (true) { die('x'); }\n"),
    ("php", "<?php\n# while(true) {}\necho 1;\n"),
    ("ruby", "loop do\n  break if gets.nil?\nend\n"),
    ("ruby", "while true\n  exit\nend\n"),
]

# Sources the analysis must survive without a warning or a crash.
BROKEN: list[tuple[str, str]] = [
    ("python", "while True\n    pass\n"),
    ("python", "while True:\n"),
    ("python", "def f(:\n  while True: pass\n"),
    ("python", "x = '\0'\n"),
    ("python", "(" * 1000 + ")" * 1000),
    ("python", ""),
    ("c", "int main(void) { while (1) { "),
    ("ruby", "loop do\n"),
    ("unknown-language", "while (true) {}"),
]


@pytest.mark.parametrize(("language", "source", "lines"), FLAGGED)
def test_endless_loops_are_flagged_at_their_line(language: str, source: str, lines: list[int]) -> None:
    warnings = advise(language, source)
    assert [warning.split(":")[0] for warning in warnings] == [f"line {line}" for line in lines]
    assert all("may never end" in warning for warning in warnings)


@pytest.mark.parametrize(("language", "source"), QUIET)
def test_loops_that_can_exit_are_never_flagged(language: str, source: str) -> None:
    assert advise(language, source) == []


@pytest.mark.parametrize(("language", "source"), BROKEN)
def test_source_that_does_not_parse_gets_no_advice(language: str, source: str) -> None:
    assert isinstance(advise(language, source), list)
    if language == "python":
        assert advise(language, source) == []


def test_the_warning_names_the_loop() -> None:
    assert "`while True`" in advise("python", "while True:\n    pass\n")[0]
    assert "`for (;;)`" in advise("c", "int main(void) { for (;;) {} }")[0]


def test_warnings_are_capped() -> None:
    assert len(advise("python", "while True:\n    pass\n" * 50)) == MAX_WARNINGS
    assert len(advise("c", "void f(void) { while (1) {} }\n" * 50)) == MAX_WARNINGS
