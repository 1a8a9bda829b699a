"""SessionService over a real gRPC channel, against real PostgreSQL (and once SQLite): every RPC, every error."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import create_engine, make_url, text

from common.errors import KIND_METADATA_KEY
from common.executor_registry import ExecutorInfo, ExecutorRegistry
from common.grpc_server import RunningServer, start_server
from common.languages import LANGUAGES
from common.migrations import SchemaError
from lce.session.v1 import session_pb2, session_pb2_grpc
from session_service import SERVICE_NAME, SessionServicer, build_servicer
from session_service.migrations import HISTORY
from session_service.sessions import MAX_FILES, MAX_SOURCE_BYTES
from tests.conftest import RedisServer, fresh_database, migrated

DEADLINE_S = 10.0
PYTHON = LANGUAGES[0]
UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"
ServicerFor = Callable[[str], SessionServicer]


class Served:
    """A servicer behind a real server on a free port, and a stub on a channel to it."""

    def __init__(self, servicer: SessionServicer) -> None:
        self.servicer = servicer
        self.server: RunningServer = start_server("127.0.0.1:0", servicer.register, [SERVICE_NAME])
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.server.port}")
        self.stub = session_pb2_grpc.SessionServiceStub(self.channel)

    def call(self, method: str, request: Any) -> Any:
        return getattr(self.stub, method)(request, timeout=DEADLINE_S)

    def stop(self) -> None:
        self.channel.close()
        self.server.stop(1)
        self.servicer.close()


@pytest.fixture(scope="module")
def servicer_for(redis_server: RedisServer) -> ServicerFor:
    """Builds a servicer on a database, reading executors' announcements from the test run's Redis."""
    return lambda database_url: build_servicer(database_url, redis_server.url)


@pytest.fixture(scope="module")
def served(servicer_for: ServicerFor, postgres_url: str) -> Iterator[Served]:
    served = Served(servicer_for(postgres_url))
    yield served
    served.stop()


@pytest.fixture
def scratch_database() -> Iterator[str]:
    """A database of this test's own on the test PostgreSQL server, migrated, dropped (forcibly) afterwards."""
    with fresh_database("lce_scratch") as url:
        yield migrated(url)


def create(served: Served, source_code: str | None = None) -> session_pb2.Session:
    request = session_pb2.CreateSessionRequest(language_id=PYTHON.id, source_code=source_code)
    return served.call("CreateSession", request).session


def source_files(contents: dict[str, str]) -> list[session_pb2.SourceFile]:
    return [session_pb2.SourceFile(name=name, content=content) for name, content in contents.items()]


def save_files(served: Served, session_id: str, files: list[session_pb2.SourceFile]) -> session_pb2.Session:
    request = session_pb2.UpdateSourceRequest(session_id=session_id, file_set=session_pb2.FileSet(files=files))
    return served.call("UpdateSource", request).session


def save_source(served: Served, session_id: str, source_code: str) -> session_pb2.Session:
    request = session_pb2.UpdateSourceRequest(session_id=session_id, source_code=source_code)
    return served.call("UpdateSource", request).session


def get(served: Served, session_id: str) -> session_pb2.Session:
    return served.call("GetSession", session_pb2.GetSessionRequest(session_id=session_id)).session


