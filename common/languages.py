"""The one declarative table of languages.

Session data (ids, names, templates, default limits, versions) and executor toolchains
(compile and run commands, environment) both come from here; nothing else in LCE branches
on a language's name.

Commands run inside the run's work dir with a clean environment whose PATH is /usr/bin:/bin,
so they name toolchains as the system installs them (never the service's own Python).
Placeholders: {heap_mb} is the JVM heap that leaves room for the JVM's own memory under the
run's memory limit; {workdir} is the absolute path of the work dir as the program sees it;
{sources}, a compile's whole argv entry, stands for the program's files the compile takes
(`Language.compile_command`).

File name patterns (a language's sources and artifacts) are fnmatch patterns of paths relative to
the work dir: a plain pattern matches at the top level only, "**/" before it at any depth.
"""

from __future__ import annotations

import re
import subprocess
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from functools import cache, cached_property

# Language ids are UUIDv5 of the name in this namespace: the same in every deployment.
_LANGUAGE_NAMESPACE = uuid.UUID("6f1d6f5e-3c1a-4f0e-9a55-6c0de0e1ce01")

# Where the sandbox shows the declared libraries' trees (executor/packages.py), one folder per language.
PACKAGES_IN_SANDBOX = "/opt/lce/packages"
# Where the sandbox shows the compile aids (executor/compile_aids.py), one folder per language; a compile
# runs as fast as without them when they are not installed, and produces the same either way.
AIDS_IN_SANDBOX = "/opt/lce/aids"

# Go's compile: with the standard library prebuilt (executor/compile_aids.py), the compiler and the linker
# called as `go build` calls them, without its planning; quietly, so anything that path cannot build (a
# local import, cgo, embed, an error) goes to `go build`, whose result and diagnostics are the ones shown.
# Test files are for `go test`: `go build` leaves them out (it compiles every other file it is named,
# whatever its build constraints say). Both paths link with the debug information
# left uncompressed: the same information, a quarter less link time, a bigger file.
_GO_AIDS = f"{AIDS_IN_SANDBOX}/go"
_GO_LINK_FLAGS = "-compressdwarf=false"
# `go build` as the compile runs it when the direct path does not build the program.
GO_BUILD_COMMAND = ("go", "build", f"-ldflags={_GO_LINK_FLAGS}", "-o", "main")
GO_BUILD = (
    f'case " $* " in *"_test.go "*) ;; *) if [ -r {_GO_AIDS}/importcfg ] '
    f'&& {_GO_AIDS}/bin/compile -p main -complete -importcfg {_GO_AIDS}/importcfg -pack -o .lce-main.a "$@" '
    f"2>/dev/null && {_GO_AIDS}/bin/link -buildmode=exe -extld=gcc {_GO_LINK_FLAGS} "
    f"-importcfg {_GO_AIDS}/importcfg.link -o main .lce-main.a 2>/dev/null; "
    "then rm -f .lce-main.a; exit 0; fi ;; esac; "
    f'rm -f .lce-main.a main; exec {" ".join(GO_BUILD_COMMAND)} "$@"'
)

# javac's JVM: its classes mapped from a CDS archive (ignored when missing), a small heap, one GC thread,
# the quick JIT only.
_JAVAC_JVM = (
    f"-XX:SharedArchiveFile={AIDS_IN_SANDBOX}/java/javac.jsa",
    "-Xms32m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
)
# The javac launcher's own JVM flag (before the compile's -J flags), and its main class's in-process entry.
_JAVAC_LAUNCHER_JVM = ("-Xms8m",)
WARM_JAVAC_CLASS = "LceWarmJavac"

DEFAULT_TIME_LIMIT_MS = 5000
DEFAULT_MEMORY_MB = 256


@dataclass(frozen=True)
class WarmCompiler:
    """A compiler the executor may start ahead, before the program is known (executor/sandbox/warm.py):
    `command` (then the path of a FIFO) starts it as the compile command's first `stands_for` words would;
    it opens the FIFO, warms up outside the work dir until the rest of the compile command (NUL-separated)
    comes into the FIFO, and compiles with those arguments exactly as the cold command does."""

    command: tuple[str, ...]
    stands_for: int
    # A compile word with this prefix is its cold launcher's, not the compiler's: such a compile runs cold.
    launcher_prefix: str
    # The compile aids' tree it runs from (executor/compile_aids.py): without it, nothing starts ahead.
    aids: str


