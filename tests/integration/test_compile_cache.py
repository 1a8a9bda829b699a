"""The compile cache through the whole system: REST -> services -> two real executors sharing one
cache -> the sandbox. Every source here is unique to the test run, so its first run is a miss."""

from __future__ import annotations

import os
import stat
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack import Stack
from tests.c_programs import SELF_REWRITING_C, c_printing
from tests.integration.conftest import new_session, run

pytestmark = pytest.mark.integration


Send = Callable[[str, str], dict[str, Any]]


@pytest.fixture
def send(api: httpx.Client, languages: dict[str, dict[str, Any]]) -> Send:
    def send(language: str, source: str) -> dict[str, Any]:
        result = run(api, new_session(api, languages[language]["id"], source))
        assert result["sandbox"] != "none"
        return result

    return send


def stage_names(result: dict[str, Any]) -> list[str]:
    return [stage["name"] for stage in result["stages"]]


def test_the_second_run_of_the_same_c_source_has_no_compile_stage(send: Send) -> None:
    text = f"hello {uuid.uuid4().hex}"
    first = send("c", c_printing(text))
    assert (first["status"], first["stdout"], stage_names(first)) == ("COMPLETED", text + "\n", ["compile", "run"])
    # Two executors share the cache: whichever takes the second run finds the first one's build.
    for _ in range(3):
        again = send("c", c_printing(text))
        assert (again["status"], again["stdout"], stage_names(again)) == ("COMPLETED", text + "\n", ["run"])


def test_java_is_served_from_the_cache_too(send: Send) -> None:
    tag = uuid.uuid4().hex
    source = (
        'public class Main {\n    static class Inner { String say() { return "inner ' + tag + '"; } }\n'
        "    public static void main(String[] args) { System.out.println(new Inner().say()); }\n}\n"
    )
    first, second = send("java", source), send("java", source)
    assert first["stdout"] == second["stdout"] == f"inner {tag}\n"
    assert (stage_names(first), stage_names(second)) == (["compile", "run"], ["run"])


def test_a_different_source_is_never_served_another_ones_binary(send: Send) -> None:
    tag = uuid.uuid4().hex
    texts = [f"A{tag}", f"B{tag}"]  # sources one byte apart
    for round_ in range(2):
        for text in texts:
            result = send("c", c_printing(text))
            assert result["stdout"] == text + "\n"
            assert stage_names(result) == (["compile", "run"] if round_ == 0 else ["run"])


def test_a_program_that_rewrites_its_binary_does_not_poison_the_cache(send: Send) -> None:
    tag = uuid.uuid4().hex
    source = SELF_REWRITING_C.replace("TAG", tag)
    for attempt in range(3):
        result = send("c", source)
        assert (result["status"], result["stdout"]) == ("COMPLETED", f"original {tag}\n"), result["stderr"]
        assert stage_names(result) == (["compile", "run"] if attempt == 0 else ["run"])


def test_no_sandbox_sees_the_cache(send: Send, stack: Stack) -> None:
    cache_dir = Path(stack.config.extra_env["LCE_COMPILE_CACHE_DIR"])
    send("c", c_printing(f"fill {uuid.uuid4().hex}"))
    info = os.stat(cache_dir)
    assert (stat.S_IMODE(info.st_mode), info.st_uid) == (0o700, 0)
    assert any(len(name) == 64 for name in os.listdir(cache_dir))
    probe = f"import os\nprint(os.path.exists({str(cache_dir)!r}), os.path.exists({str(cache_dir.parent)!r}))\n"
    result = send("python", probe)
    assert (result["status"], result["stdout"]) == ("COMPLETED", "False False\n")
