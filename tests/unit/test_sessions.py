"""The session rules (session_service.sessions) against a real PostgreSQL database."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC
from typing import Any

import pytest

from common.errors import InvalidArgument, NotFound, PayloadTooLarge, SessionClosed
from common.languages import LANGUAGES
from session_service import build_sessions
from session_service.models import SessionStatus
from session_service.sessions import MAX_SOURCE_BYTES, Catalogue, Sessions, check_source
from tests.conftest import RedisServer

PYTHON = LANGUAGES[0]


@pytest.fixture(scope="module")
def sessions(postgres_url: str, redis_server: RedisServer) -> Iterator[Sessions]:
    built = build_sessions(postgres_url, redis_server.url)
    yield built
    built.dispose()


# The size limit counts bytes of UTF-8, not characters.


def test_source_of_exactly_one_mebibyte_is_accepted() -> None:
    check_source("x" * MAX_SOURCE_BYTES)


def test_source_one_byte_over_one_mebibyte_is_refused() -> None:
    with pytest.raises(PayloadTooLarge):
        check_source("x" * (MAX_SOURCE_BYTES + 1))


@pytest.mark.parametrize("character", ["é", "€", "😀"], ids=["2-byte", "3-byte", "4-byte"])
def test_multibyte_characters_count_in_bytes(character: str) -> None:
    width = len(character.encode("utf-8"))
    fits = character * (MAX_SOURCE_BYTES // width) + "x" * (MAX_SOURCE_BYTES % width)
    check_source(fits)
    with pytest.raises(PayloadTooLarge):
        check_source(fits + character)


def test_multibyte_source_under_the_limit_in_characters_but_over_in_bytes_is_refused() -> None:
    source = "é" * (MAX_SOURCE_BYTES // 2 + 1)
    assert len(source) < MAX_SOURCE_BYTES
    with pytest.raises(PayloadTooLarge):
        check_source(source)


def test_source_with_nul_is_an_invalid_argument_not_a_size_error() -> None:
    with pytest.raises(InvalidArgument) as caught:
        check_source("print(1)\x00")
    assert type(caught.value) is InvalidArgument


def test_catalogue_keeps_the_order_of_the_language_table() -> None:
    catalogue = Catalogue(lambda: {})
    assert [language.id for language in catalogue.languages] == [language.id for language in LANGUAGES]


def test_catalogue_reports_the_served_versions_and_unavailable_languages() -> None:
    catalogue = Catalogue(lambda: {"python": ("3.11.2", "3.12.1")})
    python, javascript = catalogue.languages[:2]
    assert (python.version, python.versions, python.available) == ("3.11.2", ("3.11.2", "3.12.1"), True)
    assert (javascript.version, javascript.versions, javascript.available) == ("unavailable", (), False)
    assert catalogue.get(PYTHON.id) == python


def test_catalogue_answers_what_the_executors_serve_now_not_what_it_answered_before() -> None:
    announced: dict[str, Any] = {"served": {"python": ("3.11.2",)}, "packages": {}}
    catalogue = Catalogue(lambda: announced["served"], lambda: announced["packages"])
    assert catalogue.get(PYTHON.id).versions == ("3.11.2",)
    announced["served"] = {"python": ("3.12.1",)}  # a refresh replaces what toolchains.py holds
    assert catalogue.get(PYTHON.id).versions == ("3.12.1",)
    announced["packages"] = {"python": {"numpy": "2.3.5"}}
    assert catalogue.get(PYTHON.id).packages == (("numpy", "2.3.5"),)
    assert catalogue.languages[0].packages == (("numpy", "2.3.5"),)
    announced["served"] = {}
    assert not catalogue.get(PYTHON.id).available


def test_catalogue_tells_malformed_from_unknown_language_ids() -> None:
    catalogue = Catalogue(lambda: {})
    with pytest.raises(InvalidArgument, match="language_id must be a UUID"):
        catalogue.get("python")
    with pytest.raises(NotFound):
        catalogue.get(str(uuid.uuid4()))


# Sessions, stored in PostgreSQL.


def test_new_session_is_active_with_the_template_and_utc_timestamps(sessions: Sessions) -> None:
    session = sessions.create(PYTHON.id)
    assert session.status is SessionStatus.ACTIVE
    assert session.source_code == PYTHON.template_code
    assert session.language.id == PYTHON.id
    assert session.created_at == session.updated_at
    assert session.created_at.tzinfo is not None
    assert session.created_at.utcoffset() == UTC.utcoffset(None)
    assert uuid.UUID(session.id).version == 4


def test_new_session_keeps_given_source_even_when_empty(sessions: Sessions) -> None:
    assert sessions.create(PYTHON.id, "print(2)").source_code == "print(2)"
    assert sessions.create(PYTHON.id, "").source_code == ""


def test_new_session_refuses_unknown_language_and_oversized_source(sessions: Sessions) -> None:
    with pytest.raises(NotFound):
        sessions.create(str(uuid.uuid4()))
    with pytest.raises(PayloadTooLarge):
        sessions.create(PYTHON.id, "x" * (MAX_SOURCE_BYTES + 1))


def test_get_reads_back_what_was_created(sessions: Sessions) -> None:
    created = sessions.create(PYTHON.id, "print('héllo 😀')")
    assert sessions.get(created.id) == created
    assert sessions.get(created.id.upper()) == created


def test_get_tells_malformed_from_unknown_session_ids(sessions: Sessions) -> None:
    with pytest.raises(InvalidArgument, match=r"^session_id must be a UUID$"):
        sessions.get("not-a-uuid")
    with pytest.raises(NotFound):
        sessions.get(str(uuid.uuid4()))


def test_autosave_of_exactly_one_mebibyte_of_multibyte_text_is_stored(sessions: Sessions) -> None:
    session = sessions.create(PYTHON.id)
    source = "€" * (MAX_SOURCE_BYTES // 3) + "x" * (MAX_SOURCE_BYTES % 3)
    saved = sessions.update_source(session.id, source)
    assert saved.source_code == source
    assert saved.created_at == session.created_at
    assert saved.updated_at > session.updated_at
    assert sessions.get(session.id).source_code == source


def test_autosave_one_byte_over_the_limit_changes_nothing(sessions: Sessions) -> None:
    session = sessions.create(PYTHON.id, "kept")
    with pytest.raises(PayloadTooLarge):
        sessions.update_source(session.id, "x" * (MAX_SOURCE_BYTES + 1))
    assert sessions.get(session.id) == session


def test_autosave_on_a_closed_session_is_refused_and_changes_nothing(sessions: Sessions) -> None:
    session = sessions.create(PYTHON.id, "kept")
    closed = sessions.close(session.id)
    with pytest.raises(SessionClosed):
        sessions.update_source(session.id, "changed")
    assert sessions.get(session.id) == closed
    assert closed.source_code == "kept"


def test_autosave_on_an_unknown_session_is_not_found(sessions: Sessions) -> None:
    with pytest.raises(NotFound):
        sessions.update_source(str(uuid.uuid4()), "print(1)")


def test_close_is_idempotent(sessions: Sessions) -> None:
    session = sessions.create(PYTHON.id)
    closed = sessions.close(session.id)
    assert closed.status is SessionStatus.INACTIVE
    assert closed.updated_at > session.updated_at
    assert sessions.close(session.id) == closed
    assert sessions.get(session.id) == closed


def test_close_of_an_unknown_session_is_not_found(sessions: Sessions) -> None:
    with pytest.raises(NotFound):
        sessions.close(str(uuid.uuid4()))


def test_concurrent_closes_all_answer_the_same_closed_session(sessions: Sessions) -> None:
    session = sessions.create(PYTHON.id)
    start = threading.Barrier(8)
    answers: list[object] = []

    def close() -> None:
        start.wait()
        answers.append(sessions.close(session.id))

    threads = [threading.Thread(target=close) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [sessions.get(session.id)] * 8