def rpc_error(call: Callable[[], Any]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


def kind_of(err: grpc.RpcError) -> str | None:
    return dict(err.trailing_metadata() or ()).get(KIND_METADATA_KEY)


# Languages


def announce(redis_url: str, executor_id: str, languages: dict[str, str]) -> None:
    info = ExecutorInfo(executor_id, "default", languages, "bwrap-userns", 1, 0, "host", 1, "0.1.0", time.time())
    ExecutorRegistry(redis.Redis.from_url(redis_url)).announce(info, ttl_s=30)


@pytest.fixture
def executors(redis_server: RedisServer) -> Iterator[Callable[[str, dict[str, str]], None]]:
    """Announces executors in the registry (as executor/heartbeat.py does); all withdrawn afterwards."""
    announced: list[str] = []

    def add(executor_id: str, languages: dict[str, str]) -> None:
        announce(redis_server.url, executor_id, languages)
        announced.append(executor_id)

    yield add
    registry = ExecutorRegistry(redis.Redis.from_url(redis_server.url))
    for executor_id in announced:
        registry.withdraw(executor_id)


def languages_once(served: Served, changed: Callable[[list[Any]], bool]) -> list[Any]:
    """ListLanguages once its answer shows `changed` (the registry is read at most once a second)."""
    deadline = time.monotonic() + 5
    while True:
        languages = list(served.call("ListLanguages", session_pb2.ListLanguagesRequest()).languages)
        if changed(languages) or time.monotonic() > deadline:
            return languages
        time.sleep(0.1)


def test_list_languages_answers_the_eight_languages_in_table_order(served: Served) -> None:
    languages = served.call("ListLanguages", session_pb2.ListLanguagesRequest()).languages
    assert [language.id for language in languages] == [language.id for language in LANGUAGES]
    assert [language.name for language in languages] == [
        "python", "javascript", "c", "cpp", "go", "java", "php", "ruby",
    ]  # fmt: skip
    for answered, reference in zip(languages, LANGUAGES, strict=True):
        assert answered.runtime == reference.runtime
        assert answered.template_code == reference.template_code
        assert answered.file_name == reference.file_name
        assert answered.default_time_limit_ms == reference.default_time_limit_ms
        assert answered.default_memory_mb == reference.default_memory_mb


def test_languages_no_executor_serves_are_unavailable(served: Served) -> None:
    languages = languages_once(served, lambda found: not any(language.available for language in found))
    assert [(language.version, list(language.versions), language.available) for language in languages] == [
        ("unavailable", [], False)
    ] * len(LANGUAGES)


def test_versions_are_those_live_executors_announce(served: Served, executors: Any) -> None:
    executors("a", {"python": "3.11.2", "ruby": "3.1.2"})
    executors("b", {"python": "3.11.2"})
    executors("c", {"python": "3.12.1"})
    languages = {
        language.name: language for language in languages_once(served, lambda found: len(found[0].versions) == 2)
    }
    assert (languages["python"].version, list(languages["python"].versions)) == ("3.11.2", ["3.11.2", "3.12.1"])
    assert languages["python"].available
    assert (languages["ruby"].version, list(languages["ruby"].versions), languages["ruby"].available) == (
        "3.1.2",
        ["3.1.2"],
        True,
    )
    assert (languages["java"].version, languages["java"].available) == ("unavailable", False)
    session = create(served)
    assert (session.language.version, list(session.language.versions)) == ("3.11.2", ["3.11.2", "3.12.1"])


@pytest.mark.parametrize("reference", LANGUAGES, ids=lambda language: language.name)
def test_get_language_answers_the_listed_language(served: Served, reference: Any) -> None:
    listed = {
        language.id: language for language in served.call("ListLanguages", session_pb2.ListLanguagesRequest()).languages
    }
    answered = served.call("GetLanguage", session_pb2.GetLanguageRequest(language_id=reference.id)).language
    assert answered == listed[reference.id]


def test_languages_table_holds_the_reference_data_but_no_version(served: Served, postgres_url: str) -> None:
    engine = create_engine(postgres_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT id, name, version FROM languages")).all()
    finally:
        engine.dispose()
    assert {(str(row.id), row.name) for row in rows} == {(language.id, language.name) for language in LANGUAGES}
    # Sessions point at these rows; versions are the live executors', never stored.
    assert {row.version for row in rows} == {""}


# Sessions


def test_create_session_starts_active_with_the_template(served: Served) -> None:
    session = create(served)
    assert uuid.UUID(session.id).version == 4
    assert session.status == session_pb2.SESSION_STATUS_ACTIVE
    assert session.source_code == PYTHON.template_code
    assert session.language.id == PYTHON.id
    assert session.created_at == session.updated_at
    assert session.created_at.seconds > 0


def test_create_session_keeps_the_given_source(served: Served) -> None:
    assert create(served, "print('given')").source_code == "print('given')"
    assert create(served, "").source_code == ""


def test_get_session_answers_the_session_with_its_language(served: Served) -> None:
    created = create(served, "print('héllo 😀')")
    answered = served.call("GetSession", session_pb2.GetSessionRequest(session_id=created.id)).session
    assert answered == created


def test_update_source_saves_and_moves_updated_at(served: Served) -> None:
    created = create(served)
    source = "é" * (MAX_SOURCE_BYTES // 2)
    request = session_pb2.UpdateSourceRequest(session_id=created.id, source_code=source)
    updated = served.call("UpdateSource", request).session
    assert updated.source_code == source
    assert updated.created_at == created.created_at
    assert updated.updated_at.ToDatetime() > created.updated_at.ToDatetime()
    assert served.call("GetSession", session_pb2.GetSessionRequest(session_id=created.id)).session == updated


def test_close_session_is_idempotent(served: Served) -> None:
    created = create(served)
    closed = served.call("CloseSession", session_pb2.CloseSessionRequest(session_id=created.id)).session
    assert closed.status == session_pb2.SESSION_STATUS_INACTIVE
    again = served.call("CloseSession", session_pb2.CloseSessionRequest(session_id=created.id)).session
    assert again == closed


# Files


def test_files_given_at_creation_are_answered_in_their_order(served: Served) -> None:
    files = source_files({"zeta.py": "Z = 1\n", "alpha.py": "", "lib/util.py": "def f():\n    return 'é😀'\n"})
    created = served.call("CreateSession", session_pb2.CreateSessionRequest(language_id=PYTHON.id, files=files))
    assert list(created.session.files) == files
    assert created.session.source_code == PYTHON.template_code
    assert get(served, created.session.id) == created.session


def test_a_session_starts_without_files(served: Served) -> None:
    assert list(get(served, create(served).id).files) == []


def test_a_file_set_replaces_every_file_and_leaves_the_source(served: Served) -> None:
    session = create(served, "import helper")
    save_files(served, session.id, source_files({"helper.py": "A = 1", "old.py": "gone"}))
    saved = save_files(served, session.id, source_files({"helper.py": "A = 2", "lib/new.py": "B = 3"}))
    assert list(saved.files) == source_files({"helper.py": "A = 2", "lib/new.py": "B = 3"})
    assert saved.source_code == "import helper"
    assert saved.updated_at.ToDatetime() > session.updated_at.ToDatetime()
    assert get(served, session.id) == saved


def test_source_alone_leaves_the_files(served: Served) -> None:
    session = create(served)
    save_files(served, session.id, source_files({"helper.py": "A = 1"}))
    saved = save_source(served, session.id, "import helper\nprint(helper.A)")
    assert saved.source_code == "import helper\nprint(helper.A)"
    assert list(saved.files) == source_files({"helper.py": "A = 1"})
    assert get(served, session.id) == saved


def test_source_and_files_are_saved_together(served: Served) -> None:
    session = create(served)
    request = session_pb2.UpdateSourceRequest(
        session_id=session.id,
        source_code="import b",
        file_set=session_pb2.FileSet(files=source_files({"b.py": "B = 1"})),
    )
    saved = served.call("UpdateSource", request).session
    assert (saved.source_code, list(saved.files)) == ("import b", source_files({"b.py": "B = 1"}))


def test_an_empty_file_set_removes_every_file(served: Served) -> None:
    session = create(served)
    save_files(served, session.id, source_files({"a.py": "", "b.py": ""}))
    assert list(save_files(served, session.id, []).files) == []
    assert list(get(served, session.id).files) == []
    assert save_source(served, session.id, "print(1)").source_code == "print(1)"


def test_source_and_files_of_exactly_one_mebibyte_together_are_stored(served: Served) -> None:
    session = create(served, "€" * 1000)
    files = source_files({"a.py": "x" * (MAX_SOURCE_BYTES - 3000 - 2), "b.py": "é"})
    assert list(save_files(served, session.id, files).files) == files


def test_closed_session_refuses_files_and_keeps_its_own(served: Served) -> None:
    session = create(served)
    save_files(served, session.id, source_files({"kept.py": "K = 1"}))
    served.call("CloseSession", session_pb2.CloseSessionRequest(session_id=session.id))
    err = rpc_error(lambda: save_files(served, session.id, source_files({"other.py": ""})))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert list(get(served, session.id).files) == source_files({"kept.py": "K = 1"})


def test_a_bad_file_name_is_explained_by_its_place(served: Served) -> None:
    session = create(served)
    err = rpc_error(lambda: save_files(served, session.id, source_files({"ok.py": "", "a b.py": ""})))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details().startswith("files[1].name ")


def test_the_files_column_is_added_to_a_database_of_an_earlier_release(
    servicer_for: ServicerFor, scratch_database: str
) -> None:
    served = Served(servicer_for(scratch_database))
    try:
        session = create(served, "print('before files')")
    finally:
        served.stop()
    engine = create_engine(scratch_database)
    try:
        with engine.begin() as connection:  # as a release before files and before migrations left it
            connection.execute(text("ALTER TABLE sessions DROP COLUMN files"))
            connection.execute(text(f"DROP TABLE {HISTORY.version_table}"))
    finally:
        engine.dispose()
    with pytest.raises(SchemaError):
        servicer_for(scratch_database)
    served = Served(servicer_for(migrated(scratch_database)))
    try:
        assert get(served, session.id) == session
        saved = save_files(served, session.id, source_files({"new.py": "N = 1"}))
        assert list(get(served, session.id).files) == list(saved.files) == source_files({"new.py": "N = 1"})
    finally:
        served.stop()


# Errors: each RPC's precise status code and the kind in the trailing metadata


def _closed_session_autosave(served: Served) -> session_pb2.UpdateSourceRequest:
    session = create(served)
    served.call("CloseSession", session_pb2.CloseSessionRequest(session_id=session.id))
    return session_pb2.UpdateSourceRequest(session_id=session.id, source_code="print(1)")


def _oversized_autosave(served: Served) -> session_pb2.UpdateSourceRequest:
    return session_pb2.UpdateSourceRequest(session_id=create(served).id, source_code="x" * (MAX_SOURCE_BYTES + 1))


ERROR_CASES: list[tuple[str, str, Callable[[Served], Any], grpc.StatusCode, str]] = [
    ("malformed language", "GetLanguage", lambda _: session_pb2.GetLanguageRequest(language_id="python"),
     grpc.StatusCode.INVALID_ARGUMENT, "invalid_argument"),
    ("unknown language", "GetLanguage", lambda _: session_pb2.GetLanguageRequest(language_id=UNKNOWN_ID),
     grpc.StatusCode.NOT_FOUND, "not_found"),
    ("malformed language", "CreateSession", lambda _: session_pb2.CreateSessionRequest(language_id="x"),
     grpc.StatusCode.INVALID_ARGUMENT, "invalid_argument"),
    ("unknown language", "CreateSession", lambda _: session_pb2.CreateSessionRequest(language_id=UNKNOWN_ID),
     grpc.StatusCode.NOT_FOUND, "not_found"),
    ("oversized source", "CreateSession",
     lambda _: session_pb2.CreateSessionRequest(language_id=PYTHON.id, source_code="x" * (MAX_SOURCE_BYTES + 1)),
     grpc.StatusCode.INVALID_ARGUMENT, "payload_too_large"),
    ("malformed session", "GetSession", lambda _: session_pb2.GetSessionRequest(session_id="42"),
     grpc.StatusCode.INVALID_ARGUMENT, "invalid_argument"),
    ("unknown session", "GetSession", lambda _: session_pb2.GetSessionRequest(session_id=UNKNOWN_ID),
     grpc.StatusCode.NOT_FOUND, "not_found"),
    ("malformed session", "UpdateSource", lambda _: session_pb2.UpdateSourceRequest(session_id="", source_code=""),
     grpc.StatusCode.INVALID_ARGUMENT, "invalid_argument"),
    ("unknown session, source", "UpdateSource",
     lambda _: session_pb2.UpdateSourceRequest(session_id=UNKNOWN_ID, source_code=""),
     grpc.StatusCode.NOT_FOUND, "not_found"),
    ("unknown session, files", "UpdateSource",
     lambda _: session_pb2.UpdateSourceRequest(session_id=UNKNOWN_ID, file_set=session_pb2.FileSet()),
     grpc.StatusCode.NOT_FOUND, "not_found"),
    ("nothing to update", "UpdateSource", lambda served: session_pb2.UpdateSourceRequest(session_id=create(served).id),
     grpc.StatusCode.INVALID_ARGUMENT, "invalid_argument"),
    ("closed session", "UpdateSource", _closed_session_autosave,
     grpc.StatusCode.FAILED_PRECONDITION, "session_closed"),
    ("oversized source", "UpdateSource", _oversized_autosave,
     grpc.StatusCode.INVALID_ARGUMENT, "payload_too_large"),
    ("NUL in source", "UpdateSource",
     lambda served: session_pb2.UpdateSourceRequest(session_id=create(served).id, source_code="a\x00b"),
     grpc.StatusCode.INVALID_ARGUMENT, "invalid_argument"),
    ("main file among the files", "CreateSession",
     lambda _: session_pb2.CreateSessionRequest(language_id=PYTHON.id, files=source_files({"main.py": ""})),
     grpc.StatusCode.INVALID_ARGUMENT, "invalid_argument"),
    ("source and files over 1 MiB", "CreateSession",
     lambda _: session_pb2.CreateSessionRequest(
         language_id=PYTHON.id, source_code="x" * (MAX_SOURCE_BYTES - 1), files=source_files({"a.py": "yy"})),
     grpc.StatusCode.INVALID_ARGUMENT, "payload_too_large"),
    ("file name climbing out", "UpdateSource",
     lambda served: session_pb2.UpdateSourceRequest(
         session_id=create(served).id, file_set=session_pb2.FileSet(files=source_files({"../a.py": ""}))),
     grpc.StatusCode.INVALID_ARGUMENT, "invalid_argument"),
    ("too many files", "UpdateSource",
     lambda served: session_pb2.UpdateSourceRequest(
         session_id=create(served).id,
         file_set=session_pb2.FileSet(files=source_files({f"f{n}.py": "" for n in range(MAX_FILES + 1)}))),
     grpc.StatusCode.INVALID_ARGUMENT, "invalid_argument"),
    ("source over 1 MiB with the stored files", "UpdateSource",
     lambda served: session_pb2.UpdateSourceRequest(
         session_id=served.call("CreateSession", session_pb2.CreateSessionRequest(
             language_id=PYTHON.id, files=source_files({"a.py": "x" * 10}))).session.id,
         source_code="y" * (MAX_SOURCE_BYTES - 9)),
     grpc.StatusCode.INVALID_ARGUMENT, "payload_too_large"),
    ("files over 1 MiB with the stored source", "UpdateSource",
     lambda served: session_pb2.UpdateSourceRequest(
         session_id=create(served, "x" * 10).id,
         file_set=session_pb2.FileSet(files=source_files({"a.py": "y" * (MAX_SOURCE_BYTES - 9)}))),
     grpc.StatusCode.INVALID_ARGUMENT, "payload_too_large"),
    ("closed session, files", "UpdateSource",
     lambda served: session_pb2.UpdateSourceRequest(
         session_id=_closed_session_autosave(served).session_id, file_set=session_pb2.FileSet()),
     grpc.StatusCode.FAILED_PRECONDITION, "session_closed"),
    ("malformed session", "CloseSession", lambda _: session_pb2.CloseSessionRequest(session_id="nope"),
     grpc.StatusCode.INVALID_ARGUMENT, "invalid_argument"),
    ("unknown session", "CloseSession", lambda _: session_pb2.CloseSessionRequest(session_id=UNKNOWN_ID),
     grpc.StatusCode.NOT_FOUND, "not_found"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("method", "make_request", "code", "kind"),
    [case[1:] for case in ERROR_CASES],
    ids=[f"{case[1]}-{case[0]}" for case in ERROR_CASES],
)
def test_errors_carry_their_status_code_and_kind(
    served: Served, method: str, make_request: Callable[[Served], Any], code: grpc.StatusCode, kind: str
) -> None:
    request = make_request(served)
    err = rpc_error(lambda: served.call(method, request))
    assert err.code() == code, err.details()
    assert kind_of(err) == kind


def test_malformed_session_id_is_explained(served: Served) -> None:
    err = rpc_error(lambda: served.call("GetSession", session_pb2.GetSessionRequest(session_id="x")))
    assert err.details() == "session_id must be a UUID"


def test_closed_session_refuses_autosave_but_keeps_its_source(served: Served) -> None:
    request = _closed_session_autosave(served)
    rpc_error(lambda: served.call("UpdateSource", request))
    session = served.call("GetSession", session_pb2.GetSessionRequest(session_id=request.session_id)).session
    assert session.source_code == PYTHON.template_code
    assert session.status == session_pb2.SESSION_STATUS_INACTIVE


def test_database_outage_is_unavailable(servicer_for: ServicerFor, scratch_database: str, postgres_url: str) -> None:
    served = Served(servicer_for(scratch_database))
    try:
        session = create(served)
        admin_url = make_url(postgres_url).set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{make_url(scratch_database).database}" WITH (FORCE)')
        err = rpc_error(lambda: served.call("GetSession", session_pb2.GetSessionRequest(session_id=session.id)))
        assert err.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        served.stop()


def test_health_reports_the_service_serving(served: Served) -> None:
    health = health_pb2_grpc.HealthStub(served.channel)
    answer = health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=DEADLINE_S)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING


# Startup


def test_replicas_starting_together_all_come_up(servicer_for: ServicerFor, scratch_database: str) -> None:
    start = threading.Barrier(4)
    built: list[SessionServicer] = []
    failures: list[BaseException] = []

    def start_replica() -> None:
        start.wait()
        try:
            built.append(servicer_for(scratch_database))
        except BaseException as err:
            failures.append(err)

    replicas = [threading.Thread(target=start_replica) for _ in range(4)]
    for replica in replicas:
        replica.start()
    for replica in replicas:
        replica.join()
    for servicer in built:
        servicer.close()
    assert failures == []
    assert len(built) == 4


def test_sqlite_file_keeps_sessions_across_restarts(servicer_for: ServicerFor, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'session.db'}"
    first = Served(servicer_for(url))
    try:
        session = create(first, "print('sqlite')")
        saved = first.call(
            "UpdateSource", session_pb2.UpdateSourceRequest(session_id=session.id, source_code="print('saved')")
        ).session
    finally:
        first.stop()
    second = Served(servicer_for(url))
    try:
        languages = second.call("ListLanguages", session_pb2.ListLanguagesRequest()).languages
        assert [language.id for language in languages] == [language.id for language in LANGUAGES]
        assert second.call("GetSession", session_pb2.GetSessionRequest(session_id=session.id)).session == saved
        closed = second.call("CloseSession", session_pb2.CloseSessionRequest(session_id=session.id)).session
        assert closed.status == session_pb2.SESSION_STATUS_INACTIVE
        closed_update = session_pb2.UpdateSourceRequest(session_id=session.id, source_code="")
        err = rpc_error(lambda: second.call("UpdateSource", closed_update))
        assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert kind_of(err) == "session_closed"
    finally:
        second.stop()
