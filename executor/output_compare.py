"""Judge mode's rules for comparing a test case's expected output with what the program wrote.

- trim (the default) is Judge0's rule, so suites written for it pass here: trailing whitespace is invisible
  and a final newline is a matter of taste, but leading whitespace and inner blank lines are layout an
  exercise may ask for. "\\r\\n" ends a line like "\\n" because its "\\r" is trailing whitespace.
- exact is for exercises about the formatting itself.
- tokens is for answers whose layout is free. With a tolerance, numbers printed at another precision or
  in another notation match within it, absolute (for results near zero) or relative (for large ones).
  Only finite decimal numbers count: "nan" equals nothing, and "0x10" or "1_000" is not a printed result.

Whitespace is C's isspace set, what scanf and cin skip. Texts are split a chunk at a time and never by a
regular expression, so time and memory stay linear in the input.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from itertools import repeat, starmap, zip_longest
from operator import eq

_WHITESPACE = " \t\n\v\f\r"
_TRAILING_WHITESPACE = " \t\v\f\r"
_NUMBER_CHARS = frozenset("0123456789+-.eE")
# Longer tokens compare as text. The longest printed double, -DBL_MAX through "%f", has 317 characters.
MAX_NUMBER_CHARS = 400
# Characters split at once: bounds the pieces held in memory besides the texts themselves.
_CHUNK_CHARS = 64 * 1024


def exact_equal(expected: str, actual: str) -> bool:
    """The same text, character for character."""
    return expected == actual


def trimmed_equal(expected: str, actual: str) -> bool:
    """Equal once every line loses its trailing whitespace and the text its trailing empty lines."""
    if expected == actual:
        return True
    # The shorter text's missing lines are empty: the longer one's extra lines must be empty too.
    pairs = zip_longest(_trimmed_lines(expected), _trimmed_lines(actual), fillvalue="")
    return all(starmap(eq, pairs))


def tokens_equal(expected: str, actual: str, float_tolerance: float | None) -> bool:
    """The same whitespace-separated tokens; with a tolerance, numeric tokens within it are equal.

    Raises ValueError for a tolerance that is negative or not finite.
    """
    if float_tolerance is not None and not 0 <= float_tolerance < math.inf:
        raise ValueError(f"float_tolerance must be a finite number >= 0, not {float_tolerance!r}")
    if expected == actual:
        return True
    # Tokens are never empty, so a token missing on one side matches nothing.
    pairs = zip_longest(_tokens(expected), _tokens(actual), fillvalue="")
    if float_tolerance is None:
        return all(starmap(eq, pairs))
    return all(_tokens_match(expected_token, actual_token, float_tolerance) for expected_token, actual_token in pairs)


def _trimmed_lines(text: str) -> Iterator[str]:
    return map(str.rstrip, _split(text, "\n"), repeat(_TRAILING_WHITESPACE))


def _tokens(text: str) -> Iterator[str]:
    for space in _WHITESPACE[1:]:
        text = text.replace(space, " ")
    return filter(None, _split(text, " "))


def _split(text: str, separator: str) -> Iterator[str]:
    """text.split(separator) for a one-character separator, a chunk at a time rather than one long list."""
    start = 0
    while (cut := text.find(separator, start + _CHUNK_CHARS)) != -1:
        yield from text[start:cut].split(separator)
        start = cut + 1
    yield from text[start:].split(separator)


def _tokens_match(expected: str, actual: str, tolerance: float) -> bool:
    if expected == actual:
        return True
    expected_number, actual_number = _finite_number(expected), _finite_number(actual)
    if expected_number is None or actual_number is None:
        return False
    difference = abs(expected_number - actual_number)
    return difference <= tolerance or difference <= tolerance * max(abs(expected_number), abs(actual_number))


def _finite_number(token: str) -> float | None:
    """The token's value if it is a finite decimal number of at most MAX_NUMBER_CHARS characters."""
    # The character check keeps out what float() also accepts: "nan", "inf", "1_000", surrounding spaces.
    if len(token) > MAX_NUMBER_CHARS or not _NUMBER_CHARS.issuperset(token):
        return None
    try:
        value = float(token)
    except ValueError:
        return None
    return value if math.isfinite(value) else None
