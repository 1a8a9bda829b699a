"""A lexical scanner for user source: comments dropped, string literals kept whole, words and punctuation.

Written by hand so that its cost is linear by construction (no regular expressions on user text):
one forward pass in which every step moves on, charged to a Budget that ends the scan when its
fuel or its time runs out. One scanner serves every language, through the Syntax of its family.
"""

from __future__ import annotations

import string
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TypeVar

Item = TypeVar("Item")

# Fuel units between two readings of the clock.
CLOCK_EVERY = 4096
# Items of a metered pass paid for at once, before they are handed out.
_METERED_CHUNK = 1024


class OutOfBudget(Exception):
    """The work or the time allowed for one analysis ran out."""


class Unscannable(Exception):
    """The source cannot be split into tokens sensibly, e.g. a string or comment still open at the end."""


class Budget:
    """Work allowed for one analysis: `fuel` units (a character or a token handled) and a wall-clock deadline."""

    def __init__(self, fuel: int, seconds: float) -> None:
        self.spent = 0
        self._fuel = fuel
        self._deadline = time.monotonic() + seconds
        self._next_check = min(fuel + 1, CLOCK_EVERY)

    def spend(self, units: int = 1) -> None:
        self.spent += units
        if self.spent >= self._next_check:
            if self.spent > self._fuel or time.monotonic() > self._deadline:
                raise OutOfBudget
            self._next_check = min(self._fuel + 1, self.spent + CLOCK_EVERY)

    def metered(self, items: Sequence[Item]) -> Iterator[Item]:
        """The items, one fuel unit each, paid in advance: a pass over them stops when the budget runs out."""
        for start in range(0, len(items), _METERED_CHUNK):
            chunk = items[start : start + _METERED_CHUNK]
            self.spend(len(chunk))
            yield from chunk


@dataclass
class Tokens:
    """The tokens of a source, one index per token across the lists: words (identifiers, keywords,
    numbers), punctuation (one character, or Python's `:=`), string literals (whole, quotes and prefix
    included) and, where Syntax.python_lines, NEWLINE for the end of a physical line outside strings."""

    texts: list[str] = field(default_factory=list)
    starts: list[int] = field(default_factory=list)  # offsets in the source


NEWLINE = "\n"


class LineNumbers:
    """The line of each offset asked about, in increasing order: each stretch of the source is counted once."""

    def __init__(self, source: str, budget: Budget) -> None:
        self._source = source
        self._budget = budget
        self._offset = 0
        self._line = 1

    def at(self, offset: int) -> int:
        if offset < self._offset:
            raise ValueError("line numbers are asked for in increasing offsets")
        self._budget.spend(offset - self._offset)
        self._line += self._source.count("\n", self._offset, offset)
        self._offset = offset
        return self._line


@dataclass(frozen=True)
class Syntax:
    """What a language family calls comments and string literals."""

    line_comments: tuple[str, ...]
    block_comments: bool = False  # /* ... */
    line_quotes: str = "\"'"  # backslash escapes; end with their line when left open there
    multiline_quotes: str = ""  # backslash escapes, across lines (JavaScript template literals)
    raw_quotes: str = ""  # no escapes, across lines (Go raw strings)
    triple_quotes: str = ""  # tripled quotes (Python's ''', Java's text blocks), with escapes, across lines
    string_prefixes: str = ""  # letters that may start a literal right before its quote (Python's r, b, f, u)
    # Python: newlines are tokens, a backslash joins lines, and a string left open is an error.
    python_lines: bool = False

    @property
    def quotes(self) -> str:
        return self.line_quotes + self.multiline_quotes + self.raw_quotes + self.triple_quotes

    @property
    def comment_starts(self) -> frozenset[str]:
        """The first characters of comments."""
        return frozenset(marker[0] for marker in self.line_comments + (("/*",) if self.block_comments else ()))


C_LIKE = Syntax(line_comments=("//",), block_comments=True)
JAVA = replace(C_LIKE, triple_quotes='"')  # text blocks
JAVASCRIPT = replace(C_LIKE, multiline_quotes="`")
GO = replace(C_LIKE, raw_quotes="`")
PHP = replace(C_LIKE, line_comments=("//", "#"), multiline_quotes="`")
RUBY = Syntax(line_comments=("#",))
PYTHON = Syntax(line_comments=("#",), triple_quotes="\"'", string_prefixes="rRbBfFuU", python_lines=True)

# Every step handles at least one character, and each character is read a bounded number of times:
# two units per character pay for both, charged every _CHARGE_EVERY characters.
FUEL_PER_SCANNED_CHAR = 2
_CHARGE_EVERY = 1024
_BLANKS = frozenset(" \t\r\f\v")
_ASCII_WORD = frozenset(string.ascii_letters + string.digits + "_$")
_MAX_PREFIX = 2  # rb, Rb, fR...


