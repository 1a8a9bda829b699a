"""Advice about loops that may never end: warnings carried by the execution, never a reason to refuse it.

Python: a `while True:` (or `while 1:`) loop is flagged when its own body holds no `break`, `return`,
`raise`, exit call (`sys.exit`, `exit`, `quit`, `os._exit`) nor `yield`/`await` (an endless generator
is ended by its consumer). A `break` counts for the innermost loop around it only (one in a nested
loop's `else:` counts for ours); nothing inside a nested function, class or lambda counts, since
defining it does not leave the loop. Bodies are found by indentation, on logical lines.

The other languages: a `while (1)`, `while (true)`, `for (;;)`, Go's `for {`, Ruby's `loop do`, `loop {`
or `while true` whose body (its braces' content; with none, the rest of the file) holds no exit word.

Everything runs on executor.source_scan's tokens, in time linear in the source, within a budget: a
source over MAX_SOURCE_CHARS, one that does not scan, and an analysis out of fuel or time get no advice.
Advice errs towards silence: a loop that may exit is never flagged.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, auto

from executor import source_scan
from executor.source_scan import NEWLINE, Budget, LineNumbers, OutOfBudget, Syntax, Tokens, Unscannable

MAX_WARNINGS = 10
# Longer sources get no advice: the cap bounds the work of one request. Counted in characters (code
# points), as the work is; at most 256 KiB of UTF-8.
MAX_SOURCE_CHARS = 64 * 1024
# Fuel units allowed per character of source: every analysis needs fewer (tests/unit/test_loop_advice.py).
FUEL_PER_CHAR = 16
MAX_SECONDS = 0.25


@dataclass(frozen=True)
class Advice:
    warnings: list[str]
    fuel_spent: int  # work done, in Budget units: linear in the source's length


def advise(
    language: str,
    source: str,
    *,
    max_chars: int = MAX_SOURCE_CHARS,
    fuel_per_char: int = FUEL_PER_CHAR,
    seconds: float = MAX_SECONDS,
) -> list[str]:
    """Warnings about `source` in `language` (a common.languages name); empty when there is nothing to say."""
    return measured_advice(language, source, max_chars=max_chars, fuel_per_char=fuel_per_char, seconds=seconds).warnings


def measured_advice(
    language: str,
    source: str,
    *,
    max_chars: int = MAX_SOURCE_CHARS,
    fuel_per_char: int = FUEL_PER_CHAR,
    seconds: float = MAX_SECONDS,
) -> Advice:
    """The advice with the work it took; no warnings when the source is too long or the budget ran out."""
    rules = _BRACE_RULES.get(language)
    if len(source) > max_chars or (language != "python" and rules is None):
        return Advice([], 0)
    budget = Budget(fuel_per_char * (len(source) + 1), seconds)
    try:
        warnings = _python_warnings(source, budget) if rules is None else _brace_warnings(rules, source, budget)
    except (Unscannable, OutOfBudget):
        warnings = []
    return Advice(warnings[:MAX_WARNINGS], budget.spent)


def _message(line: int, loop: str) -> str:
    return (
        f"line {line}: `{loop}` has no break, return or exit in its body and may never end; "
        "the run would stop at its time limit"
    )


# --- Python, on logical lines -------------------------------------------------------------------

_ESCAPE_WORDS = frozenset({"return", "raise", "yield", "await"})
_EXIT_FUNCTIONS = frozenset({"exit", "quit"})
_EXIT_METHODS = frozenset({("sys", "exit"), ("os", "_exit")})
_OPENERS = frozenset("([{")
_CLOSERS = frozenset(")]}")
_PREFIXED_DIGITS = {"0x": "0123456789abcdef_", "0o": "01234567_", "0b": "01_"}
# What ends a lambda's body at the lambda's own bracket depth.
_LAMBDA_ENDS = frozenset({",", ";", "for"})


class _Kind(Enum):
    SCOPE = auto()  # def, async def, class and their decorators: nothing inside leaves the loop around them
    LOOP = auto()  # for, async for, while: a break in the body leaves that loop only
    PLAIN = auto()


@dataclass
class _WaysOut:
    """Ways out of the loops around some code."""

    escapes: bool = False  # return, raise, yield, await, an exit call: out of every loop
    breaks: bool = False  # out of the innermost loop

    def add(self, other: _WaysOut) -> None:
        self.escapes = self.escapes or other.escapes
        self.breaks = self.breaks or other.breaks


@dataclass
class _Statement:
    """One logical line and what it holds for the loops around it."""

    line: int
    indent: str
    kind: _Kind
    opens_block: bool  # ends with `:`: an indented block follows
    head: _WaysOut  # the whole line, or a loop's header up to its colon
    inline_body: _WaysOut  # a loop's one-line body after its colon
    endless: str  # `while True` when this is an endless while loop, else ""
    flagged: bool = False  # an endless loop with no way out of its body


@dataclass
class _Block:
    owner: _Statement | None  # None for the module's top level
    indent: str
    ways: _WaysOut


def _python_warnings(source: str, budget: Budget) -> list[str]:
    tokens = source_scan.scan(source, source_scan.PYTHON, budget)
    endless: list[_Statement] = []
    blocks = [_Block(None, "", _WaysOut())]
    previous: _Statement | None = None
    for line, indent, texts in _logical_lines(tokens, source, budget):
        statement = _statement(line, indent, texts, budget)
        if statement.endless:
            endless.append(statement)
        _place(statement, previous, blocks, budget)
        previous = statement
    if previous is not None:
        if previous.opens_block:
            raise Unscannable("a block is missing at the end")
        _finish(previous, None, blocks[-1].ways)
    while len(blocks) > 1:
        _close(blocks, budget)
    return [_message(statement.line, statement.endless) for statement in endless if statement.flagged]


def _logical_lines(tokens: Tokens, source: str, budget: Budget) -> list[tuple[int, str, list[str]]]:
    """(line number, indentation, token texts) of each logical line: brackets join physical lines
    (the scanner already joined backslashed ones), blank and comment lines are dropped."""
    lines: list[tuple[int, str, list[str]]] = []
    numbers = LineNumbers(source, budget)
    texts: list[str] = []
    depth = 0
    line_start = 0  # offset of the current physical line
    for index in budget.metered(range(len(tokens.texts))):
        start, text = tokens.starts[index], tokens.texts[index]
        if text == NEWLINE:
            if depth == 0 and texts:
                texts = []
            line_start = start + 1
            continue
        if not texts:
            lines.append((numbers.at(start), source[line_start:start], texts))
        texts.append(text)
        if text in _OPENERS:
            depth += 1
        elif text in _CLOSERS:
            depth -= 1
            if depth < 0:
                raise Unscannable("a bracket closes that never opened")
    if depth:
        raise Unscannable("a bracket is still open at the end")
    return lines


def _statement(line: int, indent: str, texts: list[str], budget: Budget) -> _Statement:
    kind = _kind(texts)
    head, inline_body, colon = _ways_out(texts, kind is _Kind.LOOP, budget)
    if colon is None and kind is _Kind.LOOP:
        kind = _Kind.PLAIN  # no header: not a loop Python would accept
    return _Statement(
        line=line,
        indent=indent,
        kind=kind,
        opens_block=texts[-1] == ":",
        head=head,
        inline_body=inline_body,
        endless=_endless_while(texts, colon, budget) if kind is _Kind.LOOP and colon is not None else "",
    )


def _kind(texts: list[str]) -> _Kind:
    first, second = texts[0], texts[1] if len(texts) > 1 else ""
    if first in ("def", "class", "@") or (first == "async" and second == "def"):
        return _Kind.SCOPE
    if first in ("for", "while") or (first == "async" and second == "for"):
        return _Kind.LOOP
    return _Kind.PLAIN


def _ways_out(texts: list[str], split_header: bool, budget: Budget) -> tuple[_WaysOut, _WaysOut, int | None]:
    """The ways out in a logical line, leaving out the bodies of lambdas. With `split_header` (a loop),
    those of its header and those of its one-line body apart, and where the header's colon is."""
    head, inline_body = _WaysOut(), _WaysOut()
    ways, colon = head, None
    depth = 0
    lambda_depth: int | None = None  # the bracket depth of the lambda being skipped
    for index in budget.metered(range(len(texts))):
        text = texts[index]
        if text in _OPENERS:
            depth += 1
        elif text in _CLOSERS:
            depth -= 1
            if lambda_depth is not None and depth < lambda_depth:
                lambda_depth = None
        elif lambda_depth is not None:
            if depth == lambda_depth and text in _LAMBDA_ENDS:
                lambda_depth = None
        elif text == ":" and depth == 0 and split_header and colon is None:
            ways, colon = inline_body, index
        elif text == "lambda":
            lambda_depth = depth
        elif text == "break":
            ways.breaks = True
        elif text in _ESCAPE_WORDS or _is_exit_call(texts, index):
            ways.escapes = True
    return head, inline_body, colon


