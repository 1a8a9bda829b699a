"""The scanner under the loop advice: what becomes a token in each language family, what does not scan,
and how its work is charged."""

from __future__ import annotations

import pytest

from executor import source_scan
from executor.source_scan import Budget, LineNumbers, OutOfBudget, Syntax, Unscannable


def texts(source: str, syntax: Syntax) -> list[str]:
    return source_scan.scan(source, syntax, Budget(fuel=10**9, seconds=60)).texts


# (syntax, source, token texts)
TOKENS: list[tuple[Syntax, str, list[str]]] = [
    (source_scan.C_LIKE, 'x = "a\\"b"; // c "\n/* d\n */ y', ["x", "=", '"a\\"b"', ";", "y"]),
    (
        source_scan.C_LIKE,
        "#include <a.h>\nchar c = '\\'';",
        ["#", "include", "<", "a", ".", "h", ">", "char", "c", "=", "'\\''", ";"],
    ),
    # A quote left open ends with its line, so a stray one hides no more than that line.
    (source_scan.C_LIKE, 'x = "abc\ny', ["x", "=", '"abc', "y"]),
    (source_scan.C_LIKE, "a`b`", ["a", "`", "b", "`"]),
    (source_scan.JAVASCRIPT, "s = `a\\`\n${b}`; t", ["s", "=", "`a\\`\n${b}`", ";", "t"]),
    (source_scan.GO, "s := `C:\\` + x", ["s", ":", "=", "`C:\\`", "+", "x"]),
    (source_scan.JAVA, 's = """\n  "quoted"\n  """; t', ["s", "=", '"""\n  "quoted"\n  """', ";", "t"]),
    (source_scan.PHP, "$x = 1; # c\n// d\necho $x;", ["$x", "=", "1", ";", "echo", "$x", ";"]),
    (source_scan.RUBY, "puts 'a' # while true\nx", ["puts", "'a'", "x"]),
    (source_scan.RUBY, "a // b", ["a", "/", "/", "b"]),
    (source_scan.C_LIKE, "café=1", ["café", "=", "1"]),
    # Python: newlines are tokens outside strings and brackets alike; a backslash joins lines.
    (source_scan.PYTHON, "a = (1,\n 2)  # c\n", ["a", "=", "(", "1", ",", "\n", "2", ")", "\n"]),
    (source_scan.PYTHON, "b = 1 + \\\n  3\n", ["b", "=", "1", "+", "3", "\n"]),
    (source_scan.PYTHON, "x = '''a\n'b'\n''' + \"\"\"c\"\"\"", ["x", "=", "'''a\n'b'\n'''", "+", '"""c"""']),
    (source_scan.PYTHON, "rb'x' f\"y\" U'z' Rb'''w''' br\"\\\"\"", ["rb'x'", 'f"y"', "U'z'", "Rb'''w'''", 'br"\\""']),
    (source_scan.PYTHON, "abc'x'", ["abc", "'x'"]),
    (source_scan.PYTHON, "while n := f():", ["while", "n", ":=", "f", "(", ")", ":"]),
]


@pytest.mark.parametrize(("syntax", "source", "expected"), TOKENS)
def test_tokens(syntax: Syntax, source: str, expected: list[str]) -> None:
    assert texts(source, syntax) == expected


def test_tokens_know_where_they_start() -> None:
    source = "ab = 'c'\n  d"
    tokens = source_scan.scan(source, source_scan.PYTHON, Budget(fuel=10**6, seconds=60))
    assert [source[start : start + len(text)] for start, text in zip(tokens.starts, tokens.texts, strict=True)] == (
        tokens.texts
    )
    assert tokens.starts == [0, 3, 5, 8, 11]


# (syntax, source): a string or comment open at the end, or a Python string open at the end of its line.
UNSCANNABLE: list[tuple[Syntax, str]] = [
    (source_scan.C_LIKE, "int x; /* open"),
    (source_scan.JAVASCRIPT, "s = `open\\`"),
    (source_scan.GO, "s := `open\n"),
    (source_scan.JAVA, 's = """open'),
    (source_scan.PYTHON, "x = 'open\ny = 1\n"),
    (source_scan.PYTHON, "x = '''open\n"),
    (source_scan.PYTHON, "x = 'open\\"),
]


@pytest.mark.parametrize(("syntax", "source"), UNSCANNABLE)
def test_sources_that_do_not_scan(syntax: Syntax, source: str) -> None:
    with pytest.raises(Unscannable):
        texts(source, syntax)


@pytest.mark.parametrize("source", ["", "x", "while (1) { a = 'b'; } // c\n" * 100, "x = '" + "\\'" * 5000])
def test_the_scan_costs_two_units_per_character(source: str) -> None:
    budget = Budget(fuel=10**9, seconds=60)
    source_scan.scan(source, source_scan.C_LIKE, budget)
    assert budget.spent == source_scan.FUEL_PER_SCANNED_CHAR * len(source)


def test_a_scan_that_fails_is_charged_to_the_end() -> None:
    source = "x = '" + "\\'" * 5000 + "\ny = 1\n"
    budget = Budget(fuel=10**9, seconds=60)
    with pytest.raises(Unscannable):
        source_scan.scan(source, source_scan.PYTHON, budget)
    assert budget.spent == source_scan.FUEL_PER_SCANNED_CHAR * len(source)


def test_a_scan_stops_when_the_fuel_runs_out() -> None:
    with pytest.raises(OutOfBudget):
        source_scan.scan("a " * 10_000, source_scan.C_LIKE, Budget(fuel=5_000, seconds=60))


def test_a_scan_stops_at_the_deadline() -> None:
    with pytest.raises(OutOfBudget):
        source_scan.scan("a " * 10_000, source_scan.C_LIKE, Budget(fuel=10**9, seconds=0))


def test_metered_items_cost_one_unit_each() -> None:
    budget = Budget(fuel=10**6, seconds=60)
    assert list(budget.metered(range(3000))) == list(range(3000))
    assert budget.spent == 3000
    with pytest.raises(OutOfBudget):
        list(Budget(fuel=2500, seconds=60).metered(range(3000)))


def test_line_numbers() -> None:
    budget = Budget(fuel=100, seconds=60)
    numbers = LineNumbers("a\nb\n\nc", budget)
    assert [numbers.at(offset) for offset in (0, 2, 2, 5)] == [1, 2, 2, 4]
    assert budget.spent == 5
    with pytest.raises(ValueError):
        numbers.at(1)