def scan(source: str, syntax: Syntax, budget: Budget) -> Tokens:
    """The tokens of `source`; raises Unscannable or OutOfBudget."""
    return _Scanner(source, syntax, budget).scan()


class _Scanner:
    def __init__(self, source: str, syntax: Syntax, budget: Budget) -> None:
        self.source = source
        self.syntax = syntax
        self.budget = budget
        self.quotes = syntax.quotes
        self.tokens = Tokens()

    def scan(self) -> Tokens:
        source, end, budget = self.source, len(self.source), self.budget
        python_lines, quotes, comment_starts = self.syntax.python_lines, self.quotes, self.syntax.comment_starts
        pos = charged = 0
        try:
            while pos < end:
                if pos - charged >= _CHARGE_EVERY:
                    budget.spend(FUEL_PER_SCANNED_CHAR * (pos - charged))
                    charged = pos
                char = source[pos]
                if char in _BLANKS:
                    pos += 1
                    while pos < end and source[pos] in _BLANKS:
                        pos += 1
                elif char in _ASCII_WORD or (char > "\x7f" and char.isalnum()):
                    pos = self._word(pos)
                elif char == "\n":
                    pos = self._add(pos, pos + 1) if python_lines else pos + 1
                elif char in quotes:
                    pos = self._string(pos, pos)
                elif char in comment_starts and (comment_end := self._comment_end(pos)) > pos:
                    pos = comment_end
                elif char == "\\" and python_lines and source.startswith(("\n", "\r\n"), pos + 1):
                    pos = source.index("\n", pos) + 1
                elif char == ":" and python_lines and source.startswith(":=", pos):
                    pos = self._add(pos, pos + 2)
                else:
                    pos = self._add(pos, pos + 1)
        except Unscannable:
            pos = end  # the failed step may have read on to the end
            raise
        finally:
            budget.spend(FUEL_PER_SCANNED_CHAR * (pos - charged))
        return self.tokens

    def _add(self, start: int, stop: int) -> int:
        """Adds the token source[start:stop]; returns where scanning goes on."""
        self.tokens.texts.append(self.source[start:stop])
        self.tokens.starts.append(start)
        return stop

    def _comment_end(self, start: int) -> int:
        """Where a comment starting at `start` ends (its newline is left to read); `start` when none starts there."""
        source = self.source
        if source.startswith(self.syntax.line_comments, start):
            newline = source.find("\n", start)
            return newline if newline >= 0 else len(source)
        if self.syntax.block_comments and source.startswith("/*", start):
            close = source.find("*/", start + 2)
            if close < 0:
                raise Unscannable("a comment is still open at the end")
            return close + 2
        return start

    def _word(self, start: int) -> int:
        source, end = self.source, len(self.source)
        pos = start + 1
        while pos < end and ((char := source[pos]) in _ASCII_WORD or (char > "\x7f" and char.isalnum())):
            pos += 1
        if pos < end and source[pos] in self.quotes and self._is_string_prefix(start, pos):
            return self._string(start, pos)
        return self._add(start, pos)

    def _is_string_prefix(self, start: int, stop: int) -> bool:
        prefixes = self.syntax.string_prefixes
        return stop - start <= _MAX_PREFIX and all(letter in prefixes for letter in self.source[start:stop])

    def _string(self, start: int, quote_at: int) -> int:
        """A literal from `start` (its prefix, if any) whose opening quote is at `quote_at`."""
        syntax, char = self.syntax, self.source[quote_at]
        if char in syntax.triple_quotes and self.source.startswith(char * 3, quote_at):
            return self._literal(start, quote_at, char * 3, escapes=True, multiline=True)
        if char in syntax.multiline_quotes or char in syntax.raw_quotes:
            return self._literal(start, quote_at, char, escapes=char in syntax.multiline_quotes, multiline=True)
        return self._literal(start, quote_at, char, escapes=True, multiline=False)

    def _literal(self, start: int, quote_at: int, quote: str, *, escapes: bool, multiline: bool) -> int:
        source, end = self.source, len(self.source)
        pos = quote_at + len(quote)
        while pos < end:
            char = source[pos]
            if char == "\\" and escapes:
                pos += 2
            elif char == quote[0] and source.startswith(quote, pos):
                return self._add(start, pos + len(quote))
            elif char == "\n" and not multiline:
                return self._open_at_line_end(start, pos)
            else:
                pos += 1
        if multiline or self.syntax.python_lines:
            raise Unscannable("a string literal is still open at the end")
        return self._add(start, end)

    def _open_at_line_end(self, start: int, newline: int) -> int:
        # Python refuses it; elsewhere (often a quote the scanner does not know, as in a regex literal)
        # the literal ends with its line, so that a stray quote hides no more than the rest of its line.
        if self.syntax.python_lines:
            raise Unscannable("a string literal is still open at the end of its line")
        return self._add(start, newline)
