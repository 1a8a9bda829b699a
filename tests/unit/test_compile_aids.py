"""Building and keying the compile aids (executor/compile_aids.py); tests/sandbox/test_compile_aids.py
checks them in the sandbox."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from common.languages import by_name
from executor import compile_aids
from executor.compile_cache import cache_key
from executor.sandbox import aid_trees
from executor.sandbox.bwrap import ReadOnlyTree

CPP = by_name("cpp")
JAVA = by_name("java")
assert CPP is not None and JAVA is not None


def test_headers_are_precompiled_with_the_languages_own_flags() -> None:
    argv = compile_aids.header_build_command(CPP, Path("/src/iostream"), Path("/out/iostream.gch"))
    flags = [word for word in CPP.compile_command(()) if word not in ("-o", "main", CPP.file_name)]
    assert argv == [*flags, "-o", "/out/iostream.gch", "-x", "c++-header", "/src/iostream"]


def test_the_compile_commands_look_where_the_aids_are_bound() -> None:
    assert "-isystem" in CPP.compile_command(())
    assert f"{compile_aids.tree_in_sandbox('cpp')}/include" in CPP.compile_command(())
    archive = f"-J-XX:SharedArchiveFile={compile_aids.tree_in_sandbox('java')}/{compile_aids.JAVAC_ARCHIVE}"
    assert archive in JAVA.compile_command(())


def test_the_digest_follows_the_compile_command() -> None:
    changed = dataclasses.replace(CPP, compile=(*(CPP.compile or ()), "-DX"))
    assert compile_aids.aid_digest(CPP) == compile_aids.aid_digest(CPP)
    assert compile_aids.aid_digest(changed) != compile_aids.aid_digest(CPP)
    assert compile_aids.aid_digest(JAVA) != compile_aids.aid_digest(CPP)


def test_the_java_digest_follows_the_warm_javac_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "LceWarmJavac.java"
    source.write_text(compile_aids.WARM_JAVAC_SOURCE.read_text())
    builder = dataclasses.replace(compile_aids.BUILDERS["java"], sources=(source,))
    monkeypatch.setitem(compile_aids.BUILDERS, "java", builder)
    before = compile_aids.aid_digest(JAVA)
    source.write_text(source.read_text() + "// changed\n")
    assert compile_aids.aid_digest(JAVA) != before


def test_the_warm_javac_runs_from_the_java_aids_tree() -> None:
    compiler = JAVA.warm_compiler
    assert compiler is not None and compiler.aids == compile_aids.tree_in_sandbox("java")
    assert compile_aids.BUILDERS["java"].sources == (compile_aids.WARM_JAVAC_SOURCE,)
    assert compile_aids.WARM_JAVAC_SOURCE.stem == compiler.command[-1]


def test_the_compile_cache_key_follows_the_aids() -> None:
    plain = cache_key(CPP, "12.2.0", b"int main(){}")
    assert cache_key(CPP, "12.2.0", b"int main(){}", (), "", "") == plain
    assert cache_key(CPP, "12.2.0", b"int main(){}", (), "", "aids-a") != plain
    assert cache_key(CPP, "12.2.0", b"int main(){}", (), "", "aids-a") != cache_key(
        CPP, "12.2.0", b"int main(){}", (), "", "aids-b"
    )


def fake_tree(root: Path, name: str, digest: str, inputs: dict[str, list[int]] | None = None) -> Path:
    tree = root / f"{name}-{digest[:16]}"
    tree.mkdir(parents=True)
    manifest = {"language": name, "digest": f"{digest}+inputs", "toolchain_digest": digest, "inputs": inputs or {}}
    (tree / compile_aids.MANIFEST).write_text(json.dumps(manifest))
    (root / name).symlink_to(tree.name)
    return tree


def test_only_trees_built_for_todays_toolchain_and_command_are_bound(tmp_path: Path) -> None:
    cpp_tree = fake_tree(tmp_path, "cpp", compile_aids.aid_digest(CPP))
    fake_tree(tmp_path, "java", "0" * 64)  # built for another JDK or command
    assert compile_aids.current_trees(tmp_path) == {"cpp": (f"{compile_aids.aid_digest(CPP)}+inputs", cpp_tree)}
    assert aid_trees(tmp_path) == [ReadOnlyTree(cpp_tree, "/opt/lce/aids/cpp")]
    assert aid_trees(tmp_path / "never-installed") == []


def test_a_tree_whose_inputs_changed_is_not_bound(tmp_path: Path) -> None:
    """A header updated by a package upgrade (GCC would still take the old .gch), a standard library
    source changed under the same Go version."""
    header = tmp_path / "header.h"
    header.write_text("int x;\n")
    recorded = {str(header): [header.stat().st_size, header.stat().st_mtime_ns]}
    fake_tree(tmp_path / "aids", "cpp", compile_aids.aid_digest(CPP), recorded)
    assert set(compile_aids.current_trees(tmp_path / "aids")) == {"cpp"}
    header.write_text("int xy;\n")
    assert compile_aids.current_trees(tmp_path / "aids") == {}
    header.unlink()
    assert compile_aids.current_trees(tmp_path / "aids") == {}


def test_install_builds_what_is_stale_keeps_the_previous_tree_and_leaves_it_read_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[str] = []
    source = tmp_path / "source.h"
    source.write_text("int x;\n")

    def build(language: object, stage: Path) -> list[str]:
        built.append(stage.name)
        (stage / "aid").write_text("x")
        (stage / "aid").chmod(0o600)
        return [str(source)]

    for name, builder in compile_aids.BUILDERS.items():
        monkeypatch.setitem(compile_aids.BUILDERS, name, dataclasses.replace(builder, build=build))
    older = fake_tree(tmp_path, "cpp", "1" * 64)
    oldest = tmp_path / f"cpp-{'2' * 16}"
    oldest.mkdir()
    compile_aids.install(tmp_path)
    assert len(built) == len(compile_aids.BUILDERS)
    current = compile_aids.current_trees(tmp_path)
    assert set(current) == set(compile_aids.BUILDERS)
    assert (current["cpp"][1] / "aid").stat().st_mode & 0o777 == 0o644
    # The tree it replaced stays for executors that still bind it; older ones go.
    assert older.is_dir() and not oldest.exists()
    compile_aids.install(tmp_path)
    assert len(built) == len(compile_aids.BUILDERS), "a current tree is not built again"
    # An input changed (a package update): a new tree under a new name and digest, the one it replaces kept.
    before = current["cpp"]
    source.write_text("int xy;\n")
    compile_aids.install(tmp_path)
    assert len(built) == 2 * len(compile_aids.BUILDERS)
    after = compile_aids.current_trees(tmp_path)["cpp"]
    assert after[0] != before[0] and after[1] != before[1]
    assert before[1].is_dir()