def _endless_while(texts: list[str], colon: int, budget: Budget) -> str:
    """`while True` for `while True:`, `while 1:`, `while ((True)):`; "" for any other header."""
    if texts[0] != "while":
        return ""
    low, high = 1, colon
    while high - low >= 3 and texts[low] == "(" and texts[high - 1] == ")":
        low, high = low + 1, high - 1
    budget.spend(low)
    if high - low == 1 and _always_true(texts[low], budget):
        return f"while {texts[low]}"
    return ""


def _always_true(literal: str, budget: Budget) -> bool:
    """True, or an integer literal other than zero (1, 0x1, 1_000)."""
    if literal == "True":
        return True
    budget.spend(len(literal))
    lowered = literal.lower()
    allowed = _PREFIXED_DIGITS.get(lowered[:2])
    if allowed is not None:
        digits = lowered[2:]
    elif lowered.startswith("0"):
        return False  # zero, or a literal Python refuses
    else:
        digits, allowed = lowered, "0123456789_"
    return all(char in allowed for char in digits) and any(char not in "0_" for char in digits)


def _is_exit_call(texts: list[str], index: int) -> bool:
    """exit(...), quit(...), sys.exit(...), os._exit(...), but not obj.exit(...) or a.sys.exit(...)."""
    if index + 1 >= len(texts) or texts[index + 1] != "(":
        return False
    name = texts[index]
    if index < 2 or texts[index - 1] != ".":
        return name in _EXIT_FUNCTIONS
    qualified_further = index >= 3 and texts[index - 3] == "."
    return (texts[index - 2], name) in _EXIT_METHODS and not qualified_further


