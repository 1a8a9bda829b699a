"""The compile aids (executor/compile_aids.py) in the real sandbox: each language's compile command, as the
executor runs it, takes the aid bound read-only where the table names it, and what it produces (the
program, its output, a failed compile's diagnostics) is the same as in a sandbox without the aids.
`make test` builds the aids first (the `packages` target)."""

from __future__ import annotations

import dataclasses
import shutil
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.job import DEFAULT_COMPILE_MEMORY_LIMIT_MB
from common.languages import Language, by_name, matches
from executor import compile_aids
from executor.jobs import stage_env
from executor.launcher import Limits, StageOutcome
from executor.sandbox import aid_trees
from executor.sandbox.confined import SandboxLauncher
from executor.sandbox.detect import detect
from executor.settings import ExecutorConfig, compile_aids_dir

COMPILE_LIMITS = Limits(wall_time_ms=60_000, cpu_time_ms=30_000, memory_mb=DEFAULT_COMPILE_MEMORY_LIMIT_MB)
RUN_LIMITS = Limits(wall_time_ms=10_000, cpu_time_ms=5_000, memory_mb=512)
PCH_DIR = f"{compile_aids.tree_in_sandbox('cpp')}/include"
CPP_ERROR = (
    "#include <iostream>\n#include <vector>\n\nint main() {\n"
    '    std::vector<int> v;\n    v.push_back("x");\n    std::cout << missing << std::endl;\n}\n'
)
GO_ERROR = 'package main\n\nimport "fmt"\n\nfunc main() {\n\tfmt.Println(missing)\n}\n'
GO_BUILD_INFO_AND_PANIC = (
    'package main\n\nimport (\n\t"fmt"\n\t"net"\n\t"runtime"\n\t"runtime/debug"\n)\n\nfunc main() {\n'
    "\tinfo, ok := debug.ReadBuildInfo()\n\tfmt.Println(ok, info.Path, info.Settings, net.IPv4len)\n"
    "\tfmt.Println(runtime.GOROOT(), runtime.Version())\n"
    '\tvar m map[string]int\n\tm["x"] = 1\n}\n'
)
JAVA_ERROR = 'public class Main {\n    public static void main(String[] args) {\n        int x = "s";\n    }\n}\n'


@pytest.fixture(scope="module")
def work_root() -> Iterator[Path]:
    # Not under pytest's tmp_path: that is 0700 root, which the slot uids could not traverse.
    root = Path(f"/tmp/lce-aids-{uuid.uuid4().hex[:8]}")
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def aided(work_root: Path) -> Iterator[SandboxLauncher]:
    trees = aid_trees(compile_aids_dir())
    assert {tree.inside for tree in trees} == {compile_aids.tree_in_sandbox(name) for name in compile_aids.BUILDERS}, (
        "compile aids not built: run make packages"
    )
    launcher = detect(ExecutorConfig.from_env().sandbox_mode, work_root / "aided", trees)
    yield launcher
    launcher.close()


@pytest.fixture(scope="module")
def bare(work_root: Path) -> Iterator[SandboxLauncher]:
    launcher = detect(ExecutorConfig.from_env().sandbox_mode, work_root / "bare")
    yield launcher
    launcher.close()


def language(name: str) -> Language:
    found = by_name(name)
    assert found is not None
    return found


def compile_and_run(
    launcher: SandboxLauncher, name: str, source: str, extra: tuple[str, ...] = ()
) -> tuple[StageOutcome, StageOutcome | None, bytes]:
    """The language's own compile command (plus extra words after the compiler), then its run: both
    outcomes (no run after a failed compile) and the files the compile left, concatenated."""
    lang = language(name)
    command = list(lang.compile_command(()))
    with launcher.workspace() as workdir:
        main = workdir / lang.file_name
        main.write_text(source)
        shutil.chown(main, workdir.stat().st_uid, workdir.stat().st_uid)
        env = stage_env(lang, {"{workdir}": str(workdir), "{heap_mb}": "256"})
        built = launcher.run([command[0], *extra, *command[1:]], workdir=workdir, env=env, limits=COMPILE_LIMITS)
        if built.exit_code != 0:
            return built, None, b""
        files = sorted(path for path in workdir.rglob("*") if path.is_file())
        produced = b"".join(
            path.read_bytes() for path in files if matches(str(path.relative_to(workdir)), lang.artifacts)
        )
        produced += b"go build's cache" if (workdir / ".gocache").exists() else b""
        run = [word.replace("{heap_mb}", "256") for word in lang.run]
        ran = launcher.run(run, workdir=workdir, env=env, limits=RUN_LIMITS)
        # The work dir's path differs between two runs (a panic's trace names the source by it).
        anywhere = {
            "stdout": ran.stdout.replace(bytes(workdir), b"."),
            "stderr": ran.stderr.replace(bytes(workdir), b"."),
        }
        return built, dataclasses.replace(ran, **anywhere), produced


