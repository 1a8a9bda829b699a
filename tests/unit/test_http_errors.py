"""The gRPC -> HTTP table: complete over grpc.StatusCode and over our domain errors, kinds override codes."""

from __future__ import annotations

import grpc
import pytest

from common import errors
from gateway.http_errors import (
    INTERNAL_MESSAGE,
    KIND_TABLE,
    OUTCOME_UNKNOWN_MESSAGE,
    STATUS_TABLE,
    UNAVAILABLE_MESSAGE,
    error_response,
    map_status,
    rpc_error_response,
)


def test_every_grpc_status_code_has_an_explicit_row() -> None:
    assert set(STATUS_TABLE) == set(grpc.StatusCode)


def test_every_row_is_an_error_status() -> None:
    for mapping in (*STATUS_TABLE.values(), *KIND_TABLE.values()):
        assert 400 <= mapping.status <= 599


def test_server_side_failures_never_leak_details() -> None:
    for code, mapping in STATUS_TABLE.items():
        if mapping.status >= 500:
            assert mapping.message is not None, code


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (errors.NotFound("x"), 404),
        (errors.InvalidArgument("x"), 400),
        (errors.PayloadTooLarge("x"), 413),
        (errors.SessionClosed("x"), 409),
        (errors.RateLimited("x", 7), 429),
        (errors.DeadlinePassed("x"), 503),
        (errors.Unavailable("x"), 503),
        (errors.NotRetryable("x"), 409),
    ],
)
def test_each_domain_error_maps_to_its_http_status(error: errors.LceError, status: int) -> None:
    assert error_response(error.code, error.message, error.trailing_metadata()).status == status


def test_domain_error_table_is_covered() -> None:
    """A new domain error must be added to the parametrized test above (and so, thought about here)."""
    assert {cls.__name__ for cls in errors.ALL_ERRORS} == {
        "NotFound", "InvalidArgument", "PayloadTooLarge", "SessionClosed", "NotRetryable", "RateLimited",
        "DeadlinePassed", "Unavailable",
    }  # fmt: skip


def test_kind_overrides_the_code() -> None:
    assert map_status(grpc.StatusCode.INVALID_ARGUMENT, "payload_too_large").status == 413
    assert map_status(grpc.StatusCode.INVALID_ARGUMENT, "invalid_argument").status == 400
    assert map_status(grpc.StatusCode.INVALID_ARGUMENT, None).status == 400
    assert map_status(grpc.StatusCode.NOT_FOUND, "some_future_kind").status == 404


def test_client_errors_keep_the_service_message() -> None:
    response = error_response(grpc.StatusCode.NOT_FOUND, "session 123 not found", None)
    assert response.body == {"error": "session 123 not found"}
    assert response.headers == {}


def test_client_error_without_details_still_has_a_message() -> None:
    assert error_response(grpc.StatusCode.INVALID_ARGUMENT, "", None).body["error"]


def test_rate_limit_body_and_header_from_trailing_metadata() -> None:
    err = errors.RateLimited("10 runs per minute", 37)
    response = error_response(err.code, err.message, err.trailing_metadata())
    assert response.status == 429
    assert response.body == {"error": "Rate limit exceeded", "retryAfter": 37, "detail": "10 runs per minute"}
    assert response.headers == {"Retry-After": "37"}


@pytest.mark.parametrize("raw", [None, "soon", "-5", "0"])
def test_rate_limit_retry_after_falls_back_to_a_positive_default(raw: str | None) -> None:
    metadata = (("lce-error-kind", "rate_limited"),) + (() if raw is None else (("retry-after", raw),))
    response = error_response(grpc.StatusCode.RESOURCE_EXHAUSTED, None, metadata)
    assert response.body["retryAfter"] == int(response.headers["Retry-After"]) >= 1


def test_grpcs_own_resource_exhausted_is_not_a_rate_limit() -> None:
    """A server at its bound of calls, or a message over the size limit: the backend is overloaded."""
    response = error_response(grpc.StatusCode.RESOURCE_EXHAUSTED, "Sent message larger than max", ())
    assert (response.status, response.body) == (503, {"error": UNAVAILABLE_MESSAGE})
    assert response.headers == {"Retry-After": "1"}


def test_binary_metadata_values_are_decoded() -> None:
    response = error_response(
        grpc.StatusCode.RESOURCE_EXHAUSTED, None, (("lce-error-kind", b"rate_limited"), ("retry-after", b"9"))
    )
    assert response.headers == {"Retry-After": "9"}


@pytest.mark.parametrize("code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED])
def test_backend_down_is_503_with_retry_after(code: grpc.StatusCode) -> None:
    response = error_response(code, "failed to connect to all addresses; 10.0.0.3:50051", None)
    assert response.status == 503
    assert response.body == {"error": UNAVAILABLE_MESSAGE}
    assert response.headers == {"Retry-After": "1"}


@pytest.mark.parametrize("code", [grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS])
def test_server_bugs_are_opaque_500(code: grpc.StatusCode) -> None:
    response = error_response(code, "Traceback: KeyError in repository.py", None)
    assert (response.status, response.body) == (500, {"error": INTERNAL_MESSAGE})


class _FailedCall(grpc.aio.AioRpcError):
    def __init__(self, code: grpc.StatusCode, metadata: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(code, grpc.aio.Metadata(), grpc.aio.Metadata(*metadata), details="backend detail")


def test_a_create_that_may_have_happened_does_not_invite_a_blind_retry() -> None:
    for code in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
        answer = rpc_error_response(_FailedCall(code), replay_safe=False)
        assert answer.status == 503
        assert answer.body == {"error": OUTCOME_UNKNOWN_MESSAGE}
        assert "Retry-After" not in answer.headers
    assert rpc_error_response(_FailedCall(grpc.StatusCode.INTERNAL), replay_safe=False).body == {
        "error": OUTCOME_UNKNOWN_MESSAGE
    }


def test_a_create_that_never_reached_the_service_may_be_retried() -> None:
    answer = rpc_error_response(_FailedCall(grpc.StatusCode.UNAVAILABLE), replay_safe=False)
    assert (answer.status, answer.body) == (503, {"error": UNAVAILABLE_MESSAGE})
    assert answer.headers["Retry-After"] == "1"


def test_a_create_with_an_idempotency_key_may_be_retried() -> None:
    answer = rpc_error_response(_FailedCall(grpc.StatusCode.DEADLINE_EXCEEDED), replay_safe=True)
    assert answer.status == 503
    assert answer.body == {"error": UNAVAILABLE_MESSAGE}
    assert answer.headers["Retry-After"] == "1"


def test_a_create_the_service_refused_in_time_may_be_retried() -> None:
    refused = errors.DeadlinePassed("not created")
    answer = rpc_error_response(_FailedCall(refused.code, refused.trailing_metadata()), replay_safe=False)
    assert answer.status == 503
    assert answer.body["error"] != OUTCOME_UNKNOWN_MESSAGE
    assert answer.headers["Retry-After"] == "1"
