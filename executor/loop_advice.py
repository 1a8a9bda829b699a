"""Advice about loops that may never end: warnings carried by the execution, never a reason to refuse it.

Python is judged by its syntax tree: a `while True:` (or `while 1:`) loop is flagged when its
own body holds no `break`, `return`, `raise`, exit call (`sys.exit`, `exit`, `quit`,
`os._exit`) nor `yield`/`await` (an endless generator is ended by its consumer). A `break`
counts for the innermost loop around it only; nothing inside a nested function or class
counts, since defining it does not leave the loop. Source that does not parse gets no advice:
the compiler stage reports it properly.

The other languages are judged by pattern, with comments and string literals blanked first: a
`while (1)`, `while (true)`, `for (;;)`, Go's `for {`, Ruby's `loop do` or `while true` whose
body (up to the matching brace, the rest of the file where there is none) holds no exit word.
Advice errs towards silence: a loop that may exit is never flagged.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

MAX_WARNINGS = 10
# Pattern matches looked at in one source: a pathological file must not make a run slow to accept.
_MAX_MATCHES = 200

_FLOW_EXITS = (ast.Return, ast.Raise, ast.Yield, ast.YieldFrom, ast.Await)
_NESTED_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)
_NESTED_LOOPS = (ast.For, ast.AsyncFor, ast.While)
_EXIT_FUNCTIONS = {"exit", "quit"}
_EXIT_METHODS = {("sys", "exit"), ("os", "_exit")}


def advise(language: str, source: str) -> list[str]:
    """Warnings about `source` in `language` (a common.languages name); empty when there is nothing to say."""
    if language == "python":
        return _python_warnings(source)[:MAX_WARNINGS]
    rules = _PATTERN_RULES.get(language)
    return _pattern_warnings(rules, source)[:MAX_WARNINGS] if rules else []


# --- Python -----------------------------------------------------------------------------------


def _python_warnings(source: str) -> list[str]:
    try:
        tree = ast.parse(source)
        return [
            _message(node.lineno, f"while {ast.unparse(node.test)}")
            for node in ast.walk(tree)
            if isinstance(node, ast.While) and _always_true(node.test) and not _can_leave(node)
        ]
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        # Not valid Python (or too deeply nested to analyse): no advice rather than a wrong one.
        return []


def _always_true(test: ast.expr) -> bool:
    return isinstance(test, ast.Constant) and type(test.value) in (bool, int) and bool(test.value)


def _can_leave(loop: ast.While) -> bool:
    """Whether the loop's own body holds a way out of it."""
    pending: list[tuple[ast.AST, bool]] = [(statement, False) for statement in loop.body]
    while pending:
        node, in_nested_loop = pending.pop()
        if isinstance(node, _NESTED_SCOPES):
            continue
        if isinstance(node, _FLOW_EXITS) or _is_exit_call(node):
            return True
        if isinstance(node, ast.Break) and not in_nested_loop:
            return True
        if isinstance(node, _NESTED_LOOPS):
            # A break in a nested loop's body leaves that loop; one in its `else:` leaves ours.
            pending.extend((child, True) for child in node.body)
            pending.extend((child, in_nested_loop) for child in node.orelse)
        else:
            pending.extend((child, in_nested_loop) for child in ast.iter_child_nodes(node))
    return False


def _is_exit_call(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    if isinstance(func, ast.Name):
        return func.id in _EXIT_FUNCTIONS
    return (
        isinstance(func, ast.Attribute)
        and isinstance(func.value, ast.Name)
        and (func.value.id, func.attr) in (_EXIT_METHODS)
    )


# --- other languages, by pattern ----------------------------------------------------------------


@dataclass(frozen=True)
class PatternRules:
    loops: re.Pattern[str]  # an endless loop's header (with its opening brace, where it has one)
    blank: re.Pattern[str]  # comments and string literals, blanked before matching
    exits: re.Pattern[str]  # a way out of a loop body


_C_LIKE_NOISE = r"//[^\n]*|/\*.*?\*/|\"(?:\\.|[^\"\\\n])*\"|'(?:\\.|[^'\\\n])*'|`[^`]*`"
_C_LOOPS = r"\bwhile\s*\(\s*(?:1|true)\s*\)|\bfor\s*\(\s*;\s*;\s*\)"
_C_EXITS = r"\b(?:break|return|throw|goto|exit|_exit|abort|quit)\b|\bprocess\.exit\b|\bSystem\.exit\b"


def _rules(loops: str, noise: str, exits: str, flags: int = 0) -> PatternRules:
    return PatternRules(
        loops=re.compile(loops, flags),
        blank=re.compile(noise, re.DOTALL),
        exits=re.compile(exits, flags),
    )


_PATTERN_RULES: dict[str, PatternRules] = {
    "javascript": _rules(_C_LOOPS, _C_LIKE_NOISE, _C_EXITS),
    "c": _rules(_C_LOOPS, _C_LIKE_NOISE, _C_EXITS),
    "cpp": _rules(_C_LOOPS, _C_LIKE_NOISE, _C_EXITS),
    "java": _rules(_C_LOOPS, _C_LIKE_NOISE, _C_EXITS),
    "go": _rules(r"\bfor\s*\{", _C_LIKE_NOISE, r"\b(?:break|return|goto|panic)\b|\bos\.Exit\b"),
    # PHP's true is case-insensitive; `#` starts a comment there too.
    "php": _rules(_C_LOOPS, _C_LIKE_NOISE + r"|#[^\n]*", _C_EXITS + r"|\bdie\b", re.IGNORECASE),
    "ruby": _rules(
        r"\bloop\s*(?:do\b|\{)|\bwhile\s+true\b",
        r"#[^\n]*|\"(?:\\.|[^\"\\\n])*\"|'(?:\\.|[^'\\\n])*'",
        r"\b(?:break|return|raise|throw|exit|abort)\b",
    ),
}


def _pattern_warnings(rules: PatternRules, source: str) -> list[str]:
    code = rules.blank.sub(lambda match: re.sub(r"[^\n]", " ", match.group()), source)
    warnings = []
    for count, match in enumerate(rules.loops.finditer(code)):
        if count == _MAX_MATCHES or len(warnings) == MAX_WARNINGS:
            break
        body_start = match.end() - 1 if match.group().endswith("{") else match.end()
        if _ends_do_while(code, match.start()) or rules.exits.search(_body_after(code, body_start)):
            continue
        line = code.count("\n", 0, match.start()) + 1
        warnings.append(_message(line, " ".join(match.group().split())))
    return warnings


def _ends_do_while(code: str, start: int) -> bool:
    """`} while (true);` closes a do-while, whose body came before it and was not looked at."""
    return code[:start].rstrip().endswith("}")


def _body_after(code: str, start: int) -> str:
    """The loop body following a header: the braces' content, a single statement, or (with neither,
    as after Ruby's `loop do`) the rest of the code, which can only make the advice more cautious."""
    rest = code[start:].lstrip()
    if not rest.startswith("{"):
        return rest if not rest.startswith(";") else ""
    depth = 0
    for index, char in enumerate(rest):
        depth += {"{": 1, "}": -1}.get(char, 0)
        if depth == 0:
            return rest[1:index]
    return rest


def _message(line: int, loop: str) -> str:
    return (
        f"line {line}: `{loop}` has no break, return or exit in its body and may never end; "
        "the run would stop at its time limit"
    )
