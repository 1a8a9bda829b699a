"""What the next execution's interpreter is started for (executor/sandbox/warm.py), from the last run."""

from __future__ import annotations

from pathlib import Path

from common.languages import LANGUAGES, by_name
from executor.sandbox.bwrap import command_script
from executor.sandbox.warm import COMPILER_FIFO, LastRun, WarmStart

BEFORE, NEXT = Path("/tmp/lce-runs/slot-60001"), Path("/tmp/lce-runs/slot-60002")
ENV = {"PATH": "/usr/bin:/bin", "HOME": str(BEFORE), "TMPDIR": str(BEFORE), "PYTHONPATH": "/opt/lce/packages/py"}


def test_the_last_runs_language_starts_warm_without_its_arguments_in_the_next_work_dir() -> None:
    warm = LastRun(("python3", "-B", "main.py", "--flag", str(BEFORE)), ENV, BEFORE).warm_start(NEXT)
    assert warm == WarmStart(
        ("python3", "-B", "main.py"),
        {"PATH": "/usr/bin:/bin", "HOME": str(NEXT), "TMPDIR": str(NEXT), "PYTHONPATH": "/opt/lce/packages/py"},
        "main.py",
    )


def test_a_language_without_a_warm_start_starts_nothing() -> None:
    assert [language.name for language in LANGUAGES if language.warm_start] == ["python"]
    for argv in (("./main",), ("ruby", "main.rb"), ("python3", "main.py"), ("/bin/sh", "-c", "true"), ()):
        assert LastRun(argv, ENV, BEFORE).warm_start(NEXT) is None


def test_a_warm_start_serves_only_its_own_run_exactly() -> None:
    warm = WarmStart(("php", "main.php"), {"PATH": "/usr/bin:/bin"}, "main.php")
    assert warm.serves(["php", "main.php"], {"PATH": "/usr/bin:/bin"})
    assert not warm.serves(["php", "main.php", "x"], {"PATH": "/usr/bin:/bin"})
    assert not warm.serves(["php", "main.php"], {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
    assert not warm.serves(["php", "other.php"], {"PATH": "/usr/bin:/bin"})


def test_a_warm_starts_script_leaves_the_cpu_and_file_size_limits_to_its_release() -> None:
    script = command_script(["php", "main.php"], {"PATH": "/usr/bin:/bin"}, cpu_seconds=None, file_bytes=None)
    assert script == b"ulimit -c 0 && export PATH=/usr/bin:/bin && exec php main.php\n"
    cold = command_script(["php", "main.php"], {}, cpu_seconds=3, file_bytes=1000)
    assert cold == b"ulimit -c 0 && ulimit -t 3 && ulimit -f 2 && exec php main.php\n"


JAVA = by_name("java")
assert JAVA is not None and JAVA.warm_compiler is not None and JAVA.compile is not None
JAVAC = JAVA.compile[: JAVA.warm_compiler.stands_for]


def test_an_execution_that_compiled_java_first_starts_javac_for_the_next_one() -> None:
    compiled = LastRun((*JAVA.compile_command(["util/Helper.java"]),), ENV, BEFORE).warm_start(NEXT)
    assert compiled is not None and compiled.compiler == JAVA.warm_compiler
    assert compiled.argv == JAVAC == ("javac", *(f"-J{flag}" for flag in compiled.command[2:6]))
    assert compiled.command == (*JAVA.warm_compiler.command, COMPILER_FIFO)
    assert compiled.env["HOME"] == str(NEXT)
    # A compile with its own JVM flags, or the Java run, starts nothing.
    assert LastRun(("javac", "-J-Xmx1m", *JAVAC[1:]), ENV, BEFORE).warm_start(NEXT) is None
    assert LastRun(("java", "-Xmx256m", "-cp", ".", "Main"), ENV, BEFORE).warm_start(NEXT) is None


def test_a_warm_compiler_is_fed_the_rest_of_its_compile_command(tmp_path: Path) -> None:
    warm = LastRun(JAVA.compile_command(()), ENV, BEFORE).warm_start(NEXT)
    assert warm is not None
    env = dict(warm.env)
    command = [*JAVAC, "-d", ".", "Main.java", "util/Helper.java"]
    assert warm.serves(command, env)
    assert warm.fed(command, tmp_path, 1 << 20) == b"-d\0.\0Main.java\0util/Helper.java"
    assert warm.fed(command, tmp_path, 10) is None
    assert not warm.serves(command, {**env, "CLASSPATH": "/"})
    assert not warm.serves(["javac", *command[2:]], env)
    for refused in ("-J-Xmx1m", "", "\udcff.java"):
        assert not warm.serves([*command, refused], env)
