"""A session's files: the rules of check_files, and how sessions store them (against a real PostgreSQL)."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from datetime import datetime

import pytest
from sqlalchemy import text

from common.db import make_engine
from common.errors import InvalidArgument, PayloadTooLarge, Unavailable
from common.job import SourceFile
from common.languages import LANGUAGES, Language
from gateway import translate
from gateway.http_errors import HttpError
from lce.session.v1 import session_pb2
from session_service import build_sessions
from session_service.repository import SessionRepository
from session_service.sessions import (
    MAX_FILE_NAME_CHARS,
    MAX_FILES,
    MAX_SOURCE_BYTES,
    Catalogue,
    SessionRecord,
    Sessions,
    check_files,
)
from tests.conftest import RedisServer

PYTHON = LANGUAGES[0]
JAVA = next(language for language in LANGUAGES if language.name == "java")


def named(*names: str) -> list[SourceFile]:
    return [SourceFile(name=name, content="") for name in names]


def refused(files: list[SourceFile], main_file: str = "main.py", source_code: str = "") -> str:
    """The message of the InvalidArgument (never the PayloadTooLarge) check_files raises."""
    with pytest.raises(InvalidArgument) as caught:
        check_files(files, main_file, source_code)
    assert type(caught.value) is InvalidArgument
    return caught.value.message


# Names


@pytest.mark.parametrize(
    "name",
    [
        "helper.py",
        "lib/util.h",
        "A-b_c.9/D.e-f",
        ".env",
        "..hidden",
        "a..b",
        "lib/main.py",
        "Main.py",
        "x" * MAX_FILE_NAME_CHARS,
        "/".join("a" * 128)[:MAX_FILE_NAME_CHARS],
    ],
)
def test_relative_paths_of_the_allowed_characters_are_accepted(name: str) -> None:
    check_files(named(name), "main.py", "")


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("", "1 to 255 characters"),
        ("x" * (MAX_FILE_NAME_CHARS + 1), "1 to 255 characters"),
        ("a b.py", "only ASCII letters"),
        ("a\\b.py", "only ASCII letters"),
        ("ü.py", "only ASCII letters"),
        ("a\x00.py", "only ASCII letters"),
        ("a\n.py", "only ASCII letters"),
        ("c:x.py", "only ASCII letters"),
        ("/etc/passwd", "relative path"),
        ("a//b.py", "relative path"),
        ("lib/", "relative path"),
        (".", "relative path"),
        ("..", "relative path"),
        ("./a.py", "relative path"),
        ("lib/./a.py", "relative path"),
        ("../a.py", "relative path"),
        ("lib/../../a.py", "relative path"),
        ("main.py", "main file"),
        ("-ofoo.c", "must not start with '-'"),
    ],
)
def test_each_bad_name_is_refused_with_its_rule(name: str, rule: str) -> None:
    message = refused(named("fine.py", name))
    assert message.startswith("files[1].name ")
    assert rule in message


@pytest.mark.parametrize("language", LANGUAGES, ids=lambda language: language.name)
def test_no_file_may_take_the_main_file_name_of_its_language(language: Language) -> None:
    assert f"must not be {language.file_name}" in refused(named(language.file_name), language.file_name)


def test_the_main_file_name_is_compared_exactly() -> None:
    check_files(named("main.java", "lib/Main.java"), JAVA.file_name, "")


def test_names_are_unique() -> None:
    assert "given twice" in refused(named("a.py", "b.py", "a.py"))


@pytest.mark.parametrize(
    "names",
    [("lib", "lib/a.py"), ("lib/a.py", "lib"), ("lib/a.py", "lib/a.py/b.py"), ("main.py/a.py",)],
    ids=["file-then-folder", "folder-then-file", "nested", "main-file-as-folder"],
)
def test_a_name_is_never_both_a_file_and_a_folder(names: tuple[str, ...]) -> None:
    assert "a folder" in refused(named(*names))


def test_files_may_share_folders() -> None:
    check_files(named("lib/a.py", "lib/b.py", "lib/sub/c.py", "other/a.py"), "main.py", "")


# Count, content, size


def test_at_most_32_files() -> None:
    check_files(named(*(f"f{n}.py" for n in range(MAX_FILES))), "main.py", "")
    assert f"at most {MAX_FILES}" in refused(named(*(f"f{n}.py" for n in range(MAX_FILES + 1))))


def test_no_files_at_all_is_fine() -> None:
    check_files([], "main.py", "print(1)")


def test_content_with_nul_is_an_invalid_argument() -> None:
    assert refused([SourceFile("a.py", ""), SourceFile("b.py", "x\x00y")]) == (
        "files[1].content must not contain NUL characters"
    )


def test_source_and_files_of_exactly_one_mebibyte_of_utf8_together_are_accepted() -> None:
    # 3 + 2 + 4 bytes of characters, the rest ASCII.
    files = [SourceFile("a.py", "€"), SourceFile("b.py", "é😀" + "x" * (MAX_SOURCE_BYTES - 9 - 1000))]
    check_files(files, "main.py", "y" * 1000)


@pytest.mark.parametrize(
    ("source_bytes", "file_bytes"), [(0, MAX_SOURCE_BYTES + 1), (MAX_SOURCE_BYTES, 1), (500_000, 548_577)]
)
def test_one_byte_over_one_mebibyte_together_is_too_large(source_bytes: int, file_bytes: int) -> None:
    with pytest.raises(PayloadTooLarge, match="source_code and files"):
        check_files([SourceFile("a.py", "x" * file_bytes)], "main.py", "y" * source_bytes)


def test_multibyte_content_counts_in_bytes() -> None:
    content = "€" * (MAX_SOURCE_BYTES // 3 + 1)
    assert len(content) < MAX_SOURCE_BYTES
    with pytest.raises(PayloadTooLarge):
        check_files([SourceFile("a.py", content)], "main.py", "")


# The gateway's reading of files: types only, the rules above are session_service's


def test_a_patch_with_files_only_leaves_the_source_unset() -> None:
    message = translate.update_source_request("s", {"files": [{"name": "a.py", "content": "A"}]})
    assert not message.HasField("source_code")
    assert message.HasField("file_set")
    assert list(message.file_set.files) == [session_pb2.SourceFile(name="a.py", content="A")]


def test_a_patch_with_the_source_only_leaves_the_files_unset() -> None:
    message = translate.update_source_request("s", {"source_code": ""})
    assert message.HasField("source_code") and not message.HasField("file_set")


def test_an_empty_list_is_a_file_set_that_removes_every_file() -> None:
    message = translate.update_source_request("s", {"files": []})
    assert message.HasField("file_set") and list(message.file_set.files) == []


def test_a_patch_needs_source_or_files() -> None:
    for body in ({}, {"source_code": None, "files": None}):
        with pytest.raises(HttpError, match="source_code is required unless files is given"):
            translate.update_source_request("s", body)


def test_a_new_session_may_bring_files() -> None:
    message = translate.create_session_request({"language_id": "l", "files": [{"name": "a.py", "content": ""}]})
    assert list(message.files) == [session_pb2.SourceFile(name="a.py", content="")]
    assert list(translate.create_session_request({"language_id": "l"}).files) == []


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ("a.py", "files must be a list of {name, content} objects"),
        ([["a.py", ""]], "files[0] must be an object with name and content"),
        ([{"name": "a.py", "content": ""}, {"name": True, "content": ""}], "files[1].name must be a string"),
        ([{"name": "a.py"}], "files[0].content is required"),
        ([{"name": "a.py", "content": "\ud800"}], "files[0].content must be text without lone surrogates"),
    ],
)
def test_wrong_types_name_the_field(files: object, message: str) -> None:
    for make in (
        lambda: translate.update_source_request("s", {"files": files}),
        lambda: translate.create_session_request({"language_id": "l", "files": files}),
    ):
        with pytest.raises(HttpError) as caught:
            make()
        assert (caught.value.status, caught.value.message) == (400, message)


def test_session_detail_answers_the_files_in_order() -> None:
    session = session_pb2.Session(
        id="s", files=[session_pb2.SourceFile(name="b.py", content="B"), session_pb2.SourceFile(name="a.py")]
    )
    assert translate.session_detail(session)["files"] == [
        {"name": "b.py", "content": "B"},
        {"name": "a.py", "content": ""},
    ]
    assert translate.session_detail(session_pb2.Session(id="s"))["files"] == []


# Storage and autosave


@pytest.fixture(scope="module")
def sessions(postgres_url: str, redis_server: RedisServer) -> Iterator[Sessions]:
    built = build_sessions(postgres_url, redis_server.url)
    yield built
    built.dispose()


class InterferingRepository(SessionRepository):
    """A real repository whose conditional save first lets another writer save the session `times` times."""

    def __init__(self, url: str, times: int) -> None:
        super().__init__(make_engine(url))
        self.times = times

    def save_if_unchanged(
        self,
        session_id: str,
        tenant: str,
        source_code: str,
        files: Sequence[SourceFile],
        seen: datetime,
        now: datetime,
    ) -> SessionRecord | None:
        if self.times > 0:
            self.times -= 1
            other = self.get(session_id, tenant)
            assert other is not None
            super().save_if_unchanged(session_id, tenant, "# another writer", other.files, other.updated_at, now)
        return super().save_if_unchanged(session_id, tenant, source_code, files, seen, now)


@pytest.fixture
def interfered(sessions: Sessions, postgres_url: str) -> Iterator[tuple[Sessions, InterferingRepository]]:
    repository = InterferingRepository(postgres_url, times=0)
    yield Sessions(repository, Catalogue(sessions.catalogue.served)), repository
    repository.dispose()


def stored_files_column(postgres_url: str, session_id: str) -> object:
    engine = make_engine(postgres_url)
    try:
        with engine.connect() as connection:
            return connection.execute(text("SELECT files FROM sessions WHERE id = :id"), {"id": session_id}).scalar()
    finally:
        engine.dispose()


def test_a_session_without_files_stores_sql_null(sessions: Sessions, postgres_url: str) -> None:
    # Autosave of the source alone skips reading the row only where the column is NULL.
    session = sessions.create(PYTHON.id, files=[SourceFile("a.py", "A = 1")])
    assert stored_files_column(postgres_url, session.id) == [{"name": "a.py", "content": "A = 1"}]
    sessions.update_source(session.id, None, [])
    assert stored_files_column(postgres_url, session.id) is None
    assert stored_files_column(postgres_url, sessions.create(PYTHON.id).id) is None


def test_an_update_needs_source_or_files(sessions: Sessions) -> None:
    session = sessions.create(PYTHON.id)
    with pytest.raises(InvalidArgument, match="source_code, files or both"):
        sessions.update_source(session.id, None, None)
    assert sessions.get(session.id) == session


def test_a_refused_update_changes_nothing(sessions: Sessions) -> None:
    session = sessions.create(PYTHON.id, "kept", [SourceFile("a.py", "A")])
    with pytest.raises(InvalidArgument):
        sessions.update_source(session.id, None, named("b.py", "../c.py"))
    with pytest.raises(PayloadTooLarge):
        sessions.update_source(session.id, "x" * MAX_SOURCE_BYTES)
    assert sessions.get(session.id) == session


def test_a_write_in_between_is_read_again_and_checked_again(
    interfered: tuple[Sessions, InterferingRepository],
) -> None:
    sessions, repository = interfered
    session = sessions.create(PYTHON.id, "print(1)")
    repository.times = 2
    saved = sessions.update_source(session.id, None, [SourceFile("a.py", "A = 1")])
    assert repository.times == 0
    # The source the other writer saved is kept: only the files were this update's.
    assert (saved.source_code, saved.files) == ("# another writer", (SourceFile("a.py", "A = 1"),))


def test_a_session_that_keeps_changing_is_unavailable_not_overwritten(
    interfered: tuple[Sessions, InterferingRepository],
) -> None:
    sessions, repository = interfered
    session = sessions.create(PYTHON.id, "print(1)")
    repository.times = 1_000
    with pytest.raises(Unavailable, match="kept changing"):
        sessions.update_source(session.id, None, [SourceFile("a.py", "A = 1")])
    assert sessions.get(session.id).files == ()


def race(sessions: Sessions, session_id: str, *updates: tuple[str | None, list[SourceFile] | None]) -> int:
    """Makes the updates at once, each from its own thread; how many were refused as too large."""
    start = threading.Barrier(len(updates))
    refusals: list[PayloadTooLarge] = []

    def save(source_code: str | None, files: list[SourceFile] | None) -> None:
        start.wait()
        try:
            sessions.update_source(session_id, source_code, files)
        except PayloadTooLarge as err:
            refusals.append(err)

    writers = [threading.Thread(target=save, args=update) for update in updates]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    return len(refusals)


# Without files, the source's writer takes the one-statement path; with one, the read-and-check path.
@pytest.mark.parametrize("seed", [[], [SourceFile("seed.py", "")]], ids=["no-files", "a-file"])
def test_concurrent_source_and_files_never_exceed_one_mebibyte_together(
    sessions: Sessions, seed: list[SourceFile]
) -> None:
    # Each half fits alone; the two together do not, so exactly one of the two writers must be refused.
    half = "x" * (MAX_SOURCE_BYTES // 2 + 1)
    for _ in range(10):
        session = sessions.create(PYTHON.id, "", seed)
        assert race(sessions, session.id, (half, None), (None, [SourceFile("big.py", half)])) == 1
        stored = sessions.get(session.id)
        assert len(stored.source_code) + sum(len(file.content) for file in stored.files) <= MAX_SOURCE_BYTES
