"""One spelling of ids for every service."""

from __future__ import annotations

import uuid

import pytest

from common.errors import InvalidArgument
from common.ids import parse_uuid


def test_parse_uuid_returns_the_canonical_lowercase_form() -> None:
    value = str(uuid.uuid4())
    assert parse_uuid(value.upper(), "session_id") == value


@pytest.mark.parametrize(
    "value",
    [
        "",
        "nope",
        "123",
        "{" + str(uuid.uuid4()) + "}",
        uuid.uuid4().hex,
        "urn:uuid:" + str(uuid.uuid4()),
        "-" + str(uuid.uuid4()),
    ],
)
def test_parse_uuid_refuses_anything_but_the_usual_spelling(value: str) -> None:
    with pytest.raises(InvalidArgument, match=r"^session_id must be a UUID$"):
        parse_uuid(value, "session_id")