def _place(statement: _Statement, previous: _Statement | None, blocks: list[_Block], budget: Budget) -> None:
    """Files `statement` in the block its indentation names, closing the blocks it ends."""
    top = blocks[-1]
    if previous is not None and previous.opens_block:
        if len(statement.indent) <= len(top.indent) or not statement.indent.startswith(top.indent):
            raise Unscannable("expected an indented block")
        blocks.append(_Block(previous, statement.indent, _WaysOut()))
        return
    if previous is not None:
        _finish(previous, None, top.ways)
    while statement.indent != blocks[-1].indent:
        if len(blocks) == 1 or len(statement.indent) >= len(blocks[-1].indent):
            raise Unscannable("an indentation that matches no open block")
        _close(blocks, budget)


def _close(blocks: list[_Block], budget: Budget) -> None:
    budget.spend()
    closed = blocks.pop()
    assert closed.owner is not None
    _finish(closed.owner, closed.ways, blocks[-1].ways)


def _finish(statement: _Statement, block: _WaysOut | None, outer: _WaysOut) -> None:
    """Judges `statement` once its block (if any) is complete, and tells the block around it what it holds."""
    if statement.kind is _Kind.SCOPE:
        return
    body = _WaysOut()
    body.add(statement.inline_body)
    if block is not None:
        body.add(block)
    if statement.endless:
        statement.flagged = not (body.escapes or body.breaks)
    if statement.kind is _Kind.LOOP:
        outer.escapes = outer.escapes or statement.head.escapes or body.escapes
    else:
        outer.add(statement.head)
        outer.add(body)


