"""Loop advice, one table per kind of source: flagged loops, loops that exit (never flagged), and sources
the analysis must survive; then its bounds: the budget, work linear in the source (property-based), and
worst-case sources that must return at once."""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from executor.loop_advice import FUEL_PER_CHAR, MAX_SOURCE_CHARS, MAX_WARNINGS, advise, measured_advice
from executor.source_scan import FUEL_PER_SCANNED_CHAR

LANGUAGES = ["python", "javascript", "c", "cpp", "java", "go", "php", "ruby"]

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
    # Python: string literals of every shape hide what they hold.
    ("python", "while True:\n    s = '''\nbreak\n'''\n", [1]),
    ("python", 'while True:\n    s = rb"""return""" + f\'{x}exit()\' + U"raise"\n', [1]),
    # A break in the nested loop's body, not in its else, leaves the nested loop only.
    ("python", "while True:\n    for i in x:\n        break\n    else:\n        pass\n", [1]),
    ("python", "while True:\n    for i in x: break\n", [1]),
    ("python", "while True:\n    while n := f():\n        break\n", [1]),
    # One-line bodies, brackets and backslashes joining lines, parentheses and other truthy literals.
    ("python", "while True: pass\n", [1]),
    ("python", "while True:\n    x = f(1,\n  2)\n    y = 1 + \\\n 2\n", [1]),
    ("python", "while (True):\n    pass\nwhile ((1)):\n    pass\nwhile 0x1:\n    pass\n", [1, 3, 5]),
    ("python", "def f():\n    while True:\n        g = lambda: exit()\n", [2]),
    ("python", "if x:\n    while True:\n        pass\nelse:\n    break\n", [2]),
    ("python", "while True:\n    while True:\n        pass\n    break\n", [2]),
    ("javascript", "while (true) {\n  const s = `\nbreak;\n${x}\\`return`;\n}\n", [1]),
    # A `}` before the while that does not close a `do` block.
    ("c", "int main(void) {\n  if (x) { y(); }\n  while (1) { y(); }\n}\n", [3]),
    ("go", "package main\nfunc main() {\n\tif x {\n\t}\n\tfor {\n\t}\n}\n", [5]),
    ("go", "package main\nfunc main() {\n\ts := `C:\\`\n\tfor {\n\t}\n}\n", [4]),
    ("java", 'class M { String s = """\n  break;\n  """; void f() { while (true) {} } }', [3]),
    ("php", "<?php\nFOR (;;) { echo 'die'; }\n", [2]),
    ("ruby", "x = {a: 1}\nloop do\n  puts 1\nend\n", [2]),
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
    ("python", "while True:\n    s = '''\n'''\n    break\n"),
    ("python", "while True:\n    while x:\n        pass\n    else:\n        break\n"),
    ("python", "while True: x = 1; break\n"),
    ("python", "while True: f = lambda: 0; break\n"),
    ("python", "while True:\n    g(key=lambda k: k, default=exit())\n"),
    ("python", "while True:\n    x = [1,\n2]\n    y = 1 + \\\n3\n    break\n"),
    ("python", "while 1.0:\n    pass\nwhile 0x0:\n    pass\nwhile -1:\n    pass\n"),
    ("javascript", "while (true) {\n  const s = `a\\`b`;\n  break;\n}\n"),
    ("java", "class Main { void f() { do { if (g()) break; } while (true); } }"),
    ("php", "<?php\nDO { if (f()) BREAK; } WHILE (TRUE);\n"),
    # Ruby: a `;` separates statements; a `while` after an expression is a modifier whose body came before.
    ("ruby", "loop do; break; end\n"),
    ("ruby", "while true; break; end\n"),
    ("ruby", "begin\n  x += 1\n  break if x > 3\nend while true\n"),
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

