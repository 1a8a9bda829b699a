"""Compile aids: files built at setup that make a never-seen program's compile faster without changing
what it produces, installed into read-only trees that every sandbox binds at /opt/lce/aids/<language>
(common.languages' compile commands name them there).

- cpp: precompiled headers of the common first includes, built with the language's own compile
  command. That command searches the tree's include dir before the system's (-isystem); GCC takes
  NAME.gch there for #include <NAME> when it was built by the same compiler for the same flags and
  macros, and silently ignores it otherwise, so the output is the same either way.
- java: a CDS archive of the classes javac loads (JDK 17 dynamic archive), which javac maps instead
  of loading and verifying jdk.compiler's classes; a JVM silently ignores an archive that is missing
  or was not made by its own build.

The layout is executor/packages.py's: under the aids dir (LCE_COMPILE_AIDS_DIR) each tree is named
<language>-<digest> and holds its manifest; <language> is a symlink to the current tree. The digest
covers the aids' format, the compile command and the toolchain's full version, so a changed one builds
a new tree, and the executor binds only a tree that matches (any other means the old, slower compile).

`python -m executor.compile_aids install` builds what is missing (root, at setup); `list` prints it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from common import languages
from executor.packages import make_readable_only, point_symlink, remove_trees
from executor.settings import compile_aids_dir

MANIFEST = "lce-compile-aids.json"
_FORMAT = 1
_BUILD_TIMEOUT_S = 300
# The first includes worth a precompiled header: what most C++ programs start with.
CPP_HEADERS = ("bits/stdc++.h", "iostream", "vector", "string")
JAVAC_ARCHIVE = "javac.jsa"
# A program that takes javac through generics, lambdas, records, switch expressions and the common
# library classes, so the archive holds the classes most compiles load (hello world alone loads fewer).
_JAVA_TRAINING = """import java.util.*;
import java.util.function.*;
import java.util.stream.*;
import java.io.*;

public class Main {
    record Point(int x, int y) {}
    interface Shape { double area(); }
    enum Colour { RED, GREEN }

    public static void main(String[] args) throws IOException {
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
        Scanner scanner = new Scanner(System.in);
        Map<String, List<Integer>> groups = new HashMap<>();
        groups.computeIfAbsent("a", k -> new ArrayList<>()).add(1);
        Function<Integer, Integer> twice = x -> x * 2;
        List<Integer> doubled = IntStream.range(0, 10).boxed().map(twice).collect(Collectors.toList());
        Shape square = () -> 4.0;
        Colour colour = Colour.RED;
        String name = switch (colour) { case RED -> "red"; case GREEN -> "green"; };
        StringBuilder out = new StringBuilder();
        out.append(String.format("%s %d %.2f%n", name, doubled.size(), square.area()));
        System.out.print(out);
        System.out.println(new Point(1, 2) + " " + Arrays.toString(new int[] {3, 1, 2}) + " " + Math.max(1, 2));
    }
}
"""


class AidError(RuntimeError):
    """An aid could not be built."""


@dataclass(frozen=True)
class _Builder:
    # The command whose whole output names the toolchain build (a rebuilt compiler invalidates its aids).
    identity: tuple[str, ...]
    build: Callable[[languages.Language, Path], None]


def tree_in_sandbox(language: str) -> str:
    return f"{languages.AIDS_IN_SANDBOX}/{language}"


def aid_digest(language: languages.Language) -> str:
    declared = {
        "format": _FORMAT,
        "language": language.name,
        "compile": list(language.compile or ()),
        "toolchain": _identity(BUILDERS[language.name].identity),
    }
    return hashlib.sha256(json.dumps(declared, sort_keys=True).encode()).hexdigest()


def current_trees(root: Path) -> dict[str, tuple[str, Path]]:
    """Each language's installed tree that matches its toolchain and compile command: name to (digest, tree)."""
    found = {}
    for name in BUILDERS:
        link = root / name
        language = languages.by_name(name)
        try:
            digest = json.loads((link / MANIFEST).read_text())["digest"]
        except (OSError, ValueError, KeyError):
            continue
        if language is not None and digest == aid_digest(language):
            found[name] = (digest, link.resolve())
    return found


