"""The declared libraries: the declaration's checks, the trees' layout and swap, and where the sandbox shows them."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pytest

from common.languages import by_name
from executor import packages
from executor.compile_cache import cache_key
from executor.sandbox.bwrap import ReadOnlyTree, sandbox_argv


def declare(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "packages.toml"
    path.write_text(text)
    return path


def test_the_repository_declares_numpy_lodash_and_a_gem() -> None:
    sets = packages.declared_sets()
    assert "numpy" in sets["python"] and "lodash" in sets["javascript"] and sets["ruby"]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('[cobol]\nx = "1.0"\n', "no installer for [cobol]"),
        ('[python]\nnumpy = ">=1.0"\n', "exact version"),
        ('[python]\n"numpy; rm -rf /" = "1.0"\n', "exact version"),
        ("[python]\nnumpy = 2\n", "exact version"),
        ("python = 3\n", "must be a table"),
        ("[python\n", "packages.toml"),
    ],
)
def test_a_bad_declaration_is_refused_with_its_reason(tmp_path: Path, text: str, problem: str) -> None:
    with pytest.raises(packages.PackageError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        packages.declared_sets(declare(tmp_path, text))


@pytest.fixture
def fake_installer(monkeypatch: pytest.MonkeyPatch) -> list[Mapping[str, str]]:
    """Python's installer replaced by one that writes a dist-info per package; records each install."""
    calls: list[Mapping[str, str]] = []

    def install(declared: Mapping[str, str], stage: Path) -> None:
        calls.append(dict(declared))
        for name, version in declared.items():
            (stage / f"{name}-{version}.dist-info").mkdir()
            (stage / f"{name}.py").write_text("VALUE = 1\n")

    installers = dict(packages._INSTALLERS)
    installers["python"] = packages._Installer(install, packages._list_python)
    monkeypatch.setattr(packages, "_INSTALLERS", installers)
    return calls


def test_install_makes_a_tree_with_its_manifest_and_keeps_it(tmp_path: Path, fake_installer: list) -> None:
    packages.install(tmp_path, {"python": {"numpy": "2.3.5"}})
    packages.install(tmp_path, {"python": {"numpy": "2.3.5"}})
    assert len(fake_installer) == 1  # the second install found the set installed
    found = packages.installed_sets(tmp_path)["python"]
    assert found.packages == {"numpy": "2.3.5"}
    assert found.tree.name.startswith("python-") and (tmp_path / "python").is_symlink()
    assert found.sandbox_path == "/opt/lce/packages/python"
    manifest = json.loads((found.tree / packages.MANIFEST).read_text())
    assert manifest["declared"] == {"numpy": "2.3.5"} and manifest["digest"] == found.digest
    assert (found.tree / "numpy.py").stat().st_mode & 0o777 == 0o644
    assert packages.stale_or_missing(tmp_path, {"python": {"numpy": "2.3.5"}}) == []


def test_a_changed_set_gets_a_new_tree_and_the_one_before_goes_a_change_later(
    tmp_path: Path, fake_installer: list
) -> None:
    packages.install(tmp_path, {"python": {"numpy": "2.3.5"}})
    old = packages.installed_sets(tmp_path)["python"]
    assert packages.stale_or_missing(tmp_path, {"python": {"numpy": "2.3.4"}}) == ["python"]
    packages.install(tmp_path, {"python": {"numpy": "2.3.4"}})
    new = packages.installed_sets(tmp_path)["python"]
    assert new.digest != old.digest and new.packages == {"numpy": "2.3.4"}
    assert old.tree.exists()  # running executors still bind it until they restart
    packages.install(tmp_path, {"python": {"numpy": "2.3.3"}})
    assert not old.tree.exists() and new.tree.exists()
    packages.install(tmp_path, {"python": {}})
    assert packages.installed_sets(tmp_path) == {}


def test_a_failed_install_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(declared: Mapping[str, str], stage: Path) -> None:
        (stage / "half").write_text("")
        raise packages.PackageError("registry unreachable")

    monkeypatch.setitem(packages._INSTALLERS, "python", packages._Installer(broken, packages._list_python))
    with pytest.raises(packages.PackageError, match="unreachable"):
        packages.install(tmp_path, {"python": {"numpy": "2.3.5"}})
    assert list(tmp_path.iterdir()) == []


def test_listings_read_what_each_tree_holds(tmp_path: Path) -> None:
    (tmp_path / "node_modules" / "lodash").mkdir(parents=True)
    (tmp_path / "node_modules" / "lodash" / "package.json").write_text('{"name": "lodash", "version": "4.17.21"}')
    (tmp_path / "node_modules" / "@types" / "node").mkdir(parents=True)
    (tmp_path / "node_modules" / "@types" / "node" / "package.json").write_text(
        '{"name": "@types/node", "version": "20.1.0"}'
    )
    (tmp_path / "specifications").mkdir()
    (tmp_path / "specifications" / "unicode-display_width-2.4.2.gemspec").write_text("")
    (tmp_path / "Typing_Extensions-4.1.0.dist-info").mkdir()
    assert packages._list_javascript(tmp_path) == {"@types/node": "20.1.0", "lodash": "4.17.21"}
    assert packages._list_ruby(tmp_path) == {"unicode-display_width": "2.4.2"}
    assert packages._list_python(tmp_path) == {"typing-extensions": "4.1.0"}


def test_every_sandbox_binds_the_trees_read_only_under_readable_parents() -> None:
    trees = [
        ReadOnlyTree(Path("/var/lib/lce/packages/python-ab"), "/opt/lce/packages/python"),
        ReadOnlyTree(Path("/var/lib/lce/packages/ruby-cd"), "/opt/lce/packages/ruby"),
    ]
    argv = sandbox_argv(
        "bwrap-userns",
        workdir=Path("/tmp/lce-runs/x"),
        uid=60001,
        info_fd=3,
        seccomp_fd=4,
        init=Path("/init"),
        status_fd=5,
        read_only_trees=trees,
    )
    text = " ".join(argv)
    assert "--ro-bind /var/lib/lce/packages/python-ab /opt/lce/packages/python" in text
    assert "--ro-bind /var/lib/lce/packages/ruby-cd /opt/lce/packages/ruby" in text
    for parent in ("/opt", "/opt/lce", "/opt/lce/packages"):
        assert text.count(f"--perms 0755 --dir {parent} ") == 1
    # Nothing is writable but the work dir: the root is remounted read-only after every bind.
    root_read_only = next(i for i in range(len(argv) - 1) if argv[i : i + 2] == ["--remount-ro", "/"])
    assert root_read_only > argv.index("/opt/lce/packages/ruby")


def test_the_compile_cache_key_follows_the_library_set() -> None:
    c = by_name("c")
    assert c is not None
    plain = cache_key(c, "12.2.0", b"int main(){}")
    assert cache_key(c, "12.2.0", b"int main(){}", (), "") == plain
    assert cache_key(c, "12.2.0", b"int main(){}", (), "digest-a") != plain
    assert cache_key(c, "12.2.0", b"int main(){}", (), "digest-a") != cache_key(c, "12.2.0", b"int main(){}", (), "b")