@dataclass(frozen=True)
class Language:
    name: str
    runtime: str
    file_name: str
    template_code: str
    run: tuple[str, ...]
    version_command: tuple[str, ...]
    compile: tuple[str, ...] | None = None
    # The program's files besides the main file that its compile takes in place of {sources}.
    source_patterns: tuple[str, ...] = ()
    # What a successful compile leaves in the work dir for the run stage to use. Only these are
    # kept by the compile cache (executor/compile_cache.py); a compiled language without them is
    # never cached.
    artifacts: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    default_time_limit_ms: int = DEFAULT_TIME_LIMIT_MS
    default_memory_mb: int = DEFAULT_MEMORY_MB
    # Its interpreter, started by `run` alone, reads file_name once to its end, only once it is initialised,
    # and nothing it shows the program depends on when it started: the executor may start it before the
    # program is known (executor/sandbox/warm.py). Not node (its package.json lookup, performance.now() and
    # process.uptime() happen or count from before), php ($_SERVER['REQUEST_TIME']) nor ruby (it reads the
    # script's first line before loading rubygems, and keeps the file as DATA, which a FIFO cannot rewind).
    warm_start: bool = False
    warm_compiler: WarmCompiler | None = None

    @cached_property  # read on every session answer; a SHA-1 each time otherwise
    def id(self) -> str:
        return str(uuid.uuid5(_LANGUAGE_NAMESPACE, self.name))

    def compile_command(self, file_names: Iterable[str]) -> tuple[str, ...]:
        """The compile's argv for a program with these files besides the main one: {sources} becomes
        the main file, then the files of source_patterns, sorted (one argv entry each)."""
        sources = [self.file_name, *sorted(name for name in file_names if matches(name, self.source_patterns))]
        return tuple(word for arg in self.compile or () for word in (sources if arg == "{sources}" else (arg,)))


