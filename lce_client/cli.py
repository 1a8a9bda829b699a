"""`lce`: LCE from a shell (README "CLI and client").

    lce run hello.py [more files] [--lang L] [--stdin FILE|-] [--arg A]... [--time-limit MS]
            [--memory-limit MB] [--tests DIR] [--interactive] [--json]
    lce languages
    lce session create|get|update|close|executions ...
    lce status ID [--watch]

The gateway and the API key come from --url and --key, else LCE_URL and LCE_API_KEY.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import sys
import threading
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from lce_client.calls import DEFAULT_URL, RunOptions
from lce_client.client import Client
from lce_client.errors import LceError
from lce_client.interaction import Interaction
from lce_client.models import Event, Language
from lce_client.programs import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    ProgramError,
    cases_in,
    exit_status,
    language_by_extension,
    language_by_name,
    program,
)
from lce_client.terminal import Watch

# An interactive run's input is sent as it is read, at most this much a message (the API takes 64 KiB).
INPUT_CHUNK_BYTES = 32 * 1024


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        with Client(args.url, args.key) as client:
            return int(args.command(client, args))
    except LceError as exc:
        hint = f" (retry after {exc.retry_after} s)" if exc.retry_after is not None else ""
        print(f"lce: error: {exc}{hint}", file=sys.stderr)
    except ProgramError as exc:
        print(f"lce: error: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # Whoever read our output left (`lce run x.py | head`): nothing more to say, and nowhere to say it.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_ERROR
    return EXIT_ERROR


def parser() -> argparse.ArgumentParser:
    # --url and --key go before or after the command: after it, they are only set when given.
    top = argparse.ArgumentParser(
        prog="lce", description="Run code on LCE and manage its sessions.", parents=[_target_options(None)]
    )
    target = _target_options(argparse.SUPPRESS)
    commands = top.add_subparsers(required=True, metavar="COMMAND")

    run = commands.add_parser("run", parents=[target], help="run a program and show its output as it comes")
    run.add_argument("files", nargs="+", type=Path, metavar="FILE", help="the main file, then the program's others")
    run.add_argument("--lang", help="a language's name or id (default: from the main file's extension)")
    run.add_argument("--stdin", metavar="FILE|-", help="the program's standard input: a file, or - for ours")
    run.add_argument("--arg", action="append", dest="args", metavar="ARG", help="an argument (repeat for more)")
    run.add_argument("--time-limit", type=int, metavar="MS", help="milliseconds (100..60000)")
    run.add_argument("--memory-limit", type=int, metavar="MB", help="megabytes (32..2048)")
    run.add_argument("--tests", type=Path, metavar="DIR", help="run the cases of DIR: pairs NAME.in, NAME.out")
    run.add_argument("--interactive", action="store_true", help="send what is typed to the program as it runs")
    run.add_argument("--json", action="store_true", help="print the finished execution as JSON, not the output")
    run.set_defaults(command=run_program)

    languages = commands.add_parser("languages", parents=[target], help="list the languages")
    languages.add_argument("--json", action="store_true")
    languages.set_defaults(command=list_languages)

    status = commands.add_parser("status", parents=[target], help="an execution as JSON")
    status.add_argument("execution_id", metavar="ID")
    status.add_argument("--watch", action="store_true", help="follow it to its end; exit with its status")
    status.set_defaults(command=show_status)

    session = commands.add_parser("session", parents=[target], help="code sessions")
    actions = session.add_subparsers(required=True, metavar="ACTION")
    create = actions.add_parser("create", parents=[target], help="a new session of files, or of the template")
    create.add_argument("files", nargs="*", type=Path, metavar="FILE")
    create.add_argument("--lang", help="a language's name or id (default: from the main file's extension)")
    create.set_defaults(command=create_session)
    get = actions.add_parser("get", parents=[target], help="a session with its source")
    get.add_argument("session_id", metavar="ID")
    get.set_defaults(command=show_session)
    update = actions.add_parser("update", parents=[target], help="save files into a session")
    update.add_argument("session_id", metavar="ID")
    update.add_argument("files", nargs="+", type=Path, metavar="FILE")
    update.set_defaults(command=update_session)
    close = actions.add_parser("close", parents=[target], help="close a session")
    close.add_argument("session_id", metavar="ID")
    close.set_defaults(command=close_session)
    executions = actions.add_parser("executions", parents=[target], help="a session's runs, newest first")
    executions.add_argument("session_id", metavar="ID")
    executions.add_argument("--limit", type=int, default=10)
    executions.set_defaults(command=list_executions)
    return top


def _target_options(default: Any) -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("--url", default=default, help=f"the gateway (LCE_URL; default {DEFAULT_URL})")
    options.add_argument("--key", default=default, help="an API key (LCE_API_KEY)")
    return options


def print_json(value: Any) -> int:
    print(json.dumps(value, indent=2, ensure_ascii=False))
    return 0


def list_languages(client: Client, args: argparse.Namespace) -> int:
    found = client.languages()
    if args.json:
        return print_json([asdict(lang) for lang in found])
    for lang in sorted(found, key=lambda lang: lang.name):
        print(f"{lang.name:<12} {lang.runtime:<9} {lang.version:<14} {lang.id}")
    return 0


def choose_language(client: Client, given: str | None, main_file: Path | None) -> Language:
    """--lang, else the language whose main file has the main file's extension."""
    found = client.languages()
    if given:
        return language_by_name(given, found)
    if main_file is None:
        raise ProgramError("name the language with --lang")
    # The summaries have no file name: ask for each language's until one matches.
    detailed = (client.language(lang.id) for lang in found)
    chosen = language_by_extension(str(main_file), detailed)
    if chosen is None:
        raise ProgramError(f"no language for {main_file.name}'s extension: name it with --lang")
    return chosen