# --- the other languages, on tokens -------------------------------------------------------------


@dataclass(frozen=True)
class _LoopHeader:
    pattern: tuple[frozenset[str], ...]  # the header's tokens, each one of a few spellings (lower case)
    label: str  # the loop as the warning names it; {0}, {1}... are the header's tokens as written
    may_end_do_while: bool = False  # `} while (1);` after `do { ... }` ends a loop whose body came before
    # Ruby: only a statement's first word starts a loop; after an expression the body came before (`end while true`).
    starts_statement: bool = False

    @property
    def body_offset(self) -> int:
        """Where the body starts, from the header's first token: a final `{` is the body's own."""
        return len(self.pattern) - 1 if self.pattern[-1] == _OPEN_BRACE else len(self.pattern)


@dataclass(frozen=True)
class _BraceRules:
    syntax: Syntax
    headers: tuple[_LoopHeader, ...]
    exit_words: frozenset[str]
    exit_methods: frozenset[tuple[str, str]] = frozenset()  # (object, method) as in Go's os.Exit
    ignore_case: bool = False
    semicolon_is_empty_body: bool = True  # `while (1);`; in Ruby a `;` only separates statements

    @property
    def first_words(self) -> frozenset[str]:
        return frozenset().union(*(header.pattern[0] for header in self.headers))


def _spelled(*spellings: str) -> frozenset[str]:
    return frozenset(spellings)


_OPEN_BRACE = _spelled("{")
_C_HEADERS = (
    _LoopHeader(
        (_spelled("while"), _spelled("("), _spelled("1", "true"), _spelled(")")), "{0} ({2})", may_end_do_while=True
    ),
    _LoopHeader((_spelled("for"), _spelled("("), _spelled(";"), _spelled(";"), _spelled(")")), "{0} (;;)"),
)
_C_EXITS = frozenset({"break", "return", "throw", "goto", "exit", "_exit", "abort", "quit"})

_BRACE_RULES: dict[str, _BraceRules] = {
    "c": _BraceRules(source_scan.C_LIKE, _C_HEADERS, _C_EXITS),
    "cpp": _BraceRules(source_scan.C_LIKE, _C_HEADERS, _C_EXITS),
    "java": _BraceRules(source_scan.JAVA, _C_HEADERS, _C_EXITS),
    "javascript": _BraceRules(source_scan.JAVASCRIPT, _C_HEADERS, _C_EXITS),
    "php": _BraceRules(source_scan.PHP, _C_HEADERS, _C_EXITS | {"die"}, ignore_case=True),
    "go": _BraceRules(
        source_scan.GO,
        (_LoopHeader((_spelled("for"), _OPEN_BRACE), "{0} {{"),),
        frozenset({"break", "return", "goto", "panic"}),
        exit_methods=frozenset({("os", "Exit")}),
    ),
    "ruby": _BraceRules(
        source_scan.RUBY,
        (
            _LoopHeader((_spelled("loop"), _spelled("do")), "{0} {1}"),
            _LoopHeader((_spelled("loop"), _OPEN_BRACE), "{0} {{"),
            _LoopHeader((_spelled("while"), _spelled("true")), "{0} {1}", starts_statement=True),
        ),
        frozenset({"break", "return", "raise", "throw", "exit", "abort"}),
        semicolon_is_empty_body=False,
    ),
}


def _brace_warnings(rules: _BraceRules, source: str, budget: Budget) -> list[str]:
    tokens = source_scan.scan(source, rules.syntax, budget)
    texts = [text.lower() for text in budget.metered(tokens.texts)] if rules.ignore_case else tokens.texts
    bodies = _LoopBodies(texts, _exit_tokens(rules, texts, budget), rules.semicolon_is_empty_body, budget)
    numbers = LineNumbers(source, budget)
    first_words = rules.first_words
    warnings: list[str] = []
    for index in budget.metered(range(len(texts))):
        header = _header_at(rules, texts, index) if texts[index] in first_words else None
        if header is None or _body_came_before(header, source, tokens, texts, bodies.openers, index):
            continue
        if not bodies.hold_exit(index + header.body_offset):
            written = tokens.texts[index : index + len(header.pattern)]
            warnings.append(_message(numbers.at(tokens.starts[index]), header.label.format(*written)))
            if len(warnings) == MAX_WARNINGS:
                break
    return warnings