LANGUAGES: tuple[Language, ...] = (
    Language(
        name="python",
        runtime="cpython",
        file_name="main.py",
        template_code='print("Hello World")\n',
        run=("python3", "-B", "main.py"),
        warm_start=True,
        version_command=("python3", "--version"),
        # One BLAS thread: a run has one CPU's worth of time, and a thread per host core would meet its process limit.
        env={"PYTHONPATH": f"{PACKAGES_IN_SANDBOX}/python", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"},
    ),
    Language(
        name="javascript",
        runtime="node",
        file_name="main.js",
        template_code='console.log("Hello World");\n',
        run=("node", "main.js"),
        version_command=("node", "--version"),
        env={"NODE_PATH": f"{PACKAGES_IN_SANDBOX}/javascript/node_modules"},
    ),
    Language(
        name="c",
        runtime="gcc",
        file_name="main.c",
        template_code='#include <stdio.h>\n\nint main(void) {\n    printf("Hello World\\n");\n    return 0;\n}\n',
        # Headers are found beside the file that includes them (#include "lib/util.h").
        compile=("gcc", "-O2", "-pipe", "-std=gnu17", "-o", "main", "{sources}", "-lm"),
        source_patterns=("**/*.c",),
        artifacts=("main",),
        run=("./main",),
        version_command=("gcc", "-dumpfullversion"),
    ),
    Language(
        name="cpp",
        runtime="g++",
        file_name="main.cpp",
        template_code=(
            '#include <iostream>\n\nint main() {\n    std::cout << "Hello World" << std::endl;\n    return 0;\n}\n'
        ),
        # The precompiled headers' dir first (GCC ignores a missing one); local headers still come first.
        compile=(
            "g++",
            "-O2",
            "-pipe",
            "-std=gnu++17",
            "-isystem",
            f"{AIDS_IN_SANDBOX}/cpp/include",
            "-o",
            "main",
            "{sources}",
        ),
        source_patterns=("**/*.cpp", "**/*.cc"),
        artifacts=("main",),
        run=("./main",),
        version_command=("g++", "-dumpfullversion"),
    ),
    Language(
        name="go",
        runtime="go",
        file_name="main.go",
        template_code='package main\n\nimport "fmt"\n\nfunc main() {\n\tfmt.Println("Hello World")\n}\n',
        # Package main is the top level's files; a sub-folder is a package of its own, imported
        # by relative path (import "./util"), which GOPATH mode allows.
        compile=("sh", "-c", GO_BUILD, "go", "{sources}"),
        source_patterns=("*.go",),
        artifacts=("main",),
        run=("./main",),
        version_command=("go", "version"),
        # A private build cache per run: a shared writable GOCACHE would let one user poison another's build.
        env={
            "GOCACHE": "{workdir}/.gocache",
            "GOPATH": "{workdir}/.gopath",
            "GO111MODULE": "off",
            "GOPROXY": "off",
            "CGO_ENABLED": "0",
        },
    ),
    Language(
        name="java",
        runtime="openjdk",
        file_name="Main.java",
        template_code=(
            "public class Main {\n    public static void main(String[] args) {\n"
            '        System.out.println("Hello World");\n    }\n}\n'
        ),
        # -d .: each class goes where its package says (util/Helper.class), wherever its source is.
        compile=(
            "javac",
            *(f"-J{flag}" for flag in _JAVAC_JVM),
            "-d",
            ".",
            "{sources}",
        ),
        source_patterns=("**/*.java",),
        warm_compiler=WarmCompiler(
            command=(
                "java",
                *_JAVAC_LAUNCHER_JVM,
                *_JAVAC_JVM,
                "-cp",
                f"{AIDS_IN_SANDBOX}/java/warm",
                WARM_JAVAC_CLASS,
            ),
            stands_for=1 + len(_JAVAC_JVM),
            launcher_prefix="-J",
            aids=f"{AIDS_IN_SANDBOX}/java",
        ),
        # javac writes one file per class, nested and anonymous ones included (Main$1.class).
        artifacts=("**/*.class",),
        run=(
            "java",
            "-Xmx{heap_mb}m",
            "-Xss8m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-cp",
            ".",
            "Main",
        ),
        version_command=("java", "-version"),
        default_memory_mb=512,
    ),
    Language(
        name="php",
        runtime="php",
        file_name="main.php",
        template_code='<?php\necho "Hello World\\n";\n',
        run=("php", "main.php"),
        version_command=("php", "--version"),
    ),
    Language(
        name="ruby",
        runtime="ruby",
        file_name="main.rb",
        template_code='puts "Hello World"\n',
        run=("ruby", "main.rb"),
        # No warm start: ruby reads the main file's first line (its #! options) before loading rubygems,
        # and keeps the file as DATA (a FIFO, which cannot seek, would tell a warm start apart).
        version_command=("ruby", "--version"),
        # The trailing colon keeps the default gem paths (the gems Ruby bundles).
        env={"GEM_PATH": f"{PACKAGES_IN_SANDBOX}/ruby:"},
    ),
)

_BY_NAME = {language.name: language for language in LANGUAGES}
_VERSION = re.compile(r"(\d+\.\d+(?:\.\d+)?)")
TOOLCHAIN_PATH = "/usr/bin:/bin"


def by_name(name: str) -> Language | None:
    return _BY_NAME.get(name)


def matches(path: str, patterns: Iterable[str]) -> bool:
    """Whether a work dir relative path matches one of the file name patterns (see the top)."""
    folder, _, name = path.rpartition("/")
    return any(
        fnmatchcase(name, pattern.removeprefix("**/")) and (pattern.startswith("**/") or not folder)
        for pattern in patterns
    )


def stage_env(language: Language, placeholders: dict[str, str]) -> dict[str, str]:
    """A compile's or run's whole environment (the executor's, and the compile aids' setup): nothing of the
    service's own reaches it."""
    workdir = placeholders["{workdir}"]
    base = {"PATH": TOOLCHAIN_PATH, "HOME": workdir, "LANG": "C.UTF-8", "TMPDIR": workdir}
    return base | {name: expand(value, placeholders) for name, value in language.env.items()}


def expand(text: str, placeholders: dict[str, str]) -> str:
    for placeholder, value in placeholders.items():
        text = text.replace(placeholder, value)
    return text


def detect_version(language: Language) -> str:
    """The installed toolchain's version, e.g. "3.11.2"; "unavailable" when the toolchain is missing."""
    return _version_of(language.version_command)


@cache
def _version_of(command: tuple[str, ...]) -> str:
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=10,
            env={"PATH": TOOLCHAIN_PATH},
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unavailable"
    match = _VERSION.search(done.stdout + done.stderr)
    return match.group(1) if match else "unavailable"
