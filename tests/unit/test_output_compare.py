"""The three compare modes of judge mode: one table per rule, then properties against simple reference
implementations (also with tiny chunks, so texts cross chunk borders), then 4 MiB inputs of every shape."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from itertools import pairwise
from unittest.mock import patch

import pytest
from hypothesis import given
from hypothesis import strategies as st

from executor import output_compare
from executor.output_compare import MAX_NUMBER_CHARS, exact_equal, tokens_equal, trimmed_equal

WHITESPACE = " \t\n\v\f\r"
MIB = 1024 * 1024

# (expected, actual, equal)
TRIMMED: list[tuple[str, str, bool]] = [
    ("", "", True),
    ("", "\n", True),
    ("", " \t\n\r\n\v\f\n", True),
    ("hello", "hello\n", True),
    ("hello\n", "hello   \n\n\n", True),
    ("a \nb\t", "a\nb", True),
    ("a\nb", "a\r\nb\r\n", True),
    ("a\r\n\r\n", "a", True),
    ("a\nb", "a\n  \nb", False),
    ("a\n\nb", "a\nb", False),
    (" a", "a", False),
    ("\na", "a", False),
    ("a b", "a  b", False),
    ("1 2", "1\n2", False),
    # A lone "\r" ends no line, and only ASCII whitespace is trimmed.
    ("a\rb", "a\nb", False),
    ("a\u00a0", "a", False),
    ("a\x00", "a", False),
    ("", "x", False),
    ("x", "", False),
]

# (expected, actual, equal)
EXACT: list[tuple[str, str, bool]] = [
    ("", "", True),
    ("a\nb\n", "a\nb\n", True),
    ("a", "a\n", False),
    ("a\r\n", "a\n", False),
    ("a ", "a", False),
    ("", " ", False),
    ("\u00e9", "e\u0301", False),
]

# (expected, actual, equal) without a tolerance
TOKENS: list[tuple[str, str, bool]] = [
    ("", "", True),
    ("", " \n\t\r\v\f", True),
    ("1 2 3", "1\n2\n3\n", True),
    ("  a\r\nb", "a \t b", True),
    ("a b", "a", False),
    ("a", "a b", False),
    ("ab", "a b", False),
    ("", "0", False),
    ("1", "1.0", False),
    ("a\u00a0b", "a b", False),
]

# (expected, actual, tolerance, equal)
TOKENS_WITHIN: list[tuple[str, str, float, bool]] = [
    # A tolerance, even 0, compares numbers by value.
    ("1", "1.0", 0.0, True),
    ("0.5", "5e-1", 0.0, True),
    ("1e3", "1000", 0.0, True),
    ("-2.5", "-2.50", 0.0, True),
    ("-0", "0", 0.0, True),
    ("+.5", "0.5", 0.0, True),
    ("2.5", "-2.5", 1e-9, False),
    # Absolute: near zero a relative tolerance says nothing.
    ("3.14159", "3.1416", 1e-4, True),
    ("3.14159", "3.15", 1e-4, False),
    ("0", "1e-7", 1e-6, True),
    ("1e-7", "3e-7", 1e-9, False),
    # Relative: a large result may differ by more than the tolerance itself.
    ("1000000", "1000001", 1e-6, True),
    ("1000000", "1000002", 1e-6, False),
    ("1e308", "1.0000001e308", 1e-6, True),
    ("1e308", "1.1e308", 1e-6, False),
    # Their difference overflows to infinity.
    ("1.7e308", "-1.7e308", 0.5, False),
    ("1.7e308", "-1.7e308", 3.0, True),
    # Not finite decimal numbers: compared as text.
    ("nan", "nan", 1.0, True),
    ("nan", "NaN", 1.0, False),
    ("inf", "1e999", 1.0, False),
    ("1e999", "1e999", 1.0, True),
    ("1e999", "2e999", 1e9, False),
    ("0x10", "16", 1.0, False),
    ("1_000", "1000", 1.0, False),
    ("--1", "-1", 1.0, False),
    (".", "0", 1.0, False),
    ("1e", "1", 1.0, False),
    ("1e", "1e", 1.0, True),
    # Other tokens compare exactly, numbers around them by value.
    ("x 1.0", "x 1", 0.0, True),
    ("x 1.0", "X 1", 0.1, False),
    ("sum: 0.333", "sum:\n0.3333333", 1e-3, True),
    # Token counts must match.
    ("1 2", "1 2 3", 1.0, False),
    ("1 2 3", "1 2", 1.0, False),
    ("", "0", 1.0, False),
    ("0", "", 1.0, False),
]


@pytest.mark.parametrize(("expected", "actual", "equal"), TRIMMED)
def test_trimmed(expected: str, actual: str, equal: bool) -> None:
    assert trimmed_equal(expected, actual) is equal
    assert trimmed_equal(actual, expected) is equal


@pytest.mark.parametrize(("expected", "actual", "equal"), EXACT)
def test_exact(expected: str, actual: str, equal: bool) -> None:
    assert exact_equal(expected, actual) is equal


@pytest.mark.parametrize(("expected", "actual", "equal"), TOKENS)
def test_tokens(expected: str, actual: str, equal: bool) -> None:
    assert tokens_equal(expected, actual, None) is equal
    assert tokens_equal(actual, expected, None) is equal


@pytest.mark.parametrize(("expected", "actual", "tolerance", "equal"), TOKENS_WITHIN)
def test_tokens_within_tolerance(expected: str, actual: str, tolerance: float, equal: bool) -> None:
    assert tokens_equal(expected, actual, tolerance) is equal
    assert tokens_equal(actual, expected, tolerance) is equal


def test_numbers_longer_than_the_bound_compare_as_text() -> None:
    # Both are 1.0 as doubles.
    longest, other = "1." + "0" * (MAX_NUMBER_CHARS - 2), "1." + "0" * (MAX_NUMBER_CHARS - 3) + "1"
    assert tokens_equal(longest, other, 0.0)
    assert not tokens_equal(longest + "0", other + "0", 0.5)
    assert tokens_equal(longest + "0", longest + "0", 0.0)


@pytest.mark.parametrize("tolerance", [-1e-9, math.nan, math.inf])
def test_a_tolerance_must_be_finite_and_not_negative(tolerance: float) -> None:
    with pytest.raises(ValueError, match="float_tolerance"):
        tokens_equal("1", "1", tolerance)


# References written the obvious way: whole-text splits, a regular expression on small texts, math.isclose.
def reference_trimmed(text: str) -> str:
    return "\n".join(line.rstrip(" \t\v\f\r") for line in text.split("\n")).rstrip("\n")


def reference_tokens(text: str) -> list[str]:
    return [token for token in re.split(r"[ \t\n\v\f\r]", text) if token]


DECIMAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def reference_token_match(expected: str, actual: str, tolerance: float) -> bool:
    if expected == actual:
        return True
    if not (DECIMAL.fullmatch(expected) and DECIMAL.fullmatch(actual)):
        return False
    expected_number, actual_number = float(expected), float(actual)
    if not (math.isfinite(expected_number) and math.isfinite(actual_number)):
        return False
    return math.isclose(expected_number, actual_number, rel_tol=tolerance, abs_tol=tolerance)


def reference_tokens_equal(expected: str, actual: str, tolerance: float) -> bool:
    expected_tokens, actual_tokens = reference_tokens(expected), reference_tokens(actual)
    return len(expected_tokens) == len(actual_tokens) and all(
        reference_token_match(e, a, tolerance) for e, a in zip(expected_tokens, actual_tokens, strict=True)
    )


# Whitespace of every kind, characters that look like it but are not, and the makings of numbers.
texts = st.text(alphabet=WHITESPACE + "ab\u00a0\x00019.+-eE", max_size=60)
tolerances = st.none() | st.floats(min_value=0, max_value=10)
separators = st.text(alphabet=WHITESPACE, min_size=1, max_size=3)
number_tokens = st.floats(allow_nan=False, allow_infinity=False, width=32).flatmap(
    lambda x: st.sampled_from([repr(x), f"{x:g}", f"{x:.3e}", f"{x:f}", f"{x:.2f}"])
)
tokens = number_tokens | st.sampled_from(["nan", "inf", "1e999", "0x1", "1_0", "a", "-", "1e", "."])


def layout(tokens: list[str], separators: list[str]) -> str:
    return "".join(token + separators[i % len(separators)] for i, token in enumerate(tokens))


@given(expected=texts, actual=texts, tolerance=tolerances)
def test_each_mode_is_symmetric(expected: str, actual: str, tolerance: float | None) -> None:
    assert exact_equal(expected, actual) == exact_equal(actual, expected)
    assert trimmed_equal(expected, actual) == trimmed_equal(actual, expected)
    assert tokens_equal(expected, actual, tolerance) == tokens_equal(actual, expected, tolerance)


@given(
    words=st.lists(tokens, max_size=8),
    expected_separators=st.lists(separators, min_size=1, max_size=4),
    actual_separators=st.lists(separators, min_size=1, max_size=4),
    extra=st.sampled_from(["", " ", "\n", "x", " x", "\n\n"]),
    tolerance=st.floats(min_value=0, max_value=1),
)
def test_each_mode_is_stricter_than_the_next(
    words: list[str], expected_separators: list[str], actual_separators: list[str], extra: str, tolerance: float
) -> None:
    """exact => trim => tokens => tokens within a tolerance, on texts built to be equal in some modes."""
    expected = layout(words, expected_separators)
    actual = layout(words, actual_separators) + extra
    verdicts = [
        exact_equal(expected, actual),
        trimmed_equal(expected, actual),
        tokens_equal(expected, actual, None),
        tokens_equal(expected, actual, tolerance),
    ]
    assert all(not stricter or looser for stricter, looser in pairwise(verdicts))
    # The same tokens in any layout.
    assert verdicts[2] is (extra.strip(WHITESPACE) == "")


@given(
    lines=st.lists(st.text(alphabet="ab \t\u00a0", max_size=6), max_size=6),
    pads=st.lists(st.text(alphabet=" \t\v\f\r", max_size=3), min_size=1, max_size=6),
    trailing_blank_lines=st.integers(min_value=0, max_value=3),
    other=texts,
)
def test_trimmed_ignores_trailing_whitespace_and_blank_lines(
    lines: list[str], pads: list[str], trailing_blank_lines: int, other: str
) -> None:
    text = "\n".join(lines)
    padded = "\n".join(line + pads[i % len(pads)] for i, line in enumerate(lines)) + "\r\n" * trailing_blank_lines
    assert trimmed_equal(text, padded)
    assert trimmed_equal(text, other) == trimmed_equal(padded, other)


@pytest.mark.parametrize("chunk_chars", [1, 2, 5, output_compare._CHUNK_CHARS])
@given(expected=texts, actual=texts, tolerance=st.floats(min_value=0, max_value=10))
def test_modes_agree_with_their_references(chunk_chars: int, expected: str, actual: str, tolerance: float) -> None:
    with patch.object(output_compare, "_CHUNK_CHARS", chunk_chars):
        assert trimmed_equal(expected, actual) == (reference_trimmed(expected) == reference_trimmed(actual))
        assert tokens_equal(expected, actual, None) == (reference_tokens(expected) == reference_tokens(actual))
        assert tokens_equal(expected, actual, tolerance) == reference_tokens_equal(expected, actual, tolerance)


@pytest.mark.parametrize("chunk_chars", [1, 3, output_compare._CHUNK_CHARS])
@given(
    expected_words=st.lists(tokens, max_size=6),
    actual_words=st.lists(tokens, max_size=6),
    separator=separators,
    tolerance=st.sampled_from([0.0, 1e-9, 1e-3, 0.5]),
)
def test_numbers_agree_with_math_isclose(
    chunk_chars: int, expected_words: list[str], actual_words: list[str], separator: str, tolerance: float
) -> None:
    expected, actual = separator.join(expected_words), separator.join(actual_words)
    with patch.object(output_compare, "_CHUNK_CHARS", chunk_chars):
        assert tokens_equal(expected, actual, tolerance) == reference_tokens_equal(expected, actual, tolerance)


@given(value=st.floats(min_value=-1e6, max_value=1e6), tolerance=st.floats(min_value=1e-6, max_value=1))
def test_a_number_within_the_tolerance_matches(value: float, tolerance: float) -> None:
    nearby = value + tolerance / 2
    assert tokens_equal(repr(value), repr(nearby), tolerance)
    assert tokens_equal(f"{value:.17g}", f"{nearby:.17e}", tolerance)


# 4 MiB texts of every shape: many lines, many tokens, one long line or token, only whitespace. Built in
# the test, not at collection, so that only one pair is held at a time.
# (mode, texts, equal)
LARGE: list[tuple[str, Callable[[], tuple[str, str]], bool]] = [
    ("trim", lambda: ("x\n" * (2 * MIB), "x \r\n" * (2 * MIB)), True),
    ("trim", lambda: ("x\n" * (2 * MIB), "x\n" * (2 * MIB - 1) + "y\n"), False),
    ("trim", lambda: ("\n" * (4 * MIB), ""), True),
    ("trim", lambda: (" " * (4 * MIB), ""), True),
    ("trim", lambda: ("a" * (4 * MIB), "a" * (4 * MIB) + " \n"), True),
    ("trim", lambda: ("a" * (4 * MIB), "a" * (4 * MIB - 1) + "b"), False),
    ("exact", lambda: ("a" * (4 * MIB), "a" * (4 * MIB)), True),
    ("tokens", lambda: ("1 " * (2 * MIB), "1\n" * (2 * MIB)), True),
    ("tokens", lambda: ("1 " * (2 * MIB), "1 " * (2 * MIB - 1) + "2"), False),
    ("tokens", lambda: ("\t" * (4 * MIB), ""), True),
    ("tokens", lambda: ("a" * (4 * MIB), "a" * (4 * MIB) + "\n"), True),
    ("tolerance", lambda: ("1.5 " * MIB, "1.50\n" * MIB), True),
    ("tolerance", lambda: ("1.5 " * MIB, "1.50\n" * (MIB - 1) + "1.6"), False),
    ("tolerance", lambda: ("9" * (4 * MIB), "9" * (4 * MIB - 1) + "8"), False),
]
COMPARES: dict[str, Callable[[str, str], bool]] = {
    "trim": trimmed_equal,
    "exact": exact_equal,
    "tokens": lambda expected, actual: tokens_equal(expected, actual, None),
    "tolerance": lambda expected, actual: tokens_equal(expected, actual, 1e-6),
}


@pytest.mark.parametrize(("mode", "texts", "equal"), LARGE)
def test_large_inputs_complete(mode: str, texts: Callable[[], tuple[str, str]], equal: bool) -> None:
    expected, actual = texts()
    assert COMPARES[mode](expected, actual) is equal