# A string or comment still open at the end, or (Python) an indentation no block matches: no advice
# rather than advice on a guess.
UNSCANNABLE: list[tuple[str, str]] = [
    ("python", "while True:\n    pass\ns = '''open\n"),
    ("python", "while True:\n    pass\ns = 'open\n"),
    ("python", "while True:\n        pass\n    pass\n"),
    ("python", "while True:\n    pass\n  pass\n"),
    ("python", "x = 1\n    while True:\n        pass\n"),
    ("python", "while True:\n    pass\nif x:\n"),
    ("python", "while True:\n    pass\n)\n"),
    ("javascript", "while (true) {}\nconst s = `open"),
    ("c", "int main(void) { while (1) {} } /* open"),
    ("go", "package main\nfunc main() {\n\tfor {\n\t}\n}\nvar s = `open"),
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


@pytest.mark.parametrize(("language", "source"), UNSCANNABLE)
def test_source_that_does_not_scan_gets_no_advice(language: str, source: str) -> None:
    assert advise(language, source) == []


def test_the_warning_names_the_loop() -> None:
    assert "`while True`" in advise("python", "while True:\n    pass\n")[0]
    assert "`for (;;)`" in advise("c", "int main(void) { for (;;) {} }")[0]


def test_the_warning_names_the_loop_as_written() -> None:
    assert "`while 0x1`" in advise("python", "while (0x1):\n    pass\n")[0]
    assert "`WHILE (TRUE)`" in advise("php", "<?php\nWHILE (TRUE) {}")[0]
    assert "`for {`" in advise("go", "func main() {\n\tfor {\n\t}\n}\n")[0]
    assert "`loop do`" in advise("ruby", "loop do\nend\n")[0]


def test_warnings_are_capped() -> None:
    assert len(advise("python", "while True:\n    pass\n" * 50)) == MAX_WARNINGS
    assert len(advise("c", "void f(void) { while (1) {} }\n" * 50)) == MAX_WARNINGS


def test_warnings_come_in_line_order() -> None:
    source = "while True:\n    while True:\n        pass\n    x = 1\nwhile True:\n    pass\n"
    assert [warning.split(":")[0] for warning in advise("python", source)] == ["line 1", "line 2", "line 5"]


# --- the budget -----------------------------------------------------------------------------------

ENDLESS = {
    "python": "while True:\n    pass\n",
    "javascript": "while (true) {}\n",
    "c": "int main(void) { while (1) {} }\n",
    "cpp": "int main() { for (;;) {} }\n",
    "java": "class Main { void f() { while (true) {} } }\n",
    "go": "func main() {\n\tfor {\n\t}\n}\n",
    "php": "<?php\nwhile (true) {}\n",
    "ruby": "loop do\nend\n",
}


@pytest.mark.parametrize("language", LANGUAGES)
def test_advice_within_the_budget(language: str) -> None:
    source = ENDLESS[language] * 500
    advice = measured_advice(language, source)
    assert len(advice.warnings) == MAX_WARNINGS
    assert FUEL_PER_SCANNED_CHAR * len(source) <= advice.fuel_spent <= FUEL_PER_CHAR * (len(source) + 1)


@pytest.mark.parametrize("language", LANGUAGES)
def test_advice_out_of_budget_is_absent(language: str) -> None:
    source = ENDLESS[language] * 500
    assert advise(language, source, max_chars=len(source) - 1) == []
    assert measured_advice(language, source, max_chars=len(source) - 1).fuel_spent == 0
    assert advise(language, source, fuel_per_char=FUEL_PER_SCANNED_CHAR) == []
    assert advise(language, source, seconds=0) == []


# --- work linear in the source, whatever it holds ---------------------------------------------------

# Pieces of hostile sources: delimiters open and closed, escapes, comment and string starters of every
# family, loop headers and ways out, indentation.
FRAGMENTS = [
    *('"', "'", "`", "'''", '"""', 'rb"', "f'", "\\", '\\"', "\\'", "\\`", "/*", "*/", "//", "#", "${", "$x"),
    *("\n", "\r\n", "\\\n", " ", "    ", "\t", "{", "}", "(", ")", "[", "]", ";", ":", ",", ".", "=", ":="),
    *("while(1){", "while (true) ", "WHILE (TRUE)", "for(;;)", "for {", "do {", "} while (1);", "loop do", "loop {"),
    *("while true", "end", "while True:", "while 1:", "while (True):", "for x in y:", "else:", "def f():"),
    *("class C:", "@d", "lambda:", "break", "return", "exit(0)", "sys.exit()", "os.Exit(1)", "die", "yield"),
    *("é", "İ", "0x1"),
]
PIECES = st.tuples(st.sampled_from(FRAGMENTS) | st.text(max_size=4), st.integers(1, 200)).map(
    lambda piece: piece[0] * piece[1]
)
SOURCES = st.lists(PIECES, max_size=40).map("".join)
# Python's blocks: statements at random depths of indentation.
PYTHON_BLOCKS = st.lists(
    st.tuples(st.integers(0, 12), st.sampled_from([*FRAGMENTS, "pass", "x = (1,", "2)", "if x:", "try:"])),
    max_size=300,
).map(lambda lines: "".join("    " * depth + line + "\n" for depth, line in lines))
UNLIMITED = {"fuel_per_char": 10**6, "seconds": 3600.0}


def _check_bounds(language: str, source: str) -> None:
    unlimited = measured_advice(language, source, **UNLIMITED)
    assert FUEL_PER_SCANNED_CHAR * len(source) <= unlimited.fuel_spent <= FUEL_PER_CHAR * (len(source) + 1)
    assert len(unlimited.warnings) <= MAX_WARNINGS
    assert all("may never end" in warning for warning in unlimited.warnings)
    # The default fuel never cuts an analysis short.
    assert advise(language, source, seconds=3600.0) == unlimited.warnings


@pytest.mark.parametrize("language", LANGUAGES)
@settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(source=SOURCES)
def test_any_source_gets_advice_in_linear_work(language: str, source: str) -> None:
    _check_bounds(language, source)


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(source=PYTHON_BLOCKS)
def test_any_python_blocks_get_advice_in_linear_work(source: str) -> None:
    _check_bounds("python", source)


# --- worst cases, with the default budget -------------------------------------------------------------

MIB = 1024 * 1024


def _repeated(unit: str, size: int, prefix: str = "") -> str:
    return prefix + unit * ((size - len(prefix)) // len(unit))


def _worst_cases(language: str, size: int) -> list[str]:
    """The shapes that once froze or slowed the analysis, `size` characters long."""
    quote = "'" if language == "python" else '"'
    shapes = [
        _repeated("\\" + quote, size, prefix=f"x = {quote}"),  # a string left open, full of escaped quotes
        _repeated("(", size),
        _repeated("{", size),
    ]
    if language == "python":
        shapes += [_repeated("a,", size, prefix="y=["), _repeated("while True:\n    pass\n", size)]
    elif language == "go":
        shapes += [_repeated("for {", size), _repeated("for {\n}\n", size)]
    elif language == "ruby":
        shapes += [_repeated("loop do\n", size), _repeated("while true\n", size), _repeated("loop {", size)]
    else:
        shapes += [_repeated("while(1){", size), _repeated("for(;;){", size), _repeated("/*", size)]
    return shapes


@pytest.mark.parametrize("language", LANGUAGES)
def test_worst_case_sources_return_at_once(language: str) -> None:
    for size in (MIB, MAX_SOURCE_CHARS):
        for source in _worst_cases(language, size):
            started = time.monotonic()
            warnings = advise(language, source)
            assert time.monotonic() - started < 2.0, (language, size, source[:20])
            if size > MAX_SOURCE_CHARS:
                assert warnings == []
