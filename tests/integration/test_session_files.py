"""A session's files over real HTTP against the real services: saved, answered, replaced, and refused."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.integration.conftest import new_session

pytestmark = pytest.mark.integration

ONE_MIB = 1024 * 1024


def error_of(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body["error"], str) and body["error"]
    return body["error"]


def files(contents: dict[str, str]) -> list[dict[str, str]]:
    return [{"name": name, "content": content} for name, content in contents.items()]


def patch(api: httpx.Client, session_id: str, body: Any) -> httpx.Response:
    return api.patch(f"/code-sessions/{session_id}", json=body)


def session_of(api: httpx.Client, session_id: str) -> dict[str, Any]:
    answer = api.get(f"/code-sessions/{session_id}")
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


@pytest.fixture
def python(languages: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return languages["python"]


@pytest.fixture
def session_id(api: httpx.Client, python: dict[str, Any]) -> str:
    return new_session(api, python["id"])


def test_a_new_session_has_no_files(api: httpx.Client, session_id: str) -> None:
    assert session_of(api, session_id)["files"] == []


def test_patched_files_are_answered_by_get_and_leave_the_source(
    api: httpx.Client, session_id: str, python: dict[str, Any]
) -> None:
    saved = patch(
        api, session_id, {"files": files({"helper.py": "A = 1\n", "lib/util.py": "def f():\n    return 'é😀'\n"})}
    )
    assert saved.status_code == 200, saved.text
    assert saved.json()["status"] == "ACTIVE"
    session = session_of(api, session_id)
    assert session["files"] == [
        {"name": "helper.py", "content": "A = 1\n"},
        {"name": "lib/util.py", "content": "def f():\n    return 'é😀'\n"},
    ]
    assert session["source_code"] == python["template_code"]


def test_files_are_replaced_as_a_whole(api: httpx.Client, session_id: str) -> None:
    assert patch(api, session_id, {"files": files({"a.py": "A", "b.py": "B"})}).status_code == 200
    assert patch(api, session_id, {"files": files({"c.py": "C"})}).status_code == 200
    assert session_of(api, session_id)["files"] == files({"c.py": "C"})
    # The source alone leaves the files; both at once save both.
    assert patch(api, session_id, {"source_code": "import c\n"}).status_code == 200
    assert session_of(api, session_id)["files"] == files({"c.py": "C"})
    assert patch(api, session_id, {"source_code": "import d\n", "files": files({"d.py": "D"})}).status_code == 200
    session = session_of(api, session_id)
    assert (session["source_code"], session["files"]) == ("import d\n", files({"d.py": "D"}))
    # An empty list removes every file, and keeps the source.
    assert patch(api, session_id, {"files": []}).status_code == 200
    session = session_of(api, session_id)
    assert (session["source_code"], session["files"]) == ("import d\n", [])


def test_a_session_may_start_with_files(api: httpx.Client, python: dict[str, Any]) -> None:
    created = api.post("/code-sessions", json={"language_id": python["id"], "files": files({"helper.py": "A = 1"})})
    assert created.status_code == 201, created.text
    assert session_of(api, created.json()["session_id"])["files"] == files({"helper.py": "A = 1"})


@pytest.mark.parametrize(
    "name",
    [
        "",
        "x" * 256,
        "a b.py",
        "ü.py",
        "a\\b.py",
        "/etc/passwd",
        "a//b.py",
        "lib/",
        ".",
        "..",
        "./a.py",
        "../a.py",
        "lib/../../a.py",
        "main.py",
    ],
    ids=[
        "empty", "too-long", "space", "non-ascii", "backslash", "absolute", "empty-segment", "trailing-slash",
        "dot", "dot-dot", "dot-segment", "parent", "climbing-out", "main-file",
    ],
)  # fmt: skip
def test_each_bad_name_is_a_400_and_changes_nothing(api: httpx.Client, session_id: str, name: str) -> None:
    assert patch(api, session_id, {"files": files({"kept.py": "K"})}).status_code == 200
    assert error_of(patch(api, session_id, {"files": [*files({"ok.py": ""}), {"name": name, "content": ""}]}), 400)
    assert session_of(api, session_id)["files"] == files({"kept.py": "K"})


def test_a_name_of_255_characters_is_accepted(api: httpx.Client, session_id: str) -> None:
    assert patch(api, session_id, {"files": [{"name": "x" * 255, "content": ""}]}).status_code == 200


def test_the_main_file_is_the_language_s_own(api: httpx.Client, languages: dict[str, dict[str, Any]]) -> None:
    java_session = new_session(api, languages["java"]["id"])
    assert "Main.java" in error_of(patch(api, java_session, {"files": files({"Main.java": "class X {}"})}), 400)
    # Another language's main file is just a file.
    assert patch(api, java_session, {"files": files({"main.py": ""})}).status_code == 200


def test_names_are_unique_and_a_file_is_not_a_folder(api: httpx.Client, session_id: str) -> None:
    error_of(patch(api, session_id, {"files": files({"a.py": "1"}) + files({"a.py": "2"})}), 400)
    error_of(patch(api, session_id, {"files": [{"name": "lib", "content": ""}, *files({"lib/a.py": ""})]}), 400)


def test_content_with_nul_is_a_400(api: httpx.Client, session_id: str) -> None:
    assert "files[0].content" in error_of(patch(api, session_id, {"files": files({"a.py": "x\x00y"})}), 400)


def test_at_most_32_files(api: httpx.Client, session_id: str) -> None:
    assert patch(api, session_id, {"files": files({f"f{n}.py": "" for n in range(32)})}).status_code == 200
    assert "32" in error_of(patch(api, session_id, {"files": files({f"f{n}.py": "" for n in range(33)})}), 400)
    assert len(session_of(api, session_id)["files"]) == 32


def test_source_and_files_together_are_at_most_one_mebibyte(api: httpx.Client, session_id: str) -> None:
    half = ONE_MIB // 2
    assert patch(api, session_id, {"source_code": "#" * half, "files": files({"a.py": "x" * half})}).status_code == 200
    error_of(patch(api, session_id, {"files": files({"a.py": "x" * half, "b.py": "y"})}), 413)
    # Either part alone fits, but with the stored other part the session would be over.
    error_of(patch(api, session_id, {"source_code": "#" * (half + 1)}), 413)
    # Multi-byte characters count in bytes.
    error_of(patch(api, session_id, {"files": files({"a.py": "x" * (half - 1), "b.py": "é"})}), 413)
    session = session_of(api, session_id)
    assert (len(session["source_code"]), session["files"]) == (half, files({"a.py": "x" * half}))


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "source_code"),
        ({"files": None}, "source_code"),
        ({"files": "a.py"}, "files must be a list"),
        ({"files": {"name": "a.py", "content": ""}}, "files must be a list"),
        ({"files": ["a.py"]}, "files[0] must be an object"),
        ({"files": [{"name": "a.py", "content": ""}, None]}, "files[1] must be an object"),
        ({"files": [{"name": 7, "content": ""}]}, "files[0].name must be a string"),
        ({"files": [{"content": ""}]}, "files[0].name is required"),
        ({"files": [{"name": "a.py"}]}, "files[0].content is required"),
        ({"files": [{"name": "a.py", "content": ["x"]}]}, "files[0].content must be a string"),
        ({"files": [], "source_code": 5}, "source_code must be a string"),
    ],
)
def test_wrong_types_are_a_400_naming_the_field(
    api: httpx.Client, session_id: str, body: dict[str, Any], field: str
) -> None:
    assert field in error_of(patch(api, session_id, body), 400)


def test_a_closed_session_refuses_files_and_keeps_its_own(api: httpx.Client, session_id: str) -> None:
    assert patch(api, session_id, {"files": files({"kept.py": "K"})}).status_code == 200
    assert api.patch(f"/code-sessions/{session_id}/close").status_code == 200
    error_of(patch(api, session_id, {"files": files({"other.py": "O"})}), 409)
    error_of(patch(api, session_id, {"files": []}), 409)
    assert session_of(api, session_id)["files"] == files({"kept.py": "K"})


def test_files_of_an_unknown_or_malformed_session(api: httpx.Client) -> None:
    error_of(patch(api, str(uuid.uuid4()), {"files": []}), 404)
    error_of(patch(api, "nope", {"files": []}), 400)
