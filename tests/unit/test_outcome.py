"""The run result's one mapping (common/outcome.py): to the contract and back, to text and back."""

from __future__ import annotations

import pytest

from common.outcome import (
    Reason,
    RunOutcome,
    Stage,
    Status,
    outcome_from_proto,
    outcome_to_proto,
    reason_from_text,
    reason_text,
    reason_text_of,
    status_from_proto,
    status_to_proto,
)
from lce.execution.v1 import execution_pb2 as pb


def test_every_status_and_reason_has_its_proto_value_and_back() -> None:
    assert {status_from_proto(status_to_proto(status)) for status in Status} == set(Status)
    assert status_from_proto(pb.EXECUTION_STATUS_UNSPECIFIED) is None
    # Every proto reason is known here, and every one here is in the proto.
    assert len(pb.Reason.DESCRIPTOR.values) == len(Reason)


@pytest.mark.parametrize("reason", list(Reason))
def test_an_outcome_survives_the_wire(reason: Reason) -> None:
    outcome = RunOutcome(
        status=Status.FAILED,
        reason=reason,
        signal="SIGSEGV" if reason is Reason.SIGNAL else "",
        stdout="out",
        stderr="err",
        stderr_truncated=True,
        exit_code=None if reason is Reason.SIGNAL else 1,
        execution_time_ms=12,
        memory_kb=900,
        stages=(Stage("compile", 1, 2, 3, 0, ""), Stage("run", 4, 5, 6, None, "SIGSEGV")),
        sandbox="bwrap-userns",
    )
    assert outcome_from_proto(pb.RunResult.FromString(outcome_to_proto(outcome).SerializeToString())) == outcome


def test_reasons_as_text() -> None:
    assert reason_text(Reason.SIGNAL, "SIGKILL") == "signal:SIGKILL"
    assert reason_text(Reason.TIME_LIMIT_EXCEEDED_CPU) == "time_limit_exceeded:cpu"
    assert reason_text(Reason.NONE) == ""
    for reason in Reason:
        signal = "SIGXFSZ" if reason is Reason.SIGNAL else ""
        assert reason_from_text(reason_text(reason, signal)) == (reason, signal)
    assert reason_text_of(pb.RunResult(reason=pb.REASON_SIGNAL, signal="SIGABRT")) == "signal:SIGABRT"
    assert reason_text_of(pb.RunResult(reason=999)) == ""  # a newer release's reason, unknown here


def test_an_unknown_status_is_refused() -> None:
    with pytest.raises(ValueError):
        outcome_from_proto(pb.RunResult(status=pb.EXECUTION_STATUS_UNSPECIFIED))