def create_session(client: Client, args: argparse.Namespace) -> int:
    language = choose_language(client, args.lang, args.files[0] if args.files else None)
    source, files = program(args.files) if args.files else (None, None)
    return print_json(asdict(client.create_session(language.id, source, files)))


def show_session(client: Client, args: argparse.Namespace) -> int:
    return print_json(asdict(client.session(args.session_id)))


def update_session(client: Client, args: argparse.Namespace) -> int:
    source, files = program(args.files)
    return print_json(asdict(client.update_session(args.session_id, source, files)))


def close_session(client: Client, args: argparse.Namespace) -> int:
    return print_json(asdict(client.close_session(args.session_id)))


def list_executions(client: Client, args: argparse.Namespace) -> int:
    return print_json([asdict(item) for item in client.executions(args.session_id, args.limit)])


def show_status(client: Client, args: argparse.Namespace) -> int:
    if not args.watch:
        return print_json(client.execution(args.execution_id).raw)
    final = None
    for event in client.stream(args.execution_id):
        if event.kind == "status":
            print(f"{event.status} (attempt {event.fields.get('attempt', 1)})", file=sys.stderr, flush=True)
        final = event.execution or final
    if final is None:  # the stream ended without its result: what the execution says now
        final = client.execution(args.execution_id)
    print(f"{final.status} {final.reason or ''}".rstrip(), file=sys.stderr)
    print_json(final.raw)
    return exit_status(final)


def run_options(args: argparse.Namespace, encoding: str) -> RunOptions:
    stdin = None
    if args.stdin is not None:
        raw = sys.stdin.buffer.read() if args.stdin == "-" else _read_bytes(Path(args.stdin))
        stdin = base64.b64encode(raw).decode() if encoding == "base64" else raw.decode(errors="replace")
    return RunOptions(
        stdin=stdin,
        args=tuple(args.args) if args.args else None,
        time_limit_ms=args.time_limit,
        memory_limit_mb=args.memory_limit,
        encoding=encoding,
        interactive=args.interactive or None,
        tests=tuple(cases_in(args.tests)) if args.tests else None,
    )


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ProgramError(f"cannot read {path}: {exc.strerror}") from exc


def run_program(client: Client, args: argparse.Namespace) -> int:
    if args.json and args.interactive:
        raise ProgramError("--json and --interactive do not go together")
    if args.interactive and args.stdin == "-":
        raise ProgramError("--interactive already sends our standard input: --stdin - does not go with it")
    language = choose_language(client, args.lang, args.files[0])
    source, files = program(args.files)
    # Live output as the exact bytes; a test suite's and JSON's as text, for people to read.
    encoding = "utf8" if args.json or args.tests else "base64"
    options = run_options(args, encoding)
    session = client.create_session(language.id, source, files)
    try:
        if args.json:
            execution = client.run(session.session_id, options, wait=10)
            final = execution if execution.terminal else client.wait(execution.execution_id)
            print_json(final.raw)
            return exit_status(final)
        execution = client.run(session.session_id, options)
        watch = Watch(execution.execution_id, encoding)
        if args.interactive:
            with client.interact(execution.execution_id) as interaction:
                final = watch.follow(interacting(interaction))
        else:
            final = watch.follow(client.stream(execution.execution_id))
        return exit_status(final)
    finally:
        # Tidying up: the run's outcome is the exit status, whatever closing its session answers.
        with contextlib.suppress(LceError):
            client.close_session(session.session_id)


def interacting(interaction: Interaction) -> Iterable[Event]:
    """The run's events, while our standard input goes to the program as it is read."""
    threading.Thread(target=_send_input, args=(interaction,), name="lce-stdin", daemon=True).start()
    return interaction


def _send_input(interaction: Interaction) -> None:
    fd = sys.stdin.fileno()
    try:
        while chunk := os.read(fd, INPUT_CHUNK_BYTES):
            interaction.send(chunk)
        interaction.close_stdin()
    except Exception:  # the socket closed (the run ended) while we read: the input has nowhere to go
        return


if __name__ == "__main__":
    sys.exit(main())
