"""A program of several files on the executor's side: written into the work dir without leaving it,
built from every source file of its language, and cached by every file it has."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import pytest

from common.job import SourceFile
from common.languages import GO_BUILD, LANGUAGES, Language, by_name, matches
from executor import compile_cache
from executor.compile_cache import CompileCache, cache_key
from executor.jobs import write_program

MIB = 1024 * 1024
SLOT_UID = 60123  # as a slot's tmpfs work dir is owned


def language(name: str) -> Language:
    found = by_name(name)
    assert found is not None
    return found


C, JAVA = language("c"), language("java")
SOURCE = C.template_code.encode()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir(mode=0o700)
    os.chown(path, SLOT_UID, SLOT_UID)
    return path


def tree(root: Path) -> dict[str, bytes | None]:
    """Every path below root: a file's contents, None for a folder."""
    return {
        str(path.relative_to(root)): None if path.is_dir() else path.read_bytes() for path in sorted(root.rglob("*"))
    }


# --- writing the program into the work dir ---


def test_the_main_file_and_nested_files_are_written_owned_like_the_work_dir(workdir: Path) -> None:
    files = (SourceFile("helper.c", "int helper(void);\n"), SourceFile("lib/deep/util.h", "#define X 1\n"))
    write_program(workdir, C, SOURCE, files)
    assert tree(workdir) == {
        "helper.c": b"int helper(void);\n",
        "lib": None,
        "lib/deep": None,
        "lib/deep/util.h": b"#define X 1\n",
        "main.c": SOURCE,
    }
    for path in ("main.c", "helper.c", "lib/deep/util.h"):
        info = os.stat(workdir / path)
        assert (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid) == (0o644, SLOT_UID, SLOT_UID)
    for folder in ("lib", "lib/deep"):
        info = os.stat(workdir / folder)
        assert stat.S_ISDIR(info.st_mode) and (info.st_uid, info.st_gid) == (SLOT_UID, SLOT_UID)


def test_two_files_share_a_folder(workdir: Path) -> None:
    write_program(workdir, JAVA, b"class Main {}", (SourceFile("util/A.java", "a"), SourceFile("util/B.java", "b")))
    assert tree(workdir) == {"Main.java": b"class Main {}", "util": None, "util/A.java": b"a", "util/B.java": b"b"}


def test_content_is_written_as_utf8(workdir: Path) -> None:
    write_program(workdir, language("python"), b"", (SourceFile("text.py", "s = 'é😀'\n"),))
    assert (workdir / "text.py").read_bytes() == "s = 'é😀'\n".encode()


@pytest.mark.parametrize("name", ["../x", "/abs", "/etc/passwd", "a/../../x", "a/..", "./x", "a//b", "a/", "", "x\0y"])
def test_a_name_that_could_leave_the_work_dir_is_refused_before_any_write(workdir: Path, name: str) -> None:
    with pytest.raises(ValueError, match="not paths inside the work dir"):
        write_program(workdir, C, SOURCE, (SourceFile("fine.c", "ok"), SourceFile(name, "escaped")))
    assert os.listdir(workdir) == []  # not even the main file
    assert not (workdir.parent / "x").exists()