@pytest.mark.parametrize(
    ("first_include", "header"),
    [("#include <iostream>", "iostream"), ("#include <bits/stdc++.h>", "bits/stdc++.h")],
)
def test_a_cpp_program_compiles_with_its_precompiled_header_to_the_same_program(
    aided: SandboxLauncher, bare: SandboxLauncher, first_include: str, header: str
) -> None:
    source = f'{first_include}\n#include <vector>\n\nint main() {{\n    std::cout << "Hello World" << std::endl;\n}}\n'
    built, ran, program = compile_and_run(aided, "cpp", source, ("-H", "-Winvalid-pch"))
    assert built.exit_code == 0, built.stderr
    # -H marks a precompiled header it used with "!".
    assert f"! {PCH_DIR}/{header}.gch" in built.stderr.decode()
    assert ran is not None and ran.stdout == b"Hello World\n"
    _, ran_bare, program_bare = compile_and_run(bare, "cpp", source)
    assert ran_bare is not None and ran_bare.stdout == ran.stdout
    assert program == program_bare


def test_a_macro_defined_before_the_include_is_honoured(aided: SandboxLauncher) -> None:
    """The header built without _GLIBCXX_DEBUG is not valid here: GCC parses the real one, in debug mode."""
    source = (
        "#define _GLIBCXX_DEBUG 1\n#include <bits/stdc++.h>\n\n"
        "int main() {\n    std::vector<int> v(2);\n    std::cout << v[5] << std::endl;\n}\n"
    )
    built, ran, _ = compile_and_run(aided, "cpp", source, ("-H",))
    assert built.exit_code == 0, built.stderr
    assert "! /" not in built.stderr.decode()
    # The debug mode's bounds check stops the program.
    assert ran is not None and ran.signal == signal.SIGABRT
    assert b"/debug/vector" in ran.stderr


@pytest.mark.parametrize(("name", "source"), [("cpp", CPP_ERROR), ("java", JAVA_ERROR), ("go", GO_ERROR)])
def test_a_failed_compile_says_the_same_with_the_aids(
    aided: SandboxLauncher, bare: SandboxLauncher, name: str, source: str
) -> None:
    failed, _, _ = compile_and_run(aided, name, source)
    failed_bare, _, _ = compile_and_run(bare, name, source)
    assert failed.exit_code != 0
    assert failed.stderr == failed_bare.stderr


def test_javac_maps_its_classes_from_the_archive_and_compiles_the_same(
    aided: SandboxLauncher, bare: SandboxLauncher
) -> None:
    source = language("java").template_code
    built, ran, classes = compile_and_run(aided, "java", source, ("-J-Xlog:class+load=info",))
    assert built.exit_code == 0, built.stderr
    assert "com.sun.tools.javac.main.Main source: shared objects file (top)" in built.stdout.decode()
    assert ran is not None and ran.stdout == b"Hello World\n"
    _, _, classes_bare = compile_and_run(bare, "java", source)
    assert classes == classes_bare


@pytest.mark.parametrize("source", [language("go").template_code, GO_BUILD_INFO_AND_PANIC])
def test_go_compiles_without_the_go_command_to_a_program_that_behaves_the_same(
    aided: SandboxLauncher, bare: SandboxLauncher, source: str
) -> None:
    built, ran, produced = compile_and_run(aided, "go", source)
    assert built.exit_code == 0, built.stderr
    assert built.stdout == built.stderr == b""
    assert b"go build's cache" not in produced
    _, ran_bare, produced_bare = compile_and_run(bare, "go", source)
    assert b"go build's cache" in produced_bare
    assert ran is not None and ran_bare is not None
    assert (ran.stdout, ran.stderr, ran.exit_code) == (ran_bare.stdout, ran_bare.stderr, ran_bare.exit_code)


def test_a_go_test_file_is_left_to_go_build(aided: SandboxLauncher) -> None:
    """`go build` leaves _test.go files out; the direct path would compile them in."""
    lang = language("go")
    with aided.workspace() as workdir:
        for name, text in (("main.go", lang.template_code), ("main_test.go", "package main\n\nfunc broken( {\n")):
            (workdir / name).write_text(text)
            shutil.chown(workdir / name, workdir.stat().st_uid, workdir.stat().st_uid)
        env = stage_env(lang, {"{workdir}": str(workdir), "{heap_mb}": "256"})
        built = aided.run(list(lang.compile_command(["main_test.go"])), workdir=workdir, env=env, limits=COMPILE_LIMITS)
        assert (built.exit_code, built.stderr) == (0, b"")
        assert (workdir / ".gocache").exists()
