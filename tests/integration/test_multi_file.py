"""Programs of several files through the whole system: a session's files reach the sandbox beside the
main file, compiled languages build every source file of theirs, and the compile cache tells
programs apart by every file they have."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.integration.conftest import new_session, run

pytestmark = pytest.mark.integration

Program = tuple[str, dict[str, str]]  # the main file's source, the other files by name

# Each prints "<language> says 42": the words from a helper beside the main file, the number from a
# file in a sub-folder.
PROGRAMS: dict[str, Program] = {
    "python": (
        "from helper import greeting\nfrom lib.numbers import twice\nprint(greeting(), twice(21))\n",
        {
            "helper.py": 'def greeting():\n    return "python says"\n',
            "lib/numbers.py": "def twice(n):\n    return 2 * n\n",
        },
    ),
    "javascript": (
        "const { greeting } = require('./helper');\nconst { twice } = require('./lib/numbers');\n"
        "console.log(greeting(), twice(21));\n",
        {
            "helper.js": "exports.greeting = () => 'javascript says';\n",
            "lib/numbers.js": "exports.twice = (n) => 2 * n;\n",
        },
    ),
    "ruby": (
        "require_relative 'helper'\nrequire_relative 'lib/numbers'\nputs \"#{greeting} #{twice(21)}\"\n",
        {
            "helper.rb": "def greeting\n  'ruby says'\nend\n",
            "lib/numbers.rb": "def twice(n)\n  2 * n\nend\n",
        },
    ),
    "php": (
        "<?php\ninclude 'helper.php';\nrequire 'lib/numbers.php';\necho greeting(), ' ', twice(21), \"\\n\";\n",
        {
            "helper.php": "<?php\nfunction greeting() { return 'php says'; }\n",
            "lib/numbers.php": "<?php\nfunction twice($n) { return 2 * $n; }\n",
        },
    ),
    "c": (
        '#include <stdio.h>\n#include "helper.h"\n'
        'int main(void) { printf("%s %d\\n", greeting(), twice(21)); return 0; }\n',
        {
            "helper.h": "const char *greeting(void);\nint twice(int n);\n",
            "helper.c": '#include "helper.h"\nconst char *greeting(void) { return "c says"; }\n',
            "lib/numbers.c": '#include "../helper.h"\nint twice(int n) { return 2 * n; }\n',
        },
    ),
    "cpp": (
        '#include <iostream>\n#include "helper.hpp"\n'
        'int main() { std::cout << greeting() << " " << twice(21) << "\\n"; }\n',
        {
            "helper.hpp": "#include <string>\nstd::string greeting();\nint twice(int n);\n",
            "helper.cpp": '#include "helper.hpp"\nstd::string greeting() { return "cpp says"; }\n',
            "lib/numbers.cc": '#include "../helper.hpp"\nint twice(int n) { return 2 * n; }\n',
        },
    ),
    "go": (
        'package main\n\nimport (\n\t"fmt"\n\n\t"./lib"\n)\n\nfunc main() { fmt.Println(greeting(), lib.Twice(21)) }\n',
        {
            "helper.go": 'package main\n\nfunc greeting() string { return "go says" }\n',
            "lib/numbers.go": "package lib\n\nfunc Twice(n int) int { return 2 * n }\n",
        },
    ),
    "java": (
        "import lib.Numbers;\n\npublic class Main {\n    public static void main(String[] args) {\n"
        '        System.out.println(Helper.greeting() + " " + Numbers.twice(21));\n    }\n}\n',
        {
            "Helper.java": 'class Helper {\n    static String greeting() { return "java says"; }\n}\n',
            "lib/Numbers.java": "package lib;\n\npublic class Numbers {\n"
            "    public static int twice(int n) { return 2 * n; }\n}\n",
        },
    ),
}


def as_files(files: dict[str, str]) -> list[dict[str, str]]:
    return [{"name": name, "content": content} for name, content in files.items()]


def set_files(api: httpx.Client, session_id: str, files: dict[str, str]) -> None:
    saved = api.patch(f"/code-sessions/{session_id}", json={"files": as_files(files)})
    assert saved.status_code == 200, saved.text


def session_with(api: httpx.Client, languages: dict[str, dict[str, Any]], name: str, program: Program) -> str:
    source, files = program
    session_id = new_session(api, languages[name]["id"], source)
    set_files(api, session_id, files)
    return session_id


def sandboxed_run(api: httpx.Client, session_id: str) -> dict[str, Any]:
    result = run(api, session_id)
    assert result["sandbox"] != "none"
    return result


def stage_names(result: dict[str, Any]) -> list[str]:
    return [stage["name"] for stage in result["stages"]]


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_a_program_of_several_files_in_every_language(
    api: httpx.Client, languages: dict[str, dict[str, Any]], name: str
) -> None:
    result = sandboxed_run(api, session_with(api, languages, name, PROGRAMS[name]))
    assert (result["status"], result["stdout"]) == ("COMPLETED", f"{name} says 42\n"), result


def test_c_finds_a_header_in_a_sub_folder(api: httpx.Client, languages: dict[str, dict[str, Any]]) -> None:
    program = (
        '#include <stdio.h>\n#include "include/shapes/area.h"\n'
        'int main(void) { printf("%d %d\\n", SIDE, square(SIDE)); return 0; }\n',
        {
            "include/shapes/area.h": "#define SIDE 7\nint square(int side);\n",
            "src/area.c": '#include "../include/shapes/area.h"\nint square(int side) { return side * side; }\n',
        },
    )
    result = sandboxed_run(api, session_with(api, languages, "c", program))
    assert (result["status"], result["stdout"]) == ("COMPLETED", "7 49\n"), result


def test_java_runs_classes_of_packages_in_folders_and_again_from_the_cache(
    api: httpx.Client, languages: dict[str, dict[str, Any]]
) -> None:
    tag = uuid.uuid4().hex  # a program no earlier run compiled
    program = (
        "import com.example.text.Shout;\nimport com.example.Tag;\n\npublic class Main {\n"
        "    public static void main(String[] args) {\n"
        '        System.out.println(Shout.loud("hello") + " " + Tag.VALUE + " " + new Shout().inner());\n'
        "    }\n}\n",
        {
            "com/example/text/Shout.java": "package com.example.text;\n\npublic class Shout {\n"
            '    public static String loud(String s) { return s.toUpperCase() + "!"; }\n'
            '    public String inner() { return new Object() { public String toString() { return "anon"; } }'
            ".toString(); }\n}\n",
            "com/example/Tag.java": "package com.example;\n\n"
            f'public class Tag {{ public static final String VALUE = "{tag}"; }}\n',
        },
    )
    session_id = session_with(api, languages, "java", program)
    expected = f"HELLO! {tag} anon\n"
    first = sandboxed_run(api, session_id)
    assert (first["status"], first["stdout"], stage_names(first)) == ("COMPLETED", expected, ["compile", "run"]), first
    # The cached build holds the classes in their package folders (Shout$1.class among them).
    again = sandboxed_run(api, session_id)
    assert (again["status"], again["stdout"], stage_names(again)) == ("COMPLETED", expected, ["run"]), again


def test_a_changed_helper_is_compiled_again_not_served_from_the_cache(
    api: httpx.Client, languages: dict[str, dict[str, Any]]
) -> None:
    tag = uuid.uuid4().hex
    source = "#include <stdio.h>\nconst char *word(void);\nint main(void) { puts(word()); return 0; }\n"

    def helper(word: str) -> dict[str, str]:
        return {"word.c": f'const char *word(void) {{ return "{word} {tag}"; }}\n'}

    session_id = session_with(api, languages, "c", (source, helper("first")))
    first = sandboxed_run(api, session_id)
    assert (first["stdout"], stage_names(first)) == (f"first {tag}\n", ["compile", "run"]), first

    set_files(api, session_id, helper("second"))  # the main file is the same
    second = sandboxed_run(api, session_id)
    assert (second["stdout"], stage_names(second)) == (f"second {tag}\n", ["compile", "run"]), second

    # Both builds are kept, each under its own program.
    set_files(api, session_id, helper("first"))
    back = sandboxed_run(api, session_id)
    assert (back["stdout"], stage_names(back)) == (f"first {tag}\n", ["run"]), back
