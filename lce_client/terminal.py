"""What `lce run` shows while a run goes on: its output as it comes, test verdicts, a spinner while it is
queued, and at the end why it failed."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable
from typing import Any, BinaryIO, TextIO

from lce_client.errors import LceError
from lce_client.models import Event, Execution

SPINNER_FRAMES = "|/-\\"
SPINNER_INTERVAL_S = 0.1
_CLEAR_LINE = "\r\x1b[K"


class Spinner:
    """A spinner on `stream` while a run waits in the queue, drawn only when `stream` is a terminal
    (never into a file or a pipe). `stop` clears its line before anything else is written there."""

    def __init__(self, stream: TextIO, label: str) -> None:
        self._stream = stream
        self._label = label
        self.enabled = stream.isatty()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if not self.enabled or self._thread is not None:
            return
        self._stopped.clear()
        self._draw(0)  # at once: a short wait in the queue shows too
        self._thread = threading.Thread(target=self._spin, name="lce-spinner", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stopped.set()
        self._thread.join()
        self._thread = None
        self._stream.write(_CLEAR_LINE)
        self._stream.flush()

    def _spin(self) -> None:
        frame = 1
        while not self._stopped.wait(SPINNER_INTERVAL_S):
            self._draw(frame)
            frame += 1

    def _draw(self, frame: int) -> None:
        self._stream.write(f"\r{SPINNER_FRAMES[frame % len(SPINNER_FRAMES)]} {self._label}")
        self._stream.flush()


class LiveOutput:
    """Writes a run's stdout and stderr to ours as the chunks come, each byte once: a retried attempt's
    output starts again at offset 0, and what a retry writes again is not shown twice."""

    def __init__(self, stdout: BinaryIO, stderr: BinaryIO, encoding: str | None) -> None:
        self._streams = {"stdout": stdout, "stderr": stderr}
        self._encoding = encoding
        self._written = {"stdout": 0, "stderr": 0}

    def write(self, event: Event) -> None:
        self._write(event.kind, event.fields.get("offset", 0), event.output(self._encoding))

    def finish(self, execution: Execution) -> None:
        """What the result holds beyond what came live (a compile error's text, output a lost stream
        never carried)."""
        for name in self._streams:
            self._write(name, 0, execution.output(name))

    def _write(self, name: str, offset: int, data: bytes) -> None:
        new = data[max(0, self._written[name] - offset) :]
        if not new:
            return
        stream = self._streams[name]
        stream.write(new)
        stream.flush()
        self._written[name] = max(self._written[name], offset + len(data))


class Watch:
    """Shows a run's events on our terminal: output as it comes, test verdicts, a spinner while queued;
    what went wrong on stderr at the end."""

    def __init__(self, execution_id: str, encoding: str) -> None:
        self.spinner = Spinner(sys.stderr, f"queued ({execution_id})")
        self.output = LiveOutput(sys.stdout.buffer, sys.stderr.buffer, encoding)

    def follow(self, events: Iterable[Event]) -> Execution:
        self.spinner.start()
        final = None
        try:
            for event in events:
                final = self._show(event) or final
        finally:
            self.spinner.stop()
        if final is None:
            raise LceError(None, "the run's events ended before its result")
        self.output.finish(final)
        _report(final)
        return final

    def _show(self, event: Event) -> Execution | None:
        if event.kind == "status" and event.status == "QUEUED":
            self.spinner.start()
            return None
        self.spinner.stop()
        if event.kind in ("stdout", "stderr"):
            self.output.write(event)
        elif event.kind == "test":
            print(f"{event.fields['name']}: {_verdict(event.fields)}", flush=True)
        elif event.kind == "error":
            print(f"lce: input refused: {event.fields.get('message')}", file=sys.stderr, flush=True)
        return event.execution


def _verdict(case: dict[str, Any]) -> str:
    if case["passed"]:
        return "passed"
    if case["status"] == "COMPLETED":
        return "FAILED: wrong output"
    return f"FAILED: {case['status']} {case.get('reason') or ''}".rstrip()


def _report(final: Execution) -> None:
    for warning in final.warnings:
        print(f"lce: warning: {warning}", file=sys.stderr)
    if final.tests is not None:
        print(f"{final.tests_passed}/{final.tests_total} passed", flush=True)
    if final.status == "TIMEOUT" or (final.status == "FAILED" and final.reason != "runtime_error"):
        print(f"lce: {final.status}: {final.reason}", file=sys.stderr)
    sys.stderr.flush()
