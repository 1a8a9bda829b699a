"""Compile aids: files built at setup that make a never-seen program's compile faster without changing
what it produces, installed into read-only trees that every sandbox binds at /opt/lce/aids/<language>
(common.languages' compile commands name them there).

- cpp: precompiled headers of the common first includes, built with the language's own compile
  command. That command searches the tree's include dir before the system's (-isystem); GCC takes
  NAME.gch there for #include <NAME> when it was built by the same compiler for the same flags and
  macros, and silently ignores it otherwise, so the output is the same either way.
- java: a CDS archive of the classes javac loads (JDK 17 dynamic archive), which javac maps instead
  of loading and verifying jdk.compiler's classes; a JVM silently ignores an archive that is missing
  or was not made by its own build. And the class that starts javac ahead (executor/aids/LceWarmJavac.java,
  run by the warm compiler: common.languages.WarmCompiler), compiled by the installed javac.
- go: the standard library as `go build` builds it for the table's environment (CGO_ENABLED=0), with
  import configs naming each archive, so the compile command can call the compiler and linker itself
  and skip the go command's planning; whatever that path cannot compile goes to `go build`.

The layout is executor/packages.py's: under the aids dir (LCE_COMPILE_AIDS_DIR) each tree is named
<language>-<digest> and holds its manifest; <language> is a symlink to the current tree. The digest
covers the aids' format, the compile command, the toolchain's full version and the files the aids were
built from (headers, the standard library's sources) with their size and mtime, which the manifest lists.
The executor binds only a tree whose toolchain, command and inputs are still those (any other means the
old, slower compile), and a rebuilt tree has a new name and digest.

`python -m executor.compile_aids install` builds what is missing (root, at setup); `list` prints it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from common import languages
from executor.packages import make_readable_only, point_symlink, remove_trees
from executor.settings import compile_aids_dir

MANIFEST = "lce-compile-aids.json"
_FORMAT = 2  # 2: the manifest lists the aids' inputs
_BUILD_TIMEOUT_S = 300
# The first includes worth a precompiled header: what most C++ programs start with.
CPP_HEADERS = ("bits/stdc++.h", "iostream", "vector", "string")
JAVAC_ARCHIVE = "javac.jsa"
WARM_JAVAC_SOURCE = Path(__file__).parent / "aids" / f"{languages.WARM_JAVAC_CLASS}.java"
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
    # Builds the aids into the stage; returns the files they were built from.
    build: Callable[[languages.Language, Path], list[str]]
    # Sources of LCE's own that the aids are built from: their digest keys the tree.
    sources: tuple[Path, ...] = ()


def tree_in_sandbox(language: str) -> str:
    return f"{languages.AIDS_IN_SANDBOX}/{language}"


def aid_digest(language: languages.Language) -> str:
    declared = {
        "format": _FORMAT,
        "language": language.name,
        "compile": list(language.compile or ()),
        "toolchain": _identity(BUILDERS[language.name].identity),
    }
    sources = BUILDERS[language.name].sources
    if sources:  # only then: the other languages' trees keep their digests
        declared["sources"] = [hashlib.sha256(source.read_bytes()).hexdigest() for source in sources]
    return hashlib.sha256(json.dumps(declared, sort_keys=True).encode()).hexdigest()


def current_trees(root: Path) -> dict[str, tuple[str, Path]]:
    """Each language's installed tree that matches its toolchain, compile command and inputs: name to
    (digest, tree)."""
    found = {}
    for name in BUILDERS:
        link = root / name
        language = languages.by_name(name)
        try:
            manifest = json.loads((link / MANIFEST).read_text())
            digest, toolchain, inputs = manifest["digest"], manifest["toolchain_digest"], manifest["inputs"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if language is not None and toolchain == aid_digest(language) and inputs == _signatures(inputs):
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
        tree = _build_tree(root, language)
        point_symlink(link, tree)
        remove_trees(root, name, keep={tree, previous})


def _build_tree(root: Path, language: languages.Language) -> str:
    """Builds the language's aids into a new tree under root; its name. The name and the manifest's digest
    cover the toolchain and the inputs as found: a rebuild after an input changed is a new tree, which the
    executors running with the old one do not see until they restart, and a new compile cache key."""
    with tempfile.TemporaryDirectory(prefix=f".{language.name}-", dir=root) as stage_dir:
        stage = Path(stage_dir) / "tree"
        stage.mkdir()
        inputs = _signatures(dict.fromkeys(BUILDERS[language.name].build(language, stage)))
        toolchain = aid_digest(language)
        digest = hashlib.sha256(json.dumps([toolchain, inputs]).encode()).hexdigest()
        manifest = {"language": language.name, "digest": digest, "toolchain_digest": toolchain, "inputs": inputs}
        (stage / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
        make_readable_only(stage)
        tree = root / f"{language.name}-{digest[:16]}"
        shutil.rmtree(tree, ignore_errors=True)
        stage.rename(tree)
    return tree.name


def _signatures(paths: Mapping[str, object]) -> dict[str, list[int]]:
    """Size and mtime of each file (a missing one: none), which change when a package update replaces it."""
    found: dict[str, list[int]] = {}
    for path in sorted(paths):
        try:
            info = os.stat(path)
        except OSError:
            found[path] = []
        else:
            found[path] = [info.st_size, info.st_mtime_ns]
    return found


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


def _build_cpp(language: languages.Language, stage: Path) -> list[str]:
    inputs: list[str] = []
    with tempfile.TemporaryDirectory() as sources:
        for header in CPP_HEADERS:
            # Precompiled through a wrapper that includes the real header, which so stays a system
            # header (its own #pragma system_header holds) exactly as in a compile without the aid.
            wrapper = Path(sources, header)
            wrapper.parent.mkdir(parents=True, exist_ok=True)
            wrapper.write_text(f"#include <{header}>\n")
            output = stage / "include" / f"{header}.gch"
            output.parent.mkdir(parents=True, exist_ok=True)
            # GCC does not check that the headers are unchanged: the manifest does, by the list -MD writes.
            dependencies = Path(sources, "dependencies")
            _run([*header_build_command(language, wrapper, output), "-MD", "-MF", str(dependencies)], Path(sources))
            inputs += [word for word in dependencies.read_text().split() if word.startswith("/usr/")]
    return [*inputs, shutil.which("g++", path=languages.TOOLCHAIN_PATH) or "g++"]


def _build_java(language: languages.Language, stage: Path) -> list[str]:
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
    _run(["javac", "-d", str(stage / "warm"), str(WARM_JAVAC_SOURCE)], cwd=stage)
    # The JVM checks the archive against its own build itself.
    return []


def _build_go(language: languages.Language, stage: Path) -> list[str]:
    """Every standard package as `go build` builds it in the table's environment (those the Go
    installation ships prebuilt, and the ones it rebuilds for CGO_ENABLED=0), the import configs
    (`importcfg` for a program's compile: what a program may import, no internal or vendored package;
    `importcfg.link` for its link: everything, and the build information `go build` stamps), and bin/
    with links to the compiler and the linker."""
    with tempfile.TemporaryDirectory() as workdir:
        env = languages.stage_env(language, {"{workdir}": workdir})
        listing = _run(["go", "list", "-export", "-deps", "-f", _GO_PACKAGE_FORMAT, "std"], Path(workdir), env)
        Path(workdir, language.file_name).write_text(language.template_code)
        # -work keeps the build's temp dir, where its link config holds the build information line.
        go_build = [*languages.GO_BUILD_COMMAND[:2], "-work", *languages.GO_BUILD_COMMAND[2:], language.file_name]
        built = _run(go_build, Path(workdir), env, stderr=True)
        work = Path(built.split("WORK=", 1)[1].split()[0])
        try:
            stamp = [line for line in (work / "b001" / "importcfg.link").read_text().splitlines() if "modinfo" in line]
        finally:
            shutil.rmtree(work, ignore_errors=True)
        compile_config, link_config, inputs = [], stamp, []
        for line in listing.splitlines():
            path, export, sources = line.split("\t")
            inputs += sources.split()
            if not export:  # unsafe: no archive
                continue
            archive = Path(stage, "pkg", f"{path}.a")
            archive.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(export, archive)
            entry = f"packagefile {path}={tree_in_sandbox(language.name)}/pkg/{path}.a"
            link_config.append(entry)
            if "internal" not in path.split("/") and not path.startswith("vendor/"):
                compile_config.append(entry)
        tools = _run(["go", "env", "GOTOOLDIR"], Path(workdir), env).strip()
    (stage / "importcfg").write_text("\n".join(compile_config) + "\n")
    (stage / "importcfg.link").write_text("\n".join(link_config) + "\n")
    # The compiler and the linker themselves (under /usr, which the sandbox shows): `go tool` costs a start.
    (stage / "bin").mkdir()
    for tool in ("compile", "link"):
        (stage / "bin" / tool).symlink_to(f"{tools}/{tool}")
    return [*inputs, f"{tools}/compile", f"{tools}/link"]


# Each package: its import path, its archive (none for unsafe) and the source files it is built from.
_GO_PACKAGE_FORMAT = (
    "{{.ImportPath}}\t{{.Export}}\t{{range .GoFiles}} {{$.Dir}}/{{.}}{{end}}{{range .SFiles}} {{$.Dir}}/{{.}}{{end}}"
)


def _run(argv: list[str], cwd: Path, env: Mapping[str, str] | None = None, *, stderr: bool = False) -> str:
    """The command's stdout (with its stderr after it if asked); AidError when it fails."""
    try:
        done = subprocess.run(
            argv,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=_BUILD_TIMEOUT_S,
            env=dict(env or {"PATH": languages.TOOLCHAIN_PATH, "LANG": "C.UTF-8"}),
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AidError(f"{argv[0]}: {exc}") from exc
    if done.returncode != 0:
        raise AidError(f"{' '.join(argv)} failed:\n{done.stderr.strip() or done.stdout.strip()}")
    return done.stdout + (done.stderr if stderr else "")


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
    "java": _Builder(("java", "-version"), _build_java, (WARM_JAVAC_SOURCE,)),
    "go": _Builder(("go", "version"), _build_go),
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
