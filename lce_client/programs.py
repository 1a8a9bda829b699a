"""What `lce run` makes of files on disk: the program (its language, main file and other files), a test
suite from a folder, and the command's exit status from a run's result."""

from __future__ import annotations

import re
import signal
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath

from lce_client.models import Execution, Language, SourceFile, TestCase

# lce's own exit statuses where the program gave none (README "CLI and client").
EXIT_TESTS_FAILED = 1  # --tests: a case did not pass
EXIT_ERROR = 3  # the gateway refused or could not be reached; a file could not be read
EXIT_TIMEOUT = 124  # a time limit (as coreutils' timeout)
EXIT_FAILED = 125  # failed without an exit status: a compile error, a memory or output limit, an internal error
EXIT_SIGNAL_BASE = 128  # killed by signal N: 128 + N, as shells say it
EXIT_INTERRUPTED = 130  # Ctrl-C

TEST_INPUT_SUFFIX = ".in"
TEST_OUTPUT_SUFFIX = ".out"


class ProgramError(Exception):
    """Files that make no program or test suite; the message says which and why."""


def extension(path: str) -> str:
    return PurePosixPath(path).suffix.lower()


def language_by_extension(path: str, languages: Iterable[Language]) -> Language | None:
    """The language whose main file (file_name, e.g. main.py) has the file's extension."""
    wanted = extension(path)
    return next((lang for lang in languages if wanted and extension(lang.file_name or "") == wanted), None)


def language_by_name(given: str, languages: Sequence[Language]) -> Language:
    """--lang: a language's name (python) or id."""
    for lang in languages:
        if given.lower() == lang.name or given == lang.id:
            return lang
    names = ", ".join(sorted(lang.name for lang in languages))
    raise ProgramError(f"no language {given!r}: one of {names}")


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ProgramError(f"{path} is not UTF-8 text") from exc
    except OSError as exc:
        raise ProgramError(f"cannot read {path}: {exc.strerror}") from exc


def program(paths: Sequence[Path]) -> tuple[str, list[SourceFile]]:
    """The main file's source (the first path) and the others as the session's files, named by their
    path relative to the main file's folder (lib/util.py)."""
    main, *others = paths
    root = main.resolve().parent
    files = []
    for path in others:
        try:
            name = path.resolve().relative_to(root).as_posix()
        except ValueError as exc:
            raise ProgramError(f"{path} is not in {root}, the main file's folder (or below it)") from exc
        files.append(SourceFile(name, read_text(path)))
    return read_text(main), files


def _natural_key(name: str) -> list[tuple[int, int | str]]:
    """2.in before 10.in: runs of digits compare as numbers."""
    return [(0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", name) if part]


def cases_in(folder: Path) -> list[TestCase]:
    """The cases of a folder: each NAME.in (the input) with NAME.out (the output expected), named NAME,
    in natural order (2 before 10). A file of one without the other is an error; other files are ignored."""
    if not folder.is_dir():
        raise ProgramError(f"{folder} is not a folder")
    inputs = {p.name.removesuffix(TEST_INPUT_SUFFIX) for p in folder.glob(f"*{TEST_INPUT_SUFFIX}") if p.is_file()}
    outputs = {p.name.removesuffix(TEST_OUTPUT_SUFFIX) for p in folder.glob(f"*{TEST_OUTPUT_SUFFIX}") if p.is_file()}
    unpaired = sorted(inputs ^ outputs, key=_natural_key)
    if unpaired:
        name = unpaired[0]
        missing = TEST_OUTPUT_SUFFIX if name in inputs else TEST_INPUT_SUFFIX
        raise ProgramError(f"{folder / name}{missing} is missing: a case is a pair NAME.in, NAME.out")
    if not inputs:
        raise ProgramError(f"no test cases in {folder}: a case is a pair NAME.in, NAME.out")
    return [
        TestCase(
            name=name,
            stdin=read_text(folder / f"{name}{TEST_INPUT_SUFFIX}"),
            expected_output=read_text(folder / f"{name}{TEST_OUTPUT_SUFFIX}"),
        )
        for name in sorted(inputs, key=_natural_key)
    ]


def exit_status(execution: Execution) -> int:
    """The command's exit status for a finished run: the program's own where it exited, else one of
    lce's (EXIT_*). A test suite: 0 when every case passed."""
    if execution.tests is not None and execution.status == "COMPLETED":
        return 0 if all(case.passed for case in execution.tests) else EXIT_TESTS_FAILED
    if execution.status == "TIMEOUT":
        return EXIT_TIMEOUT
    reason = execution.reason or ""
    if reason.startswith("signal:"):
        number = getattr(signal.Signals, reason.removeprefix("signal:"), None)
        return EXIT_SIGNAL_BASE + int(number) if number is not None else EXIT_FAILED
    if execution.status == "COMPLETED" or reason == "runtime_error":
        return execution.exit_code if execution.exit_code is not None else EXIT_FAILED
    return EXIT_FAILED
