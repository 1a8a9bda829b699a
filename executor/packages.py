"""The libraries a run can use: sets declared per language in executor/packages.toml, installed into
read-only trees that every sandbox binds at /opt/lce/packages/<language> (common.languages points each
runtime there), and listed by the executor with their versions.

Under the packages dir (LCE_PACKAGES_DIR) each installed set is a tree named <language>-<digest>, with
its manifest (lce-packages.json: the set, its digest, every installed package and version), and
<language> is a symlink to the current tree, swapped atomically. The digest covers the declared set and
the toolchain's version, so a changed set or runtime installs a new tree.

`python -m executor.packages install` installs what is declared (root, at setup); `list` prints it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from common import languages
from executor.settings import packages_dir

DECLARATION = Path(__file__).with_name("packages.toml")
MANIFEST = "lce-packages.json"
_FORMAT = 2  # 2: console scripts (bin/) left out
_NAME = re.compile(r"[A-Za-z0-9@][A-Za-z0-9._/-]{0,99}")
_VERSION = re.compile(r"[0-9][A-Za-z0-9.+~-]{0,49}")
_INSTALL_TIMEOUT_S = 900


class PackageError(RuntimeError):
    """A declared set is invalid, or could not be installed."""


@dataclass(frozen=True)
class InstalledSet:
    language: str
    digest: str
    # Every package in the tree (dependencies included), name to version.
    packages: Mapping[str, str]
    tree: Path

    @property
    def sandbox_path(self) -> str:
        return f"{languages.PACKAGES_IN_SANDBOX}/{self.language}"


def declared_sets(path: Path = DECLARATION) -> dict[str, dict[str, str]]:
    """The declaration, checked: languages with an installer, names and exact versions as registries write them."""
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise PackageError(f"{path}: {exc}") from exc
    sets: dict[str, dict[str, str]] = {}
    for language, packages in raw.items():
        if language not in _INSTALLERS:
            raise PackageError(f"{path}: no installer for [{language}] (known: {', '.join(_INSTALLERS)})")
        if not isinstance(packages, dict):
            raise PackageError(f'{path}: [{language}] must be a table of name = "version"')
        for name, version in packages.items():
            if not _NAME.fullmatch(name) or not isinstance(version, str) or not _VERSION.fullmatch(version):
                raise PackageError(f"{path}: [{language}] {name} = {version!r} is not a package and an exact version")
        sets[language] = dict(sorted(packages.items()))
    return sets


def set_digest(language: str, packages: Mapping[str, str]) -> str:
    language_entry = languages.by_name(language)
    runtime = languages.detect_version(language_entry) if language_entry else "unknown"
    declared = {"format": _FORMAT, "language": language, "runtime": runtime, "packages": dict(sorted(packages.items()))}
    return hashlib.sha256(json.dumps(declared, sort_keys=True).encode()).hexdigest()


def installed_sets(root: Path) -> dict[str, InstalledSet]:
    """The current tree of each language under root (none when nothing was installed)."""
    found = {}
    for language in _INSTALLERS:
        link = root / language
        try:
            manifest = json.loads((link / MANIFEST).read_text())
        except (OSError, ValueError):
            continue
        found[language] = InstalledSet(language, manifest["digest"], manifest["packages"], link.resolve())
    return found


def stale_or_missing(root: Path, sets: Mapping[str, Mapping[str, str]]) -> list[str]:
    """The declared languages whose installed tree is not the declared set."""
    installed = installed_sets(root)
    return [
        language
        for language, packages in sets.items()
        if packages and (language not in installed or installed[language].digest != set_digest(language, packages))
    ]


def install(root: Path, sets: Mapping[str, Mapping[str, str]]) -> None:
    """Installs each declared set that is not installed yet and makes it current. The tree it replaces
    is kept (running executors still bind it until they restart); older ones are removed."""
    root.mkdir(parents=True, exist_ok=True)
    for language, packages in sets.items():
        current = root / language
        previous = os.readlink(current) if current.is_symlink() else None
        if not packages:
            current.unlink(missing_ok=True)
            remove_trees(root, language, keep={previous})
            continue
        digest = set_digest(language, packages)
        tree = root / f"{language}-{digest[:16]}"
        if not (tree / MANIFEST).is_file():
            _build_tree(tree, language, packages, digest)
        point_symlink(current, tree.name)
        remove_trees(root, language, keep={tree.name, previous})


def _build_tree(tree: Path, language: str, packages: Mapping[str, str], digest: str) -> None:
    stage = Path(tempfile.mkdtemp(prefix=f".{language}-", dir=tree.parent))
    try:
        installer = _INSTALLERS[language]
        installer.install(packages, stage)
        manifest = {"language": language, "digest": digest, "declared": packages, "packages": installer.list(stage)}
        (stage / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
        make_readable_only(stage)
        shutil.rmtree(tree, ignore_errors=True)
        stage.rename(tree)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def make_readable_only(tree: Path) -> None:
    """Everyone may read (slot uids run the code), nobody but the owner write; the sandbox binds it read-only."""
    for directory, _, files in os.walk(tree):
        os.chmod(directory, 0o755)
        for name in files:
            path = Path(directory, name)
            if not path.is_symlink():
                path.chmod(0o755 if path.stat().st_mode & 0o111 else 0o644)


def point_symlink(link: Path, target: str) -> None:
    temporary = link.with_name(f".{link.name}.link")
    temporary.unlink(missing_ok=True)
    temporary.symlink_to(target)
    os.replace(temporary, link)


def remove_trees(root: Path, language: str, keep: set[str | None]) -> None:
    for tree in root.glob(f"{language}-*"):
        if tree.name not in keep and tree.is_dir() and not tree.is_symlink():
            shutil.rmtree(tree)


def _run(argv: list[str], cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=_INSTALL_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PackageError(f"{argv[0]}: {exc}") from exc
    if done.returncode != 0:
        raise PackageError(f"{' '.join(argv[:4])} ... failed:\n{done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


# --- one installer per language: put the set into a tree, then list what the tree holds ---


@dataclass(frozen=True)
class _Installer:
    install: Callable[[Mapping[str, str], Path], None]
    list: Callable[[Path], dict[str, str]]


def _install_python(packages: Mapping[str, str], stage: Path) -> None:
    python = "/usr/bin/python3"
    minor = _run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"]).strip()
    requirements = [f"{name}=={version}" for name, version in packages.items()]
    pip = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-compile"]
    wheels_for = ["--only-binary=:all:", "--implementation", "cp", "--python-version", minor]
    _run([*pip, *wheels_for, "--target", str(stage), *requirements])
    # Byte code compiled ahead by the sandbox's own Python (runs are -B, they write none), naming files
    # by their path inside the sandbox in tracebacks.
    sandbox_path = f"{languages.PACKAGES_IN_SANDBOX}/python"
    _run([python, "-m", "compileall", "-q", "-j", "0", "-s", str(stage), "-p", sandbox_path, str(stage)])
    # Console scripts: no run calls them, and their #! line names the installing host's Python.
    shutil.rmtree(stage / "bin", ignore_errors=True)


def _list_python(tree: Path) -> dict[str, str]:
    found = {}
    for info in tree.glob("*.dist-info"):
        name, _, version = info.name.removesuffix(".dist-info").partition("-")
        found[name.lower().replace("_", "-")] = version
    return dict(sorted(found.items()))


def _install_javascript(packages: Mapping[str, str], stage: Path) -> None:
    (stage / "package.json").write_text('{"private": true}\n')
    specs = [f"{name}@{version}" for name, version in packages.items()]
    _run(["npm", "install", "--no-audit", "--no-fund", "--ignore-scripts", "--save-exact", *specs], cwd=stage)


def _list_javascript(tree: Path) -> dict[str, str]:
    found = {}
    for manifest in [*tree.glob("node_modules/*/package.json"), *tree.glob("node_modules/@*/*/package.json")]:
        package = json.loads(manifest.read_text())
        found[package["name"]] = package["version"]
    return dict(sorted(found.items()))


# Where Debian's packages of pure-Ruby gems put them; GEM_PATH points at the same layout in the tree.
_DEBIAN_GEMS = Path("usr/share/rubygems-integration/all")


def _install_ruby(packages: Mapping[str, str], stage: Path) -> None:
    with tempfile.TemporaryDirectory() as downloads:
        for name, version in packages.items():
            debian_package = f"ruby-{name.replace('_', '-')}".lower()
            debian_version = _debian_version_of(debian_package, version)
            _run(["apt-get", "download", "-q", f"{debian_package}={debian_version}"], cwd=Path(downloads))
        for deb in sorted(Path(downloads).glob("*.deb")):
            extracted = Path(downloads) / deb.stem
            _run(["dpkg-deb", "-x", str(deb), str(extracted)])
            gems = extracted / _DEBIAN_GEMS
            if not (gems / "specifications").is_dir():
                raise PackageError(f"{deb.name} holds no pure-Ruby gem (native extensions are not supported)")
            shutil.copytree(gems, stage, dirs_exist_ok=True)


def _debian_version_of(debian_package: str, version: str) -> str:
    """The version of Debian's package that carries the gem at `version` (Debian adds a revision, maybe an epoch)."""
    listing = _run(["apt-cache", "madison", debian_package])
    for line in listing.splitlines():
        candidate = line.split("|")[1].strip() if line.count("|") >= 2 else ""
        if candidate.split(":")[-1].rsplit("-", 1)[0] == version:
            return candidate
    raise PackageError(f"Debian's archive has no {debian_package} at {version} (apt-get update may be due)")


def _list_ruby(tree: Path) -> dict[str, str]:
    found = {}
    for spec in tree.glob("specifications/*.gemspec"):
        name, _, version = spec.name.removesuffix(".gemspec").rpartition("-")
        found[name] = version
    return dict(sorted(found.items()))


_INSTALLERS = {
    "python": _Installer(_install_python, _list_python),
    "javascript": _Installer(_install_javascript, _list_javascript),
    "ruby": _Installer(_install_ruby, _list_ruby),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m executor.packages", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("install", "list"))
    parser.add_argument("--root", type=Path, help="the packages dir (default: LCE_PACKAGES_DIR or its default)")
    args = parser.parse_args(argv)
    root = args.root or packages_dir()
    try:
        if args.command == "install":
            install(root, declared_sets())
        for language, installed in installed_sets(root).items():
            listing = ", ".join(f"{name} {version}" for name, version in installed.packages.items())
            print(f"{language}: {listing}")
    except (PackageError, OSError) as exc:
        print(f"packages: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