def test_a_symlink_at_the_target_is_never_followed(workdir: Path, tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_bytes(b"untouched")
    (workdir / "helper.c").symlink_to(target)
    with pytest.raises(FileExistsError):
        write_program(workdir, C, SOURCE, (SourceFile("helper.c", "overwritten"),))
    assert target.read_bytes() == b"untouched"


def test_a_symlinked_folder_on_the_way_is_never_followed(workdir: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (workdir / "lib").symlink_to(outside)
    with pytest.raises(OSError):
        write_program(workdir, C, SOURCE, (SourceFile("lib/util.h", "escaped"),))
    assert os.listdir(outside) == []


def test_a_symlink_at_the_main_file_is_never_followed(workdir: Path, tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_bytes(b"untouched")
    (workdir / "main.c").symlink_to(target)
    with pytest.raises(FileExistsError):
        write_program(workdir, C, SOURCE, ())
    assert target.read_bytes() == b"untouched"


# --- which files a compile takes ---


MIXED = (
    "zeta.c",
    "lib/util.c",
    "lib/util.h",
    "alpha.cpp",
    "lib/more.cc",
    "notes.txt",
    "extra.go",
    "util/util.go",
    "util/Helper.java",
    "Other.java",
    "helper.py",
)


@pytest.mark.parametrize(
    ("name", "argv"),
    [
        ("c", ("gcc", "-O2", "-pipe", "-std=gnu17", "-o", "main", "main.c", "lib/util.c", "zeta.c", "-lm")),
        (
            "cpp",
            (
                "g++",
                "-O2",
                "-pipe",
                "-std=gnu++17",
                "-isystem",
                "/opt/lce/aids/cpp/include",
                "-o",
                "main",
                "main.cpp",
                "alpha.cpp",
                "lib/more.cc",
            ),
        ),
        # Package main is the top level; util/ is a package of its own, found by its import.
        ("go", ("sh", "-c", GO_BUILD, "go", "main.go", "extra.go")),
        (
            "java",
            (
                "javac",
                "-J-XX:SharedArchiveFile=/opt/lce/aids/java/javac.jsa",
                "-J-Xms32m",
                "-J-XX:+UseSerialGC",
                "-J-XX:TieredStopAtLevel=1",
                "-d",
                ".",
                "Main.java",
                "Other.java",
                "util/Helper.java",
            ),
        ),
    ],
)
def test_the_compile_takes_the_main_file_first_then_the_languages_sources_sorted(
    name: str, argv: tuple[str, ...]
) -> None:
    assert language(name).compile_command(reversed(MIXED)) == argv


@pytest.mark.parametrize("compiled", [lang for lang in LANGUAGES if lang.compile], ids=lambda lang: lang.name)
def test_a_program_without_files_compiles_its_main_file_alone(compiled: Language) -> None:
    argv = compiled.compile_command(())
    assert argv.count(compiled.file_name) == 1
    assert "{sources}" not in argv and "{sources}" in (compiled.compile or ())


@pytest.mark.parametrize("interpreted", [lang for lang in LANGUAGES if not lang.compile], ids=lambda lang: lang.name)
def test_an_interpreted_language_has_no_compile(interpreted: Language) -> None:
    assert interpreted.compile_command(MIXED) == ()


@pytest.mark.parametrize(
    ("path", "patterns", "expected"),
    [
        ("main", ("main",), True),
        ("sub/main", ("main",), False),
        ("a.go", ("*.go",), True),
        ("util/a.go", ("*.go",), False),
        ("a.c", ("**/*.c",), True),
        ("lib/deep/a.c", ("**/*.c",), True),
        ("lib/a.h", ("**/*.c",), False),
        ("a.cc", ("**/*.cpp", "**/*.cc"), True),
        ("Main$1.class", ("**/*.class",), True),
        ("util/Helper.class", ("**/*.class",), True),
    ],
)
def test_file_name_patterns(path: str, patterns: tuple[str, ...], expected: bool) -> None:
    assert matches(path, patterns) is expected


# --- the compile cache key covers every file ---


def pre_files_key(lang: Language, version: str, source: bytes) -> str:
    """The key as it was derived before programs had files: a program without files keeps it."""
    declared = json.dumps(
        {
            "format": compile_cache.FORMAT,
            "machine": os.uname().machine,
            "language": lang.name,
            "toolchain_version": version,
            "file_name": lang.file_name,
            "compile": [lang.file_name if arg == "{sources}" else arg for arg in lang.compile or ()],
            "env": lang.env,
            "artifacts": list(lang.artifacts),
        },
        sort_keys=True,
    ).encode()
    return hashlib.sha256(len(declared).to_bytes(8, "big") + declared + source).hexdigest()


@pytest.mark.parametrize("name", ["c", "cpp", "go", "java"])
def test_a_program_without_files_keeps_its_key(name: str) -> None:
    lang = language(name)
    assert cache_key(lang, "1.0", SOURCE) == cache_key(lang, "1.0", SOURCE, ()) == pre_files_key(lang, "1.0", SOURCE)


def test_a_different_helper_is_a_different_key() -> None:
    first = cache_key(C, "12.2.0", SOURCE, (SourceFile("helper.c", "int v = 1;\n"),))
    second = cache_key(C, "12.2.0", SOURCE, (SourceFile("helper.c", "int v = 2;\n"),))
    assert len({first, second, cache_key(C, "12.2.0", SOURCE)}) == 3


@pytest.mark.parametrize(
    "other",
    [
        (SourceFile("other.c", "int v = 1;\n"),),  # another name, the same content
        (SourceFile("helper.h", "int v = 1;\n"),),  # a file the compile does not take counts too
        (SourceFile("helper.c", "int v = 1;\n"), SourceFile("notes.txt", "")),
        (SourceFile("helper.c", "int v = 1;"),),
    ],
)
def test_every_name_and_content_is_in_the_key(other: tuple[SourceFile, ...]) -> None:
    helper = (SourceFile("helper.c", "int v = 1;\n"),)
    assert cache_key(C, "12.2.0", SOURCE, other) != cache_key(C, "12.2.0", SOURCE, helper)


def test_a_file_cannot_pass_for_part_of_the_source_or_of_another_file() -> None:
    split = cache_key(C, "1", b"int a;", (SourceFile("b.h", "c"),))
    assert split != cache_key(C, "1", b"int a;b.hc")
    assert cache_key(C, "1", SOURCE, (SourceFile("ab", "c"),)) != cache_key(C, "1", SOURCE, (SourceFile("a", "bc"),))


def test_the_order_files_come_in_does_not_matter() -> None:
    files = (SourceFile("b.c", "b"), SourceFile("a.c", "a"), SourceFile("lib/c.h", "c"))
    assert cache_key(C, "1", SOURCE, files) == cache_key(C, "1", SOURCE, tuple(reversed(files)))


def test_key_for_takes_the_files(tmp_path: Path) -> None:
    cache = CompileCache(tmp_path / "cache", 64 * MIB)
    files = (SourceFile("helper.c", "int v;\n"),)
    version = compile_cache.detect_version(C)
    assert cache.key_for(C, SOURCE, files) == cache_key(C, version, SOURCE, files) != cache.key_for(C, SOURCE)


# --- Java classes in package folders through the cache ---


def test_java_classes_in_package_folders_are_stored_and_placed(tmp_path: Path, workdir: Path) -> None:
    cache = CompileCache(tmp_path / "cache", 64 * MIB)
    compiled = tmp_path / "compiled"
    (compiled / "util" / "deep").mkdir(parents=True)
    for name, data in {
        "Main.java": b"src",
        "Main.class": b"main",
        "Main$1.class": b"inner",
        "util/Helper.java": b"src",
        "util/Helper.class": b"helper",
        "util/deep/Deep.class": b"deep",
        "util/notes.txt": b"no",
    }.items():
        (compiled / name).write_bytes(data)
    key = cache_key(JAVA, "17", b"src", (SourceFile("util/Helper.java", "src"),))
    assert cache.store(key, compiled, JAVA.artifacts)

    # The program's own files come first (executor/jobs.py), so util/ may already be there.
    write_program(workdir, JAVA, b"src", (SourceFile("util/Helper.java", "src"),))
    assert cache.load(key, workdir)
    assert tree(workdir) == {
        "Main$1.class": b"inner",
        "Main.class": b"main",
        "Main.java": b"src",
        "util": None,
        "util/Helper.class": b"helper",
        "util/Helper.java": b"src",
        "util/deep": None,
        "util/deep/Deep.class": b"deep",
    }
    placed = os.stat(workdir / "util" / "deep" / "Deep.class")
    assert (stat.S_IMODE(placed.st_mode), placed.st_uid) == (0o644, SLOT_UID)
    assert os.stat(workdir / "util" / "deep").st_uid == SLOT_UID


def test_a_linked_folder_is_not_searched_for_artifacts(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "Secret.class").write_bytes(b"someone else's")
    compiled = tmp_path / "compiled"
    compiled.mkdir()
    (compiled / "Main.class").write_bytes(b"main")
    (compiled / "pkg").symlink_to(outside)
    assert [artifact.name for artifact in compile_cache.collect(compiled, JAVA.artifacts)] == ["Main.class"]


def test_top_level_patterns_do_not_search_folders(tmp_path: Path) -> None:
    compiled = tmp_path / "compiled"
    (compiled / "sub").mkdir(parents=True)
    (compiled / "main").write_bytes(b"binary")
    (compiled / "sub" / "main").write_bytes(b"not this one")
    assert [artifact.name for artifact in compile_cache.collect(compiled, C.artifacts)] == ["main"]


def test_too_many_folders_are_not_searched(tmp_path: Path) -> None:
    compiled = tmp_path / "compiled"
    compiled.mkdir()
    (compiled / "Main.class").write_bytes(b"main")
    for i in range(compile_cache.MAX_FOLDERS):
        (compiled / f"d{i}").mkdir()
    with pytest.raises(compile_cache.NotCacheable, match="folders"):
        compile_cache.collect(compiled, JAVA.artifacts)


@pytest.mark.parametrize("name", ["../escape", "a/../../escape", "/abs", "a//b", "./a"])
def test_an_entry_naming_a_path_outside_is_refused(name: str) -> None:
    with pytest.raises(compile_cache.CorruptEntry):
        compile_cache.decode(compile_cache.encode([compile_cache.Artifact(name, compile_cache.PLAIN, b"x")]))


def test_an_entry_with_nested_names_decodes() -> None:
    artifacts = (compile_cache.Artifact("util/Helper.class", compile_cache.PLAIN, b"x"),)
    assert compile_cache.decode(compile_cache.encode(artifacts)) == artifacts