def _exit_tokens(rules: _BraceRules, texts: list[str], budget: Budget) -> list[bool]:
    exits = [text in rules.exit_words for text in budget.metered(texts)]
    if rules.exit_methods:
        for index in budget.metered(range(2, len(texts))):
            if texts[index - 1] == "." and (texts[index - 2], texts[index]) in rules.exit_methods:
                exits[index] = True
    return exits


class _LoopBodies:
    """Whether a loop body starting at a given token holds an exit, known for every token after two passes:
    a body is its braces' content, nothing when it is a lone `;`, or else the rest of the file (which only
    makes the advice more cautious)."""

    def __init__(self, texts: list[str], exits: list[bool], semicolon_is_empty_body: bool, budget: Budget) -> None:
        self.texts = texts
        self.semicolon_is_empty_body = semicolon_is_empty_body
        self.block_exits, self.openers = _blocks(texts, exits, budget)
        self.exits_after = _exits_after(exits, budget)

    def hold_exit(self, body: int) -> bool:
        if body >= len(self.texts):
            return False
        if self.texts[body] == "{":
            return self.block_exits[body]
        if self.texts[body] == ";" and self.semicolon_is_empty_body:
            return False
        return self.exits_after[body]


def _blocks(texts: list[str], exits: list[bool], budget: Budget) -> tuple[list[bool], dict[int, int]]:
    """For each `{`, whether its block holds an exit (nested blocks included; an unclosed block runs to the
    end), and for each `}`, the `{` it closes."""
    holds_exit = [False] * len(texts)
    openers: dict[int, int] = {}
    open_blocks: list[int] = []
    for index in budget.metered(range(len(texts))):
        text = texts[index]
        if text == "{":
            open_blocks.append(index)
        elif text == "}" and open_blocks:
            opener = open_blocks.pop()
            openers[index] = opener
            if holds_exit[opener] and open_blocks:
                holds_exit[open_blocks[-1]] = True
        elif exits[index] and open_blocks:
            holds_exit[open_blocks[-1]] = True
    for depth in budget.metered(range(len(open_blocks) - 1, 0, -1)):
        if holds_exit[open_blocks[depth]]:
            holds_exit[open_blocks[depth - 1]] = True
    return holds_exit, openers


def _exits_after(exits: list[bool], budget: Budget) -> list[bool]:
    """For each token, whether it or any token after it is an exit (one more entry: the end of the file)."""
    after = [False] * (len(exits) + 1)
    for index in budget.metered(range(len(exits) - 1, -1, -1)):
        after[index] = exits[index] or after[index + 1]
    return after


def _header_at(rules: _BraceRules, texts: list[str], index: int) -> _LoopHeader | None:
    for header in rules.headers:
        if index + len(header.pattern) <= len(texts) and all(
            texts[index + offset] in spellings for offset, spellings in enumerate(header.pattern)
        ):
            return header
    return None


def _body_came_before(
    header: _LoopHeader, source: str, tokens: Tokens, texts: list[str], openers: dict[int, int], index: int
) -> bool:
    """Whether the header at `index` ends a loop instead of starting one: the `while` of `do { ... } while (1);`
    (or after a `}` that closes nothing), or a Ruby `while` modifier. `texts` are the tokens as compared."""
    if index == 0:
        return False
    if header.starts_statement and texts[index - 1] != ";":
        previous_end = tokens.starts[index - 1] + len(tokens.texts[index - 1])
        if source.find("\n", previous_end, tokens.starts[index]) < 0:
            return True
    if not header.may_end_do_while or texts[index - 1] != "}":
        return False
    opener = openers.get(index - 1)
    return opener is None or (opener > 0 and texts[opener - 1] == "do")