def install(root: Path) -> None:
    """Builds each language's aids unless its current tree matches, and makes the new tree current. The tree
    it replaces is kept (running executors still bind it until they restart); older ones are removed."""
    root.mkdir(parents=True, exist_ok=True)
    current = current_trees(root)
    for name in BUILDERS:
        language = languages.by_name(name)
        if language is None or name in current:
            continue
        link = root / name
        previous = link.readlink().name if link.is_symlink() else None
        digest = aid_digest(language)
        tree = root / f"{name}-{digest[:16]}"
        _build_tree(tree, language, digest)
        point_symlink(link, tree.name)
        remove_trees(root, name, keep={tree.name, previous})


def _build_tree(tree: Path, language: languages.Language, digest: str) -> None:
    with tempfile.TemporaryDirectory(prefix=f".{language.name}-", dir=tree.parent) as stage_dir:
        stage = Path(stage_dir) / "tree"
        stage.mkdir()
        BUILDERS[language.name].build(language, stage)
        (stage / MANIFEST).write_text(json.dumps({"language": language.name, "digest": digest}, indent=1))
        make_readable_only(stage)
        shutil.rmtree(tree, ignore_errors=True)
        stage.rename(tree)


def header_build_command(language: languages.Language, wrapper: Path, output: Path) -> list[str]:
    """The language's compile command, as it runs for a program, turned into one that precompiles `wrapper`:
    the same flags, so GCC finds the header valid for the programs' compiles."""
    argv: list[str] = []
    words = iter(language.compile or ())
    for word in words:
        if word == "-o":
            argv += ["-o", str(output)]
            next(words)
        elif word != "{sources}":
            argv.append(word)
    return [*argv, "-x", "c++-header", str(wrapper)]


def _build_cpp(language: languages.Language, stage: Path) -> None:
    with tempfile.TemporaryDirectory() as sources:
        for header in CPP_HEADERS:
            # Precompiled through a wrapper that includes the real header, which so stays a system
            # header (its own #pragma system_header holds) exactly as in a compile without the aid.
            wrapper = Path(sources, header)
            wrapper.parent.mkdir(parents=True, exist_ok=True)
            wrapper.write_text(f"#include <{header}>\n")
            output = stage / "include" / f"{header}.gch"
            output.parent.mkdir(parents=True, exist_ok=True)
            _run(header_build_command(language, wrapper, output), cwd=Path(sources))


def _build_java(language: languages.Language, stage: Path) -> None:
    archive = f"-J-XX:SharedArchiveFile={tree_in_sandbox(language.name)}/{JAVAC_ARCHIVE}"
    if archive not in (language.compile or ()):
        raise AidError(f"java's compile command does not map {archive}")
    with tempfile.TemporaryDirectory() as workdir:
        Path(workdir, language.file_name).write_text(_JAVA_TRAINING)
        dump = f"-J-XX:ArchiveClassesAtExit={stage / JAVAC_ARCHIVE}"
        command = [dump if word == archive else word for word in language.compile_command(())]
        _run(command, cwd=Path(workdir))
    if not (stage / JAVAC_ARCHIVE).is_file():
        raise AidError("javac left no CDS archive")


def _run(argv: list[str], cwd: Path) -> None:
    try:
        done = subprocess.run(
            argv,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=_BUILD_TIMEOUT_S,
            env={"PATH": languages.TOOLCHAIN_PATH, "LANG": "C.UTF-8"},
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AidError(f"{argv[0]}: {exc}") from exc
    if done.returncode != 0:
        raise AidError(f"{' '.join(argv)} failed:\n{done.stderr.strip() or done.stdout.strip()}")


@cache
def _identity(command: tuple[str, ...]) -> str:
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=30, env={"PATH": languages.TOOLCHAIN_PATH}, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unavailable"
    return done.stdout + done.stderr


BUILDERS = {
    "cpp": _Builder(("g++", "--version"), _build_cpp),
    "java": _Builder(("java", "-version"), _build_java),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m executor.compile_aids", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("install", "list"))
    parser.add_argument("--root", type=Path, help="the aids dir (default: LCE_COMPILE_AIDS_DIR or its default)")
    args = parser.parse_args(argv)
    root = args.root or compile_aids_dir()
    try:
        if args.command == "install":
            install(root)
        for name, (digest, tree) in current_trees(root).items():
            print(f"{name}: {tree} ({digest[:16]})")
    except (AidError, OSError) as exc:
        print(f"compile aids: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
